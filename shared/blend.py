"""The tracker's next-interest blend in compact form, and choosing its weights.

The device answers "what comes next" with a weighted blend of five distributions (the model's
softmax, the short memory, the profile, the person's transitions and the last event's categories;
see ``vane.client.predictor.NextInterestPredictor``). How much each should weigh depends on the data:
on Taobao repeating the last category is hard to beat, on MovieLens the model helps more.

:class:`BlendCase` holds the five distributions of one held-out event; :func:`grid_ranks` ranks
the event's categories under many candidate weightings at once, so a device can score a whole
:func:`mix_grid` on its own held-out events and report only the mean HR@1 and reciprocal rank of
each candidate (federated evaluation, :mod:`vane.client.app`); the server picks the best
(:func:`best_candidate`). :func:`tune_mix` does the same centrally, for the evaluation.

:func:`blend_coefficients` is the one blend rule (weights renormalised over the non-empty components
with weight > 0); :func:`blend` applies it to the device's distributions (mappings) and
:meth:`BlendCase.blend` to their compact arrays, so both give the same numbers.

NumPy only: the client imports this module.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from vane.shared.events import OTHER

#: Component order of the tracker's blend (the fields of ``vane.client.predictor.Mix``).
MIX_FIELDS = ("model", "recent", "profile", "transitions", "last")


def blend_coefficients(weights: Sequence[float], present: Sequence[bool]) -> list[tuple[int, float]]:
    """The one blend rule: each used component's index and its weight renormalised over the used ones.

    Parameters
    ----------
    weights : sequence of float
        One weight per component, in :data:`MIX_FIELDS` order.
    present : sequence of bool
        Whether each component is non-empty.

    Returns
    -------
    list of (int, float)
        ``(index, weight / total)`` for every present component with weight > 0, in order; empty when
        no component is used.
    """
    used = [(i, float(w)) for i, w in enumerate(weights) if present[i] and w > 0]
    total = 0.0
    for _, w in used:
        total += w
    if total <= 0:
        return []
    return [(i, w / total) for i, w in used]


def blend(components: Sequence[Mapping[str, float]], weights: Sequence[float]) -> dict[str, float]:
    """The blended distribution of ``components`` (mappings category -> probability) under ``weights``.

    Parameters
    ----------
    components : sequence of mapping
        The distributions, in the same order as ``weights``; an empty one takes no part.
    weights : sequence of float
        One weight per component (renormalised by :func:`blend_coefficients`).

    Returns
    -------
    dict
        Category -> blended probability, keys in order of first appearance; empty when nothing is used.
    """
    out: dict[str, float] = {}
    for i, coefficient in blend_coefficients(weights, [bool(d) for d in components]):
        for cat, p in components[i].items():
            out[cat] = out.get(cat, 0.0) + coefficient * p
    return out


@dataclass
class BlendCase:
    """The five distributions the tracker blends for one event, over their union of categories.

    ``keys`` are sorted by name, so a tie in score goes to the earlier key, as the tracker's ranking does.
    """

    keys: list[str]
    components: np.ndarray  # (5, K) float64, in MIX_FIELDS order
    present: np.ndarray  # (5,) bool: the component is non-empty
    targets: list[int]  # indices of the event's categories (other excluded) in keys
    member: np.ndarray  # (5, K) bool: the key is in that component (even with probability 0)

    @classmethod
    def from_dicts(cls, dists: Sequence[Mapping[str, float]], categories: Sequence[str]) -> BlendCase:
        # ``other`` is never a hit and the metrics drop it from ranked lists, so it is not a key.
        keys = sorted(set().union(*dists) - {OTHER})
        position = {k: i for i, k in enumerate(keys)}
        comps = np.zeros((len(dists), len(keys)))
        member = np.zeros((len(dists), len(keys)), dtype=bool)
        for row, dist in enumerate(dists):
            for cat, p in dist.items():
                if cat in position:
                    comps[row, position[cat]] = p
                    member[row, position[cat]] = True
        targets = [position[c] for c in categories if c in position]
        return cls(keys, comps, np.array([bool(d) for d in dists]), targets, member)

    def covered(self, weights: Sequence[float]) -> np.ndarray:
        """(K,) bool: the key is in the tracker's blended distribution (a component with weight > 0 has it)."""
        used = np.asarray(weights, dtype=np.float64) > 0
        return (self.member & (used & self.present)[:, None]).any(axis=0)

    def blend(self, weights: Sequence[float]) -> np.ndarray:
        """The blended scores of ``keys``: the same numbers as :func:`blend` (one rule, :func:`blend_coefficients`)."""
        out = np.zeros(len(self.keys))
        for i, coefficient in blend_coefficients(weights, [bool(p) for p in self.present]):
            out = out + coefficient * self.components[i]
        return out

    def rank(self, scores: np.ndarray, covered: np.ndarray | None = None) -> float:
        """Best 1-based rank of a target in the tracker's order (score desc, name asc); inf for a miss.

        With ``covered`` (:meth:`covered`) only those keys are ranked, as in the tracker's list: a
        target outside it is a miss.
        """
        if covered is not None:
            scores = np.where(covered, scores, -np.inf)
        best = float("inf")
        for t in self.targets:
            s = scores[t]
            if s == -np.inf:
                continue
            r = 1 + int(np.count_nonzero(scores > s)) + int(np.count_nonzero(scores[:t] == s))
            best = min(best, float(r))
        return best


def mix_grid(step: float = 0.1) -> list[tuple[float, ...]]:
    """Weights on the simplex with resolution ``step`` (only ratios matter: the blend renormalises).

    ``step`` 0.1 gives 1,001 candidates, 0.25 gives 70, 0.5 gives 15; the order is fixed, so a
    candidate's index means the same on every device and on the server.
    """
    if not 0 < step <= 1 or abs(round(1 / step) * step - 1) > 1e-9:
        raise ValueError(f"mix grid step is {step!r}; expected 1/n for a whole n >= 1 (0.1, 0.25, 0.5, ...)")
    n = round(1 / step)
    combos = itertools.product(range(n + 1), repeat=len(MIX_FIELDS))
    return [tuple(round(v * step, 6) for v in combo) for combo in combos if sum(combo) == n]


def grid_ranks(cases: Sequence[BlendCase], grid: Sequence[Sequence[float]]) -> np.ndarray:
    """(G, E) best rank of each event's targets under each candidate weighting; inf for a miss.

    Exactly :meth:`BlendCase.rank` of :meth:`BlendCase.blend` restricted to :meth:`BlendCase.covered`
    for every pair, vectorised over events.
    """
    if not cases:
        return np.zeros((len(grid), 0))
    width = max(max(len(c.keys) for c in cases), 1)
    comps = np.zeros((len(cases), len(MIX_FIELDS), width), dtype=np.float64)
    member = np.zeros((len(cases), len(MIX_FIELDS), width), dtype=bool)
    present = np.zeros((len(cases), len(MIX_FIELDS)), dtype=np.float64)
    mask = np.zeros((len(cases), width), dtype=bool)
    for e, case in enumerate(cases):
        comps[e, :, : len(case.keys)] = case.components
        member[e, :, : len(case.keys)] = case.member
        present[e] = case.present
        mask[e, case.targets] = True
    positions = np.arange(width)[None, :]
    out = np.empty((len(grid), len(cases)))
    for g, weights in enumerate(grid):
        w = np.asarray(weights, dtype=np.float64)[None, :] * present
        total = w.sum(axis=1, keepdims=True)
        scores = np.einsum("ec,eck->ek", w / np.maximum(total, 1e-300), comps)
        # Only keys of a weighted component are in the tracker's list (padding is in none).
        scores[~(member & (w > 0)[:, :, None]).any(axis=1)] = -np.inf
        target = np.where(mask, scores, -np.inf).max(axis=1)
        # Ties go to the earlier key (name order), exactly as the tracker ranks them.
        first = np.argmax(mask & (scores == target[:, None]), axis=1)
        ahead = (scores > target[:, None]) | ((scores == target[:, None]) & (positions < first[:, None]))
        out[g] = np.where(target > -np.inf, 1.0 + ahead.sum(axis=1), np.inf)
    return out


def best_candidate(hr1: Sequence[float], mrr: Sequence[float]) -> int:
    """Index of the candidate with the best mean of HR@1 and MRR (the first on a tie)."""
    objective = 0.5 * (np.asarray(hr1, dtype=np.float64) + np.asarray(mrr, dtype=np.float64))
    return int(np.argmax(objective))


def tune_mix(
    cases: Sequence[BlendCase], grid: Sequence[tuple[float, ...]] | None = None
) -> tuple[dict[str, float], float]:
    """The blend weights with the best mean of HR@1 and MRR on ``cases`` (validation events)."""
    grid = list(grid or mix_grid())
    if not cases:
        return dict(zip(MIX_FIELDS, grid[0], strict=True)), float("nan")
    ranks = grid_ranks(cases, grid)
    hr1, mrr = (ranks <= 1).mean(axis=1), (1.0 / ranks).mean(axis=1)
    best = best_candidate(hr1, mrr)
    return dict(zip(MIX_FIELDS, grid[best], strict=True)), float(0.5 * (hr1[best] + mrr[best]))
