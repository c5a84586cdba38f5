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

run_config keys (defaults)
    ``secure-aggregation`` false, ``secagg-num-shares`` 1.0 (≤ 1: a fraction
    of the sampled nodes; > 1: a count, at least 3),
    ``secagg-reconstruction-threshold`` 0.67 (≤ 1: a fraction of the shares;
    > 1: a count), ``secagg-clipping-range`` 8.0,
    ``secagg-quantization-range`` 4194304, ``secagg-max-weight`` 1000.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, Context
from flwr.serverapp import Grid
from vane.server.strategies import MODEL_BLOB_KEY, MODEL_VERSION_KEY, WEIGHTS_KEY, RoundLog
from vane.shared.errors import PrivacyConfigError

logger = logging.getLogger("vane.server")


@dataclass(frozen=True)
class SecAggSettings:
    """SecAgg+ settings; the run_config key is the field name in kebab-case (see the module docstring)."""

    secure_aggregation: bool = False
    secagg_num_shares: float = 1.0
    secagg_reconstruction_threshold: float = 0.67
    secagg_clipping_range: float = 8.0
    secagg_quantization_range: int = 4194304
    secagg_max_weight: float = 1000.0

    @classmethod
    def from_run_config(cls, run_config: Mapping[str, Any]) -> SecAggSettings:
        from vane.server.app import run_config_values

        values = run_config_values(cls, run_config)
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        shares, threshold = self.secagg_num_shares, self.secagg_reconstruction_threshold
        if shares <= 0 or (shares > 1 and (not float(shares).is_integer() or shares < 3)):
            raise PrivacyConfigError(
                f"run_config secagg-num-shares is {shares}; expected a fraction in (0, 1] or a count >= 3"
            )
        if threshold <= 0 or (threshold > 1 and not float(threshold).is_integer()):
            raise PrivacyConfigError(
                f"run_config secagg-reconstruction-threshold is {threshold}; expected a fraction in (0, 1] or a count"
            )
        if shares > 1 and threshold > shares:
            raise PrivacyConfigError(
                f"run_config secagg-reconstruction-threshold ({threshold}) exceeds secagg-num-shares ({shares})"
            )
        if self.secagg_clipping_range <= 0 or self.secagg_quantization_range < 2 or self.secagg_max_weight <= 0:
            raise PrivacyConfigError(
                "run_config secagg-clipping-range and secagg-max-weight must be > 0, secagg-quantization-range >= 2"
            )

    def workflow_args(self) -> dict[str, Any]:
        """Arguments of :class:`flwr.server.workflow.SecAggPlusWorkflow`."""

        def count_or_fraction(value: float) -> int | float:
            return int(value) if value > 1 else float(value)

        return {
            "num_shares": count_or_fraction(self.secagg_num_shares),
            "reconstruction_threshold": count_or_fraction(self.secagg_reconstruction_threshold),
            "clipping_range": self.secagg_clipping_range,
            "quantization_range": self.secagg_quantization_range,
            "max_weight": self.secagg_max_weight,
        }

    def quantization_bound(self, weights: Sequence[float], max_abs_delta: float = 0.0) -> float:
        """Largest per-coordinate gap between the SecAgg+ aggregate and FedAvg of the clipped deltas.

        Client ``i`` sends its clipped delta times ``q_i``, its weight capped at ``max_weight`` and
        rounded to ``1/Q`` (``Q`` = quantization_range), stochastically rounded to a grid of step
        ``2·clipping_range/Q``; the server divides the sum by ``Σ q_i``. So the grid adds at most
        ``k·step/Σ q_i`` for ``k`` clients, and the rounded weights move the weighted mean of deltas
        bounded by ``max_abs_delta`` by at most ``k·max_abs_delta/Q/Σ q_i``.
        """
        q = self.secagg_quantization_range
        ratios = [round(min(w, self.secagg_max_weight) / self.secagg_max_weight * q) / q for w in weights]
        step = 2.0 * self.secagg_clipping_range / q
        return len(ratios) * (step + max_abs_delta / q) / sum(ratios)


def _weighted_means(pairs: list[tuple[int, dict[str, Any]]]) -> dict[str, float]:
    total = sum(n for n, _ in pairs)
    keys = set.intersection(*(set(m) for _, m in pairs)) if pairs else set()
    return {k: float(sum(n * float(m[k]) for n, m in pairs) / total) for k in sorted(keys)} if total else {}


def _make_strategy_class() -> type:
    from flwr.common import ndarrays_to_parameters, parameters_to_ndarrays
    from flwr.server.strategy import FedAvg as LegacyFedAvg

    class SecAggDeltaFedAvg(LegacyFedAvg):
        """Legacy FedAvg whose aggregate is a *delta*, added to the global weights; logs like DeltaAggregation."""

        def __init__(self, run: Any, noise: SecAggNoise | None = None, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.run = run
            self.noise = noise
            self.rounds: dict[int, RoundLog] = {}
            self.global_weights = np.asarray(run.bundle.weights.flat, dtype=np.float32)
            self.last_aggregate: np.ndarray | None = None

        def state_arrays(self) -> dict[str, np.ndarray]:
            return {}

        def _round(self, server_round: int) -> int:
            return int(server_round + self.run.start_round)

        def configure_fit(self, server_round: int, parameters: Any, client_manager: Any) -> Any:
            rnd = self._round(server_round)
            self.rounds[rnd] = RoundLog(round=rnd, started=time.perf_counter())
            self.global_weights = parameters_to_ndarrays(parameters)[0].astype(np.float32)
            self.last_aggregate = None
            return super().configure_fit(server_round, parameters, client_manager)

        def aggregate_fit(self, server_round: int, results: Any, failures: Any) -> Any:
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

        def aggregate_evaluate(self, server_round: int, results: Any, failures: Any) -> Any:
            rnd = self._round(server_round)
            log = self.rounds.setdefault(rnd, RoundLog(round=rnd))
            log.evaluate_metrics = _weighted_means([(r.num_examples, r.metrics) for _, r in results])
            for i, failure in enumerate(failures):
                log.evaluate_failed[-1 - i] = str(failure)[:500]
            self.run._after_round(server_round, ArrayRecord({WEIGHTS_KEY: Array(self.global_weights_after())}))
            return 1.0 - log.evaluate_metrics.get("ndcg@10", 0.0), log.evaluate_metrics

        def global_weights_after(self) -> np.ndarray:
            if self.last_aggregate is None:
                return self.global_weights
            return self.global_weights + self.last_aggregate

    return SecAggDeltaFedAvg


class SecAggNoise:
    """Central DP on top of SecAgg+: devices clip, the server noises the unmasked mean.

    The devices clip their deltas to ``clipping_norm`` (``delta_clipping_mod``, minus the SecAgg+
    rounding slack) and send them with equal weight, so the unmasked aggregate is the plain mean
    of ``m`` clipped deltas. Gaussian noise of std ``z·C/m`` per coordinate makes the release the
    sum's Gaussian mechanism with multiplier ``z``, whatever ``m`` the dropouts left (Flower's
    legacy wrapper divides by the number *sampled*, which under-noises after a dropout). The
    noise is drawn from the operating system's entropy; no seed can reproduce it.
    """

    def __init__(self, privacy: Any, ledger: Any) -> None:
        self.privacy = privacy
        self.ledger = ledger
        self._rng = np.random.default_rng()

    @property
    def clipping_norm(self) -> float:
        return float(self.privacy.clipping_norm)

    def release(self, mean: np.ndarray, count: int, log: RoundLog) -> np.ndarray:
        from vane.server.privacy import record_release

        std = self.privacy.noise_multiplier * self.clipping_norm / max(count, 1)
        noised = mean + self._rng.normal(0.0, std, size=mean.shape).astype(np.float32) if std > 0 else mean
        log.train_metrics["dp-noise-std"] = float(std)
        record_release(self.ledger, log, self.clipping_norm, log.round)
        return noised


def _configs(run: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    from vane.server.app import _evaluate_config, _train_config

    train = dict(_train_config(run.settings, run.bundle))
    evaluate = dict(_evaluate_config(run.settings, run.bundle))
    # Legacy configs cannot tell which node has the model: every message carries it.
    for config in (train, evaluate):
        config[MODEL_VERSION_KEY] = run.bundle.version
        config[MODEL_BLOB_KEY] = run.bundle.blob
    return train, evaluate


def run_secure(run: Any, grid: Grid, context: Context, secagg: SecAggSettings,
               run_config: Mapping[str, Any] | None = None) -> Any:
    """Run ``run`` (a :class:`vane.server.app.FederationRun`) with SecAgg+; returns its FederationOutcome.

    With ``dp-mode client`` in ``run_config`` the devices clip and the server noises the unmasked
    mean (:class:`SecAggNoise`); ε is accounted and budgeted as in :mod:`vane.server.privacy`.
    """
    from flwr.common import ndarrays_to_parameters
    from flwr.server import LegacyContext, ServerConfig
    from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow
    from flwr.supercore.differential_privacy import KEY_CLIPPING_NORM
    from vane.server.app import FederationOutcome
    from vane.server.privacy import budget_ledger, sampled_clients, secure_privacy_settings
    from vane.shared.weights import Weights

    min_fit = max(run.settings.min_train_nodes, 2)
    privacy = secure_privacy_settings(run_config or {}, run.settings.min_available_nodes)
    noise: SecAggNoise | None = None
    if privacy.enabled:
        sample = sampled_clients(privacy.population_size, run.settings.fraction_train, min_fit)
        noise = SecAggNoise(privacy, budget_ledger(run, privacy, sample))
    s = run.settings  # after the budget cut
    remaining = s.num_server_rounds - run.start_round
    if remaining <= 0:
        return FederationOutcome(run.rounds, run.start_round, run.bundle.weights)
    train, evaluate = run.track_configs(*_configs(run))
    if noise is not None:
        train[KEY_CLIPPING_NORM] = noise.clipping_norm
    strategy = _make_strategy_class()(
        run,
        noise,
        fraction_fit=s.fraction_train,
        fraction_evaluate=s.fraction_evaluate,
        min_fit_clients=min_fit,
        min_evaluate_clients=s.min_evaluate_nodes,
        min_available_clients=s.min_available_nodes,
        initial_parameters=ndarrays_to_parameters([run.bundle.weights.flat]),
        on_fit_config_fn=lambda rnd: {**train, "server-round": rnd + run.start_round},
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
