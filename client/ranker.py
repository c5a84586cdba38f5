"""The candidate ranker on the device: ranking the person's next-category candidates, with reasons, and
training it on the person's own events.

With a model whose spec has a ranker (``ModelSpec.ranker_units > 0``), the tracker keeps a
:class:`~vane.shared.candidates.CandidateState` in step with its events (in :class:`ModelState`) and
answers "what comes next" from :func:`rank_now`: the candidates' features at the time of asking, scored
by the LiteRT ``rank`` signature, a softmax over the candidates. Population knowledge comes from the
statistics artifact kept in the store (shipped with the model, summed by federated analytics); without
one, the candidates are the person's own recent categories.

**Reasons.** Each candidate's score is explained by occlusion: the features of one group (how recently
the person saw it, how often, what usually follows for them, for everyone, its popularity, the time of
day) are replaced by those of a candidate the person never saw, and the drop in score says how much that
group drove it. The strongest groups become the reasons, in words.

**Training** (:func:`train_ranker_local`) uses the device's own events minus the newest ones kept
aside, with the population statistics *less the device's own counts* (``stats.without(own)``), so the
features it trains on never contain its own targets.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from vane.client.runtime import LiteModel
from vane.shared.candidates import COLUMN, FIELDS, UNSEEN_EVENTS, UNSEEN_SECONDS, CandidateQuery, CandidateState
from vane.shared.events import OTHER, Event
from vane.shared.population import PopulationStats
from vane.shared.population_artifact import PopulationArtifact, count_vector, vector_stats
from vane.shared.ranker_data import RankerExamples, pack, ranker_examples
from vane.shared.taxonomy import Taxonomy

#: Empty statistics: a device that has received none ranks its own categories only.
NO_STATS = PopulationStats({}, {})

#: Feature groups, what each says when it drives a score, and what an unseen candidate has there.
_GROUPS: dict[str, tuple[str, tuple[str, ...]]] = {
    "recent": ("you looked at it recently", (
        "recency_rank", "seen", "in_last_event", "log_events_since_seen", "time_decayed_1h", "time_decayed_1d",
        "log_seconds_since_seen", "run_length", *(f"decayed_{h:g}" for h in (2, 5)),
        *(f"decayed_share_{h:g}" for h in (2, 5)))),
    "often": ("it is one of your regular interests", (
        "log_count", "share", "log_events_since_first_seen", *(f"decayed_{h:g}" for h in (20, 80)),
        *(f"decayed_share_{h:g}" for h in (20, 80)),
        *(f"log_kind_{g}" for g in ("view", "cart", "favorite", "purchase", "rate", "other")))),
    "own_next": ("you often go there from what you just looked at", (
        "own_transition_1", "log_own_transition_1_count", "own_transition_2", "own_stickiness")),
    "others_next": ("people often go there next from what you just looked at", (
        "pop_transition", "log_pop_transition", "log_pop_transition_rank", "pop_transition_2", "log_pop_lift",
        "from_transitions")),
    "popular": ("it is popular", ("log_popularity", "log_popularity_rank", "pop_stickiness", "from_popular")),
}
_UNSEEN_VALUES = {"recency_rank": 60.0, "log_events_since_seen": math.log1p(UNSEEN_EVENTS),
                  "log_seconds_since_seen": math.log1p(UNSEEN_SECONDS), "log_popularity": math.log(1e-7),
                  "log_pop_transition": math.log(1e-6), "log_pop_lift": 0.0}


@dataclass
class RankedCandidates:
    """The ranker's answer at one moment: candidates, their probabilities, intensities and reasons.

    Attributes
    ----------
    names : list of str
        The scored candidates (at most ``spec.ranker_candidates``), in candidate order.
    probabilities : ndarray
        Softmax of the scores over the candidates.
    intensity : ndarray
        Probability that each candidate occurs in the next ``intensity_horizon`` events.
    reasons : dict of str to tuple of str
        The reasons of the candidates they were computed for (the top ones).
    """

    names: list[str]
    probabilities: np.ndarray
    intensity: np.ndarray
    reasons: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def distribution(self) -> dict[str, float]:
        """Category → probability of being next (categories that are no candidate: 0)."""
        return {n: float(p) for n, p in zip(self.names, self.probabilities, strict=True) if n != OTHER}

    @property
    def intensities(self) -> dict[str, float]:
        return {n: float(p) for n, p in zip(self.names, self.intensity, strict=True) if n != OTHER}


def score_queries(model: LiteModel, queries: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Scores and intensities of per-query feature matrices (padded to the model's candidates), (B, C) each."""
    x, mask = pack(queries, model.spec.ranker_candidates)
    return model.rank(x, mask)


def rank_now(model: LiteModel, state: CandidateState, stats: PopulationStats, query_time: float,
             explain: int = 0) -> RankedCandidates:
    """Rank ``state``'s candidates at ``query_time``; reasons for the best ``explain`` of them."""
    query = state.query(stats)
    n = min(len(query), model.spec.ranker_candidates)
    if n == 0:
        return RankedCandidates([], np.zeros(0), np.zeros(0))
    features = query.features(query_time)[:n]
    score, intensity = score_queries(model, [features])
    s = score[0, :n].astype(np.float64)
    z = np.exp(s - s.max())
    ranked = RankedCandidates(query.names[:n], z / z.sum(), intensity[0, :n].astype(np.float64))
    if explain:
        top = list(np.argsort(-s, kind="stable")[:explain])
        ranked.reasons = explain_scores(model, query, features, s, top)
    return ranked


def explain_scores(model: LiteModel, query: CandidateQuery, features: np.ndarray, scores: np.ndarray,
                   rows: Sequence[int]) -> dict[str, tuple[str, ...]]:
    """The reasons of candidates ``rows``: the feature groups whose occlusion lowers the score most."""
    variants = []
    for row in rows:
        for _, columns in _GROUPS.values():
            x = features[row].copy()
            for name in columns:
                x[COLUMN[name]] = _UNSEEN_VALUES.get(name, 0.0)
            variants.append(x)
    occluded, _ = score_queries(model, [np.stack(variants)[i: i + model.spec.ranker_candidates]
                                        for i in range(0, len(variants), model.spec.ranker_candidates)])
    flat = occluded.reshape(-1)[: len(variants)]
    out: dict[str, tuple[str, ...]] = {}
    groups = list(_GROUPS.values())
    for i, row in enumerate(rows):
        drops = scores[row] - flat[i * len(groups): (i + 1) * len(groups)]
        best = [groups[j][0] for j in np.argsort(-drops, kind="stable") if drops[j] > 0.05][:2]
        out[query.names[row]] = tuple(best) or ("it fits your recent pattern",)
    return out


def population_of(blob: bytes | None, taxonomy: Taxonomy | None) -> PopulationStats:
    """The statistics of a kept artifact (:data:`NO_STATS` without one or without a taxonomy)."""
    if blob is None or taxonomy is None:
        return NO_STATS
    return PopulationArtifact.from_bytes(blob, taxonomy, "the kept population statistics").stats(taxonomy)


def training_population(blob: bytes | None, taxonomy: Taxonomy | None, events: Sequence[Event]) -> PopulationStats:
    """The kept statistics less this device's own contribution (its clipped counts over the taxonomy).

    What the device trains on: the population's counts without its own, so no feature holds its targets.
    """
    if blob is None or taxonomy is None:
        return NO_STATS
    from vane.client.population import clip_counts  # (imports Flower: only where training happens)

    artifact = PopulationArtifact.from_bytes(blob, taxonomy, "the kept population statistics")
    clip = artifact.clip
    own = clip_counts(count_vector(events, taxonomy), float(clip.get("entry-cap", np.inf) or np.inf),
                      float(clip.get("l2-norm", 0.0) or 0.0))
    return vector_stats(np.maximum(artifact.vector - own, 0.0), taxonomy)


@dataclass
class RankerTrainResult:
    """What one local ranker training run did."""

    steps: int = 0
    loss: float = float("nan")
    num_examples: int = 0


def train_ranker_local(model: LiteModel, events: Sequence[Event], stats: PopulationStats, epochs: int,
                       learning_rate: float, seed: int, holdout: int) -> RankerTrainResult:
    """Train the ranker on ``events`` (time-ordered) but the newest ``holdout``; the population ``stats``
    must already exclude this device's own counts."""
    stop = len(events) - holdout
    if stop < 2:
        return RankerTrainResult()
    spec = model.spec
    examples = ranker_examples(events, stats, spec.ranker_candidates, spec.intensity_horizon, stop=stop)
    n = len(examples)
    if n == 0:
        return RankerTrainResult()
    rng = np.random.default_rng(seed)
    losses = []
    for _ in range(epochs):
        order = rng.permutation(n)
        for start in range(0, n, spec.ranker_batch):
            batch: RankerExamples = examples.take(order[start: start + spec.ranker_batch])
            losses.append(model.train_ranker(batch, learning_rate))
    return RankerTrainResult(len(losses), float(np.mean(losses[-max(1, len(losses) // max(epochs, 1)):])), n)


__all__ = ["FIELDS", "NO_STATS", "RankedCandidates", "RankerTrainResult", "explain_scores", "rank_now",
           "score_queries", "train_ranker_local"]
