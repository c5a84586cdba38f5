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
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.serverapp import Grid, ServerApp
from vane.server.config import STRATEGIES
from vane.server.strategies import DeltaAggregation, make_strategy
from vane.shared import head_protocol as h
from vane.shared import protocol as p
from vane.shared.errors import ConfigError, VaneError

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


def class_weights(counts: np.ndarray) -> np.ndarray:
    """``N / (K · count)`` per label (0 for a label nobody has); their mean over all examples is 1."""
    counts = np.asarray(counts, dtype=np.float64)
    present = np.count_nonzero(counts)
    return np.where(counts > 0, counts.sum() / (max(present, 1) * np.maximum(counts, 1e-12)), 0.0)


def _base_config(s: HeadSettings) -> dict[str, Any]:
    return {h.DIMS_KEY: s.dims, h.CLASSES_KEY: s.classes, h.EPOCHS_KEY: s.local_epochs,
            h.LEARNING_RATE_KEY: float(s.learning_rate), h.L2_KEY: float(s.l2)}


def count_labels(grid: Grid, s: HeadSettings) -> np.ndarray:
    """The ``counts`` round: every connected device's label counts, summed (float64[classes]).

    Waits (up to ``round_timeout``) until ``min_nodes`` devices are connected."""
    deadline = time.monotonic() + s.round_timeout
    while len(list(grid.get_node_ids())) < s.min_nodes and time.monotonic() < deadline:
        time.sleep(0.2)
    nodes = sorted(grid.get_node_ids())
    config = ConfigRecord({**_base_config(s), h.HEAD_ROUND_KEY: h.ROUND_COUNTS})
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
    return total


def run_head_federation(grid: Grid, s: HeadSettings, initial: np.ndarray | None = None) -> HeadOutcome:
    """Run the counts round (if ``balanced``) and ``s.rounds`` train rounds on ``grid``."""
    started = time.perf_counter()
    flat = np.zeros(s.size, np.float32) if initial is None else np.asarray(initial, dtype=np.float32)
    if flat.shape != (s.size,) or not np.isfinite(flat).all():
        raise ConfigError(f"the initial head is {flat.dtype}{list(flat.shape)}; expected finite float32[{s.size}]")
    counts = count_labels(grid, s) if s.balanced else None
    weights = class_weights(counts) if counts is not None else None
    train = ConfigRecord({**_base_config(s), h.HEAD_ROUND_KEY: h.ROUND_TRAIN})
    if weights is not None:
        train[h.CLASS_WEIGHTS_KEY] = [float(v) for v in weights]
    nodes = max(1, len(list(grid.get_node_ids())))
    strategy: DeltaAggregation = make_strategy(
        s.strategy, model_blob=b"", model_version=f"head-{s.dims}x{s.classes}", fraction_train=s.fraction_train,
        fraction_evaluate=0.0, min_train_nodes=s.min_nodes, min_evaluate_nodes=0,
        min_available_nodes=min(s.min_nodes, nodes))
    result = strategy.start(grid, ArrayRecord({p.WEIGHTS_KEY: Array(flat)}), num_rounds=s.rounds,
                            timeout=s.round_timeout, train_config=train, evaluate_config=ConfigRecord({}))
    rounds = [log.to_dict() for _, log in sorted(strategy.rounds.items())]
    empty = [r["round"] for r in rounds if not r["aggregated-nodes"]]
    if empty:
        raise HeadRoundError(f"head round(s) {empty} aggregated no device update")
    final = result.arrays[p.WEIGHTS_KEY].numpy() if result.arrays is not None and p.WEIGHTS_KEY in result.arrays \
        else flat
    return HeadOutcome(np.asarray(final, dtype=np.float32), counts, weights, rounds, asdict(s),
                       time.perf_counter() - started)


def build_head_server_app(settings: HeadSettings, outcome: list[HeadOutcome],
                          initial: np.ndarray | None = None) -> ServerApp:
    """A ServerApp running :func:`run_head_federation`; the result is appended to ``outcome``."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        outcome.append(run_head_federation(grid, settings, initial))

    return app
