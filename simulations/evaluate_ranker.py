"""The LightGBM reference in the evaluation, the per-slice rows, and the new-user run.

- :func:`evaluate_reference`: the reference of :mod:`vane.simulations.ranker_reference` on the test
  events (both variants), with the sampled next-item metric from its softmax over the candidates.
- :func:`slices_section`: per-bucket, per-type and explore rows of every traced method, and each one's
  HR@1 / MRR ratio to the best non-neural baseline with a 95% user-bootstrap interval.
- :func:`run_new_users`: a fraction of users held out of training entirely (out of the baselines' fit, the
  reference's rows and the population statistics), evaluated online on their first
  :data:`NEW_USER_EVENTS` events (each predicted from the ones before it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from vane.shared.events import Event
from vane.shared.metrics import hit_rate_from_ranks, ndcg_from_ranks
from vane.shared.population import population_stats
from vane.simulations.baselines import BASELINES
from vane.simulations.candidates import ItemCandidates, sampled_item_rank
from vane.simulations.evaluate_baselines import baseline_trace
from vane.simulations.evaluate_slices import (
    EventInfo,
    EventTrace,
    bucket_ratios,
    compare,
    ranking_metrics,
    slice_metrics,
)
from vane.simulations.ranker_reference import VARIANTS, RankerConfig, score_sequences, train_reference
from vane.simulations.split import Split

NEW_USER_EVENTS = 20
NEW_USER_FRACTION = 0.2
Sequences = list[tuple[list[Event], list[Event]]]


def evaluation_sequences(split: Split) -> Sequences:
    """Per evaluated user: the events before the test ones, and the test events."""
    return [(split.history(u), list(split.test[u])) for u in split.evaluated_users]


def evaluate_reference(split: Split, names: Sequence[str], candidates: ItemCandidates, config: RankerConfig,
                       progress: Callable[[str], None] | None = None
                       ) -> tuple[dict[str, dict[str, Any]], dict[str, EventTrace]]:
    """Metrics and traces of the requested :data:`~vane.simulations.ranker_reference.VARIANTS` on the test events."""
    variants = [VARIANTS[n] for n in names]
    boosters, info = train_reference(split.train, split.val, config, variants, progress)
    stats = population_stats(split.train.values())
    probs: dict[str, list[dict[str, float]]] = {v: [] for v in variants}
    traces = score_sequences(boosters, stats, evaluation_sequences(split), lambda v, p: probs[v].append(p))
    methods: dict[str, dict[str, Any]] = {}
    out: dict[str, EventTrace] = {}
    for name in names:
        variant = VARIANTS[name]
        item_ranks = np.asarray([sampled_item_rank(candidates.scores(row, p)) for row, p in enumerate(probs[variant])])
        methods[name] = {**ranking_metrics(np.asarray(traces[variant].ranks)),
                         "item_hr@10": hit_rate_from_ranks(item_ranks, 10),
                         "item_ndcg@10": ndcg_from_ranks(item_ranks, 10),
                         # the ranker answers the next category only (no intensity head)
                         **dict.fromkeys(("accuracy", "recall", "f1", "roc_auc"), float("nan")),
                         "variant": variant, "training_groups": info["training_groups"],
                         "validation_groups": info["validation_groups"], "boosting_rounds": info["rounds"][variant],
                         "feature_importance": info["feature_importance"][variant]}
        out[name] = traces[variant]
    return methods, out


def best_baseline(methods: Mapping[str, Mapping[str, Any]]) -> str | None:
    """The non-neural baseline with the best HR@1 (then MRR), or None when none ran."""
    run = [n for n in methods if n in BASELINES]
    return max(run, key=lambda n: (methods[n]["hr@1"], methods[n]["mrr"])) if run else None


def slices_section(traces: Mapping[str, EventTrace], info: EventInfo, methods: Mapping[str, Mapping[str, Any]],
                   seed: int) -> dict[str, Any]:
    """Per-slice rows of every traced method and ratios to the best baseline (when one ran)."""
    best = best_baseline(methods)
    kinds, counts = np.unique(info.kind, return_counts=True)
    section: dict[str, Any] = {
        "events": len(info),
        "event_types": {str(k): int(c) for k, c in zip(kinds, counts, strict=True)},
        "methods": {name: slice_metrics(trace, info) for name, trace in traces.items()},
        "best_baseline": best,
    }
    if best is not None and best in traces:
        section["ratios"] = compare(traces, info, best, seed)
        section["bucket_ratios"] = bucket_ratios(traces, info, [n for n in traces if n in BASELINES], seed)
    return section


def new_user_split(split: Split, fraction: float, seed: int) -> tuple[list[str], dict[str, list[Event]],
                                                                      dict[str, list[Event]]]:
    """Held-out users (``fraction`` of those with >= 2 events) and the remaining users' train and validation."""
    users = [u for u in split.train if len(split.history(u)) + len(split.test.get(u, [])) >= 2]
    order = np.random.default_rng(seed + 15).permutation(len(users))
    held = sorted((users[i] for i in order[: max(1, round(fraction * len(users)))]), key=users.index)
    out = set(held)
    return held, {u: e for u, e in split.train.items() if u not in out}, {u: e for u, e in split.val.items()
                                                                          if u not in out}


def run_new_users(split: Split, names: Sequence[str], config: RankerConfig, seed: int,
                  fraction: float = NEW_USER_FRACTION, progress: Callable[[str], None] | None = None,
                  extra: Callable[[list[str], Sequences], dict[str, EventTrace]] | None = None) -> dict[str, Any]:
    """Baselines and the reference on users never trained on, over their first :data:`NEW_USER_EVENTS` events.

    ``extra(held, sequences)`` adds the traces of further methods trained without the ``held`` users.
    Returns ``overall`` (each method's metrics on every scored event) and the :func:`slices_section` keys.
    """
    say = progress or (lambda _: None)
    held, train, val = new_user_split(split, fraction, seed)
    full = {u: split.history(u) + list(split.test.get(u, [])) for u in held}
    sequences: Sequences = [(full[u][:1], full[u][1:NEW_USER_EVENTS]) for u in held]
    info = EventInfo.of(sequences)
    traces: dict[str, EventTrace] = {}
    for name in names:
        if name in BASELINES:
            predictor = BASELINES[name]()
            predictor.fit(train)
            traces[name] = baseline_trace(predictor, sequences)
    variants = [VARIANTS[n] for n in names if n in VARIANTS]
    if variants:
        boosters, _ = train_reference(train, val, config, variants, say)
        scored = score_sequences(boosters, population_stats(train.values()), sequences)
        traces.update({n: scored[VARIANTS[n]] for n in names if n in VARIANTS})
    if extra is not None:
        traces.update(extra(held, sequences))
    methods = {n: ranking_metrics(np.asarray(t.ranks)) for n, t in traces.items()}
    say(f"new users ({len(held)} held out): " + ", ".join(f"{n} {m['hr@1']:.3f}" for n, m in methods.items()))
    return {"users": len(held), "fraction": fraction, "events_per_user": NEW_USER_EVENTS, "overall": methods,
            **slices_section(traces, info, methods, seed)}
