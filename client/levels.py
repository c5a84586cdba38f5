"""The tracker's answers at a level of the Topics tree: ``"full"`` (the categories as stored) or ``"top"``.

With the Topics taxonomy (``builtin:topics``) a category is a full path such as ``/Sports/Basketball``.
At the ``top`` level every path counts under its top-level topic (``/Sports``, one of the 22), and a
parent's interest includes its children's:

- :meth:`~vane.client.tracker.InterestTracker.interests`: a top-level topic's ``score``, ``profile_share``
  and ``model_probability`` are the sums of its topics' (the parent's own mass included); ``because`` is
  the newest events behind any of them;
- :meth:`~vane.client.tracker.InterestTracker.predict`: next-interest probabilities are summed (the total
  is unchanged); the intensity of a top-level topic, the probability that *any* of its topics appears in
  the next window, is ``1 - prod(1 - p)`` over its topics (the model's heads taken as independent);
- :meth:`~vane.client.tracker.InterestTracker.shifts`: the shift detector is run again over the stored
  events with each event's categories moved to their top level, so a change inside one top-level topic
  (``/Sports/Basketball`` to ``/Sports/Soccer``) is not a top-level shift, and ``from``/``to`` name top-level
  topics. The result is cached until the events change.

A category that is not a path (``news`` in the coarse browsing vocabulary, ``other``) is its own top
level, so for a taxonomy that is not a tree (``builtin:browsing``, ``builtin:synthetic``, an app's own)
``"top"`` gives the same answers as ``"full"``. The top level of a path is its first part, which for a
Topics path is :meth:`vane.shared.topics.TopicTree.top_level`.

Blocked topics are left out *before* the roll-up: a blocked ``/Sports/Basketball`` adds nothing to
``/Sports``, and a blocked ``/Sports`` hides ``/Sports`` (and all under it) at both levels.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from vane.client.answers import Prediction, ranked
from vane.client.blocks import unblocked_interests, unblocked_prediction, widen
from vane.client.profile import CategoryInterest, Contribution, InterestProfile
from vane.client.shifts import Shift, ShiftDetector
from vane.shared.errors import ConfigError

if TYPE_CHECKING:
    from vane.client.tracker_state import TrackerState

__all__ = ["LEVELS", "answer_width", "check_level", "interests_at", "prediction_at", "shifts_at", "top_level"]

#: The levels an answer can be given at.
LEVELS = ("full", "top")
#: How many answers to compute before a roll-up: every one.
_ALL = 1 << 20
#: Newest events kept behind a rolled-up interest (as the profile keeps per category).
_KEEP_REASONS = 3

_shift_cache: weakref.WeakKeyDictionary[Any, tuple[tuple[Any, ...], list[Shift]]] = weakref.WeakKeyDictionary()


def check_level(level: object) -> str:
    """``level`` if it is ``"full"`` or ``"top"``, else :class:`ConfigError` naming it."""
    if not isinstance(level, str) or level not in LEVELS:
        raise ConfigError(f"level is {level!r}; expected 'full' (the topics as stored) or 'top' "
                          "(the top-level topics, each with the topics under it)")
    return level


def top_level(category: str) -> str:
    """The top-level topic of ``category`` (``/Sports`` for ``/Sports/Basketball``); a flat name is its own."""
    if not category.startswith("/"):
        return category
    head = category.strip("/").split("/", 1)[0]
    return "/" + head if head else category


def at_level(category: str, level: str) -> str:
    """``category`` at ``level`` (itself for ``"full"``)."""
    return category if level == "full" else top_level(category)


def answer_width(k: int, blocked: frozenset[str], level: str) -> int:
    """How many answers to compute so that ``k`` remain at ``level`` once blocked topics are left out."""
    return widen(k, blocked) if level == "full" else _ALL


def _merged_reasons(groups: Iterable[tuple[Contribution, ...]]) -> tuple[Contribution, ...]:
    newest: dict[str, Contribution] = {}
    for reason in sorted((r for group in groups for r in group), key=lambda r: (-r.timestamp, -r.seq)):
        newest.setdefault(reason.item_id, reason)
    return tuple(newest.values())[:_KEEP_REASONS]


def interests_at(found: InterestProfile, blocked: frozenset[str], k: int, level: str) -> InterestProfile:
    """``found`` (computed for :func:`answer_width` answers) without blocked topics, at ``level``, its first ``k``."""
    if level == "full":
        return unblocked_interests(found, blocked, k)
    kept = unblocked_interests(found, blocked, _ALL).top
    groups: dict[str, list[CategoryInterest]] = {}
    for interest in kept:
        groups.setdefault(top_level(interest.category), []).append(interest)
    rolled = []
    for name, members in groups.items():
        model = [m.model_probability for m in members if m.model_probability is not None]
        rolled.append(CategoryInterest(name, sum(m.score for m in members), sum(m.profile_share for m in members),
                                       sum(model) if model else None, _merged_reasons(m.because for m in members)))
    rolled.sort(key=lambda c: (-c.score, c.category))
    return replace(found, top=tuple(rolled[:k]))


def _summed(pairs: Iterable[tuple[str, float]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, p in pairs:
        out[top_level(name)] = out.get(top_level(name), 0.0) + p
    return out


def _any_of(pairs: Iterable[tuple[str, float]]) -> dict[str, float]:
    none: dict[str, float] = {}
    for name, p in pairs:
        none[top_level(name)] = none.get(top_level(name), 1.0) * (1.0 - min(max(p, 0.0), 1.0))
    return {name: 1.0 - q for name, q in none.items()}


def prediction_at(found: Prediction, blocked: frozenset[str], k: int, level: str) -> Prediction:
    """``found`` (computed for :func:`answer_width` answers) without blocked topics, at ``level``, the first ``k``."""
    if level == "full":
        return unblocked_prediction(found, blocked, k)
    kept = unblocked_prediction(found, blocked, _ALL)
    reasons: dict[str, list[str]] = {}
    for name, said in kept.reasons.items():
        merged = reasons.setdefault(top_level(name), [])
        merged.extend(r for r in said if r not in merged)
    top = tuple(ranked(_summed(kept.next_interest), k))
    shown = {name for name, _ in top}
    return Prediction(top, tuple(ranked(_any_of(kept.intensity), k)), kept.source,
                      {name: tuple(r) for name, r in reasons.items() if name in shown})


def shifts_at(state: TrackerState, detector_config: Mapping[str, float], level: str,
              full: Callable[[], list[Shift]]) -> list[Shift]:
    """The shifts at ``level``: ``full()`` for ``"full"``; for ``"top"`` the detector (with ``detector_config``)
    run over ``state``'s stored events in time order, each event's categories at the top level."""
    if level == "full":
        return full()
    state.sync()
    personal = state.personal
    key = (state.generation, personal.profile.count, personal.last_seq, tuple(sorted(detector_config.items())))
    cached = _shift_cache.get(state)
    if cached is not None and cached[0] == key:
        return list(cached[1])
    detector = ShiftDetector(**dict(detector_config))
    detector.update_many([(tuple(dict.fromkeys(top_level(c) for c in ev.categories)), seq, ev.unix_time)
                          for seq, ev in state.time_ordered()])
    _shift_cache[state] = (key, list(detector.shifts))
    return list(detector.shifts)
