"""Privacy accounting of client-level DP: ε per round with Flower's RDP accountant, and the budget.

Accounting uses Flower's :class:`~flwr.serverapp.RdpAccountant` (the ``flwr[dp]`` extra, backed by
``dp-accounting``). Each round is one sampled Gaussian release; ε is reported at ``dp-delta``
after every round (:func:`record_release`) and written into that round's log, and so into
``results.json`` and the model registry. The settings are
:class:`vane.server.config.PrivacySettings`; the strategy wrappers that clip and add noise are in
:mod:`vane.server.privacy.wrappers`.

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
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from flwr.serverapp import GaussianPrivacyEvent, NeighboringRelation, PrivacyConfig, SamplingMethod
from vane.server.config import PrivacySettings
from vane.server.strategies import RoundLog
from vane.shared.protocol import DP_CLIPPING_NORM_KEY, DP_DELTA_KEY, EPSILON_KEY, EPSILON_NO_AMPLIFICATION_KEY

logger = logging.getLogger("vane.server")


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
        from flwr.serverapp import RdpAccountant  # needs the flwr[dp] extra (dp-accounting): only when ε is asked

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


def population_epsilon(noise_multiplier: float, devices: int, delta: float, releases: int = 1) -> float:
    """ε at ``delta`` of ``releases`` noised sums of the population statistics (:mod:`vane.server.analytics`).

    Every device answers (no sampling) and each contributes a count vector clipped to L2 ``C``; the sum
    gets Gaussian noise of std ``z·C``: add-or-remove-one, σ/Δ = ``z``. Kept beside the training ε
    (the run's registry entries carry it as ``population-dp-epsilon``); both are at the run's δ, so the
    run as a whole is (ε_train + ε_population, 2δ)-DP at most.
    """
    if noise_multiplier <= 0:
        return math.inf
    accounting = ReleaseAccounting("no-amplification", "add-or-remove-one", noise_multiplier, devices, devices)
    return accounting.epsilon(releases, delta)


def sampled_clients(population: int, fraction_train: float, min_train_nodes: int) -> int:
    """Nodes Flower's FedAvg samples per round (``int(n·fraction)``, at least ``min-train-nodes``)."""
    return max(int(population * fraction_train), min_train_nodes)



def record_release(ledger: PrivacyLedger, log: RoundLog | None, clipping_norm: float, rnd: int) -> float:
    """Count one released round in ``ledger``; write ε, δ and the clipping norm into ``log.train_metrics``."""
    epsilon = ledger.record_round()
    logger.info("round %d: ε = %.4f at δ = %g after %d rounds", rnd, epsilon, ledger.settings.dp_delta, ledger.rounds)
    if log is not None:
        log.train_metrics[EPSILON_KEY] = epsilon
        log.train_metrics[EPSILON_NO_AMPLIFICATION_KEY] = ledger.epsilon_no_amplification
        log.train_metrics[DP_DELTA_KEY] = ledger.settings.dp_delta
        log.train_metrics[DP_CLIPPING_NORM_KEY] = float(clipping_norm)
    return epsilon
