"""Client-level differential privacy for the delta-aggregating strategies.

Clipping and noise use Flower's strategy wrappers from
:mod:`flwr.serverapp.strategy`; accounting uses Flower's
:class:`~flwr.serverapp.RdpAccountant` (the ``flwr[dp]`` extra, backed by
``dp-accounting``). This module adds what Vane's *delta* protocol needs:

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

Accounting with the sampling actually used
    Flower's FedAvg draws ``n = max(int(N·fraction-train), min-train-nodes)``
    of the ``N`` connected nodes uniformly *without replacement*
    (``random.sample``, unseeded) every round, and the wrappers add noise of
    std ``z·C/n`` to the mean of the ``n`` clipped deltas: noise of std
    ``z·C`` on their *sum*, divided by the public ``n``.

    - **All nodes train** (``n = N``): nothing to amplify. A round is one
      Gaussian release under *add-or-remove-one* adjacency: one client more
      or less moves the sum by at most ``C``, so σ/Δ = ``z``. Flower's
      ``(NO_AMPLIFICATION, ADD_OR_REMOVE_ONE)``; exact.
    - **A sample** (``n < N``): a fixed-size sample has a fixed ``n``, so the
      adjacency that fits it is *replace-one* (``N`` and ``n`` public),
      accounted by Flower's ``(WITHOUT_REPLACEMENT, REPLACE_ONE)``, i.e.
      dp-accounting's ``SampledWithoutReplacementDpEvent`` (Wang, Balle &
      Kasiviswanathan 2019, Thm. 27). dp-accounting reads a
      ``GaussianDpEvent``'s ``noise_multiplier`` as "noise std / L2
      sensitivity" and builds the without-replacement bound from the base
      Gaussian's RDP ``α/(2σ²)`` (its ``q = 1`` case returns exactly that),
      so σ must be relative to the *replace-one* sensitivity. Replacing one
      client's clipped delta ``u`` by ``u'`` moves the sum by ``u' − u``, of
      norm up to ``2C``; hence the multiplier passed is
      ``σ = z·C / 2C = z/2``. Passing ``z`` would understate the RDP 4-fold.
    - **Adaptive clipping** gives the same ``z/2``: Flower splits ``z`` into
      update noise ``z_u`` with ``z_u⁻² = z⁻² − (2σ_b)⁻²`` and noise ``σ_b``
      on the clipped count. Under replace-one the count moves by at most 1
      and the sum by ``2C``, so the joint release has
      ``σ_eff⁻² = (z_u/2)⁻² + σ_b⁻² = 4·z⁻²``.

    Each round's train metrics carry two figures at ``dp-delta``:
    ``dp-epsilon``, the accounting above (the one ``target-epsilon`` is
    checked against), and ``dp-epsilon-no-amplification``, the same relation
    and multiplier with every client in every round (replace-one, ``q = 1``),
    an upper bound on ``dp-epsilon`` that does not rely on the sampling
    being secret. They are equal when all nodes train. The add-or-remove
    figure Vane reported for every fraction before is *not* such a bound
    when ``n < N``: replace-one is the stronger adjacency (a replacement is
    a removal plus an addition), e.g. ``z = 0.5``, 100 of 1,000, 5 rounds,
    δ = 1e-4: 68 sampled replace-one against 28 add-or-remove.

    The ledger is Vane's own: the wrappers are built without Flower's
    ``accountant=`` (whose fixed-clipping check accepts only
    ``NO_AMPLIFICATION``). Every round's release is the same event, so ε
    after ``k`` rounds is Flower's accountant composing that event ``k``
    times; it is cached per ``k`` (one evaluation of the without-replacement
    RDP over dp-accounting's default orders takes about a second). A round
    in which a client reports an error releases nothing (Flower skips it)
    and is not counted.

run_config keys (defaults)
    ``dp-mode`` "off" (or "server": the server clips each delta;
    "client": each device clips its own delta in
    :func:`vane.client.mods.delta_clipping_mod`),
    ``noise-multiplier`` 0.0, ``clipping-norm`` 1.0 (the initial norm with
    adaptive clipping), ``adaptive-clipping`` false,
    ``target-clipped-quantile`` 0.5, ``clip-norm-lr`` 0.2,
    ``dp-delta`` 1e-5, ``target-epsilon`` 0 (no limit),
    ``population-size`` 0 (= ``min-available-nodes``), ``clipped-count-stddev`` 0
    (= Flower's ``sampled/20``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
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
from vane.server.strategies import NUM_EXAMPLES_KEY, WEIGHTS_KEY, DeltaAggregation
from vane.shared.errors import PrivacyConfigError

logger = logging.getLogger("vane.server")

DP_MODES = ("off", "server", "client")
#: Keys written into each round's train metrics (and the registry / results.json).
EPSILON_KEY = "dp-epsilon"
EPSILON_NO_AMPLIFICATION_KEY = "dp-epsilon-no-amplification"
DELTA_KEY = "dp-delta"
CLIPPING_NORM_KEY = "dp-clipping-norm"
#: Checkpointed strategy state: the clipping norm reached, so that a resumed adaptive run continues from it.
CLIP_STATE_KEY = "dp_clipping_norm"


@dataclass(frozen=True)
class PrivacySettings:
    """Differential-privacy settings; the run_config key is the field name in kebab-case.

    Parameters
    ----------
    dp_mode : {"off", "server", "client"}, default "off"
    noise_multiplier : float, default 0.0
        Gaussian noise std / clipping norm; 0 clips only (ε is infinite).
    clipping_norm : float, default 1.0
        L2 bound of each client's delta (initial bound with adaptive clipping).
    adaptive_clipping : bool, default False
        Andrew et al. geometric update of the clipping norm towards a quantile.
    target_clipped_quantile : float, default 0.5
    clip_norm_lr : float, default 0.2
    dp_delta : float, default 1e-5
        δ at which ε is reported; must be below 1/population.
    target_epsilon : float, default 0.0
        Stop before a round whose ε would exceed this; 0 means no limit.
    population_size : int, default 0
        Clients that could take part; 0 means ``min-available-nodes``.
    clipped_count_stddev : float, default 0.0
        Noise on the adaptive clipped count; 0 means Flower's ``sampled/20`` (must exceed noise-multiplier/2).
    """

    dp_mode: str = "off"
    noise_multiplier: float = 0.0
    clipping_norm: float = 1.0
    adaptive_clipping: bool = False
    target_clipped_quantile: float = 0.5
    clip_norm_lr: float = 0.2
    dp_delta: float = 1e-5
    target_epsilon: float = 0.0
    population_size: int = 0
    clipped_count_stddev: float = 0.0

    @property
    def enabled(self) -> bool:
        return self.dp_mode != "off"

    @classmethod
    def from_run_config(cls, run_config: Mapping[str, Any], population: int | None = None) -> PrivacySettings:
        """Read and validate; ``population`` fills ``population-size`` when that is 0."""
        from vane.server.app import run_config_values

        values = run_config_values(cls, run_config)
        if not values.get("population_size") and population:
            values["population_size"] = int(population)
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        """Raise :class:`PrivacyConfigError` naming the key, its value and what is expected."""
        if self.dp_mode not in DP_MODES:
            raise PrivacyConfigError(f"run_config dp-mode is {self.dp_mode!r}; expected one of {', '.join(DP_MODES)}")
        if not self.clipping_norm > 0:
            raise PrivacyConfigError(f"run_config clipping-norm is {self.clipping_norm}; expected a value > 0")
        if self.noise_multiplier < 0:
            raise PrivacyConfigError(f"run_config noise-multiplier is {self.noise_multiplier}; expected >= 0")
        if self.target_epsilon < 0:
            raise PrivacyConfigError(f"run_config target-epsilon is {self.target_epsilon}; expected >= 0 (0 = none)")
        if not 0 <= self.target_clipped_quantile <= 1 or self.clip_norm_lr <= 0:
            raise PrivacyConfigError("run_config target-clipped-quantile must be in [0, 1] and clip-norm-lr > 0")
        if not self.enabled:
            return
        if self.population_size < 1:
            raise PrivacyConfigError(f"run_config population-size is {self.population_size}; expected >= 1")
        if not 0 < self.dp_delta < 1.0 / self.population_size:
            raise PrivacyConfigError(
                f"run_config dp-delta is {self.dp_delta}; expected 0 < delta < 1/population = "
                f"{1.0 / self.population_size:.3g} (a larger delta allows releasing one client's data outright)"
            )
        if self.target_epsilon > 0 and self.noise_multiplier == 0:
            raise PrivacyConfigError("run_config target-epsilon is set but noise-multiplier is 0 (ε is infinite)")


@dataclass(frozen=True)
class ReleaseAccounting:
    """How each round's Gaussian release is accounted in Flower's :class:`~flwr.serverapp.RdpAccountant`.

    Parameters
    ----------
    sampling_method : str
        A :class:`flwr.serverapp.SamplingMethod` value.
    neighboring_relation : str
        A :class:`flwr.serverapp.NeighboringRelation` value.
    noise_multiplier : float
        Noise std over the L2 sensitivity of the clipped sum under that relation.
    sample_size, population_size : int
    """

    sampling_method: str
    neighboring_relation: str
    noise_multiplier: float
    sample_size: int
    population_size: int

    @classmethod
    def sampled(cls, noise_multiplier: float, sample_size: int, population: int) -> ReleaseAccounting:
        """The sampling Flower's FedAvg uses: all nodes, or ``sample_size`` of them without replacement."""
        if sample_size >= population:
            return cls("no-amplification", "add-or-remove-one", noise_multiplier, population, population)
        # Replace-one moves the sum of clipped deltas by up to 2C; the noise is z·C.
        return cls("without-replacement", "replace-one", noise_multiplier / 2, sample_size, population)

    @classmethod
    def unamplified(cls, noise_multiplier: float, sample_size: int, population: int) -> ReleaseAccounting:
        """:meth:`sampled`'s relation and multiplier with every node in every round (no amplification)."""
        sampled = cls.sampled(noise_multiplier, sample_size, population)
        return cls(sampled.sampling_method, sampled.neighboring_relation, sampled.noise_multiplier,
                   population, population)

    def epsilon(self, rounds: int, delta: float) -> float:
        """ε at ``delta`` after ``rounds`` of these releases (0 for no round)."""
        if rounds == 0:
            return 0.0
        from flwr.serverapp import (
            GaussianPrivacyEvent,
            NeighboringRelation,
            PrivacyConfig,
            RdpAccountant,
            SamplingMethod,
        )

        accountant = RdpAccountant(PrivacyConfig(
            target_delta=delta,
            population_size=self.population_size,
            neighboring_relation=NeighboringRelation(self.neighboring_relation),
            sampling_method=SamplingMethod(self.sampling_method),
        ))
        accountant.compose(GaussianPrivacyEvent(self.noise_multiplier, self.sample_size, self.population_size),
                           rounds)
        return float(accountant.get_epsilon(delta))

    def describe(self) -> str:
        return (f"{self.sample_size} of {self.population_size} nodes, {self.sampling_method}, "
                f"{self.neighboring_relation}, σ/Δ = {self.noise_multiplier:g}")


class PrivacyLedger:
    """Rounds of the Gaussian release spent so far, with ε under the sampling used and without amplification.

    Parameters
    ----------
    settings : PrivacySettings
    sample_size : int
        Nodes sampled per round (:func:`sampled_clients`); capped at ``population-size``.
    """

    def __init__(self, settings: PrivacySettings, sample_size: int) -> None:
        self.settings = settings
        self.sample_size = min(sample_size, settings.population_size)
        self.rounds = 0
        self.accounting: ReleaseAccounting | None = None
        self.bound: ReleaseAccounting | None = None
        if settings.noise_multiplier > 0:
            args = (settings.noise_multiplier, self.sample_size, settings.population_size)
            self.accounting = ReleaseAccounting.sampled(*args)
            self.bound = ReleaseAccounting.unamplified(*args)
        self._cache: dict[tuple[bool, int], float] = {}

    @property
    def epsilon(self) -> float:
        """ε spent so far at ``dp-delta`` with the sampling used (0 before any round, infinite without noise)."""
        return self.epsilon_after(self.rounds)

    @property
    def epsilon_no_amplification(self) -> float:
        """:attr:`epsilon` without amplification by sampling: an upper bound, equal when all nodes train."""
        return self.epsilon_after(self.rounds, amplified=False)

    def epsilon_after(self, rounds: int, amplified: bool = True) -> float:
        """ε at ``dp-delta`` after ``rounds`` rounds in all (cached)."""
        accounting = self.accounting if amplified else self.bound
        if rounds == 0:
            return 0.0
        if accounting is None:
            return math.inf
        key = (amplified, rounds)
        if key not in self._cache:
            self._cache[key] = accounting.epsilon(rounds, self.settings.dp_delta)
        return self._cache[key]

    def would_exceed(self, count: int = 1) -> bool:
        """Whether ``count`` more rounds would push ε above ``target-epsilon``."""
        if not self.settings.target_epsilon:
            return False
        return self.epsilon_after(self.rounds + count) > self.settings.target_epsilon

    def record_round(self, count: int = 1) -> float:
        """Count ``count`` more rounds; returns the new ε."""
        self.rounds += count
        return self.epsilon

    def affordable_rounds(self, wanted: int) -> int:
        """How many of ``wanted`` further rounds fit in the budget (ε grows with rounds: bisect)."""
        if not self.settings.target_epsilon or not self.would_exceed(wanted):
            return wanted
        fits, exceeds = 0, wanted
        while exceeds - fits > 1:
            mid = (fits + exceeds) // 2
            fits, exceeds = (fits, mid) if self.would_exceed(mid) else (mid, exceeds)
        return fits

    def epsilon_curve(self, rounds: int) -> list[float]:
        """ε (sampling used) after 1..rounds rounds from now, without changing the ledger."""
        return [self.epsilon_after(self.rounds + i) for i in range(1, rounds + 1)]


def sampled_clients(population: int, fraction_train: float, min_train_nodes: int) -> int:
    """Nodes Flower's FedAvg samples per round (``int(n·fraction)``, at least ``min-train-nodes``)."""
    return max(int(population * fraction_train), min_train_nodes)


# --- strategy wrappers ---------------------------------------------------------
class _DeltaPrivacy:
    """Mixin placed before a Flower DP wrapper: zero origin, unit weights, accounting."""

    strategy: Any
    ledger: PrivacyLedger
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


class DeltaServerSideFixedClipping(_DeltaPrivacy, DifferentialPrivacyServerSideFixedClipping):
    """Server clips each delta to ``clipping-norm`` and noises the mean."""


class DeltaClientSideFixedClipping(_DeltaPrivacy, DifferentialPrivacyClientSideFixedClipping):
    """Devices clip their deltas (``delta_clipping_mod``); the server noises the mean."""


class DeltaServerSideAdaptiveClipping(_DeltaPrivacy, DifferentialPrivacyServerSideAdaptiveClipping):
    """Server-side clipping with a clipping norm that tracks a quantile of the delta norms."""


class DeltaClientSideAdaptiveClipping(_DeltaPrivacy, DifferentialPrivacyClientSideAdaptiveClipping):
    """Device-side clipping (reporting ``norm_bit``) with an adaptive clipping norm."""


def wrap_with_dp(strategy: DeltaAggregation, settings: PrivacySettings, ledger: PrivacyLedger) -> Any:
    """The Flower DP wrapper for ``settings`` around a delta strategy (FedAvg only)."""
    from vane.server.strategies import VaneFedAvg

    if not isinstance(strategy, VaneFedAvg):
        raise PrivacyConfigError(
            f"dp-mode {settings.dp_mode!r} needs strategy 'fedavg': the noise is calibrated to a mean of "
            f"clipped deltas; got {type(strategy).__name__}"
        )
    n = ledger.sample_size
    wrapper: Any
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


def secure_privacy_settings(run_config: Mapping[str, Any], population: int) -> PrivacySettings:
    """DP settings for a SecAgg+ run: only what a server that sees just the masked sum can do.

    SecAgg+ hides each client's delta, so the server can neither clip it (``dp-mode server``) nor
    read its clipped-or-not bit (adaptive clipping). Devices clip (``dp-mode client``) before
    masking; the server adds the noise to the unmasked mean.
    """
    privacy = PrivacySettings.from_run_config(run_config, population=population)
    if privacy.dp_mode == "server":
        raise PrivacyConfigError(
            "run_config dp-mode is 'server' with secure-aggregation; expected 'client': SecAgg+ hides each "
            "delta from the server, so only the devices can clip it"
        )
    if privacy.enabled and privacy.adaptive_clipping:
        raise PrivacyConfigError(
            "run_config adaptive-clipping is true with secure-aggregation; expected false: adaptive clipping "
            "reads each device's clipped-or-not bit, which SecAgg+ does not reveal"
        )
    return privacy


def budget_ledger(run: Any, privacy: PrivacySettings, sample_size: int) -> PrivacyLedger:
    """A ledger for ``run`` (resumed rounds already spent); cuts ``run.settings`` to the ε budget."""
    from dataclasses import replace

    s = run.settings
    ledger = PrivacyLedger(privacy, sample_size)
    if run.start_round:
        ledger.record_round(run.start_round)  # a resumed run has already spent these rounds
    if ledger.accounting is not None:
        logger.info("DP accounting per round: %s (bound without amplification: %s)",
                    ledger.accounting.describe(), ledger.bound.describe() if ledger.bound else "")
    run.privacy_ledger = ledger
    remaining = s.num_server_rounds - run.start_round
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
        run.settings = replace(s, num_server_rounds=run.start_round + affordable)
        run.budget_stop = {"planned-rounds": s.num_server_rounds, "rounds": run.start_round + affordable,
                           "target-epsilon": privacy.target_epsilon}
    return ledger


def record_release(ledger: PrivacyLedger, log: Any, clipping_norm: float, rnd: int) -> float:
    """Count one released round in ``ledger``; write ε, δ and the clipping norm into ``log.train_metrics``."""
    epsilon = ledger.record_round()
    logger.info("round %d: ε = %.4f at δ = %g after %d rounds", rnd, epsilon, ledger.settings.dp_delta, ledger.rounds)
    if log is not None:
        log.train_metrics[EPSILON_KEY] = epsilon
        log.train_metrics[EPSILON_NO_AMPLIFICATION_KEY] = ledger.epsilon_no_amplification
        log.train_metrics[DELTA_KEY] = ledger.settings.dp_delta
        log.train_metrics[CLIPPING_NORM_KEY] = float(clipping_norm)
    return epsilon


def apply_privacy(run: Any, run_config: Mapping[str, Any]) -> PrivacySettings:
    """Wrap ``run.strategy`` (a :class:`vane.server.app.FederationRun`) for DP and cut rounds to the budget.

    Returns the validated settings (``dp-mode`` off leaves the run untouched).
    """
    s = run.settings
    privacy = PrivacySettings.from_run_config(run_config, population=s.min_available_nodes)
    if not privacy.enabled:
        return privacy
    ledger = budget_ledger(run, privacy, sampled_clients(privacy.population_size, s.fraction_train, s.min_train_nodes))
    run.strategy = wrap_with_dp(run.strategy, privacy, ledger)
    saved = getattr(run, "strategy_state", {}).get(CLIP_STATE_KEY)
    if privacy.adaptive_clipping and saved is not None:
        run.strategy.clipping_norm = float(np.asarray(saved).reshape(-1)[0])
        logger.info("resuming adaptive clipping at norm %.4g (checkpointed)", run.strategy.clipping_norm)
    return privacy
