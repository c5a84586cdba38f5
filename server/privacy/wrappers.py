"""Client-level differential privacy around the delta-aggregating strategies.

Clipping and noise use Flower's strategy wrappers from :mod:`flwr.serverapp.strategy`. The
wrappers here add what Vane's *delta* protocol needs:

- **zero origin**: clients send ``delta = local - global``, so the
  server-side wrappers clip ``reply - 0`` rather than ``reply - global``;
- **uniform weights**: the Gaussian noise ``z·C/n`` is calibrated to the
  *unweighted* mean of ``n`` clipped updates, so every accepted update gets
  weight 1 (``num-examples`` would let one large client dominate);
- **accounting** of one sampled Gaussian release per round with the
  sampling actually used (below), ε reported at ``dp-delta`` after every
  round and written into that round's log (and so into ``results.json`` and
  the model registry);
- **budget stop**: before a round, the ledger checks whether that round's ε
  would exceed ``target-epsilon``; the run is cut to the rounds that fit.

The settings are :class:`vane.server.config.PrivacySettings` (run_config ``dp-mode``,
``noise-multiplier``, ``clipping-norm`` …); how ε is accounted is in
:mod:`vane.server.privacy.accounting`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import (
    DifferentialPrivacyClientSideAdaptiveClipping,
    DifferentialPrivacyClientSideFixedClipping,
    DifferentialPrivacyServerSideAdaptiveClipping,
    DifferentialPrivacyServerSideFixedClipping,
)
from vane.server.config import PrivacySettings
from vane.server.privacy.accounting import PrivacyLedger, record_release, sampled_clients
from vane.server.run import FederationRun, RoundStrategy
from vane.server.strategies import RoundLog, VaneFedAvg
from vane.shared.errors import PrivacyConfigError
from vane.shared.protocol import NUM_EXAMPLES_KEY, WEIGHTS_KEY

logger = logging.getLogger("vane.server")

#: Checkpointed strategy state: the clipping norm reached, so that a resumed adaptive run continues from it.
CLIP_STATE_KEY = "dp_clipping_norm"


class DeltaPrivacy:
    """Mixin placed before a Flower DP wrapper: zero origin, unit weights, accounting."""

    strategy: VaneFedAvg
    ledger: PrivacyLedger
    rounds: dict[int, RoundLog]  # the inner strategy's, through __getattr__
    clipping_norm: float
    current_arrays: ArrayRecord

    def __getattr__(self, name: str) -> Any:
        # FederationRun reads ``rounds``, ``state_arrays`` ... of the delta strategy it built.
        inner = self.__dict__.get("strategy")
        if inner is None:
            raise AttributeError(name)
        return getattr(inner, name)

    def state_arrays(self) -> dict[str, np.ndarray]:
        """The inner strategy's state plus the current clipping norm (it moves under adaptive clipping)."""
        return {**self.strategy.state_arrays(), CLIP_STATE_KEY: np.asarray([self.clipping_norm], dtype=np.float64)}

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        messages = list(super().configure_train(server_round, arrays, config, grid))  # type: ignore[misc]
        # Clients send deltas: the origin that server-side clipping subtracts is zero.
        self.current_arrays = ArrayRecord({WEIGHTS_KEY: Array(np.zeros_like(arrays[WEIGHTS_KEY].numpy()))})
        return messages

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        replies = [_unit_weight(msg) for msg in replies]
        arrays, metrics = super().aggregate_train(server_round, replies)  # type: ignore[misc]
        rnd = server_round + self.strategy.round_offset
        log = self.strategy.rounds.get(rnd)
        if arrays is None:
            logger.warning("round %d: no private release (a client failed or no update); ε unchanged", rnd)
            return arrays, metrics
        record_release(self.ledger, log, self.clipping_norm, rnd)
        return arrays, metrics


def _unit_weight(msg: Message) -> Message:
    if msg.has_error() or not msg.has_content():
        return msg
    for record in msg.content.metric_records.values():
        if NUM_EXAMPLES_KEY in record:
            record[NUM_EXAMPLES_KEY] = 1.0
    return msg


class DeltaServerSideFixedClipping(DeltaPrivacy, DifferentialPrivacyServerSideFixedClipping):
    """Server clips each delta to ``clipping-norm`` and noises the mean."""


class DeltaClientSideFixedClipping(DeltaPrivacy, DifferentialPrivacyClientSideFixedClipping):
    """Devices clip their deltas (``delta_clipping_mod``); the server noises the mean."""


class DeltaServerSideAdaptiveClipping(DeltaPrivacy, DifferentialPrivacyServerSideAdaptiveClipping):
    """Server-side clipping with a clipping norm that tracks a quantile of the delta norms."""


class DeltaClientSideAdaptiveClipping(DeltaPrivacy, DifferentialPrivacyClientSideAdaptiveClipping):
    """Device-side clipping (reporting ``norm_bit``) with an adaptive clipping norm."""


def wrap_with_dp(strategy: RoundStrategy, settings: PrivacySettings, ledger: PrivacyLedger) -> DeltaPrivacy:
    """The Flower DP wrapper for ``settings`` around a delta strategy (FedAvg only).

    Raises
    ------
    PrivacyConfigError
        When the strategy is not FedAvg, or Flower refuses the adaptive-clipping noise split.
    """
    if not isinstance(strategy, VaneFedAvg):
        raise PrivacyConfigError(
            f"dp-mode {settings.dp_mode!r} needs strategy 'fedavg': the noise is calibrated to a mean of "
            f"clipped deltas; got {type(strategy).__name__}"
        )
    n = ledger.sample_size
    wrapper: DeltaPrivacy
    if settings.adaptive_clipping:
        kind = DeltaServerSideAdaptiveClipping if settings.dp_mode == "server" else DeltaClientSideAdaptiveClipping
        try:
            wrapper = kind(
                strategy, settings.noise_multiplier, n,
                initial_clipping_norm=settings.clipping_norm,
                target_clipped_quantile=settings.target_clipped_quantile,
                clip_norm_lr=settings.clip_norm_lr,
                clipped_count_stddev=settings.clipped_count_stddev or None,
            )
        except ValueError as exc:  # Flower's check of the noise split between count and update
            raise PrivacyConfigError(f"adaptive clipping with {n} sampled clients: {exc} "
                                     "(run_config clipped-count-stddev)") from None
    else:
        fixed = DeltaServerSideFixedClipping if settings.dp_mode == "server" else DeltaClientSideFixedClipping
        wrapper = fixed(strategy, settings.noise_multiplier, settings.clipping_norm, n)
    wrapper.ledger = ledger
    return wrapper


def budget_ledger(run: FederationRun, privacy: PrivacySettings, sample_size: int) -> PrivacyLedger:
    """A ledger for ``run`` (resumed rounds already spent); cuts the run to the rounds the ε budget allows.

    Raises
    ------
    PrivacyConfigError
        When not even one round fits in ``target-epsilon``.
    """
    ledger = PrivacyLedger(privacy, sample_size)
    if run.start_round:
        ledger.record_round(run.start_round)  # a resumed run has already spent these rounds
    if ledger.accounting is not None:
        logger.info("DP accounting per round: %s (bound without amplification: %s)",
                    ledger.accounting.describe(), ledger.bound.describe() if ledger.bound else "")
    remaining = run.remaining_rounds
    affordable = ledger.affordable_rounds(remaining)
    if affordable == 0 and run.start_round == 0:
        raise PrivacyConfigError(
            f"run_config target-epsilon is {privacy.target_epsilon}, below the ε of a single round "
            f"({ledger.epsilon_curve(1)[0]:.4g}); raise it or the noise-multiplier"
        )
    if affordable < remaining:
        logger.warning(
            "target-epsilon %.3g allows %d more round(s) of %d; stopping after round %d",
            privacy.target_epsilon, affordable, remaining, run.start_round + affordable,
        )
        run.stop_after(run.start_round + affordable)
    return ledger


def apply_privacy(run: FederationRun, run_config: Mapping[str, Any]) -> PrivacySettings:
    """Wrap ``run.strategy`` for DP and cut the run to the budget.

    Returns the validated settings (``dp-mode`` off leaves the run untouched). The wrapper holds
    the ledger (``run.strategy.ledger``).
    """
    s = run.settings
    privacy = PrivacySettings.from_run_config(run_config, population=s.min_available_nodes)
    if not privacy.enabled:
        return privacy
    ledger = budget_ledger(run, privacy, sampled_clients(privacy.population_size, s.fraction_train, s.min_train_nodes))
    wrapper = wrap_with_dp(run.strategy, privacy, ledger)
    # Clipping bounds every delta; a median-relative norm bound would let one device's presence decide
    # another's rejection, beyond the sensitivity the noise is calibrated to (vane.server.update_bounds).
    wrapper.strategy.bounds = replace(wrapper.strategy.bounds, norm_ratio=0.0)
    saved = run.strategy_state.get(CLIP_STATE_KEY)
    if privacy.adaptive_clipping and saved is not None:
        wrapper.clipping_norm = float(np.asarray(saved).reshape(-1)[0])
        logger.info("resuming adaptive clipping at norm %.4g (checkpointed)", wrapper.clipping_norm)
    run.strategy = wrapper
    return privacy
