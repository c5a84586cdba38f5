"""The Flower ClientApp: on-device training and evaluation of the interest model.

``vane.client.app:app`` opens the tracker of this device, applies the global
weights (installing the model first when the server sends a new version),
trains through the LiteRT ``train`` signature and replies with

- ``arrays``: an ArrayRecord holding only ``delta`` = local − global weights
  (float32, or float16 with ``delta-float16``);
- ``metrics``: a MetricRecord of numbers only: ``num-examples``, ``train-loss``,
  ``train-steps``, ``holdout``.

Nothing else leaves the device: no event, item id, title, category or time.

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
"""

from __future__ import annotations

import json
import logging
import os
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.clientapp.typing import Mod
from vane.client.mods import privacy_mods
from vane.client.tracker import InterestTracker, Mix
from vane.shared import protocol as p
from vane.shared.blend import mix_grid
from vane.shared.errors import ConfigError, SpecMismatchError
from vane.shared.taxonomy import Taxonomy
from vane.shared.weights import Weights

logger = logging.getLogger("vane.client")

SIM_DIR_ENV = "VANE_SIM_DIR"
SIM_KEY_FILE = "store.key"

#: Only the ranking model, for evaluation of the federated model itself.
MODEL_ONLY = Mix(model=1.0, recent=0.0, profile=0.0, transitions=0.0)


def sim_store_path(sim_dir: str | Path, partition_id: int) -> Path:
    """Where the simulation keeps the encrypted store of simulated user ``partition_id``."""
    return Path(sim_dir) / f"user-{int(partition_id):05d}.store"


@dataclass(frozen=True)
class ClientSettings:
    """Settings of one round: the message config first, then run_config, then these defaults.

    The keys are the field names in kebab-case, read by :func:`vane.shared.protocol.read_settings`
    (so a bool of ``"maybe"`` raises, as on the server). ``proximal-mu`` is read from the message
    config only: ``flwr run`` declares FedProx's server setting in run_config whatever the strategy.
    """

    local_epochs: int = 1
    learning_rate: float = 0.0
    delta_float16: bool = False
    seed: int = 0
    holdout_fraction: float = 0.1
    proximal_mu: float = field(default=0.0, metadata=p.only_from(p.MESSAGE_CONFIG))
    evaluate_model_only: bool = True
    server_round: int = 0
    mix_grid_step: float = 0.0

    def __post_init__(self) -> None:
        if self.local_epochs < 1:
            raise ConfigError(f"local-epochs is {self.local_epochs}; expected >= 1")
        if self.learning_rate < 0 or self.proximal_mu < 0:
            raise ConfigError("learning-rate and proximal-mu must be >= 0")
        if self.mix_grid_step:
            try:
                mix_grid(self.mix_grid_step)
            except ValueError as exc:
                raise ConfigError(f"mix-grid-step: {exc} (0 turns mix scoring off)") from None

    @classmethod
    def read(cls, config: Mapping[str, Any], run_config: Mapping[str, Any]) -> ClientSettings:
        """The settings of a round from the message ``config`` and the run's ``run_config``.

        Raises
        ------
        ConfigError
            When a value has the wrong type or is out of range; the message names the key.
        """
        return p.read_settings(cls, (p.MESSAGE_CONFIG, config), (p.RUN_CONFIG, run_config))

    def mix_candidates(self) -> list[tuple[float, ...]]:
        """The candidate blends to score on the held-out events (none when ``mix-grid-step`` is 0)."""
        return mix_grid(self.mix_grid_step) if self.mix_grid_step else []

    def round_seed(self, node_config: Mapping[str, Any]) -> int:
        """A seed fixed by (seed, round, device), so a resumed run replays the same shuffles."""
        device = str(node_config.get(p.NODE_PARTITION_ID_KEY, node_config.get(p.NODE_STORE_KEY, "")))
        return zlib.crc32(f"{self.seed}:{self.server_round}:{device}".encode())


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
    path = sim_store_path(root, int(node[p.NODE_PARTITION_ID_KEY]))
    return InterestTracker.open(path, key_file=Path(root) / SIM_KEY_FILE, **extra)


def _prepare_model(tracker: InterestTracker, config: ConfigRecord, arrays: ArrayRecord) -> np.ndarray:
    """Install the model when the server sent a new version, then load the global weights."""
    version = str(config.get(p.MODEL_VERSION_KEY, ""))
    if version and tracker.model_version != version:
        blob = config.get(p.MODEL_BLOB_KEY)
        if not isinstance(blob, bytes):
            raise ConfigError(f"this device lacks model version {version!r} and the server did not send it")
        taxonomy = Taxonomy.from_dict(json.loads(str(config[p.TAXONOMY_KEY]))) if p.TAXONOMY_KEY in config else None
        tracker.install_model(blob, version, taxonomy)
    if p.MIX_KEY in config:
        values = config[p.MIX_KEY]
        tracker.recommend_mix(Mix.of(values if isinstance(values, list) else [values]))
    global_flat = arrays[p.WEIGHTS_KEY].numpy().astype(np.float32)
    spec_hash = str(config.get(p.SPEC_HASH_KEY, tracker.spec.hash))
    if spec_hash != tracker.spec.hash:
        raise SpecMismatchError(f"server weights are for spec {spec_hash}; this device runs {tracker.spec.hash}")
    tracker.set_weights(Weights(spec_hash, global_flat))
    return global_flat


def _reply(msg: Message, arrays: ArrayRecord | None, metrics: dict[str, float]) -> Message:
    content = RecordDict({p.METRICS_RECORD: MetricRecord({k: float(v) for k, v in metrics.items()})})
    if arrays is not None:
        content[p.ARRAYS_RECORD] = arrays
    return Message(content=content, reply_to=msg)


def train_on_device(msg: Message, context: Context, sim_dir: str | Path | None = None) -> Message:
    """One local training round; replies with the weight delta and numeric metrics."""
    config = msg.content.config_records[p.CONFIG_RECORD]
    settings = ClientSettings.read(config, context.run_config)
    tracker = _open_tracker(context, sim_dir, None)
    try:
        global_flat = _prepare_model(tracker, config, msg.content.array_records[p.ARRAYS_RECORD])
        result = tracker.train_local(
            epochs=settings.local_epochs,
            learning_rate=settings.learning_rate or None,
            seed=settings.round_seed(context.node_config),
            holdout_fraction=settings.holdout_fraction,
        )
        if result.num_examples == 0:
            raise ConfigError("this device has too few events to train on")
        delta = tracker.get_weights().flat - global_flat
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
    """Evaluate the global model on this device's held-out newest events."""
    config = msg.content.config_records[p.CONFIG_RECORD]
    settings = ClientSettings.read(config, context.run_config)
    tracker = _open_tracker(context, sim_dir, MODEL_ONLY if settings.evaluate_model_only else None)
    try:
        _prepare_model(tracker, config, msg.content.array_records[p.ARRAYS_RECORD])
        metrics = tracker.evaluate_local(holdout_fraction=settings.holdout_fraction,
                                         mix_candidates=settings.mix_candidates())
    finally:
        tracker.close()
    if metrics.get(p.NUM_EXAMPLES_KEY, 0.0) <= 0:
        raise ConfigError("this device has too few events to evaluate on")
    return _reply(msg, None, metrics)


def build_client_app(sim_dir: str | Path | None = None, mods: Sequence[Mod] = ()) -> ClientApp:
    """A ClientApp; ``sim_dir`` points nodes at their stores; ``mods`` wrap every call, outside the privacy mods.

    The privacy mods (:func:`vane.client.mods.privacy_mods`) are inert unless the server asks for clipping or SecAgg+.
    """
    app = ClientApp(mods=[*mods, *privacy_mods()])

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        return train_on_device(msg, context, sim_dir)

    @app.evaluate()
    def evaluate(msg: Message, context: Context) -> Message:
        return evaluate_on_device(msg, context, sim_dir)

    return app


app = build_client_app()
