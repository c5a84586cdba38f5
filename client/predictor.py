"""The next-interest predictor: the model's distribution blended with the person's own state.

"What comes next" is a weighted blend (:class:`Mix`) of five distributions, in
:data:`vane.shared.blend.MIX_FIELDS` order:

1. ``model``: the LSTM's next-interest softmax, with the mass of ``other`` handed to this person's
   own out-of-taxonomy categories (so rare interests can still be predicted);
2. ``recent``: the shift detector's short memory;
3. ``profile``: the time-decayed profile shares;
4. ``transitions``: P(next category | last event's categories);
5. ``last``: the last event's own categories (a repeat-last prior).

:class:`NextInterestPredictor` is the one implementation, called by
:class:`~vane.client.tracker.InterestTracker` (for ``predict``, ``interests`` and ``recommend``)
and by the evaluation (:meth:`NextInterestPredictor.blend_case` gives the compact form that
:func:`vane.shared.blend.grid_ranks` scores under many mixes at once). The blend rule itself is
:func:`vane.shared.blend.blend`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np
from vane.client.answers import Prediction, Recommendation, ranked
from vane.client.personal import PersonalState
from vane.client.profile import CategoryInterest, InterestProfile
from vane.client.ranker import RankedCandidates
from vane.shared.blend import MIX_FIELDS, BlendCase, blend
from vane.shared.errors import ConfigError, EventValidationError
from vane.shared.events import OTHER, Event
from vane.shared.taxonomy import Taxonomy


@dataclass(frozen=True)
class Mix:
    """How the next-interest distribution blends its sources (weights are renormalised).

    The defaults are a prior; a federation picks better weights for its population by federated
    evaluation (each device scores candidate mixes on its own held-out events) and sends them to
    the devices, which keep them (:meth:`InterestTracker.recommend_mix`).
    """

    model: float = 0.55
    recent: float = 0.25
    profile: float = 0.1
    transitions: float = 0.1
    #: The last event's own categories (a repeat-last prior); 0 leaves them to the other sources.
    last: float = 0.0

    def __post_init__(self) -> None:
        values = self.weights()
        if not all(isinstance(v, (int, float)) and math.isfinite(v) and v >= 0 for v in values) or sum(values) <= 0:
            raise ConfigError(f"mix weights are {dict(zip(MIX_FIELDS, values, strict=True))}; expected finite "
                              "numbers >= 0 with a positive sum")

    def weights(self) -> tuple[float, ...]:
        """The weights in :data:`vane.shared.blend.MIX_FIELDS` order."""
        return tuple(getattr(self, name) for name in MIX_FIELDS)

    @classmethod
    def of(cls, weights: Sequence[float] | Mapping[str, float]) -> Mix:
        """From five weights in ``MIX_FIELDS`` order, or a mapping of field names (missing ones are 0)."""
        if isinstance(weights, Mapping):
            unknown = set(weights) - set(MIX_FIELDS)
            if unknown:
                raise ConfigError(f"mix has unknown fields {sorted(unknown)}; expected some of {list(MIX_FIELDS)}")
            return cls(**{name: float(weights.get(name, 0.0)) for name in MIX_FIELDS})
        values = list(weights)
        if len(values) != len(MIX_FIELDS):
            raise ConfigError(f"mix is {values!r}; expected {len(MIX_FIELDS)} weights ({', '.join(MIX_FIELDS)})")
        return cls(*(float(v) for v in values))


#: An app's candidate item: an Event, or a mapping with ``item_id`` and optionally ``categories``.
Candidate: TypeAlias = Event | Mapping[str, Any]


def _candidate(cand: Candidate, index: int) -> tuple[str, tuple[str, ...]]:
    if isinstance(cand, Event):
        return cand.item_id, cand.categories
    if not isinstance(cand, Mapping) or not isinstance(cand.get("item_id"), str) or not cand["item_id"]:
        raise EventValidationError(f"candidates[{index}].item_id", cand, "a mapping with a non-empty item_id")
    cats = cand.get("categories") or (OTHER,)
    if isinstance(cats, str):
        cats = (cats,)
    return cand["item_id"], tuple(cats)


@dataclass(frozen=True)
class NextInterestPredictor:
    """The tracker's answers from a :class:`PersonalState` and the model's latest outputs.

    Parameters
    ----------
    taxonomy : Taxonomy or None
        The model's category vocabulary (None without a model).
    mix : Mix
        The blend weights.

    Every method takes ``interest``, the model's next-interest softmax over the taxonomy at the
    current position (``(C,)``), or None without a model.
    """

    taxonomy: Taxonomy | None
    mix: Mix = Mix()

    def model_distribution(self, personal: PersonalState, interest: np.ndarray | None) -> dict[str, float]:
        """The softmax over taxonomy names, with ``other``'s mass handed to this person's own
        out-of-taxonomy categories; empty without a model."""
        if interest is None or self.taxonomy is None:
            return {}
        names = self.taxonomy.names
        dist = {names[i]: float(p) for i, p in enumerate(interest) if i != 0}
        other_mass = float(interest[0])
        recent, shares, _ = personal.distributions()
        own = {c: 0.5 * recent.get(c, 0.0) + 0.5 * s for c, s in shares.items() if c not in self.taxonomy}
        total = sum(own.values())
        if total > 0:
            for cat, w in own.items():
                dist[cat] = dist.get(cat, 0.0) + other_mass * w / total
        return dist

    def components(self, personal: PersonalState, interest: np.ndarray | None) -> tuple[dict[str, float], ...]:
        """The five distributions the blend weighs, in ``MIX_FIELDS`` order (empty ones take no part)."""
        recent, shares, transitions = personal.distributions()
        return (self.model_distribution(personal, interest), recent, shares, transitions,
                personal.last_categories())

    def next_interest(self, personal: PersonalState, interest: np.ndarray | None) -> tuple[dict[str, float], str]:
        """The blended next-interest distribution and its source (``"model+profile"`` or ``"profile"``)."""
        parts = self.components(personal, interest)
        return blend(parts, self.mix.weights()), ("model+profile" if parts[0] else "profile")

    def blend_case(self, personal: PersonalState, interest: np.ndarray | None,
                   categories: Sequence[str]) -> BlendCase:
        """The compact form of :meth:`components`, with the next event's ``categories`` as targets.

        ``BlendCase.blend(mix.weights())`` gives the same numbers as :meth:`next_interest` (without
        ``other``), for any mix.
        """
        return BlendCase.from_dicts(self.components(personal, interest), categories)

    def predict(self, personal: PersonalState, interest: np.ndarray | None, intensity: np.ndarray | None,
                k: int = 5, ranker: RankedCandidates | None = None) -> Prediction:
        """The top ``k`` of the next-interest blend and of the model's next-window ``intensity``.

        With the candidate ranker's answer (``ranker``), both come from it (``source="ranker"``), with
        the reasons of each predicted category.
        """
        if ranker is not None and ranker.names:
            return Prediction(tuple(ranked(ranker.distribution, k)), tuple(ranked(ranker.intensities, k)), "ranker",
                              {c: r for c, r in ranker.reasons.items()})
        dist, source = self.next_interest(personal, interest)
        top_intensity: list[tuple[str, float]] = []
        if intensity is not None and self.taxonomy is not None:
            top_intensity = ranked({self.taxonomy.name(i): float(p) for i, p in enumerate(intensity)}, k)
        return Prediction(tuple(ranked(dist, k)), tuple(top_intensity), source)

    def interests(self, personal: PersonalState, interest: np.ndarray | None, k: int,
                  half_life_s: float, ranker: RankedCandidates | None = None) -> InterestProfile:
        """What the person is into now: the top ``k`` categories with the events behind them.

        Categories are ranked by the shift detector's ``current`` memory (a slow event-decayed mix that
        jumps to the new mix when a shift is reported), blended half and half with the model's
        next-interest distribution when there is a model. ``profile_share`` is the time-decayed share
        (half-life ``half_life_s``) and ``because`` the newest events behind it.
        """
        shares = personal.profile.shares()
        current = personal.detector.current
        model = ranker.distribution if ranker is not None and ranker.names else self.model_distribution(personal,
                                                                                                      interest)
        scores = blend([current, model], [0.5, 0.5]) if model else dict(current)
        top = []
        for cat, score in ranked({c: s for c, s in scores.items() if c != OTHER or c in current}, k):
            recent = sorted(personal.profile.reasons.get(cat, []), key=lambda r: -r.timestamp)
            reasons = tuple({r.item_id: r for r in reversed(recent)}.values())[::-1]
            top.append(CategoryInterest(cat, score, shares.get(cat, 0.0), model.get(cat) if model else None,
                                        reasons))
        return InterestProfile(tuple(top), "model+profile" if model else "profile", personal.profile.count,
                               half_life_s)

    def recommend(self, personal: PersonalState, interest: np.ndarray | None, candidates: Iterable[Candidate],
                  k: int = 10, ranker: RankedCandidates | None = None) -> list[Recommendation]:
        """The ``k`` candidates whose categories are most likely next (the ranker's answer if given), best first."""
        dist = (ranker.distribution if ranker is not None and ranker.names
                else self.next_interest(personal, interest)[0])
        scored = []
        for i, cand in enumerate(candidates):
            item_id, cats = _candidate(cand, i)
            best = max(cats, key=lambda c: dist.get(c, 0.0))
            score = max(dist.get(c, 0.0) for c in cats)
            reason = (f"you are into {best} ({dist.get(best, 0.0):.0%} of predicted interest)"
                      if score > 0 else "no signal: none of its categories has been seen")
            scored.append(Recommendation(item_id, score, reason))
        scored.sort(key=lambda r: -r.score)
        return scored[:k]
