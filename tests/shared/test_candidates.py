"""Candidate features: the incremental state equals a from-scratch recomputation, on real slices and synthetic."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from vane.shared.candidates import (
    COLUMN,
    FIELDS,
    HALF_LIVES_EVENTS,
    HALF_LIVES_S,
    KIND_GROUPS,
    RECENT_LIMIT,
    TIME_FIELDS,
    UNSEEN_EVENTS,
    UNSEEN_SECONDS,
    CandidateState,
)
from vane.shared.events import OTHER, Event
from vane.shared.population import PopulationStats, population_counts, population_stats
from vane.simulations.datasets import MOVIELENS_DIR, TAOBAO_PATH, load_dataset


def _event(cats: Sequence[str], t: float, kind: str = "view") -> Event:
    return Event("i", tuple(cats), datetime.fromtimestamp(1_700_000_000 + t, tz=UTC), kind, None)


def _kind_group(kind: str) -> int:
    return next((i for i, group in enumerate(KIND_GROUPS.values()) if kind in group), len(KIND_GROUPS) - 1)


def scratch_features(events: Sequence[Event], stats: PopulationStats, query_time: float
                     ) -> tuple[list[str], np.ndarray]:
    """Every feature recomputed from the whole history, by its definition (no incremental state)."""
    n = len(events)
    cats = [ev.categories for ev in events]
    last: dict[str, int] = {}
    for t, names in enumerate(cats):
        for c in names:
            last[c] = t
    position = {c: cats[last[c]].index(c) for c in last}
    recent = sorted((c for c in last if c != OTHER), key=lambda c: (-last[c], -position[c]))[:RECENT_LIMIT]
    rank = {c: sum(1 for d in last if d != OTHER and last[d] > last[c]) for c in recent}
    last_names = cats[-1] if n else ()
    previous_names = cats[-2] if n > 1 else ()
    popular, following = stats.top_popular(20), stats.top_transitions(list(last_names), 20)
    names = list(dict.fromkeys([*recent, *popular, *following]))

    def pairs(step: int) -> tuple[dict[tuple[str, str], float], Counter[str]]:
        table: dict[tuple[str, str], float] = Counter()
        out: Counter[str] = Counter()
        for t in range(step, n):
            w = 1.0 / (len(cats[t - step]) * len(cats[t]))
            for a in cats[t - step]:
                for b in cats[t]:
                    table[a, b] += w
                    out[a] += w
        return table, out

    t1, out1 = pairs(1)
    t2, out2 = pairs(2)

    def run(c: str) -> int:
        length = 0
        for names_t in reversed(cats):
            if c not in names_t:
                break
            length += 1
        return length

    x = np.zeros((len(names), len(FIELDS)))
    for i, c in enumerate(names):
        times = [t for t in range(n) if c in cats[t]]
        seen = bool(times)
        since = n - 1 - times[-1] if seen else UNSEEN_EVENTS
        f = x[i]
        f[COLUMN["recency_rank"]] = rank.get(c, RECENT_LIMIT)
        f[COLUMN["seen"]], f[COLUMN["in_last_event"]] = seen, seen and since == 0
        f[COLUMN["log_events_since_seen"]] = math.log1p(since)
        f[COLUMN["log_events_since_first_seen"]] = math.log1p(n - 1 - times[0]) if seen else 0.0
        f[COLUMN["log_count"]], f[COLUMN["share"]] = math.log1p(len(times)), len(times) / max(n, 1)
        for h in HALF_LIVES_EVENTS:
            mass = sum(2.0 ** (-(n - 1 - t) / h) for t in times)
            total = sum(len(cats[t]) * 2.0 ** (-(n - 1 - t) / h) for t in range(n))
            f[COLUMN[f"decayed_{h:g}"]], f[COLUMN[f"decayed_share_{h:g}"]] = mass, mass / total if total else 0.0
        for h, name in zip(HALF_LIVES_S, ("time_decayed_1h", "time_decayed_1d"), strict=True):
            f[COLUMN[name]] = sum(2.0 ** (-(query_time - events[t].unix_time) / h) for t in times)
        f[COLUMN["log_seconds_since_seen"]] = math.log1p(query_time - events[times[-1]].unix_time if seen
                                                         else UNSEEN_SECONDS)
        kinds = Counter(_kind_group(events[t].kind) for t in times)
        for g, group in enumerate(KIND_GROUPS):
            f[COLUMN[f"log_kind_{group}"]] = math.log1p(kinds[g])
        for name, table, out, sources in (("own_transition_1", t1, out1, last_names),
                                          ("own_transition_2", t2, out2, previous_names)):
            count = sum(table.get((a, c), 0.0) for a in sources)
            denominator = sum(out[a] for a in sources)
            f[COLUMN[name]] = count / denominator if denominator else 0.0
            if name == "own_transition_1":
                f[COLUMN["log_own_transition_1_count"]] = math.log1p(count)
        f[COLUMN["own_stickiness"]] = t1.get((c, c), 0.0) / out1[c] if out1[c] else 0.0
        f[COLUMN["run_length"]] = run(c) if seen and since == 0 else 0
        share, trans = stats.share(c), stats.transition(last_names, c)
        f[COLUMN["log_popularity"]] = math.log(share + 1e-7)
        f[COLUMN["log_popularity_rank"]] = math.log1p(stats.rank.get(c, len(stats)))
        f[COLUMN["pop_transition"]], f[COLUMN["log_pop_transition"]] = trans, math.log(trans + 1e-6)
        f[COLUMN["log_pop_transition_rank"]] = math.log1p(stats.transition_rank(last_names, c))
        f[COLUMN["pop_transition_2"]] = stats.transition(previous_names, c)
        f[COLUMN["pop_stickiness"]] = stats.stickiness(c)
        f[COLUMN["log_pop_lift"]] = math.log((trans + 1e-6) / (share + 1e-6))
        f[COLUMN["from_history"]] = c in recent
        f[COLUMN["from_popular"]], f[COLUMN["from_transitions"]] = c in popular, c in following
    x[:, COLUMN["log_person_events"]] = math.log1p(n)
    x[:, COLUMN["log_person_categories"]] = math.log1p(len(last))
    repeats = sum(1 for t in range(1, n) if set(cats[t]) & set(cats[t - 1]))
    x[:, COLUMN["person_repeat_rate"]] = repeats / (n - 1) if n > 1 else 0.0
    news = sum(1 for t in range(n) if any(c not in {d for s in cats[:t] for d in s} for c in cats[t]))
    x[:, COLUMN["person_new_rate"]] = news / n if n else 0.0
    x[:, COLUMN["last_run_length"]] = max((run(c) for c in last_names), default=0)
    gap = query_time - events[-1].unix_time if n else UNSEEN_SECONDS
    x[:, COLUMN["log_seconds_since_last_event"]] = math.log1p(gap)
    hour = (query_time % 86400.0) / 3600.0
    x[:, COLUMN["hour"]] = hour
    x[:, COLUMN["hour_sin"]], x[:, COLUMN["hour_cos"]] = math.sin(math.pi * hour / 12), math.cos(math.pi * hour / 12)
    return names, x.astype(np.float32)


def _assert_same(events: Sequence[Event], stats: PopulationStats, positions: Sequence[int]) -> int:
    """Replay ``events`` incrementally; at each position compare with the recomputation (both query times)."""
    state = CandidateState()
    checked = 0
    wanted = set(positions)
    for j, ev in enumerate(events):
        if j in wanted:
            query = state.query(stats)
            for when in (events[j - 1].unix_time if j else ev.unix_time, ev.unix_time + 1234.5):
                names, expected = scratch_features(events[:j], stats, when)
                assert query.names == names, j
                got = query.features(when)
                for k, field in enumerate(FIELDS):
                    np.testing.assert_allclose(got[:, k], expected[:, k], rtol=2e-5, atol=2e-6,
                                               err_msg=f"{field} at event {j}")
            checked += 1
        state.observe(ev)
    return checked


def _real_users(name: str, max_users: int) -> dict[str, list[Event]]:
    path = TAOBAO_PATH if name == "taobao" else MOVIELENS_DIR
    if not path.exists():
        print(f"skipping: {path} is missing (the shared datasets are not on this machine)")
        pytest.skip(f"{path} is missing")
    return load_dataset(name, max_users=max_users).users


@pytest.mark.parametrize(("dataset", "users", "stride"), [("taobao", 25, 5), ("movielens", 6, 23)])
def test_incremental_features_equal_recomputation_on_a_real_slice(dataset, users, stride):
    slice_ = _real_users(dataset, users)
    stats = population_stats(list(slice_.values())[1:])  # the first user is not in the statistics

    checked = 0
    for events in list(slice_.values())[:4]:
        events = events[:300]
        checked += _assert_same(events, stats, [*range(0, len(events), stride), len(events) - 1])

    assert checked > 20


def test_incremental_features_equal_recomputation_on_synthetic_multi_category_events():
    kinds = ["view", "click", "cart", "purchase", "rate", "favorite", "other"]
    rng = np.random.default_rng(5)
    names = ["a", "b", "c", "d", OTHER]
    events = []
    t = 0.0
    for i in range(140):
        k = int(rng.integers(1, 4))
        cats = list(dict.fromkeys(rng.choice(names, size=k).tolist()))
        t += float(rng.choice([0.0, 30.0, 4000.0, 90000.0]))
        events.append(_event(cats, t, kinds[i % len(kinds)]))
    stats = population_stats([events[::2], events[1::3]])

    assert _assert_same(events, stats, range(len(events))) == len(events)


def test_recent_candidates_stop_at_the_limit_and_population_ones_follow():
    events = [_event([f"c{i}"], 60.0 * i) for i in range(RECENT_LIMIT + 10)]
    stats = PopulationStats.from_counts({"p1": 9.0, "p2": 5.0, "c0": 1.0}, {f"c{RECENT_LIMIT + 9}": {"t1": 3.0}})
    state = CandidateState()
    for ev in events:
        state.observe(ev)

    query = state.query(stats)

    assert query.names[:RECENT_LIMIT] == [f"c{i}" for i in range(RECENT_LIMIT + 9, 9, -1)]
    assert query.names[RECENT_LIMIT:] == ["p1", "p2", "c0", "t1"]
    assert query.base[RECENT_LIMIT + 2, COLUMN["seen"]] == 1.0  # c0 is old but seen
    assert query.base[RECENT_LIMIT + 2, COLUMN["recency_rank"]] == RECENT_LIMIT


def test_population_stats_round_trip_and_sum_of_counts():
    users = [[_event(["a"], 0), _event(["b", "c"], 1), _event(["a"], 2)], [_event(["c"], 0), _event(["c"], 5)]]

    popularity, transitions = population_counts(users)
    stats = population_stats(users)

    assert popularity == {"a": 2.0, "b": 1.0, "c": 3.0}
    assert transitions == {"a": {"b": 0.5, "c": 0.5}, "b": {"a": 0.5}, "c": {"a": 0.5, "c": 1.0}}
    assert stats.categories == ("c", "a", "b")
    assert stats.transition(["c"], "c") == pytest.approx(2 / 3) == stats.stickiness("c")
    again = PopulationStats.from_counts(**stats.to_dict())  # type: ignore[arg-type]
    assert again.categories == stats.categories and again.transitions == stats.transitions


def test_time_fields_are_the_only_ones_the_query_time_changes():
    events = [_event(["a", "b"][i % 2 : i % 2 + 1], 100.0 * i) for i in range(10)]
    state = CandidateState()
    for ev in events:
        state.observe(ev)
    query = state.query(population_stats([events]))

    early, late = query.features(events[-1].unix_time), query.features(events[-1].unix_time + 7200)

    changed = {FIELDS[k] for k in range(len(FIELDS)) if not np.array_equal(early[:, k], late[:, k])}
    assert changed <= set(TIME_FIELDS) and "time_decayed_1h" in changed


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.lists(st.sampled_from("abcdef"), min_size=1, max_size=3, unique=True),
                          st.sampled_from([0.0, 1.0, 59.0, 3600.0, 86400.0 * 3]),
                          st.sampled_from(["view", "cart", "purchase", "rate"])), min_size=1, max_size=40))
def test_incremental_features_equal_recomputation_on_any_sequence(steps):
    events, t = [], 0.0
    for cats, gap, kind in steps:
        t += gap
        events.append(_event(cats, t, kind))
    stats = population_stats([events[: len(events) // 2], [_event(["f"], 0), _event(["a"], 1)]])

    _assert_same(events, stats, [len(events) - 1, len(events) // 2])
