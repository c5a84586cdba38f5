"""Secure aggregation (SecAgg+) of client deltas, on Flower's legacy workflow.

In flwr 1.42 SecAgg+ runs only on the legacy workflow: a
:class:`~flwr.server.LegacyContext` holding a legacy
:class:`flwr.server.strategy.FedAvg`, driven by
``DefaultWorkflow(fit_workflow=SecAggPlusWorkflow(...))``. The clients answer
through :func:`vane.client.mods.secure_aggregation_mod` (Flower's
``secaggplus_mod`` plus the ``flwr.compat`` record converters).

The server only ever sees the masked sum: :class:`SecAggDeltaFedAvg`
receives the unmasked *aggregate* delta, ``Σ w_i·d_i / Σ w_i`` with
``w_i = num-examples`` quantised to ``max_weight``, and adds it to the global
weights. Each client's delta is clipped element-wise to ``clipping_range``
and quantised to ``quantization_range`` levels over
``[-clipping_range, clipping_range]`` (stochastic rounding), so the aggregate
differs from plain FedAvg of the clipped deltas by at most
``k · 2·clipping_range / quantization_range / Σ (w_i / max_weight)`` per
coordinate for ``k`` surviving clients (plus the rounding of the weights to
``1/quantization_range``).

With ``dp-mode client`` the devices also clip each delta to ``clipping-norm`` in
L2 (less the rounding slack ``√d·2·clipping_range/quantization_range``) and
send it with equal weight, and :class:`SecAggNoise` adds Gaussian noise of std
``z·C/m`` to the unmasked mean of the ``m`` survivors: central DP without the
server ever seeing a single delta. ``dp-mode server`` and adaptive clipping need
each delta in the clear and are refused.

Rounds survive dropouts after key sharing as long as at least
``reconstruction-threshold`` clients of each share group remain.

The run_config keys are the fields of :class:`vane.server.config.SecAggSettings`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, Context
from flwr.common import FitRes, Parameters, Scalar, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.server import LegacyContext, ServerConfig
from flwr.server.client_manager import ClientManager
from flwr.server.client_proxy import ClientProxy
from flwr.server.strategy import FedAvg as LegacyFedAvg
from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow
from flwr.serverapp import Grid
from vane.server.config import PrivacySettings, SecAggSettings, secure_privacy_settings
from vane.server.privacy.accounting import PrivacyLedger, record_release, sampled_clients
from vane.server.privacy.wrappers import budget_ledger
from vane.server.run import FederationOutcome, FederationRun, evaluate_config, round_learning_rate, train_config
from vane.server.strategies import RoundLog
from vane.shared.protocol import (
    CLIPPING_NORM_KEY,
    DP_NOISE_STD_KEY,
    LEARNING_RATE_KEY,
    MODEL_BLOB_KEY,
    MODEL_VERSION_KEY,
    NDCG10_KEY,
    SERVER_ROUND_KEY,
    WEIGHTS_KEY,
)
from vane.shared.weights import Weights

logger = logging.getLogger("vane.server")


def _weighted_means(pairs: list[tuple[int, dict[str, Any]]]) -> dict[str, float]:
    total = sum(n for n, _ in pairs)
    keys = set.intersection(*(set(m) for _, m in pairs)) if pairs else set()
    return {k: float(sum(n * float(m[k]) for n, m in pairs) / total) for k in sorted(keys)} if total else {}


class SecAggNoise:
    """Central DP on top of SecAgg+: devices clip, the server noises the unmasked mean.

    The devices clip their deltas to ``clipping_norm`` (``delta_clipping_mod``, minus the SecAgg+
    rounding slack) and send them with equal weight, so the unmasked aggregate is the plain mean
    of ``m`` clipped deltas. Gaussian noise of std ``z·C/m`` per coordinate makes the release the
    sum's Gaussian mechanism with multiplier ``z``, whatever ``m`` the dropouts left (Flower's
    legacy wrapper divides by the number *sampled*, which under-noises after a dropout). The
    noise is drawn from the operating system's entropy; no seed can reproduce it.
    """

    def __init__(self, privacy: PrivacySettings, ledger: PrivacyLedger) -> None:
        self.privacy = privacy
        self.ledger = ledger
        self._rng = np.random.default_rng()

    @property
    def clipping_norm(self) -> float:
        """The L2 bound the devices clip to."""
        return float(self.privacy.clipping_norm)

    def release(self, mean: np.ndarray, count: int, log: RoundLog) -> np.ndarray:
        """``mean`` of ``count`` clipped deltas plus the Gaussian noise; the release is counted in the ledger."""
        std = self.privacy.noise_multiplier * self.clipping_norm / max(count, 1)
        noised = mean + self._rng.normal(0.0, std, size=mean.shape).astype(np.float32) if std > 0 else mean
        log.train_metrics[DP_NOISE_STD_KEY] = float(std)
        record_release(self.ledger, log, self.clipping_norm, log.round)
        return noised


class SecAggDeltaFedAvg(LegacyFedAvg):
    """Legacy FedAvg whose aggregate is a *delta*, added to the global weights; logs like DeltaAggregation."""

    def __init__(self, run: FederationRun, noise: SecAggNoise | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.run = run
        self.noise = noise
        self.rounds: dict[int, RoundLog] = {}
        self.global_weights = np.asarray(run.bundle.weights.flat, dtype=np.float32)
        self.last_aggregate: np.ndarray | None = None

    def state_arrays(self) -> dict[str, np.ndarray]:
        """No server-optimizer state."""
        return {}

    def _round(self, server_round: int) -> int:
        return int(server_round + self.run.start_round)

    def configure_fit(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, Any]]:
        rnd = self._round(server_round)
        self.rounds[rnd] = RoundLog(round=rnd, started=time.perf_counter())
        self.global_weights = parameters_to_ndarrays(parameters)[0].astype(np.float32)
        self.last_aggregate = None
        return super().configure_fit(server_round, parameters, client_manager)

    def aggregate_fit(
        self, server_round: int, results: list[tuple[ClientProxy, FitRes]], failures: list[Any]
    ) -> tuple[Parameters | None, dict[str, Scalar]]:
        log = self.rounds.setdefault(self._round(server_round), RoundLog(round=self._round(server_round)))
        log.aggregated_nodes = sorted(int(proxy.node_id) for proxy, _ in results)
        for i, failure in enumerate(failures):
            log.failed[-1 - i] = str(failure)[:500]
        params, metrics = super().aggregate_fit(server_round, results, failures)
        log.train_metrics = {k: float(v) for k, v in metrics.items()}
        if params is None:
            logger.warning("round %d: SecAgg+ produced no aggregate; the global model is unchanged", log.round)
            return None, metrics
        aggregate = parameters_to_ndarrays(params)[0].astype(np.float32)
        if self.noise is not None:
            aggregate = self.noise.release(aggregate, len(results), log)
        self.last_aggregate = aggregate
        new = self.global_weights + aggregate
        if not np.all(np.isfinite(new)):
            logger.error("round %d: the aggregate is not finite; the global model is unchanged", log.round)
            return None, metrics
        return ndarrays_to_parameters([new]), metrics

    def aggregate_evaluate(
        self, server_round: int, results: list[tuple[ClientProxy, Any]], failures: list[Any]
    ) -> tuple[float | None, dict[str, Scalar]]:
        rnd = self._round(server_round)
        log = self.rounds.setdefault(rnd, RoundLog(round=rnd))
        log.evaluate_metrics = _weighted_means([(r.num_examples, r.metrics) for _, r in results])
        for i, failure in enumerate(failures):
            log.evaluate_failed[-1 - i] = str(failure)[:500]
        self.run.after_round(server_round, ArrayRecord({WEIGHTS_KEY: Array(self.global_weights_after())}))
        return 1.0 - log.evaluate_metrics.get(NDCG10_KEY, 0.0), dict(log.evaluate_metrics)

    def global_weights_after(self) -> np.ndarray:
        """The global weights after the newest round's aggregate."""
        if self.last_aggregate is None:
            return self.global_weights
        return self.global_weights + self.last_aggregate


def _configs(run: FederationRun) -> tuple[dict[str, Any], dict[str, Any]]:
    train = dict(train_config(run.settings, run.bundle))
    evaluate = dict(evaluate_config(run.settings, run.bundle))
    # Legacy configs cannot tell which node has the model: every message carries it.
    for config in (train, evaluate):
        config[MODEL_VERSION_KEY] = run.bundle.version
        config[MODEL_BLOB_KEY] = run.bundle.blob
    return train, evaluate


def run_secure(run: FederationRun, grid: Grid, context: Context, secagg: SecAggSettings,
               run_config: Mapping[str, Any] | None = None) -> FederationOutcome:
    """Run ``run`` with SecAgg+ on Flower's legacy workflow; returns what it produced.

    With ``dp-mode client`` in ``run_config`` the devices clip and the server noises the unmasked
    mean (:class:`SecAggNoise`); ε is accounted and budgeted as in :mod:`vane.server.privacy.wrappers`.
    """
    min_fit = max(run.settings.min_train_nodes, 2)
    privacy = secure_privacy_settings(run_config or {}, run.settings.min_available_nodes)
    noise: SecAggNoise | None = None
    if privacy.enabled:
        sample = sampled_clients(privacy.population_size, run.settings.fraction_train, min_fit)
        noise = SecAggNoise(privacy, budget_ledger(run, privacy, sample))
    s = run.settings  # after the budget cut
    remaining = run.remaining_rounds
    if remaining <= 0:
        return run.outcome(run.start_round, run.bundle.weights)
    train, evaluate = run.track_configs(*_configs(run))
    if noise is not None:
        train[CLIPPING_NORM_KEY] = noise.clipping_norm
    strategy = SecAggDeltaFedAvg(
        run,
        noise,
        fraction_fit=s.fraction_train,
        fraction_evaluate=s.fraction_evaluate,
        min_fit_clients=min_fit,
        min_evaluate_clients=s.min_evaluate_nodes,
        min_available_clients=s.min_available_nodes,
        initial_parameters=ndarrays_to_parameters([run.bundle.weights.flat]),
        on_fit_config_fn=lambda rnd: {**train, SERVER_ROUND_KEY: rnd + run.start_round, LEARNING_RATE_KEY:
                                      round_learning_rate(s, run.bundle.spec.learning_rate, rnd + run.start_round)},
        on_evaluate_config_fn=lambda rnd: evaluate,
        fit_metrics_aggregation_fn=_weighted_means,
    )
    run.strategy = strategy
    legacy = LegacyContext(context, config=ServerConfig(num_rounds=remaining), strategy=strategy)
    workflow = DefaultWorkflow(fit_workflow=SecAggPlusWorkflow(**secagg.workflow_args(), timeout=s.round_timeout))
    logger.info("SecAgg+ run: %s", secagg.workflow_args())
    workflow(grid, legacy)
    final = Weights(run.bundle.spec.hash, strategy.global_weights_after())
    done = max((r["round"] for r in run.rounds), default=run.start_round)
    return FederationOutcome(run.rounds, done, final)
