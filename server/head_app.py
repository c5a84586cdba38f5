"""The categoriser head's ServerApp: federated training of the softmax head with Flower's strategies.

The head (:mod:`vane.client.topic_head`: one flat float32 vector) is small, so it federates on its own
ServerApp beside the interest model's. A run (:func:`run_head_federation`):

1. with ``balanced`` (default), one ``counts`` round (:mod:`vane.shared.head_protocol`) asks every
   connected device how many of its labelled examples carry each label; the server sums them and derives
   the class weights ``N / (K · count)`` of the class-balanced loss (``K`` labels present);
2. ``rounds`` ``train`` rounds with the delta-aggregating strategies of :mod:`vane.server.strategies`
   (FedAvg by default; FedAdam, FedProx, FedTrimmedAvg and Krum too), including their screening and
   update bounds: each device sends ``local − global`` and the aggregated step is added to the global head.

The device only ever sends numbers: the per-label counts, the delta, ``num-examples`` and ``train-loss``.

Privacy (:mod:`vane.server.head_privacy`, the interest model's machinery of :mod:`vane.server.privacy`):
``secure-aggregation`` runs both the counts round and the train rounds under Flower's SecAgg+ (the server
sees only masked sums); ``dp-mode`` (``client`` or ``server``) clips each delta and noises the mean with
Flower's DP wrappers (SecAgg+: the devices clip, the server noises the unmasked mean), with ε in
:class:`~vane.server.privacy.PrivacyLedger`; the counts round is then a Gaussian release too
(``counts_clip_norm``). The settings are :class:`HeadSettings`' ``secagg`` and ``privacy``, read from the
LSTM's run_config keys by :meth:`HeadSettings.from_run_config`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.serverapp import Grid, ServerApp
from vane.server import head_privacy as hp
from vane.server.config import STRATEGIES, PrivacySettings, SecAggSettings, secure_privacy_settings
from vane.server.strategies import DeltaAggregation, make_strategy
from vane.shared import head_protocol as h
from vane.shared import protocol as p
from vane.shared.errors import ConfigError, PrivacyConfigError, VaneError

__all__ = ["HeadOutcome", "HeadRoundError", "HeadSettings", "build_head_server_app", "run_head_federation"]

logger = logging.getLogger("vane.server")


class HeadRoundError(VaneError):
    """A head round that aggregated nothing (every device failed or was rejected)."""


@dataclass(frozen=True)
class HeadSettings:
    """One head federation: the head's shape, rounds, local steps and the strategy."""

    dims: int
    classes: int
    rounds: int = 100
    local_epochs: int = 3
    learning_rate: float = 10.0
    l2: float = 1e-4
    balanced: bool = True
    strategy: str = "fedavg"
    fraction_train: float = 1.0
    #: Devices to wait for before the counts round, and the fewest a train round samples.
    min_nodes: int = 1
    round_timeout: float = 600.0
    #: SecAgg+ (run_config ``secure-aggregation``, ``secagg-*``): the server sees only masked sums.
    secagg: SecAggSettings = field(default_factory=SecAggSettings)
    #: Client-level DP (run_config ``dp-mode``, ``noise-multiplier``, ``clipping-norm``, ``dp-delta`` ...);
    #: ``population-size`` 0 means ``min_nodes``.
    privacy: PrivacySettings = field(default_factory=PrivacySettings)
    #: Under DP: the L2 bound of each device's label counts (the counts round's sensitivity).
    counts_clip_norm: float = 32.0
    #: Under SecAgg+: each label count is capped at this (the masked grid's range).
    counts_cap: float = 65536.0

    def __post_init__(self) -> None:
        checks = [("dims", self.dims, 1), ("classes", self.classes, 2), ("rounds", self.rounds, 1),
                  ("local_epochs", self.local_epochs, 1), ("min_nodes", self.min_nodes, 1)]
        for name, value, low in checks:
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"head {name} is {value!r}; expected an integer >= {low}")
        if not (self.learning_rate > 0 and self.l2 >= 0 and 0 < self.fraction_train <= 1 and self.round_timeout > 0):
            raise ConfigError(f"head learning_rate={self.learning_rate}, l2={self.l2}, fraction_train="
                              f"{self.fraction_train}; expected > 0, >= 0, in (0, 1]")
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"head strategy is {self.strategy!r}; expected one of {', '.join(STRATEGIES)}")
        self._check_privacy()

    def _check_privacy(self) -> None:
        if not (self.counts_clip_norm > 0 and self.counts_cap > 0):
            raise PrivacyConfigError(f"head counts_clip_norm is {self.counts_clip_norm}, counts_cap {self.counts_cap}; "
                                     "expected both > 0")
        self.secagg.validate()
        if self.secagg.secure_aggregation:  # the interest model's refusals, word for word
            secure_privacy_settings(p.to_config(self.privacy), self.min_nodes)
        else:
            self.dp.validate()
        if (self.secagg.secure_aggregation or self.privacy.enabled) and self.strategy != "fedavg":
            raise PrivacyConfigError(
                f"head strategy is {self.strategy!r} with secure-aggregation or dp-mode; expected 'fedavg' "
                "(SecAgg+ sums and the DP noise is calibrated to a mean of clipped deltas)")

    @classmethod
    def from_run_config(cls, run_config: Mapping[str, Any], **values: Any) -> HeadSettings:
        """``values`` (the head's fields) with ``secagg`` and ``privacy`` read from the interest model's run_config
        keys (``secure-aggregation``, ``secagg-*``, ``dp-mode``, ``noise-multiplier`` ...), all validated."""
        secagg = SecAggSettings.from_run_config(run_config)
        privacy = PrivacySettings(**p.settings_values(PrivacySettings, (p.RUN_CONFIG, run_config)))
        return cls(**values, secagg=secagg, privacy=privacy)

    @property
    def dp(self) -> PrivacySettings:
        """``privacy`` with ``population-size`` 0 read as ``min_nodes`` (what the accounting uses)."""
        return replace(self.privacy, population_size=self.privacy.population_size or self.min_nodes)

    @property
    def size(self) -> int:
        return self.dims * self.classes + self.classes


@dataclass
class HeadOutcome:
    """The trained head (flat float32), the summed label counts, the class weights and per-round logs."""

    weights: np.ndarray
    counts: np.ndarray | None
    class_weights: np.ndarray | None
    rounds: list[dict[str, Any]] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    #: Under DP: ε of the train rounds (``dp-epsilon``, the ledger's), of the counts round
    #: (``counts-dp-epsilon``) and their sum at twice the δ (``dp-epsilon-total``); SecAgg+ on or off.
    privacy: dict[str, Any] = field(default_factory=dict)


def class_weights(counts: np.ndarray) -> np.ndarray:
    """``N / (K · count)`` per label (0 for a label nobody has); their mean over all examples is 1."""
    counts = np.asarray(counts, dtype=np.float64)
    present = np.count_nonzero(counts)
    return np.where(counts > 0, counts.sum() / (max(present, 1) * np.maximum(counts, 1e-12)), 0.0)


def _base_config(s: HeadSettings) -> dict[str, Any]:
    return {h.DIMS_KEY: s.dims, h.CLASSES_KEY: s.classes, h.EPOCHS_KEY: s.local_epochs,
            h.LEARNING_RATE_KEY: float(s.learning_rate), h.L2_KEY: float(s.l2)}


def counts_config(s: HeadSettings) -> dict[str, Any]:
    """The counts round's config; under DP with Flower's ``clipping_norm`` (each device clips its counts)."""
    config: dict[str, Any] = {**_base_config(s), h.HEAD_ROUND_KEY: h.ROUND_COUNTS}
    if s.privacy.enabled:
        config[p.CLIPPING_NORM_KEY] = float(s.counts_clip_norm)
    return config


def count_labels(grid: Grid, s: HeadSettings) -> tuple[np.ndarray, int]:
    """The ``counts`` round in the clear: every connected device's label counts, summed (float64[classes]),
    and how many devices answered. Under DP each device clips its counts to ``counts_clip_norm`` first.

    Waits (up to ``round_timeout``) until ``min_nodes`` devices are connected."""
    deadline = time.monotonic() + s.round_timeout
    while len(list(grid.get_node_ids())) < s.min_nodes and time.monotonic() < deadline:
        time.sleep(0.2)
    nodes = sorted(grid.get_node_ids())
    config = ConfigRecord(counts_config(s))
    messages = [Message(content=RecordDict({p.CONFIG_RECORD: ConfigRecord(dict(config))}), dst_node_id=node,
                        message_type="train") for node in nodes]
    total = np.zeros(s.classes, dtype=np.float64)
    answered = 0
    for reply in grid.send_and_receive(messages, timeout=s.round_timeout):
        if reply.has_error():
            logger.warning("head counts: node %d failed: %s", reply.metadata.src_node_id, reply.error.reason)
            continue
        vector = reply.content.array_records[p.ARRAYS_RECORD][p.DELTA_KEY].numpy()
        if vector.shape != (s.classes,) or not np.isfinite(vector).all() or (vector < 0).any():
            logger.warning("head counts: node %d sent %s; ignored", reply.metadata.src_node_id, list(vector.shape))
            continue
        total += vector
        answered += 1
    if not answered:
        raise HeadRoundError(f"the head's counts round heard from none of {len(nodes)} devices")
    return total, answered


def run_head_federation(grid: Grid, s: HeadSettings, initial: np.ndarray | None = None,
                        context: Context | None = None) -> HeadOutcome:
    """Run the counts round (if ``balanced``) and ``s.rounds`` train rounds on ``grid`` (fewer when the DP
    budget ``target-epsilon`` allows fewer). SecAgg+ runs on Flower's legacy workflow, which needs ``context``."""
    started = time.perf_counter()
    flat = np.zeros(s.size, np.float32) if initial is None else np.asarray(initial, dtype=np.float32)
    if flat.shape != (s.size,) or not np.isfinite(flat).all():
        raise ConfigError(f"the initial head is {flat.dtype}{list(flat.shape)}; expected finite float32[{s.size}]")
    secure = s.secagg.secure_aggregation
    if secure and context is None:
        raise ConfigError("secure-aggregation is on but no ServerApp context was given; expected the context "
                          "(SecAgg+ runs on Flower's legacy workflow)")
    ledger, rounds = hp.head_ledger(s)
    counts, counts_epsilon = None, 0.0
    if s.balanced:
        raw, devices = hp.secure_counts(grid, context, s, counts_config(s)) if secure and context is not None \
            else count_labels(grid, s)
        counts, counts_epsilon = hp.released_counts(raw, devices, s)
    weights = class_weights(counts) if counts is not None else None
    train = ConfigRecord({**_base_config(s), h.HEAD_ROUND_KEY: h.ROUND_TRAIN})
    if weights is not None:
        train[h.CLASS_WEIGHTS_KEY] = [float(v) for v in weights]
    if secure and context is not None:
        final, logs = hp.secure_train(grid, context, s, flat, dict(train), ledger, rounds)
    else:
        final, logs = _train_rounds(grid, s, flat, train, ledger, rounds)
    empty = [r["round"] for r in logs if not r["aggregated-nodes"]]
    if empty:
        raise HeadRoundError(f"head round(s) {empty} aggregated no device update")
    return HeadOutcome(np.asarray(final, dtype=np.float32), counts, weights, logs, asdict(s),
                       time.perf_counter() - started, hp.privacy_summary(s, ledger, counts_epsilon))


def _train_rounds(grid: Grid, s: HeadSettings, flat: np.ndarray, train: ConfigRecord, ledger: Any,
                  rounds: int) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """The train rounds on the Message API (DP: the strategy wrapped by Flower's DP wrapper)."""
    nodes = max(1, len(list(grid.get_node_ids())))
    strategy: DeltaAggregation = make_strategy(
        s.strategy, model_blob=b"", model_version=f"head-{s.dims}x{s.classes}", fraction_train=s.fraction_train,
        fraction_evaluate=0.0, min_train_nodes=s.min_nodes, min_evaluate_nodes=0,
        min_available_nodes=min(s.min_nodes, nodes))
    runner: Any = strategy if ledger is None else hp.dp_strategy(strategy, s, ledger)
    result = runner.start(grid, ArrayRecord({p.WEIGHTS_KEY: Array(flat)}), num_rounds=rounds,
                          timeout=s.round_timeout, train_config=train, evaluate_config=ConfigRecord({}))
    logs = [log.to_dict() for _, log in sorted(strategy.rounds.items())]
    final = result.arrays[p.WEIGHTS_KEY].numpy() if result.arrays is not None and p.WEIGHTS_KEY in result.arrays \
        else flat
    return final, logs


def build_head_server_app(settings: HeadSettings | Sequence[HeadSettings], outcome: list[HeadOutcome],
                          initial: np.ndarray | None = None) -> ServerApp:
    """A ServerApp running :func:`run_head_federation` (for each of ``settings`` in turn, on the same devices);
    each result is appended to ``outcome``."""
    app = ServerApp()
    runs = [settings] if isinstance(settings, HeadSettings) else list(settings)

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        for run in runs:
            outcome.append(run_head_federation(grid, run, initial, context))

    return app
