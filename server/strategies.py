"""Flower strategies that aggregate **weight deltas** instead of weights.

Vane clients reply with ``local - global`` (the ``delta`` array, keys in
:mod:`vane.shared.protocol`), never with their weights. Each strategy here subclasses a Message-API strategy from
:mod:`flwr.serverapp.strategy` and mixes in :class:`DeltaAggregation`, which

- screens every reply: non-finite values, a wrong shape, a missing
  ``num-examples`` or odd metric keys reject that node's update (logged with
  its node id); the round goes on with the others; an error reply (a device
  that refused the message) counts as a failure;
- bounds what one update can do (:mod:`vane.server.update_bounds`): a delta far
  above the round's median L2 norm is rejected, a claimed ``num-examples`` far
  above the median claim (or above ``max-num-examples``) is capped; both are
  counted in the round's train metrics;
- hands the wrapped strategy the deltas with a *zero origin*, so whatever the
  strategy returns (a weighted mean, a trimmed mean, the Krum choice, an
  adaptive FedAdam step) is a step that is then added to the global weights;
- ships the LiteRT model blob to a node only when that node has not received
  this model version yet in the current run;
- records per round what was aggregated, rejected and uploaded.

FedAdam: Flower's :class:`~flwr.serverapp.strategy.FedAdam` computes
``delta_t = aggregated - current``. With the zero origin ``current`` is 0, so
the aggregated client delta is the pseudo-gradient and the Adam step is added
to the global weights.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAdam, FedAvg, FedProx, FedTrimmedAvg, Krum
from vane.server.config import STRATEGIES
from vane.server.update_bounds import UpdateBounds, delta_norm
from vane.shared.errors import ConfigError
from vane.shared.protocol import (
    ARRAYS_RECORD,
    CAPPED_NUM_EXAMPLES_KEY,
    CONFIG_RECORD,
    DELTA_KEY,
    METRICS_RECORD,
    MODEL_BLOB_KEY,
    MODEL_VERSION_KEY,
    NUM_EXAMPLES_KEY,
    REJECTED_UPDATES_KEY,
    WEIGHTS_KEY,
)

logger = logging.getLogger("vane.server")


@dataclass
class RoundLog:
    """What happened to the updates of one round."""

    round: int
    started: float = 0.0
    seconds: float = 0.0
    aggregated_nodes: list[int] = field(default_factory=list)
    rejected: dict[int, str] = field(default_factory=dict)
    #: Updates aggregated with a lower weight than their claimed num-examples, and why.
    capped: dict[int, str] = field(default_factory=dict)
    failed: dict[int, str] = field(default_factory=dict)
    uploaded_bytes: dict[int, int] = field(default_factory=dict)
    train_metrics: dict[str, float] = field(default_factory=dict)
    evaluate_metrics: dict[str, float] = field(default_factory=dict)
    evaluate_failed: dict[int, str] = field(default_factory=dict)
    #: The blend picked from this round's federated evaluation (``mix-grid-step``), if any.
    mix: dict[str, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "round": self.round,
            "seconds": self.seconds,
            "aggregated-nodes": self.aggregated_nodes,
            "rejected": {str(k): v for k, v in self.rejected.items()},
            "capped": {str(k): v for k, v in self.capped.items()},
            "failed": {str(k): v for k, v in self.failed.items()},
            "uploaded-bytes": {str(k): v for k, v in self.uploaded_bytes.items()},
            "train": self.train_metrics,
            "evaluate": self.evaluate_metrics,
            "evaluate-failed": {str(k): v for k, v in self.evaluate_failed.items()},
            "mix": self.mix,
        }


def reply_bytes(content: RecordDict) -> int:
    """Bytes of every array in a reply: what the client uploaded for the model update."""
    return sum(len(arr.data) for rec in content.array_records.values() for arr in rec.values())


def _metric_dict(record: MetricRecord | None) -> dict[str, float]:
    if record is None:
        return {}
    return {k: float(v) for k, v in record.items() if not isinstance(v, list)}


class DeltaAggregation:
    """Mixin for a Flower Message-API strategy; see the module docstring.

    Put it first in the bases so that it wraps the strategy's own methods.
    """

    # Set by :meth:`setup_delta_aggregation`; declared for the type checker.
    model_blob: bytes
    model_version: str
    round_offset: int
    bounds: UpdateBounds
    rounds: dict[int, RoundLog]
    _global: np.ndarray | None
    _nodes_with_model: set[int]
    #: FedOpt's origin of "aggregated - current" (only on the FedOpt family; set to zero each round).
    current_arrays: dict[str, np.ndarray] | None

    def setup_delta_aggregation(self, model_blob: bytes, model_version: str, round_offset: int = 0,
                                bounds: UpdateBounds | None = None) -> None:
        self.model_blob = model_blob
        self.model_version = model_version
        self.round_offset = round_offset
        self.bounds = bounds if bounds is not None else UpdateBounds()
        self.rounds = {}
        self._global = None
        self._nodes_with_model = set()

    # --- sending ---------------------------------------------------------
    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        rnd = server_round + self.round_offset
        self.rounds[rnd] = RoundLog(round=rnd, started=time.perf_counter())
        self._global = arrays[WEIGHTS_KEY].numpy().astype(np.float32)
        config[MODEL_VERSION_KEY] = self.model_version
        messages = list(super().configure_train(rnd, arrays, config, grid))  # type: ignore[misc]
        if hasattr(self, "current_arrays"):
            # FedOpt family: a zero origin turns "aggregated - current" into the mean delta.
            self.current_arrays = {WEIGHTS_KEY: np.zeros_like(self._global)}
        return self._attach_model(messages)

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        config[MODEL_VERSION_KEY] = self.model_version
        messages = list(super().configure_evaluate(server_round + self.round_offset, arrays, config, grid))  # type: ignore[misc]
        return self._attach_model(messages)

    def _attach_model(self, messages: list[Message]) -> list[Message]:
        for msg in messages:
            if msg.metadata.dst_node_id in self._nodes_with_model:
                continue
            content = msg.content
            config = ConfigRecord(dict(content.config_records[CONFIG_RECORD]))
            config[MODEL_BLOB_KEY] = self.model_blob
            msg.content = RecordDict({ARRAYS_RECORD: content.array_records[ARRAYS_RECORD], CONFIG_RECORD: config})
        return messages

    # --- receiving -------------------------------------------------------
    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        rnd = server_round + self.round_offset
        log = self.rounds.setdefault(rnd, RoundLog(round=rnd))
        if self._global is None:
            raise ConfigError("aggregate_train was called before configure_train")
        accepted = self.screen_replies(list(replies), log)
        step, metrics = super().aggregate_train(rnd, accepted)  # type: ignore[misc]
        metrics = MetricRecord(dict(metrics) if metrics is not None else {})
        metrics[REJECTED_UPDATES_KEY] = len(log.rejected)
        metrics[CAPPED_NUM_EXAMPLES_KEY] = len(log.capped)
        log.train_metrics = _metric_dict(metrics)
        if step is None:
            logger.warning("round %d: no update was aggregated; the global model is unchanged", rnd)
            return None, metrics
        new = self._global + step[WEIGHTS_KEY].numpy().astype(np.float32)
        if not np.all(np.isfinite(new)):
            logger.error("round %d: the aggregated update is not finite; the global model is unchanged", rnd)
            return None, metrics
        return ArrayRecord({WEIGHTS_KEY: Array(new.astype(np.float32))}), metrics

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        rnd = server_round + self.round_offset
        log = self.rounds.setdefault(rnd, RoundLog(round=rnd))
        good: list[Message] = []
        for msg in replies:
            node = msg.metadata.src_node_id
            if msg.has_error():
                log.evaluate_failed[node] = str(msg.error.reason)[:500]
                self._nodes_with_model.discard(node)
                continue
            self._nodes_with_model.add(node)
            metrics = list(msg.content.metric_records.values())
            if len(metrics) != 1 or not _finite_metrics(metrics[0]):
                log.evaluate_failed[node] = "metrics missing or not finite"
                continue
            good.append(msg)
        good = _keep_majority_keys(good, log.evaluate_failed)
        result: MetricRecord | None = super().aggregate_evaluate(rnd, good)  # type: ignore[misc]
        log.evaluate_metrics = _metric_dict(result)
        return result

    def screen_replies(self, replies: list[Message], log: RoundLog) -> list[Message]:
        """Keep valid updates, rewritten as ``{"weights": delta}`` float32; log and drop the rest."""
        assert self._global is not None
        accepted: list[tuple[str, Message]] = []
        for msg in replies:
            node = msg.metadata.src_node_id
            if msg.has_error():
                log.failed[node] = str(msg.error.reason)[:500]
                self._nodes_with_model.discard(node)
                logger.warning("round %d: node %d failed: %s", log.round, node, msg.error.reason)
                continue
            self._nodes_with_model.add(node)
            log.uploaded_bytes[node] = reply_bytes(msg.content)
            reason, delta = self._check_update(msg.content)
            if reason is not None or delta is None:
                log.rejected[node] = reason or "no delta"
                logger.warning("round %d: rejected the update of node %d: %s", log.round, node, reason)
                continue
            metrics = next(iter(msg.content.metric_records.values()))
            msg.content = RecordDict({ARRAYS_RECORD: ArrayRecord({WEIGHTS_KEY: Array(delta)}), METRICS_RECORD: metrics})
            accepted.append((hashlib.sha256(delta.tobytes()).hexdigest(), msg))
        # A fixed order makes the float sums, and so a resumed run, reproducible.
        ordered = [msg for _, msg in sorted(accepted, key=lambda pair: pair[0])]
        ordered = _keep_majority_keys(ordered, log.rejected)
        ordered = self._bound_updates(ordered, log)
        log.aggregated_nodes = [m.metadata.src_node_id for m in ordered]
        return ordered

    def _bound_updates(self, messages: list[Message], log: RoundLog) -> list[Message]:
        """Reject deltas far above the round's median norm; cap claimed num-examples (:mod:`.update_bounds`)."""
        norms = {m.metadata.src_node_id: delta_norm(m.content.array_records[ARRAYS_RECORD][WEIGHTS_KEY].numpy())
                 for m in messages}
        claims = {m.metadata.src_node_id: float(m.content.metric_records[METRICS_RECORD][NUM_EXAMPLES_KEY])  # type: ignore[arg-type]
                  for m in messages}
        verdict = self.bounds.screen(norms, claims)
        for node, reason in verdict.rejected.items():
            log.rejected[node] = reason
            logger.warning("round %d: rejected the update of node %d: %s", log.round, node, reason)
        for node, reason in verdict.capped_reasons.items():
            log.capped[node] = reason
            logger.warning("round %d: node %d: %s", log.round, node, reason)
        kept = [m for m in messages if m.metadata.src_node_id not in verdict.rejected]
        for msg in kept:
            if msg.metadata.src_node_id in verdict.capped:
                msg.content.metric_records[METRICS_RECORD][NUM_EXAMPLES_KEY] = verdict.capped[msg.metadata.src_node_id]
        return kept

    def _check_update(self, content: RecordDict) -> tuple[str | None, np.ndarray | None]:
        assert self._global is not None
        if len(content.array_records) != 1 or len(content.metric_records) != 1:
            return "expected one ArrayRecord and one MetricRecord", None
        record = next(iter(content.array_records.values()))
        if list(record.keys()) != [DELTA_KEY]:
            return f"expected only the array {DELTA_KEY!r}; got {sorted(record.keys())}", None
        try:
            delta = record[DELTA_KEY].numpy()
        except Exception as exc:
            return f"undecodable delta: {exc}", None
        if delta.shape != self._global.shape or delta.dtype.kind != "f":
            return f"delta has shape {delta.shape} dtype {delta.dtype}; expected {self._global.shape} float", None
        delta = delta.astype(np.float32)
        if not np.all(np.isfinite(delta)):
            return "delta holds NaN or infinite values", None
        metrics = next(iter(content.metric_records.values()))
        n = metrics.get(NUM_EXAMPLES_KEY)
        if isinstance(n, list) or n is None or not np.isfinite(n) or n <= 0:
            return f"{NUM_EXAMPLES_KEY} is {n!r}; expected a positive number", None
        if not _finite_metrics(metrics):
            return "a metric is not finite", None
        return None, delta

    # --- checkpoint state ------------------------------------------------
    def state_arrays(self) -> dict[str, np.ndarray]:
        """Server-optimizer state to checkpoint (FedAdam moments); empty for stateless strategies."""
        out: dict[str, np.ndarray] = {}
        for name in ("m_t", "v_t"):
            value = getattr(self, name, None)
            if value:
                out[name] = np.asarray(value[WEIGHTS_KEY])
        return out

    def load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        for name, value in arrays.items():
            if hasattr(self, name):
                setattr(self, name, {WEIGHTS_KEY: np.asarray(value, dtype=np.float32)})


def _finite_metrics(record: MetricRecord) -> bool:
    for value in record.values():
        values = value if isinstance(value, list) else [value]
        if not all(np.isfinite(float(v)) for v in values):
            return False
    return True


def _keep_majority_keys(messages: list[Message], dropped: dict[int, str]) -> list[Message]:
    """Flower refuses a whole round when metric keys differ; drop the odd replies instead."""
    if not messages:
        return messages
    keysets = [frozenset(next(iter(m.content.metric_records.values())).keys()) for m in messages]
    majority, _ = Counter(keysets).most_common(1)[0]
    kept = []
    for msg, keys in zip(messages, keysets, strict=True):
        if keys == majority and NUM_EXAMPLES_KEY in keys:
            kept.append(msg)
        else:
            dropped[msg.metadata.src_node_id] = f"metric keys {sorted(keys)} differ from {sorted(majority)}"
    return kept


class VaneFedAvg(DeltaAggregation, FedAvg):
    """FedAvg of client deltas, weighted by ``num-examples``."""


class VaneFedAdam(DeltaAggregation, FedAdam):
    """FedAdam with the mean client delta as pseudo-gradient."""


class VaneFedProx(DeltaAggregation, FedProx):
    """FedProx: sends ``proximal-mu``; clients apply the proximal step to their delta."""


class VaneFedTrimmedAvg(DeltaAggregation, FedTrimmedAvg):
    """Coordinate-wise trimmed mean of client deltas."""


class VaneKrum(DeltaAggregation, Krum):
    """Krum: the one client delta closest to its neighbours."""


def make_strategy(
    name: str,
    *,
    model_blob: bytes,
    model_version: str,
    round_offset: int = 0,
    fraction_train: float = 1.0,
    fraction_evaluate: float = 1.0,
    min_train_nodes: int = 2,
    min_evaluate_nodes: int = 2,
    min_available_nodes: int = 2,
    proximal_mu: float = 0.01,
    server_learning_rate: float = 0.01,
    trim_beta: float = 0.2,
    num_malicious_nodes: int = 0,
    bounds: UpdateBounds | None = None,
) -> DeltaAggregation:
    """Build the delta-aggregating strategy called ``name`` (one of :data:`STRATEGIES`).

    ``bounds`` (default :class:`~vane.server.update_bounds.UpdateBounds` ``()``) limit what one update can do.
    """
    common: dict[str, Any] = {
        "fraction_train": fraction_train,
        "fraction_evaluate": fraction_evaluate,
        "min_train_nodes": min_train_nodes,
        "min_evaluate_nodes": min_evaluate_nodes,
        "min_available_nodes": min_available_nodes,
    }
    strategy: DeltaAggregation
    if name == "fedavg":
        strategy = VaneFedAvg(**common)
    elif name == "fedadam":
        strategy = VaneFedAdam(**common, eta=server_learning_rate)
    elif name == "fedprox":
        strategy = VaneFedProx(**common, proximal_mu=proximal_mu)
    elif name == "fedtrimmedavg":
        strategy = VaneFedTrimmedAvg(**common, beta=trim_beta)
    elif name == "krum":
        strategy = VaneKrum(**common, num_malicious_nodes=num_malicious_nodes)
    else:
        raise ConfigError(f"strategy is {name!r}; expected one of {', '.join(STRATEGIES)}")
    strategy.setup_delta_aggregation(model_blob, model_version, round_offset, bounds)
    return strategy
