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

Settings (message config first, then ``run_config``, then these defaults)
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.clientapp.typing import Mod
from vane.client.tracker import InterestTracker, Mix
from vane.shared.blend import MIX_CONFIG_KEY, mix_grid
from vane.shared.errors import ConfigError, SpecMismatchError
from vane.shared.taxonomy import Taxonomy
from vane.shared.weights import Weights

logger = logging.getLogger("vane.client")

SIM_DIR_ENV = "VANE_SIM_DIR"
SIM_KEY_FILE = "store.key"
WEIGHTS_KEY = "weights"
DELTA_KEY = "delta"
MODEL_BLOB_KEY = "model-blob"
MODEL_VERSION_KEY = "model-version"

#: Only the ranking model, for evaluation of the federated model itself.
MODEL_ONLY = Mix(model=1.0, recent=0.0, profile=0.0, transitions=0.0)


def sim_store_path(sim_dir: str | Path, partition_id: int) -> Path:
    """Where the simulation keeps the encrypted store of simulated user ``partition_id``."""
    return Path(sim_dir) / f"user-{int(partition_id):05d}.store"


@dataclass(frozen=True)
class ClientSettings:
    """Training settings of one round, read from the message config, then run_config."""

    local_epochs: int = 1
    learning_rate: float = 0.0
    delta_float16: bool = False
    seed: int = 0
    holdout_fraction: float = 0.1
    proximal_mu: float = 0.0
    evaluate_model_only: bool = True
    server_round: int = 0
    mix_grid_step: float = 0.0

    @classmethod
    def read(cls, config: Mapping[str, Any], run_config: Mapping[str, Any]) -> ClientSettings:
        def get(key: str, default: Any, run_wide: bool = True) -> Any:
            value = config.get(key, run_config.get(key, default) if run_wide else default)
            if isinstance(default, bool):
                if isinstance(value, str):
                    return value.lower() in ("true", "1", "yes")
                return bool(value)
            if isinstance(default, int):
                if isinstance(value, float) and not value.is_integer():
                    raise ConfigError(f"{key} is {value!r}; expected an integer")
                return int(value)
            return float(value)

        settings = cls(
            local_epochs=get("local-epochs", 1),
            learning_rate=get("learning-rate", 0.0),
            delta_float16=get("delta-float16", False),
            seed=get("seed", 0),
            holdout_fraction=get("holdout-fraction", 0.1),
            # run_config's proximal-mu is FedProx's server setting, declared whatever the strategy.
            proximal_mu=get("proximal-mu", 0.0, run_wide=False),
            evaluate_model_only=get("evaluate-model-only", True),
            server_round=get("server-round", 0),
            mix_grid_step=get("mix-grid-step", 0.0),
        )
        if settings.local_epochs < 1:
            raise ConfigError(f"local-epochs is {settings.local_epochs}; expected >= 1")
        if settings.learning_rate < 0 or settings.proximal_mu < 0:
            raise ConfigError("learning-rate and proximal-mu must be >= 0")
        if settings.mix_grid_step:
            try:
                mix_grid(settings.mix_grid_step)
            except ValueError as exc:
                raise ConfigError(f"mix-grid-step: {exc} (0 turns mix scoring off)") from None
        return settings

    def mix_candidates(self) -> list[tuple[float, ...]]:
        """The candidate blends to score on the held-out events (none when ``mix-grid-step`` is 0)."""
        return mix_grid(self.mix_grid_step) if self.mix_grid_step else []

    def round_seed(self, node_config: Mapping[str, Any]) -> int:
        """A seed fixed by (seed, round, device), so a resumed run replays the same shuffles."""
        device = str(node_config.get("partition-id", node_config.get("store", "")))
        return zlib.crc32(f"{self.seed}:{self.server_round}:{device}".encode())


def _open_tracker(context: Context, sim_dir: str | Path | None, mix: Mix | None) -> InterestTracker:
    node = context.node_config
    extra: dict[str, Any] = {"mix": mix} if mix is not None else {}
    if "store" in node:
        store = str(node["store"])
        if "key-file" in node:
            return InterestTracker.open(store, key_file=str(node["key-file"]), **extra)
        if "passphrase-env" in node:
            env = str(node["passphrase-env"])
            if env not in os.environ:
                raise ConfigError(f"node_config passphrase-env names {env!r}, which is not set")
            return InterestTracker.open(store, passphrase=os.environ[env], **extra)
        raise ConfigError("node_config has 'store' but neither 'key-file' nor 'passphrase-env'")
    root = sim_dir or os.environ.get(SIM_DIR_ENV)
    if root is None or "partition-id" not in node:
        raise ConfigError(
            "node_config needs 'store' and 'key-file' (deployment), or 'partition-id' with a simulation "
            f"directory (build_client_app(sim_dir=...) or ${SIM_DIR_ENV})"
        )
    path = sim_store_path(root, int(node["partition-id"]))
    return InterestTracker.open(path, key_file=Path(root) / SIM_KEY_FILE, **extra)


def _prepare_model(tracker: InterestTracker, config: ConfigRecord, arrays: ArrayRecord) -> np.ndarray:
    """Install the model when the server sent a new version, then load the global weights."""
    version = str(config.get(MODEL_VERSION_KEY, ""))
    if version and tracker.model_version != version:
        blob = config.get(MODEL_BLOB_KEY)
        if not isinstance(blob, bytes):
            raise ConfigError(f"this device lacks model version {version!r} and the server did not send it")
        taxonomy = Taxonomy.from_dict(json.loads(str(config["taxonomy"]))) if "taxonomy" in config else None
        tracker.install_model(blob, version, taxonomy)
    if MIX_CONFIG_KEY in config:
        values = config[MIX_CONFIG_KEY]
        tracker.recommend_mix(Mix.of(values if isinstance(values, list) else [values]))  # type: ignore[arg-type]
    global_flat = arrays[WEIGHTS_KEY].numpy().astype(np.float32)
    spec_hash = str(config.get("spec-hash", tracker.spec.hash))
    if spec_hash != tracker.spec.hash:
        raise SpecMismatchError(f"server weights are for spec {spec_hash}; this device runs {tracker.spec.hash}")
    tracker.set_weights(Weights(spec_hash, global_flat))
    return global_flat


def _reply(msg: Message, arrays: ArrayRecord | None, metrics: dict[str, float]) -> Message:
    content = RecordDict({"metrics": MetricRecord({k: float(v) for k, v in metrics.items()})})
    if arrays is not None:
        content["arrays"] = arrays
    return Message(content=content, reply_to=msg)


def train_on_device(msg: Message, context: Context, sim_dir: str | Path | None = None) -> Message:
    """One local training round; replies with the weight delta and numeric metrics."""
    config = msg.content["config"]
    settings = ClientSettings.read(config, context.run_config)
    tracker = _open_tracker(context, sim_dir, None)
    try:
        global_flat = _prepare_model(tracker, config, msg.content["arrays"])
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
        "num-examples": result.num_examples,
        "train-loss": result.loss,
        "train-steps": result.steps,
        "holdout": result.holdout,
    }
    return _reply(msg, ArrayRecord({DELTA_KEY: Array(wire)}), metrics)


def evaluate_on_device(msg: Message, context: Context, sim_dir: str | Path | None = None) -> Message:
    """Evaluate the global model on this device's held-out newest events."""
    config = msg.content["config"]
    settings = ClientSettings.read(config, context.run_config)
    tracker = _open_tracker(context, sim_dir, MODEL_ONLY if settings.evaluate_model_only else None)
    try:
        _prepare_model(tracker, config, msg.content["arrays"])
        metrics = tracker.evaluate_local(holdout_fraction=settings.holdout_fraction,
                                         mix_candidates=settings.mix_candidates())
    finally:
        tracker.close()
    if metrics.get("num-examples", 0.0) <= 0:
        raise ConfigError("this device has too few events to evaluate on")
    return _reply(msg, None, metrics)


def build_client_app(sim_dir: str | Path | None = None, mods: Sequence[Mod] = ()) -> ClientApp:
    """A ClientApp; ``sim_dir`` points nodes at their stores; ``mods`` wrap every call, outside the privacy mods."""
    from vane.client.mods import privacy_mods  # inert unless the server asks for clipping or SecAgg+

    app = ClientApp(mods=[*mods, *privacy_mods()])

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        return train_on_device(msg, context, sim_dir)

    @app.evaluate()
    def evaluate(msg: Message, context: Context) -> Message:
        return evaluate_on_device(msg, context, sim_dir)

    return app


app = build_client_app()
