"""Blocked topics: what a person never wants predicted, recommended or trained on, and forgetting by topic.

A person may block any topic (as Chrome's Topics API lets them). The blocked set is kept sealed in
the store as the state blob ``tracker/blocked`` (a JSON list of names, not derived from the events:
forgetting events keeps it). While a topic is blocked:

- :meth:`~vane.client.tracker.InterestTracker.interests` and
  :meth:`~vane.client.tracker.InterestTracker.predict` leave it out (the others keep their
  probabilities; they are not renormalised, so they still say how likely each is among everything);
- :meth:`~vane.client.tracker.InterestTracker.recommend` scores a candidate by its unblocked
  categories only, and drops a candidate whose categories are all blocked;
- on-device training (:meth:`~vane.client.tracker.InterestTracker.train_local`, so also the Flower
  ClientApp) skips every event whose categories are all blocked.

A topic written as a path (``/Sports``) also blocks the topics under it (``/Sports/Basketball``).
The events stay stored (the person may unblock); :meth:`TrackerBlockMethods.forget_topic` deletes
them for good, as :meth:`~vane.client.tracker.InterestTracker.forget` does.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from vane.client.answers import Prediction
from vane.client.predictor import Candidate, _candidate
from vane.client.profile import InterestProfile
from vane.client.retention import to_unix
from vane.shared.errors import ConfigError
from vane.shared.events import MAX_CATEGORY_LEN, Event

if TYPE_CHECKING:
    from vane.client.store import EventStore
    from vane.client.tracker_state import TrackerState

#: The state blob holding the blocked topics (a JSON list of names).
BLOCKED = "tracker/blocked"
#: How many answers to ask for when some are blocked: every one, then filter.
_ALL = 1 << 20

__all__ = ["BLOCKED", "TrackerBlockMethods", "check_topic", "is_blocked", "stored_blocks", "topic_matches",
           "trainable_events", "unblocked_candidates", "unblocked_interests", "unblocked_prediction", "widen"]


def check_topic(topic: object) -> str:
    """``topic`` stripped, or :class:`ConfigError` naming it unless it is a non-empty name of at most 128 characters."""
    if not isinstance(topic, str) or not topic.strip() or len(topic.strip()) > MAX_CATEGORY_LEN:
        shown = repr(topic) if len(repr(topic)) <= 80 else repr(topic)[:77] + "..."
        raise ConfigError(f"topic is {shown}; expected a non-empty topic name of at most {MAX_CATEGORY_LEN} characters")
    return topic.strip()


def topic_matches(category: str, topic: str) -> bool:
    """Whether ``category`` is ``topic`` or, for a path topic such as ``/Sports``, lies under it."""
    return category == topic or (topic.startswith("/") and category.startswith(topic.rstrip("/") + "/"))


def is_blocked(category: str, blocked: Iterable[str]) -> bool:
    """Whether ``category`` is one of ``blocked`` or lies under one of them."""
    return any(topic_matches(category, topic) for topic in blocked)


def stored_blocks(store: EventStore) -> frozenset[str]:
    """The blocked topics kept in ``store`` (empty when none ever were)."""
    raw = store.get_state(BLOCKED)
    return frozenset(json.loads(raw)) if raw else frozenset()


def widen(k: int, blocked: frozenset[str]) -> int:
    """How many answers to compute so that ``k`` remain once the blocked ones are left out."""
    return k if not blocked else _ALL


def unblocked_interests(profile: InterestProfile, blocked: frozenset[str], k: int) -> InterestProfile:
    """``profile`` without its blocked topics, its first ``k``."""
    if not blocked:
        return profile
    return replace(profile, top=tuple(c for c in profile.top if not is_blocked(c.category, blocked))[:k])


def unblocked_prediction(prediction: Prediction, blocked: frozenset[str], k: int) -> Prediction:
    """``prediction`` without its blocked topics (probabilities unchanged), the first ``k`` of each list."""
    if not blocked:
        return prediction
    return Prediction(tuple(p for p in prediction.next_interest if not is_blocked(p[0], blocked))[:k],
                      tuple(p for p in prediction.intensity if not is_blocked(p[0], blocked))[:k],
                      prediction.source, {c: r for c, r in prediction.reasons.items() if not is_blocked(c, blocked)})


def unblocked_candidates(candidates: Iterable[Candidate], blocked: frozenset[str]) -> Iterator[Candidate]:
    """The candidates with their blocked categories removed; one whose categories are all blocked is dropped.

    A malformed candidate raises the same error, with its index, as :meth:`InterestTracker.recommend`.
    """
    for i, cand in enumerate(candidates):
        if not blocked:
            yield cand
            continue
        item_id, cats = _candidate(cand, i)
        kept = [c for c in cats if not is_blocked(c, blocked)]
        if kept:
            yield {"item_id": item_id, "categories": kept}


def trainable_events(events: Sequence[Event], blocked: frozenset[str]) -> list[Event]:
    """``events`` without those whose categories are all blocked (on-device training never sees them)."""
    if not blocked:
        return list(events)
    return [ev for ev in events if not all(is_blocked(c, blocked) for c in ev.categories)]


class TrackerBlockMethods:
    """Blocking, unblocking and forgetting topics (mixed into ``InterestTracker``)."""

    _lock: threading.RLock
    _state: TrackerState
    _store: EventStore

    def blocked(self) -> frozenset[str]:
        """The blocked topics (read from the store once, then kept: a closed tracker still answers)."""
        with self._lock:
            cached: frozenset[str] | None = getattr(self, "_blocked_cache", None)
            if cached is None:
                cached = self._blocked_cache = stored_blocks(self._store)
            return cached

    def _save_blocks(self, topics: frozenset[str]) -> None:
        self._store.put_state(BLOCKED, json.dumps(sorted(topics), ensure_ascii=False).encode("utf-8"))
        self._blocked_cache = frozenset(topics)

    def block(self, topic: str) -> bool:
        """Block ``topic`` (see :mod:`vane.client.blocks`); False when it already was. Its events stay stored."""
        name = check_topic(topic)
        with self._lock:
            current = self.blocked()
            if name in current:
                return False
            self._save_blocks(current | {name})
            return True

    def unblock(self, topic: str) -> bool:
        """Unblock ``topic``; False when it was not blocked."""
        name = check_topic(topic)
        with self._lock:
            current = self.blocked()
            if name not in current:
                return False
            self._save_blocks(current - {name})
            return True

    def _forget_seqs(self, choose: Any) -> int:
        with self._lock:
            # EventStore._delete is the one secure delete that forget and retention use (zeroed rows,
            # derived state dropped, WAL truncated); TrackerState.delete rebuilds the answers at once.
            return self._state.delete(lambda: self._store._delete([seq for seq, ev in self._store.events()
                                                                    if choose(ev)]))

    def forget_topic(self, topic: str) -> int:
        """Delete for good every event with a category that is ``topic`` (or lies under it); how many went.

        An event with several categories goes as a whole. The topic stays blocked (or not) as it was.
        """
        name = check_topic(topic)
        return self._forget_seqs(lambda ev: any(topic_matches(c, name) for c in ev.categories))

    def forget_range(self, after: datetime | float | None = None, before: datetime | float | None = None) -> int:
        """Delete for good every event with ``after <= timestamp < before`` (aware datetimes or Unix seconds;
        either bound may be omitted, not both); how many went."""
        if after is None and before is None:
            raise ConfigError("forget_range needs after=, before= or both; refusing to guess")
        low = None if after is None else to_unix(after, "after")
        high = None if before is None else to_unix(before, "before")
        if low is not None and high is not None and low >= high:
            raise ConfigError(f"after ({after!r}) must be earlier than before ({before!r})")
        return self._forget_seqs(lambda ev: (low is None or ev.unix_time >= low)
                                 and (high is None or ev.unix_time < high))
