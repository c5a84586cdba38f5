"""Next-category candidates of one person and their features, kept up to date event by event.

:class:`CandidateState` holds what the person's own store says, updated in O(categories of the event)
per :meth:`~CandidateState.observe`; nothing is ever rescanned. Before a prediction,
:meth:`~CandidateState.query` lists the candidates and computes every feature that does not depend on
the time of asking in O(candidates); :meth:`CandidateQuery.features` then fills in the time-dependent
ones at a **query time** (the tracker knows when it is asked; a strict replay passes the time of the last
event instead).

Candidates, in this order and without repeats (``other`` is never one):

1. the person's :data:`RECENT_LIMIT` most recently seen distinct categories, newest first;
2. the population's :data:`POPULAR_LIMIT` most popular categories;
3. the population's :data:`TRANSITION_LIMIT` likeliest next categories after the last event's ones.

A ranking scores the candidates and puts every other category after them in popularity order.
The feature layout is :data:`FIELDS` (:data:`TIME_FIELDS` are the query-time ones); population
knowledge comes from a :class:`~vane.shared.population.PopulationStats`. Only numpy and the standard library.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np
from vane.shared.events import OTHER, Event
from vane.shared.population import PopulationStats

RECENT_LIMIT = 60
POPULAR_LIMIT = 20
TRANSITION_LIMIT = 20
HALF_LIVES_EVENTS: tuple[float, ...] = (2.0, 5.0, 20.0, 80.0)
HALF_LIVES_S: tuple[float, ...] = (3600.0, 86400.0)
#: Event kinds counted per category, each a group of :data:`~vane.shared.events.KINDS`.
KIND_GROUPS: dict[str, tuple[str, ...]] = {
    "view": ("view", "click", "search", "typed", "link", "reload"),
    "cart": ("cart",), "favorite": ("favorite", "bookmark"), "purchase": ("purchase",), "rate": ("rate",),
    "other": ("other",),
}
_KIND_COLUMN = {kind: i for i, group in enumerate(KIND_GROUPS.values()) for kind in group}
#: Stand-in for "events / seconds since last seen" of a category the person has never seen.
UNSEEN_EVENTS = 1e6
UNSEEN_SECONDS = 1e9

#: The feature vector of one candidate, in column order.
FIELDS: tuple[str, ...] = (
    # recency
    "recency_rank", "seen", "in_last_event", "log_events_since_seen", "log_events_since_first_seen",
    # counts and shares
    "log_count", "share",
    *(f"decayed_{h:g}" for h in HALF_LIVES_EVENTS), *(f"decayed_share_{h:g}" for h in HALF_LIVES_EVENTS),
    "time_decayed_1h", "time_decayed_1d", "log_seconds_since_seen",
    *(f"log_kind_{g}" for g in KIND_GROUPS),
    # the person's own transitions
    "own_transition_1", "log_own_transition_1_count", "own_transition_2", "own_stickiness", "run_length",
    # the population
    "log_popularity", "log_popularity_rank", "pop_transition", "log_pop_transition", "log_pop_transition_rank",
    "pop_transition_2", "pop_stickiness", "log_pop_lift",
    # where the candidate came from
    "from_history", "from_popular", "from_transitions",
    # the person (same for every candidate)
    "log_person_events", "log_person_categories", "person_repeat_rate", "person_new_rate", "last_run_length",
    "log_seconds_since_last_event", "hour", "hour_sin", "hour_cos",
)
#: The columns that depend on the query time.
TIME_FIELDS: tuple[str, ...] = ("time_decayed_1h", "time_decayed_1d", "log_seconds_since_seen",
                                "log_seconds_since_last_event", "hour", "hour_sin", "hour_cos")
COLUMN: dict[str, int] = {name: i for i, name in enumerate(FIELDS)}


class CandidateState:
    """One person's history in the form the candidate features need, updated per event."""

    def __init__(self) -> None:
        self.events = 0
        self.index: dict[str, int] = {}  # category -> row (row 0: zeros, for categories never seen)
        self.recent: OrderedDict[str, int] = OrderedDict()  # non-other categories, oldest first -> last event
        size = 16
        self.count = np.zeros(size)
        self.first = np.zeros(size)
        self.last = np.zeros(size)  # event number of the newest occurrence
        self.last_time = np.zeros(size)
        self.run = np.zeros(size)  # consecutive events with the category, ending at its newest occurrence
        self.decayed = np.zeros((len(HALF_LIVES_EVENTS), size))  # as of the newest occurrence
        self.time_decayed = np.zeros((len(HALF_LIVES_S), size))  # as of the newest occurrence
        self.kinds = np.zeros((len(KIND_GROUPS), size))
        self.out_total = np.zeros(size)  # transitions out of the category
        self.self_total = np.zeros(size)  # ... of them back to itself
        self.own1: dict[int, dict[int, float]] = {}
        self.own2: dict[int, dict[int, float]] = {}
        self.out2_total = np.zeros(size)
        self.decayed_total = np.zeros(len(HALF_LIVES_EVENTS))
        self.last_names: tuple[str, ...] = ()
        self.previous_names: tuple[str, ...] = ()
        self._last_rows: tuple[int, ...] = ()
        self._previous_rows: tuple[int, ...] = ()
        self.last_event_time = 0.0
        self.repeats = 0
        self.news = 0

    def _row(self, name: str) -> int:
        row = self.index.get(name)
        if row is None:
            row = self.index[name] = len(self.index) + 1
            if row >= self.count.shape[0]:
                self._grow()
        return row

    def _grow(self) -> None:
        size = self.count.shape[0]
        for attr, value in list(vars(self).items()):
            if isinstance(value, np.ndarray) and value.shape[-1] == size and attr != "decayed_total":
                setattr(self, attr, np.pad(value, [(0, 0)] * (value.ndim - 1) + [(0, size)]))

    def observe(self, event: Event) -> None:
        """Add the next event (in time order); O(categories of the event)."""
        t, now = self.events, event.unix_time
        names = event.categories
        rows = tuple(self._row(n) for n in names)
        self.decayed_total = self.decayed_total * np.exp2(-1.0 / np.asarray(HALF_LIVES_EVENTS)) + len(rows)
        if any(self.count[r] == 0 for r in rows):
            self.news += 1
        if self._last_rows and set(rows) & set(self._last_rows):
            self.repeats += 1
        self._add_transitions(self.own1, self.out_total, self._last_rows, rows, self_total=self.self_total)
        self._add_transitions(self.own2, self.out2_total, self._previous_rows, rows)
        kind = _KIND_COLUMN.get(event.kind, len(KIND_GROUPS) - 1)
        for name, r in zip(names, rows, strict=True):
            if self.count[r] > 0:
                self.decayed[:, r] *= np.exp2(-(t - self.last[r]) / np.asarray(HALF_LIVES_EVENTS))
                self.time_decayed[:, r] *= np.exp2(-max(0.0, now - self.last_time[r]) / np.asarray(HALF_LIVES_S))
            else:
                self.first[r] = t
            self.decayed[:, r] += 1.0
            self.time_decayed[:, r] += 1.0
            self.run[r] = self.run[r] + 1 if r in self._last_rows else 1
            self.count[r] += 1
            self.last[r], self.last_time[r] = t, now
            self.kinds[kind, r] += 1
            if name != OTHER:
                self.recent[name] = t
                self.recent.move_to_end(name)
        self._previous_rows, self._last_rows = self._last_rows, rows
        self.previous_names, self.last_names = self.last_names, names
        self.last_event_time = now
        self.events += 1

    @staticmethod
    def _add_transitions(table: dict[int, dict[int, float]], totals: np.ndarray, sources: tuple[int, ...],
                         targets: tuple[int, ...], self_total: np.ndarray | None = None) -> None:
        if not sources:
            return
        weight = 1.0 / (len(sources) * len(targets))
        for a in sources:
            row = table.setdefault(a, {})
            for b in targets:
                row[b] = row.get(b, 0.0) + weight
                if self_total is not None and a == b:
                    self_total[a] += weight
            totals[a] += weight * len(targets)

    def candidates(self, stats: PopulationStats) -> tuple[list[str], np.ndarray, dict[str, int]]:
        """Candidate names, their sources (N, 3: history, popular, transitions) and recency ranks."""
        names: list[str] = []
        recency: dict[str, int] = {}
        position, previous_t, rank = 0, -1, 0
        for name in reversed(self.recent):
            if position >= RECENT_LIMIT:
                break
            t = self.recent[name]
            if t != previous_t:
                rank, previous_t = position, t
            recency[name] = rank
            names.append(name)
            position += 1
        popular = stats.top_popular(POPULAR_LIMIT)
        following = stats.top_transitions([n for n in self.last_names], TRANSITION_LIMIT)
        pop_set, follow_set = set(popular), set(following)
        seen = set(names)
        for name in (*popular, *following):
            if name not in seen:
                seen.add(name)
                names.append(name)
        sources = np.array([[n in recency, n in pop_set, n in follow_set] for n in names], dtype=np.float64)
        return names, sources.reshape(len(names), 3), recency

    def query(self, stats: PopulationStats) -> CandidateQuery:
        """The candidates before the next event and their time-independent features; O(candidates)."""
        names, sources, recency = self.candidates(stats)
        n = len(names)
        x = np.zeros((n, len(FIELDS)))
        rows = np.fromiter((self.index.get(c, 0) for c in names), dtype=np.int64, count=n)
        seen = self.count[rows] > 0
        total = max(self.events, 1)
        since = np.where(seen, self.events - 1 - self.last[rows], UNSEEN_EVENTS)
        in_last = seen & (since == 0)
        x[:, COLUMN["recency_rank"]] = [recency.get(c, RECENT_LIMIT) for c in names]
        x[:, COLUMN["seen"]] = seen
        x[:, COLUMN["in_last_event"]] = in_last
        x[:, COLUMN["log_events_since_seen"]] = np.log1p(since)
        x[:, COLUMN["log_events_since_first_seen"]] = np.log1p(np.where(seen, self.events - 1 - self.first[rows], 0.0))
        x[:, COLUMN["log_count"]] = np.log1p(self.count[rows])
        x[:, COLUMN["share"]] = self.count[rows] / total
        halves = np.asarray(HALF_LIVES_EVENTS)[:, None]
        decayed = np.where(seen, self.decayed[:, rows] * np.exp2(-np.where(seen, since, 0.0) / halves), 0.0)
        start = COLUMN[f"decayed_{HALF_LIVES_EVENTS[0]:g}"]
        x[:, start:start + len(HALF_LIVES_EVENTS)] = decayed.T
        shares = decayed / np.maximum(self.decayed_total, 1e-300)[:, None]
        start = COLUMN[f"decayed_share_{HALF_LIVES_EVENTS[0]:g}"]
        x[:, start:start + len(HALF_LIVES_EVENTS)] = shares.T
        start = COLUMN[f"log_kind_{next(iter(KIND_GROUPS))}"]
        x[:, start:start + len(KIND_GROUPS)] = np.log1p(self.kinds[:, rows]).T
        self._own_features(x, rows, seen, in_last)
        self._population_features(x, names, stats)
        x[:, COLUMN["from_history"]:COLUMN["from_transitions"] + 1] = sources
        x[:, COLUMN["log_person_events"]] = math.log1p(self.events)
        x[:, COLUMN["log_person_categories"]] = math.log1p(len(self.index))
        x[:, COLUMN["person_repeat_rate"]] = self.repeats / (self.events - 1) if self.events > 1 else 0.0
        x[:, COLUMN["person_new_rate"]] = self.news / total if self.events else 0.0
        x[:, COLUMN["last_run_length"]] = max((self.run[r] for r in self._last_rows), default=0.0)
        return CandidateQuery(names, x, rows, seen, self)

    def _own_features(self, x: np.ndarray, rows: np.ndarray, seen: np.ndarray, in_last: np.ndarray) -> None:
        for column, table, totals, sources in (
            ("own_transition_1", self.own1, self.out_total, self._last_rows),
            ("own_transition_2", self.own2, self.out2_total, self._previous_rows),
        ):
            denominator = sum(totals[a] for a in sources)
            counts = np.zeros(rows.shape[0])
            for a in sources:
                table_row = table.get(a)
                if table_row:
                    counts += np.fromiter((table_row.get(int(r), 0.0) if r else 0.0 for r in rows), dtype=np.float64,
                                          count=rows.shape[0])
            x[:, COLUMN[column]] = counts / denominator if denominator > 0 else 0.0
            if column == "own_transition_1":
                x[:, COLUMN["log_own_transition_1_count"]] = np.log1p(counts)
        out = self.out_total[rows]
        x[:, COLUMN["own_stickiness"]] = np.where(out > 0, self.self_total[rows] / np.maximum(out, 1e-300), 0.0)
        x[:, COLUMN["run_length"]] = np.where(in_last, self.run[rows], 0.0)

    def _population_features(self, x: np.ndarray, names: Sequence[str], stats: PopulationStats) -> None:
        size = len(stats)
        last, previous = self.last_names, self.previous_names
        share = np.array([stats.share(c) for c in names])
        trans = stats.transition_vector(last, names)
        x[:, COLUMN["log_popularity"]] = np.log(share + 1e-7)
        x[:, COLUMN["log_popularity_rank"]] = np.log1p([stats.rank.get(c, size) for c in names])
        x[:, COLUMN["pop_transition"]] = trans
        x[:, COLUMN["log_pop_transition"]] = np.log(trans + 1e-6)
        x[:, COLUMN["log_pop_transition_rank"]] = np.log1p([stats.transition_rank(last, c) for c in names])
        x[:, COLUMN["pop_transition_2"]] = stats.transition_vector(previous, names)
        x[:, COLUMN["pop_stickiness"]] = [stats.stickiness(c) for c in names]
        x[:, COLUMN["log_pop_lift"]] = np.log((trans + 1e-6) / (share + 1e-6))


class CandidateQuery:
    """The candidates before one event: names, time-independent features, and the time-dependent ones on demand.

    Attributes
    ----------
    names : list of str
        The candidates, in candidate order.
    base : ndarray, shape (N, len(FIELDS))
        Every feature but :data:`TIME_FIELDS` (zeros there).
    seen : ndarray of bool
        Whether the person has seen each candidate.
    """

    def __init__(self, names: list[str], base: np.ndarray, rows: np.ndarray, seen: np.ndarray,
                 state: CandidateState) -> None:
        self.names = names
        self.base = base
        self.seen = seen
        self._time_decayed = state.time_decayed[:, rows]
        self._last_time = state.last_time[rows]
        self._last_event_time = state.last_event_time
        self._has_events = state.events > 0

    def __len__(self) -> int:
        return len(self.names)

    def features(self, query_time: float) -> np.ndarray:
        """The full (N, len(FIELDS)) float32 matrix with the time features evaluated at ``query_time`` (Unix s)."""
        x = self.base.copy()
        elapsed = np.where(self.seen, np.maximum(0.0, query_time - self._last_time), UNSEEN_SECONDS)
        decay = np.exp2(-elapsed[None, :] / np.asarray(HALF_LIVES_S)[:, None])
        decayed = np.where(self.seen, self._time_decayed * decay, 0.0)
        x[:, COLUMN["time_decayed_1h"]] = decayed[0]
        x[:, COLUMN["time_decayed_1d"]] = decayed[1]
        x[:, COLUMN["log_seconds_since_seen"]] = np.log1p(elapsed)
        gap = max(0.0, query_time - self._last_event_time) if self._has_events else UNSEEN_SECONDS
        x[:, COLUMN["log_seconds_since_last_event"]] = math.log1p(gap)
        hour = (query_time % 86400.0) / 3600.0
        x[:, COLUMN["hour"]] = hour
        x[:, COLUMN["hour_sin"]] = math.sin(2 * math.pi * hour / 24.0)
        x[:, COLUMN["hour_cos"]] = math.cos(2 * math.pi * hour / 24.0)
        return x.astype(np.float32)
