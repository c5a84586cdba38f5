"""How far can a ranker of the person's own history go? A reference for the next-category targets.

The evaluation's federated LSTM is blended with the tracker's history sources (recent, profile,
transitions, last). Whether *any* such combination can beat repeat-last by a margin is a question about
the data, not the model. This module answers it with a deliberately strong, centrally trained reference:

- **Candidates**: before each event, the person's ``max_candidates`` most recently seen distinct
  categories (raw category names, so out-of-taxonomy ones count). A category never seen before is a
  miss for every history ranker; its share is reported as ``new_category_share``.
- **Features** per candidate (:data:`FEATURES`): recency (seen in the last, 2nd, 3rd, 4–6th or 7–12th
  last event, log of the events since), counts (log, share of history, 0.9-decayed), the person's own
  transition estimate from the last event's categories, the pooled training transition and popularity
  log-probabilities,
  and the last event's run length, time gap and kind, each crossed with "is the last category".
- **Model**: a conditional logit (softmax over the candidates) fitted on the pooled training and
  validation positions of every user — more data and more freedom than any device has, and pooling
  that a federated system would not do.
- **Test**: the same per-user temporal split and the same online protocol as ``vane sim evaluate``;
  ranks are pessimistic on ties; a miss has rank infinity. Repeat-last (last event's categories, then
  decayed frequency) is scored in the same harness as a check, and every non-neural baseline of
  ``vane sim evaluate`` is run on the same split; ratios are to the best of them by HR@1.

If this reference does not beat the best baseline by 5%, the issue's ``1.05 ×`` target is out of reach
for a model that only re-ranks the person's history, and a gain has to come from predicting categories
the person has not seen yet.
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from vane.shared.errors import ConfigError
from vane.shared.events import Event
from vane.shared.metrics import hit_rate_from_ranks, mrr_from_ranks, ndcg_from_ranks
from vane.simulations.baselines import evaluate_baselines
from vane.simulations.split import Split, temporal_split

FEATURES = (
    "is_last", "is_2nd", "is_3rd", "is_4th_6th", "is_7th_12th", "log_distance",
    "log_count", "count_share", "decayed_count", "own_transition", "pooled_transition", "pooled_popularity",
    "last_x_log_run", "last_x_gap", "other_x_gap",
)
_DECAY = 0.9


@dataclass
class _Pooled:
    """Statistics of the pooled training portion (what a central service would know)."""

    popularity: Counter[str]
    transitions: dict[str, Counter[str]]
    kinds: tuple[str, ...]

    @classmethod
    def of(cls, train: Mapping[str, Sequence[Event]]) -> _Pooled:
        popularity: Counter[str] = Counter()
        transitions: dict[str, Counter[str]] = defaultdict(Counter)
        kinds: set[str] = set()
        for events in train.values():
            prev: tuple[str, ...] = ()
            for ev in events:
                popularity.update(ev.categories)
                kinds.add(ev.kind)
                for a in prev:
                    transitions[a].update(ev.categories)
                prev = ev.categories
        return cls(popularity, dict(transitions), tuple(sorted(kinds)))

    def feature_names(self) -> tuple[str, ...]:
        return FEATURES + tuple(f"last_x_kind_{k}" for k in self.kinds)


class _UserState:
    """What the person's device could know before the next event."""

    def __init__(self) -> None:
        self.order: list[str] = []  # distinct categories, most recent first
        self.at: dict[str, int] = {}  # index of the newest event with the category
        self.counts: Counter[str] = Counter()
        self.decayed: dict[str, float] = {}
        self.own: dict[tuple[str, ...], Counter[str]] = defaultdict(Counter)
        self.last: tuple[str, ...] = ()
        self.last_time = 0.0
        self.last_kind = ""
        self.run = 0
        self.seen = 0

    def observe(self, ev: Event) -> None:
        if self.last:
            self.own[self.last].update(ev.categories)
        self.run = self.run + 1 if set(ev.categories) & set(self.last) else 1
        for cat in self.decayed:
            self.decayed[cat] *= _DECAY
        for cat in ev.categories:
            self.decayed[cat] = self.decayed.get(cat, 0.0) + 1.0
            if cat in self.order:
                self.order.remove(cat)
            self.at[cat] = self.seen
        self.order[:0] = list(ev.categories)
        self.counts.update(ev.categories)
        self.last, self.last_time, self.last_kind = ev.categories, ev.unix_time, ev.kind
        self.seen += 1

    def candidates(self, limit: int) -> list[str]:
        return self.order[:limit]

    def features(self, cands: Sequence[str], now: float, pooled: _Pooled) -> np.ndarray:
        total_pop = sum(pooled.popularity.values()) or 1
        own = self.own.get(self.last, Counter())
        own_total = sum(own.values())
        pooled_next: Counter[str] = Counter()
        for a in self.last:
            pooled_next.update(pooled.transitions.get(a, Counter()))
        pooled_total = sum(pooled_next.values())
        gap = min(math.log2(1.0 + max(0.0, now - self.last_time) / 60.0), 10.0) / 10.0
        rows = []
        for cat in cands:
            distance = self.seen - 1 - self.at[cat]  # events since the category was last seen
            is_last = float(distance == 0)
            row = [
                is_last, float(distance == 1), float(distance == 2),
                float(3 <= distance < 6), float(6 <= distance < 12), math.log1p(distance),
                math.log1p(self.counts[cat]), self.counts[cat] / self.seen, self.decayed.get(cat, 0.0),
                own[cat] / (own_total + 1.0), math.log((pooled_next[cat] + 0.1) / (pooled_total + 1.0)),
                math.log((pooled.popularity[cat] + 1.0) / total_pop),
                is_last * math.log1p(self.run), is_last * gap, (1.0 - is_last) * gap,
            ]
            row += [is_last * float(self.last_kind == k) for k in pooled.kinds]
            rows.append(row)
        return np.asarray(rows, dtype=np.float64)


@dataclass
class Positions:
    """Ranking problems: features (N, K, F), candidate mask (N, K), target mask (N, K)."""

    features: np.ndarray
    mask: np.ndarray
    target: np.ndarray
    repeat_last: np.ndarray  # the repeat-last score of each candidate, for the side-by-side baseline


def build_positions(users: Mapping[str, Sequence[Event]], first_scored: Mapping[str, int], pooled: _Pooled,
                    max_candidates: int = 30) -> Positions:
    """One ranking problem per event at index ``>= first_scored[user]`` (and ``>= 1``)."""
    feats, targets, repeat = [], [], []
    width = len(pooled.feature_names())
    for uid, events in users.items():
        state = _UserState()
        for j, ev in enumerate(events):
            if j >= max(1, first_scored[uid]):
                cands = state.candidates(max_candidates)
                feats.append(state.features(cands, ev.unix_time, pooled))
                targets.append([c in ev.categories for c in cands])
                last = set(state.last)
                repeat.append([(1e6 if c in last else 0.0) + state.decayed.get(c, 0.0) for c in cands])
            state.observe(ev)
    n = len(feats)
    x = np.zeros((n, max_candidates, width))
    mask = np.zeros((n, max_candidates), dtype=bool)
    target = np.zeros((n, max_candidates), dtype=bool)
    rl = np.zeros((n, max_candidates))
    for i, (f, t, r) in enumerate(zip(feats, targets, repeat, strict=True)):
        k = len(t)
        x[i, :k], mask[i, :k], target[i, :k], rl[i, :k] = f, True, t, r
    return Positions(x, mask, target, rl)


def pessimistic_ranks(scores: np.ndarray, mask: np.ndarray, target: np.ndarray) -> np.ndarray:
    """1 + the candidates that are not targets and score at least the best target; inf without a target."""
    masked = np.where(mask, scores, -np.inf)
    best = np.where(target, masked, -np.inf).max(axis=1)
    rivals = (masked >= best[:, None]) & mask & ~target
    ranks = 1.0 + rivals.sum(axis=1)
    return np.where(target.any(axis=1), ranks, np.inf)


def fit_conditional_logit(pos: Positions, steps: int = 300, learning_rate: float = 0.05
                          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weights of a softmax over candidates (Adam on the mean log-likelihood of any target).

    Returns ``(weights, mean, std)``: features are standardised with the training mean and std.
    """
    keep = pos.target.any(axis=1)
    if not keep.any():
        raise ConfigError("no training position has its target among the candidates; expected some")
    x, mask, target = pos.features[keep], pos.mask[keep], pos.target[keep]
    mean, std = x[mask].mean(axis=0), x[mask].std(axis=0) + 1e-6
    x = (x - mean) / std
    w = np.zeros(x.shape[2])
    m, v = np.zeros_like(w), np.zeros_like(w)
    for step in range(1, steps + 1):
        logits = np.where(mask, x @ w, -np.inf)
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        q = p * target
        q /= q.sum(axis=1, keepdims=True)
        grad = -np.einsum("nk,nkf->f", q - p, x) / len(x)
        m = 0.9 * m + 0.1 * grad
        v = 0.999 * v + 0.001 * grad * grad
        w -= learning_rate * (m / (1 - 0.9**step)) / (np.sqrt(v / (1 - 0.999**step)) + 1e-8)
    return w, mean, std


def _metrics(ranks: np.ndarray) -> dict[str, float]:
    return {"hr@1": hit_rate_from_ranks(ranks, 1), "hr@5": hit_rate_from_ranks(ranks, 5),
            "ndcg@10": ndcg_from_ranks(ranks, 10), "mrr": mrr_from_ranks(ranks)}


def hindsight_constant_hr1(split: Split) -> float:
    """HR@1 of the best single category per person **chosen knowing the test events**: a clairvoyant ceiling.

    For each evaluated person, the category present in most of their test events, predicted for all of
    them. No causal predictor that names one category per person for the whole test period can do better;
    one that changes its guess between events can, but only by predicting the switches.
    """
    hits = total = 0
    for user in split.evaluated_users:
        events = split.test[user]
        counts = Counter(c for ev in events for c in set(ev.categories))
        hits += counts.most_common(1)[0][1] if counts else 0
        total += len(events)
    return hits / total if total else 0.0


def run_headroom(split: Split, max_candidates: int = 30, steps: int = 300,
                 progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Fit the reference on train+validation positions and score it and repeat-last on the test events."""
    say = progress or (lambda _: None)
    users = split.evaluated_users
    if not users:
        raise ConfigError("the split has no evaluated user; expected users with test events")
    pooled = _Pooled.of(split.train)
    say(f"features for the training and validation positions of {len(users)} users")
    train = build_positions({u: split.history(u) for u in users}, dict.fromkeys(users, 1), pooled, max_candidates)
    say("fitting the conditional logit")
    w, mean, std = fit_conditional_logit(train, steps=steps)
    full = {u: split.history(u) + split.test[u] for u in users}
    test = build_positions(full, {u: len(split.history(u)) for u in users}, pooled, max_candidates)
    scores = ((test.features - mean) / std) @ w
    reference = _metrics(pessimistic_ranks(scores, test.mask, test.target))
    repeat = _metrics(pessimistic_ranks(test.repeat_last, test.mask, test.target))
    say("the non-neural baselines of the evaluation protocol")
    baselines = {name: {k: float(v) for k, v in m.items() if k in ("hr@1", "hr@5", "ndcg@10", "mrr")}
                 for name, m in evaluate_baselines(split).items()}
    best = max(baselines, key=lambda name: (baselines[name]["hr@1"], baselines[name]["mrr"]))
    names = pooled.feature_names()
    return {
        "test_events": int(len(test.target)),
        "new_category_share": float(1.0 - test.target.any(axis=1).mean()),
        "max_candidates": max_candidates,
        "history_ranker": reference,
        "repeat_last_same_harness": repeat,
        "baselines": baselines,
        "best_baseline": best,
        "ratio": {k: reference[k] / baselines[best][k] if baselines[best][k] else float("nan")
                  for k in ("hr@1", "mrr")},
        "needed_for_1.05x": {k: 1.05 * baselines[best][k] for k in ("hr@1", "mrr")},
        "hindsight_constant_hr@1": hindsight_constant_hr1(split),
        "weights": {name: float(x) for name, x in zip(names, w, strict=True)},
    }


def render_markdown(dataset: str, result: Mapping[str, Any]) -> str:
    ref, rep = result["history_ranker"], result["repeat_last_same_harness"]
    best = result["best_baseline"]
    lines = [
        f"# History-ranker headroom: {dataset}",
        "",
        f"{result['test_events']} test events; {result['new_category_share']:.1%} go to a category the person has "
        f"never seen (a miss for any history ranker); candidates: the {result['max_candidates']} most recent.",
        "",
        "| method | HR@1 | HR@5 | NDCG@10 | MRR |",
        "|---|---|---|---|---|",
    ]
    rows = [(f"{name} (evaluation protocol)", m) for name, m in result["baselines"].items()]
    rows += [("repeat-last (this harness, candidates only)", rep), ("pooled conditional-logit history ranker", ref)]
    lines += [f"| {label} | {m['hr@1']:.4f} | {m['hr@5']:.4f} | {m['ndcg@10']:.4f} | {m['mrr']:.4f} |"
              for label, m in rows]
    lines += [
        "",
        f"Ratio to the best baseline ({best}): HR@1 ×{result['ratio']['hr@1']:.3f}, MRR ×{result['ratio']['mrr']:.3f} "
        f"(1.05× needs HR@1 {result['needed_for_1.05x']['hr@1']:.4f}, MRR {result['needed_for_1.05x']['mrr']:.4f}).",
        "",
        f"Clairvoyant ceiling: each person's best single category chosen knowing their test events reaches "
        f"HR@1 {result['hindsight_constant_hr@1']:.4f}.",
        "",
    ]
    return "\n".join(lines)


def headroom_report(dataset: str, data: str | None, out: str | Path | None, max_users: int | None = None,
                    progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Load ``dataset``, split it as ``vane sim evaluate`` does, run :func:`run_headroom`, write JSON + markdown."""
    from vane.simulations.datasets import load_dataset

    kwargs: dict[str, Any] = {"max_users": max_users} if max_users else {}
    loaded = load_dataset(dataset, data, **kwargs)
    result = run_headroom(temporal_split(loaded.users), progress=progress)
    result["dataset"] = dataset
    if out is not None:
        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "headroom.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
        (folder / "headroom.md").write_text(render_markdown(dataset, result), encoding="utf-8")
    return result
