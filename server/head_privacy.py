"""SecAgg+ and differential privacy for the categoriser head's federation, with the interest model's machinery.

Nothing here is a new protocol: the pieces are those of :mod:`vane.server.privacy` and
:mod:`vane.server.analytics`, driven for the head (:mod:`vane.server.head_app`):

- **SecAgg+** (``secure-aggregation``): the counts round is :class:`~vane.server.analytics.PopulationSum` under
  Flower's :class:`~flwr.server.workflow.SecAggPlusWorkflow` (each device weighs 1; counts lie in
  ``[0, counts_cap]`` = the grid's ``clipping_range``, so whole counts sum exactly), and the train rounds are
  :class:`~vane.server.privacy.SecAggDeltaFedAvg` on the legacy workflow, the LSTM's SecAgg+ strategy. The
  devices answer through :func:`vane.client.mods.privacy_mods`, which every head ClientApp carries.
- **DP without SecAgg+** (``dp-mode`` ``client`` or ``server``): the head's FedAvg wrapped by
  :func:`~vane.server.privacy.wrap_with_dp` (Flower's DP wrappers, zero origin, unit weights, ε per round).
- **DP with SecAgg+** (``dp-mode client`` only, as for the LSTM: :func:`~vane.server.config.secure_privacy_settings`
  refuses ``server`` and adaptive clipping): the devices clip, :class:`~vane.server.privacy.SecAggNoise`
  noises the unmasked mean.
- **ε**: the train rounds in a :class:`~vane.server.privacy.PrivacyLedger` (``target-epsilon`` cuts the rounds
  before the run starts); under DP the counts round is a Gaussian release too: each device clips its counts
  to ``counts_clip_norm`` (``delta_clipping_mod``), the server adds noise of std ``z·C`` to the sum, ε by
  :func:`~vane.server.privacy.accounting.population_epsilon`. The head's whole ε is their sum at ``2·dp-delta``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, cast

import numpy as np
from flwr.app import ArrayRecord, Context
from flwr.common import ndarrays_to_parameters
from flwr.server import LegacyContext, ServerConfig
from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow
from flwr.serverapp import Grid
from vane.server.analytics import PopulationSum, Quantisation
from vane.server.privacy import PrivacyLedger, SecAggDeltaFedAvg, SecAggNoise, sampled_clients, wrap_with_dp
from vane.server.privacy.accounting import population_epsilon
from vane.server.privacy.wrappers import DeltaPrivacy
from vane.server.run import FederationRun
from vane.server.strategies import DeltaAggregation
from vane.shared import head_protocol as h
from vane.shared import protocol as p
from vane.shared.errors import PrivacyConfigError

if TYPE_CHECKING:
    from vane.server.head_app import HeadSettings

__all__ = ["dp_strategy", "head_ledger", "privacy_summary", "released_counts", "secure_counts", "secure_train"]

logger = logging.getLogger("vane.server")


def head_ledger(s: HeadSettings) -> tuple[PrivacyLedger | None, int]:
    """The train rounds' ledger (None without DP) and the rounds the ``target-epsilon`` budget allows.

    Raises
    ------
    PrivacyConfigError
        When not even one round fits in ``target-epsilon``.
    """
    if not s.dp.enabled:
        return None, s.rounds
    min_train = max(s.min_nodes, 2) if s.secagg.secure_aggregation else s.min_nodes
    ledger = PrivacyLedger(s.dp, sampled_clients(s.dp.population_size, s.fraction_train, min_train))
    affordable = ledger.affordable_rounds(s.rounds)
    if affordable == 0:
        raise PrivacyConfigError(
            f"run_config target-epsilon is {s.dp.target_epsilon}, below the ε of a single head round "
            f"({ledger.epsilon_curve(1)[0]:.4g}); raise it or the noise-multiplier")
    if affordable < s.rounds:
        logger.warning("target-epsilon %.3g allows %d of %d head rounds", s.dp.target_epsilon, affordable,
                       s.rounds)
    return ledger, affordable


def dp_strategy(strategy: DeltaAggregation, s: HeadSettings, ledger: PrivacyLedger) -> DeltaPrivacy:
    """``strategy`` (the head's FedAvg) in Flower's DP wrapper for ``s.privacy``, counting ε in ``ledger``."""
    wrapper = wrap_with_dp(strategy, s.dp, ledger)
    # As for the LSTM (vane.server.privacy.apply_privacy): clipping bounds every delta, and a median-relative
    # norm bound would let one device's presence decide another's rejection.
    wrapper.strategy.bounds = replace(wrapper.strategy.bounds, norm_ratio=0.0)
    return wrapper


def secure_counts(grid: Grid, context: Context, s: HeadSettings, config: dict[str, Any]) -> tuple[np.ndarray, int]:
    """The counts round under SecAgg+: the masked sum of every connected device's counts, and their number."""
    from vane.server.head_app import HeadRoundError

    wanted = max(s.min_nodes, 2)
    asked = max(wanted, len(list(grid.get_node_ids())))
    quant = Quantisation(asked, 2.0 * s.counts_cap)  # clipping_range = counts_cap: a count lies in [0, cap]
    strategy = PopulationSum(config, wanted, s.classes, 0.0, True, quant.step, asked)
    legacy = LegacyContext(context, config=ServerConfig(num_rounds=1, round_timeout=s.round_timeout),
                           strategy=strategy)
    DefaultWorkflow(fit_workflow=quant.workflow(s.secagg, s.round_timeout))(grid, legacy)
    if strategy.total is None or strategy.devices == 0:
        raise HeadRoundError(f"the head's SecAgg+ counts round summed no device's counts; failures: "
                             f"{strategy.failures[:3]}")
    return strategy.total, strategy.devices


def released_counts(total: np.ndarray, devices: int, s: HeadSettings) -> tuple[np.ndarray, float]:
    """The summed counts as released (under DP: plus noise of std ``z·counts_clip_norm``) and their ε (0 off DP).

    Post-processing: a label with a released count under 1 counts as absent (no class weight)."""
    if not s.dp.enabled:
        return total, 0.0
    z = s.dp.noise_multiplier
    if z > 0:
        total = total + np.random.default_rng().normal(0.0, z * s.counts_clip_norm, size=total.shape)
    epsilon = population_epsilon(z, max(devices, 1), s.dp.dp_delta)
    return np.where(total >= 1.0, total, 0.0), epsilon


class _HeadRun:
    """What :class:`SecAggDeltaFedAvg` reads of an interest-model run: the initial weights and the round offset.

    Its evaluate hook (``after_round``) is not reached: the head has no evaluate round."""

    start_round = 0

    def __init__(self, flat: np.ndarray) -> None:
        self.bundle = SimpleNamespace(weights=SimpleNamespace(flat=flat))

    def after_round(self, server_round: int, arrays: ArrayRecord) -> None:
        return None


def secure_train(grid: Grid, context: Context, s: HeadSettings, flat: np.ndarray, train: dict[str, Any],
                 ledger: PrivacyLedger | None, rounds: int) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """``rounds`` train rounds under SecAgg+ (and central DP when ``ledger``); the final head and round logs."""
    config = dict(train)
    if h.CLASS_WEIGHTS_KEY in config:  # JSON text: the legacy FitIns carries scalars only
        config[h.CLASS_WEIGHTS_KEY] = json.dumps(list(config[h.CLASS_WEIGHTS_KEY]))
    noise = SecAggNoise(s.dp, ledger) if ledger is not None else None
    if noise is not None:
        config[p.CLIPPING_NORM_KEY] = noise.clipping_norm
    min_fit = max(s.min_nodes, 2)
    strategy = SecAggDeltaFedAvg(
        cast(FederationRun, _HeadRun(flat)), noise, fraction_fit=s.fraction_train, fraction_evaluate=0.0,
        min_fit_clients=min_fit, min_evaluate_clients=0, min_available_clients=min_fit,
        initial_parameters=ndarrays_to_parameters([flat]), on_fit_config_fn=lambda rnd: dict(config),
        fit_metrics_aggregation_fn=lambda pairs: {})
    legacy = LegacyContext(context, config=ServerConfig(num_rounds=rounds, round_timeout=s.round_timeout),
                           strategy=strategy)
    workflow = SecAggPlusWorkflow(**s.secagg.workflow_args(), timeout=s.round_timeout)
    logger.info("head SecAgg+ run: %s", s.secagg.workflow_args())
    DefaultWorkflow(fit_workflow=workflow)(grid, legacy)
    return strategy.global_weights_after(), [log.to_dict() for _, log in sorted(strategy.rounds.items())]


def privacy_summary(s: HeadSettings, ledger: PrivacyLedger | None, counts_epsilon: float) -> dict[str, Any]:
    """What the outcome records: the modes, and under DP the settings used and every ε."""
    out: dict[str, Any] = {"secure-aggregation": s.secagg.secure_aggregation, "dp-mode": s.dp.dp_mode}
    if ledger is None:
        return out
    out.update({"noise-multiplier": s.dp.noise_multiplier, "clipping-norm": s.dp.clipping_norm,
                "dp-delta": s.dp.dp_delta, "population-size": s.dp.population_size,
                "sampled-per-round": ledger.sample_size, "dp-rounds": ledger.rounds, "dp-epsilon": ledger.epsilon,
                "dp-epsilon-no-amplification": ledger.epsilon_no_amplification})
    total = ledger.epsilon
    if s.balanced:
        out.update({"counts-clip-norm": s.counts_clip_norm, "counts-dp-epsilon": counts_epsilon})
        total += counts_epsilon
    out.update({"dp-epsilon-total": total, "dp-delta-total": s.dp.dp_delta * (2 if s.balanced else 1)})
    return out
