"""The Flower ClientApp: on-device training and evaluation of the interest model.

``vane.client.app:app`` opens the tracker of this device, applies the global
weights (installing the model first when the server sends a new version),
trains through the LiteRT ``train`` signature and replies with

- ``arrays``: an ArrayRecord holding only ``delta`` = local − global weights
  (float32, or float16 with ``delta-float16``);
- ``metrics``: a MetricRecord of numbers only: ``num-examples``, ``train-loss``,
  ``train-steps``, ``holdout``.

Nothing else leaves the device: no event, item id, title, category or time.

A train message whose config holds ``population-round`` is the population-statistics round of
federated analytics instead (:mod:`vane.client.population`): the reply's ``delta`` is then the device's
clipped category counts, masked by SecAgg+ when the server runs it. A train message may also carry the
published statistics (``population-artifact``), which the device keeps sealed in its store.

Which tracker
    Deployment: ``node_config`` ``store`` (the encrypted store file) and
    ``key-file`` (its 0600 key file), or ``passphrase-env`` naming an
    environment variable that holds the passphrase.
    Simulation: ``node_config`` ``partition-id`` selects
    ``<sim-dir>/user-<partition-id>.store`` with ``<sim-dir>/store.key``, where
    ``sim-dir`` is given to :func:`build_client_app` or read from the
    ``VANE_SIM_DIR`` environment variable.

Settings (message config first, then ``run_config``, then these defaults; the keys and the
one reader with its strict rules are in :mod:`vane.shared.protocol`, so a bool of ``"maybe"``
raises here as on the server)
    ``local-epochs`` 1, ``learning-rate`` 0 (the spec's), ``delta-float16``
    false, ``seed`` 0, ``holdout-fraction`` 0.1, ``evaluate-model-only`` true
    (rank with the model alone, so the metrics measure the federated model
    rather than the personal profile). ``proximal-mu`` (default 0) is read from
    the message config only: FedProx sends it there, while ``run_config``
    declares the server's FedProx setting for every strategy.
    ``mix-grid-step`` 0: when the server sets it (e.g. 0.25), evaluation also
    scores every candidate blend of ``vane.shared.blend.mix_grid(step)`` on the
    held-out events and replies ``mix-{i}-hr@1`` / ``mix-{i}-mrr`` means (the
    server picks the population's best). A ``mix`` in any message config is the
    server's pick; the device keeps it (``InterestTracker.recommend_mix``).

The model comes back
    Each message's global weights are installed into the device's store, labelled with the round
    that produced them (:func:`vane.client.app_messages.weights_label`, the registry's version id):
    an evaluate message carries round N's aggregate (Flower evaluates after aggregating), a train
    message round N-1's. After training, the device keeps the global weights it received, not its
    own unsent step, so its tracker always answers with a published version; once the evaluate phase
    of round N has reached it, the tracker's next open answers with round N's model
    (``tracker.model_version == "r000N-<spec>"``). A device not sampled for evaluation gets round
    N's weights with the next train message. A model for another taxonomy than the device's store
    is refused (TaxonomyError naming both hashes).

Malformed messages
    Everything a message asks for is checked before the device changes anything
    (:mod:`vane.client.app_messages`): the ``config`` and ``arrays`` records, every
    setting (``holdout-fraction`` in [0, 1)), the model blob and taxonomy, the blend,
    and the global weights (float32 only, never converted; one finite vector of
    the spec's length). A refused message is answered with a Flower error reply
    (``Message(Error(...), reply_to=msg)``) whose reason names the error class and
    the value; the server counts the node as failed for the round.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.clientapp.typing import Mod
from vane.client.app_messages import ClientSettings, ModelPlan, RoundMessage, weights_label
from vane.client.mods import error_reply, privacy_mods
from vane.client.population import keep_population, population_on_device, population_requested, read_population
from vane.client.tracker import InterestTracker, Mix
from vane.shared import protocol as p
from vane.shared.errors import ConfigError, VaneError

__all__ = [
    "MODEL_ONLY",
    "SIM_DIR_ENV",
    "SIM_KEY_FILE",
    "ClientSettings",
    "app",
    "build_client_app",
    "evaluate_on_device",
    "replying_errors",
    "sim_store_path",
    "train_on_device",
]

logger = logging.getLogger("vane.client")

SIM_DIR_ENV = "VANE_SIM_DIR"
SIM_KEY_FILE = "store.key"

#: Only the ranking model, for evaluation of the federated model itself.
MODEL_ONLY = Mix(model=1.0, recent=0.0, profile=0.0, transitions=0.0)


def sim_store_path(sim_dir: str | Path, partition_id: int) -> Path:
    """Where the simulation keeps the encrypted store of simulated user ``partition_id``."""
    return Path(sim_dir) / f"user-{int(partition_id):05d}.store"


def _open_tracker(context: Context, sim_dir: str | Path | None, mix: Mix | None) -> InterestTracker:
    node = context.node_config
    extra: dict[str, Any] = {"mix": mix} if mix is not None else {}
    if p.NODE_STORE_KEY in node:
        store = str(node[p.NODE_STORE_KEY])
        if p.NODE_KEY_FILE_KEY in node:
            return InterestTracker.open(store, key_file=str(node[p.NODE_KEY_FILE_KEY]), **extra)
        if p.NODE_PASSPHRASE_ENV_KEY in node:
            env = str(node[p.NODE_PASSPHRASE_ENV_KEY])
            if env not in os.environ:
                raise ConfigError(f"node_config passphrase-env names {env!r}, which is not set")
            return InterestTracker.open(store, passphrase=os.environ[env], **extra)
        raise ConfigError("node_config has 'store' but neither 'key-file' nor 'passphrase-env'")
    root = sim_dir or os.environ.get(SIM_DIR_ENV)
    if root is None or p.NODE_PARTITION_ID_KEY not in node:
        raise ConfigError(
            "node_config needs 'store' and 'key-file' (deployment), or 'partition-id' with a simulation "
            f"directory (build_client_app(sim_dir=...) or ${SIM_DIR_ENV})"
        )
    partition = node[p.NODE_PARTITION_ID_KEY]
    if isinstance(partition, bool) or not isinstance(partition, (int, str)) or not str(partition).isdigit():
        raise ConfigError(f"node_config partition-id is {partition!r}; expected a non-negative integer")
    path = sim_store_path(root, int(partition))
    return InterestTracker.open(path, key_file=Path(root) / SIM_KEY_FILE, **extra)


def _reply(msg: Message, arrays: ArrayRecord | None, metrics: dict[str, float]) -> Message:
    content = RecordDict({p.METRICS_RECORD: MetricRecord({k: float(v) for k, v in metrics.items()})})
    if arrays is not None:
        content[p.ARRAYS_RECORD] = arrays
    return Message(content=content, reply_to=msg)


def train_on_device(msg: Message, context: Context, sim_dir: str | Path | None = None) -> Message:
    """One local training round; replies with the weight delta and numeric metrics.

    Raises
    ------
    VaneError
        When the message is malformed (see :class:`RoundMessage`, :class:`ModelPlan`) or the device
        cannot train; the device's model and store are unchanged unless training itself failed.
        :func:`build_client_app` turns the error into an error reply.
    """
    if population_requested(msg):  # federated analytics: the device's clipped counts (vane.client.population)
        return population_on_device(msg, lambda: _open_tracker(context, sim_dir, None))
    message = RoundMessage.read(msg, context.run_config)
    settings = message.settings
    tracker = _open_tracker(context, sim_dir, None)
    try:
        plan = ModelPlan.check(tracker, message)
        population = read_population(message.config)  # the statistics published beside the model
        label = weights_label(message.config, settings, plan.weights.spec_hash, trained_rounds=1)
        plan.apply(tracker, label)
        keep_population(tracker, population)  # kept sealed in the store
        global_flat = plan.weights.flat
        result = tracker.train_local(
            epochs=settings.local_epochs,
            learning_rate=settings.learning_rate or None,
            seed=settings.round_seed(context.node_config),
            holdout_fraction=settings.holdout_fraction,
            parts=settings.train_parts,
        )
        if result.num_examples == 0:
            raise ConfigError("this device has too few events to train on")
        delta = tracker.get_weights().flat - global_flat
        plan.apply_weights(tracker, label)  # answer with the published global model, not the unsent local step
    finally:
        tracker.close()
    if settings.proximal_mu > 0:
        # Proximal operator of (mu/2)||w - w_global||^2 applied to the local result.
        delta = delta / (1.0 + settings.proximal_mu)
    wire = delta.astype(np.float16 if settings.delta_float16 else np.float32)
    metrics = {
        p.NUM_EXAMPLES_KEY: result.num_examples,
        p.TRAIN_LOSS_KEY: result.loss,
        p.TRAIN_STEPS_KEY: result.steps,
        p.HOLDOUT_KEY: result.holdout,
    }
    return _reply(msg, ArrayRecord({p.DELTA_KEY: Array(wire)}), metrics)


def evaluate_on_device(msg: Message, context: Context, sim_dir: str | Path | None = None) -> Message:
    """Evaluate the global model on this device's held-out newest events (errors as :func:`train_on_device`)."""
    message = RoundMessage.read(msg, context.run_config)
    settings = message.settings
    tracker = _open_tracker(context, sim_dir, MODEL_ONLY if settings.evaluate_model_only else None)
    try:
        plan = ModelPlan.check(tracker, message)
        plan.apply(tracker, weights_label(message.config, settings, plan.weights.spec_hash, trained_rounds=0))
        metrics = tracker.evaluate_local(holdout_fraction=settings.holdout_fraction,
                                         mix_candidates=settings.mix_candidates())
    finally:
        tracker.close()
    if metrics.get(p.NUM_EXAMPLES_KEY, 0.0) <= 0:
        raise ConfigError("this device has too few events to evaluate on")
    return _reply(msg, None, metrics)


#: A message handler: the message, the node's context and the simulation folder (or None) to a reply.
Handler = Callable[[Message, Context, str | Path | None], Message]


def replying_errors(handler: Handler) -> Handler:
    """``handler``, whose :class:`VaneError` becomes an error reply (:func:`vane.client.mods.error_reply`).

    The server sees ``msg.has_error()`` with the error's class and message as the reason, counts the
    node as failed for the round and goes on with the others.
    """

    def handle(msg: Message, context: Context, sim_dir: str | Path | None = None) -> Message:
        try:
            return handler(msg, context, sim_dir)
        except VaneError as exc:
            logger.warning("refused a %s message: %s: %s", msg.metadata.message_type, type(exc).__name__, exc)
            return error_reply(msg, exc)

    return handle


def build_client_app(sim_dir: str | Path | None = None, mods: Sequence[Mod] = (),
                     on_train: Handler = train_on_device, on_evaluate: Handler = evaluate_on_device) -> ClientApp:
    """A ClientApp; ``sim_dir`` points nodes at their stores; ``mods`` wrap every call, outside the privacy mods.

    ``on_train`` and ``on_evaluate`` (default :func:`train_on_device`, :func:`evaluate_on_device`)
    answer each message, called with it, the context and ``sim_dir``.

    A message the handlers refuse with a :class:`VaneError` (a missing record, a bad setting, weights
    of the wrong dtype, shape or length, a spec mismatch, too few events) is answered with an error
    reply naming it (:func:`replying_errors`); the device's model and store are left as they were.

    The privacy mods (:func:`vane.client.mods.privacy_mods`) are inert unless the server asks for clipping or SecAgg+.
    """
    app = ClientApp(mods=[*mods, *privacy_mods()])

    train_handler, evaluate_handler = replying_errors(on_train), replying_errors(on_evaluate)

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        return train_handler(msg, context, sim_dir)

    @app.evaluate()
    def evaluate(msg: Message, context: Context) -> Message:
        return evaluate_handler(msg, context, sim_dir)

    return app


app = build_client_app()
