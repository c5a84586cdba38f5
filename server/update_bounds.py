"""How far one device's update may move a round: a norm bound on its delta and a cap on its claimed weight.

A finite but huge delta (1e30 in every value) passes every per-update check, and FedAvg weighs a
delta by the ``num-examples`` its device claims, so one device claiming 1e30 examples makes its delta
the whole step. :class:`UpdateBounds` screens the updates of a round *after* the per-update checks
(:meth:`vane.server.strategies.DeltaAggregation.screen_replies`), so every Message-API strategy
built on the delta aggregation (FedAvg, FedAdam, FedProx, FedTrimmedAvg, Krum) gets it:

1. **Norm bound.** An update whose delta has an L2 norm above ``update-norm-ratio`` × the round's
   median norm is rejected (logged with its node id and counted in the round's train metrics as
   :data:`~vane.shared.protocol.REJECTED_UPDATES_KEY`). Non-finite deltas are rejected before,
   by the per-update checks.
2. **Weight cap.** A claimed ``num-examples`` above ``max-num-examples``, or above
   ``num-examples-ratio`` × the round's median claim, is lowered to that cap (logged and counted
   as :data:`~vane.shared.protocol.CAPPED_NUM_EXAMPLES_KEY`); the update is still aggregated.
   One device that lies about its examples among ``n`` honest ones of about the median claim
   keeps at most ``k / (k + n)`` of the step (``k`` = the ratio: 2/3 with 5 honest devices at the
   default 10, 1/11 with 100); a lower ratio bounds it further, at the price of weighing devices
   with much more data than the median like the cap.

The median is the *lower* median (the ⌈n/2⌉-th smallest value), so that fewer than half of the
updates can never raise it: with two updates, the smaller one sets the bound. A round in which no
update is out of bounds is aggregated exactly as without the bounds (bit-identical). A ratio of
0 turns its rule off. With a median of 0 (most devices sent a zero delta) every non-zero delta
is out of bounds.

Under differential privacy (:mod:`vane.server.privacy.wrappers`) every delta is clipped to the
clipping norm and weighed 1, so the norm-ratio rule is turned off there: relative to the median,
one device's presence could decide another's rejection, beyond the sensitivity the noise is
calibrated to.

Under SecAgg+ (:mod:`vane.server.privacy.secagg`) the server sees only the masked sum, so neither
rule can run there. What holds instead: Vane's client mod (:mod:`vane.client.mods`) clips every
value of the delta to ``[-secagg-clipping-range, secagg-clipping-range]`` and caps the weight at
``secagg-max-weight`` before masking, so one device moves each coordinate of the aggregate by at
most ``clipping-range × max-weight / Σ weights``. A device that does not run Vane's mod is still
confined by the quantisation: each value it contributes is an element of the SecAgg+ ring, which
maps back into a bounded range, but no bound relative to the other devices holds for it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

logger = logging.getLogger("vane.server")


def lower_median(values: list[float]) -> float:
    """The ⌈n/2⌉-th smallest of ``values`` (no fewer than half of them can raise it); NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[(len(ordered) - 1) // 2]


def delta_norm(delta: np.ndarray) -> float:
    """L2 norm of ``delta`` in float64 (a float32 sum of squares would overflow at 1e20)."""
    return float(np.linalg.norm(np.asarray(delta, dtype=np.float64)))


@dataclass(frozen=True)
class BoundsVerdict:
    """What :meth:`UpdateBounds.screen` decided for a round."""

    #: node id → why its update was rejected.
    rejected: dict[int, str] = field(default_factory=dict)
    #: node id → the num-examples its update is weighed with (only for capped claims).
    capped: dict[int, float] = field(default_factory=dict)
    #: node id → why its claim was capped.
    capped_reasons: dict[int, str] = field(default_factory=dict)


@dataclass(frozen=True)
class UpdateBounds:
    """The bounds of one round's updates (see the module docstring).

    Parameters
    ----------
    norm_ratio : float, default 10
        Reject a delta whose L2 norm exceeds this many times the round's median norm; 0 = off.
    examples_ratio : float, default 10
        Cap a claimed ``num-examples`` at this many times the round's median claim; 0 = off.
    max_num_examples : float, default 1e6
        Cap every claimed ``num-examples`` at this value.
    """

    norm_ratio: float = 10.0
    examples_ratio: float = 10.0
    max_num_examples: float = 1e6

    def screen(self, norms: Mapping[int, float], claims: Mapping[int, float]) -> BoundsVerdict:
        """Decide, for the updates of one round, which are rejected and whose claimed weight is capped.

        Parameters
        ----------
        norms : mapping
            node id → L2 norm of its (finite) delta.
        claims : mapping
            node id → its claimed ``num-examples`` (finite, > 0); same keys as ``norms``.
        """
        verdict = BoundsVerdict()
        if self.norm_ratio > 0 and norms:
            median = lower_median(list(norms.values()))
            bound = self.norm_ratio * median
            for node, norm in norms.items():
                if norm > bound:
                    verdict.rejected[node] = (f"delta L2 norm {norm:.4g} exceeds update-norm-ratio {self.norm_ratio:g} "
                                              f"x the round's median norm {median:.4g}")
        kept = {node: claim for node, claim in claims.items() if node not in verdict.rejected}
        cap = self.max_num_examples
        what = f"max-num-examples {self.max_num_examples:g}"
        if self.examples_ratio > 0 and kept:
            median = lower_median(list(kept.values()))
            if self.examples_ratio * median < cap:
                cap = self.examples_ratio * median
                what = f"num-examples-ratio {self.examples_ratio:g} x the round's median claim {median:.4g}"
        for node, claim in kept.items():
            if claim > cap:
                verdict.capped[node] = cap
                verdict.capped_reasons[node] = f"num-examples {claim:.4g} capped at {cap:.4g} ({what})"
        return verdict
