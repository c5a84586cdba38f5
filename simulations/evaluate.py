"""The evaluation protocol on one dataset: every method on the same temporal split.

Steps of :func:`run_evaluation`:

1. Load the dataset and split each user by time (:func:`~vane.simulations.split.temporal_split`): the
   last events are test, the ones before them validation, the rest training. The taxonomy is built from
   the training portion only; the share of test events outside it is reported.
2. Evaluate every method **online** over all test events: each test event is predicted from everything
   before it (earlier test events included), then observed.

   - Next interest (category): HR@1/5/10, NDCG@10, MRR; ``other`` is never a hit.
   - Next-window intensity (which taxonomy categories occur in the next ``intensity_horizon`` events):
     accuracy, recall, F1, ROC-AUC. The LSTM methods use their intensity head; for the non-neural
     baselines the intensity is *derived* from their normalised scores, ``1 - (1 - p)^H`` (a reference).
     Each method's decision threshold is the one maximising F1 on its validation events.
   - Next item among 100 candidates (the true item plus 99 drawn by training popularity): a **sampled**
     HR@10 and NDCG@10. A candidate's score is the predicted probability of its category plus a small,
     method-independent tie-break (:data:`RECENCY_BONUS` × recency of the item in the user's history +
     :data:`POPULARITY_BONUS` × its normalised training popularity); ties rank the true item last.

3. Methods: the non-neural baselines of :mod:`vane.simulations.baselines`, a local-only LSTM (each user's
   own model trained on their own training events through LiteRT, ``InterestTracker.train_local``), a
   centralised LSTM (TensorFlow on pooled training windows) and the federated LSTM (Flower simulation,
   :func:`vane.simulations.federation.run_federated`). The three LSTMs are evaluated through the tracker's
   on-device prediction path: the LiteRT softmax, its ``other`` mass handed to the person's own
   out-of-taxonomy categories, blended with the short-memory, profile and transition distributions by a
   :class:`~vane.client.tracker.Mix`. The Mix of the local and centralised LSTMs is tuned on the pooled
   validation events (never on test); the federated LSTM uses the Mix its own federated evaluation picked
   (each device scores candidate blends on its held-out events, only the means leave it), with the centrally
   tuned one reported beside it. Both are stored in the results.

Outputs in ``out``: ``results.json``, ``report.md`` and plots (see :mod:`vane.simulations.report`).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from vane.shared.blend import MIX_FIELDS, BlendCase, tune_mix
from vane.shared.errors import ConfigError
from vane.shared.events import OTHER, Event
from vane.shared.features import Features, Featurizer, make_windows, pad_batch
from vane.shared.metrics import (
    RankingAccumulator,
    best_f1_threshold,
    classification_report,
    hit_rate_from_ranks,
    ndcg_from_ranks,
)
from vane.shared.spec import ModelSpec
from vane.shared.taxonomy import Taxonomy
from vane.shared.weights import Weights
from vane.simulations.baselines import BASELINES, OnlinePredictor, _best_rank
from vane.simulations.datasets import Dataset, load_dataset
from vane.simulations.split import Split, temporal_split, train_taxonomy

logger = logging.getLogger("vane.simulations")

LSTM_METHODS = ("local-lstm", "centralised-lstm", "federated-lstm")
METHODS: tuple[str, ...] = (*BASELINES, *LSTM_METHODS)
CATEGORY_METRICS = ("hr@1", "hr@5", "hr@10", "ndcg@10", "mrr")
INTENSITY_METRICS = ("accuracy", "recall", "f1", "roc_auc")
ITEM_METRICS = ("item_hr@10", "item_ndcg@10")
ALL_METRICS = CATEGORY_METRICS + INTENSITY_METRICS + ITEM_METRICS

#: Candidates per test event for the sampled next-item metric (the true item included).
NUM_CANDIDATES = 100
RECENCY_BONUS = 1e-3
POPULARITY_BONUS = 1e-6
RECENCY_HALF_LIFE_EVENTS = 20.0

@dataclass
class EvaluationConfig:
    """Everything that fixes one evaluation run.

    Parameters
    ----------
    dataset : {"taobao", "movielens", "synthetic"}
    data : str, optional
        Path of the dataset file or folder (the copy under ``../shared/datasets`` by default).
    seed : int, default 0
    max_users : int, optional
        Keep only the first users (file order; for synthetic, the population size, default 200).
    rounds : int, default 10
        Federated rounds.
    methods : tuple of str
        Any of :data:`METHODS`.
    taxonomy_size : int, default 256
        Largest taxonomy, ``other`` included.
    epochs : int, default 6
        Centralised training epochs over the pooled training windows.
    local_epochs : int, default 20
        Epochs of the local-only LSTM on each user's own training events.
    fed_local_epochs : int, default 5
        Epochs each client trains per federated round.
    fraction : float, default 1.0
        Fraction of users trained per federated round.
    learning_rate : float, default 0.003
        Centralised learning rate (the spec's).
    client_learning_rate : float, default 0.01
        Learning rate of the local-only and federated on-device training.
    window, lstm_units : int
        Model spec fields.
    tune_mix : bool, default True
        Tune the local and centralised LSTMs' blend weights on the pooled validation events (and report
        the centrally tuned blend beside the federated one).
    mix_grid_step : float, default 0.1
        Resolution of the candidate blends the federated devices score (``mix-grid-step``; 0.1 is the
        central tuning's grid, 1,001 candidates).
    """

    dataset: str
    data: str | None = None
    seed: int = 0
    max_users: int | None = None
    rounds: int = 10
    methods: tuple[str, ...] = METHODS
    taxonomy_size: int = 256
    epochs: int = 6
    local_epochs: int = 20
    fed_local_epochs: int = 5
    fraction: float = 1.0
    learning_rate: float = 0.003
    client_learning_rate: float = 0.01
    window: int = 16
    lstm_units: int = 64
    intensity_horizon: int = 5
    tune_mix: bool = True
    mix_grid_step: float = 0.1
    num_cpus: int | None = None

    def __post_init__(self) -> None:
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise ConfigError(f"unknown method {unknown[0]!r}; expected some of {', '.join(METHODS)}")
        if self.dataset not in ("taobao", "movielens", "synthetic"):
            raise ConfigError(f"dataset is {self.dataset!r}; expected taobao, movielens or synthetic")
        if self.rounds < 1 or self.epochs < 1 or self.local_epochs < 1 or self.fed_local_epochs < 1:
            raise ConfigError("rounds, epochs, local_epochs and fed_local_epochs must all be >= 1")
        if self.max_users is not None and self.max_users < 2:
            raise ConfigError(f"max_users is {self.max_users}; expected at least 2")


# --- data -----------------------------------------------------------------------------------------
def load_for_evaluation(config: EvaluationConfig) -> Dataset:
    if config.dataset == "synthetic":
        return load_dataset("synthetic", num_users=config.max_users or 200, seed=config.seed)
    return load_dataset(config.dataset, config.data, max_users=config.max_users)


def taxonomy_coverage(split: Split, taxonomy: Taxonomy) -> dict[str, float]:
    """How much of the test set the training taxonomy covers."""
    test = [ev for uid in split.evaluated_users for ev in split.test[uid]]
    outside = sum(1 for ev in test if not any(c in taxonomy and c != OTHER for c in ev.categories))
    train_cats = Counter(c for events in split.train.values() for ev in events for c in ev.categories)
    return {
        "taxonomy_size": float(len(taxonomy)),
        "train_categories": float(len(train_cats)),
        "test_events": float(len(test)),
        "test_events_outside_taxonomy": float(outside),
        "test_share_outside_taxonomy": outside / len(test) if test else float("nan"),
    }


def model_spec(config: EvaluationConfig, taxonomy: Taxonomy) -> ModelSpec:
    return ModelSpec(
        num_categories=len(taxonomy),
        window=config.window,
        lstm_units=config.lstm_units,
        intensity_horizon=config.intensity_horizon,
        learning_rate=config.learning_rate,
        seed=config.seed,
    )


# --- the sampled next-item task -------------------------------------------------------------------
@dataclass
class ItemCandidates:
    """For each test event (in evaluation order) the candidate items, the true one first."""

    items: list[str]  # global item list
    categories: list[tuple[str, ...]]  # per global item
    candidates: np.ndarray  # (E, NUM_CANDIDATES) indices into items; column 0 is the true item
    tie_break: np.ndarray  # (E, NUM_CANDIDATES) the method-independent bonus


def sample_candidates(
    split: Split,
    seed: int,
    num_candidates: int = NUM_CANDIDATES,
    catalogue: Mapping[str, Sequence[Event]] | None = None,
) -> ItemCandidates:
    """The true item plus ``num_candidates - 1`` others drawn by training popularity, per test event."""
    catalogue = catalogue if catalogue is not None else {uid: split.history(uid) + split.test.get(uid, [])
                                                        for uid in split.train}
    index: dict[str, int] = {}
    cats: list[tuple[str, ...]] = []
    for events in catalogue.values():
        for ev in events:
            if ev.item_id not in index:
                index[ev.item_id] = len(cats)
                cats.append(ev.categories)
    counts = np.zeros(len(cats))
    for events in split.train.values():
        for ev in events:
            counts[index[ev.item_id]] += 1
    # A little mass on items never trained on keeps the draw finite on tiny slices.
    weights = counts + 0.01
    cdf = np.cumsum(weights) / weights.sum()
    num_candidates = min(num_candidates, len(cats))
    pop_norm = counts / counts.max()
    names = list(index)
    rng = np.random.default_rng([seed, 0x17E4])
    rows, bonus = [], []
    for uid in split.evaluated_users:
        history = split.history(uid)
        last_seen: dict[str, int] = {ev.item_id: i for i, ev in enumerate(history)}
        position = len(history)
        for ev in split.test[uid]:
            row = _draw_candidates(rng, cdf, index[ev.item_id], num_candidates)
            recency = np.array([0.5 ** ((position - last_seen[names[i]]) / RECENCY_HALF_LIFE_EVENTS)
                                if names[i] in last_seen else 0.0 for i in row.tolist()])
            rows.append(row)
            bonus.append(RECENCY_BONUS * recency + POPULARITY_BONUS * pop_norm[row])
            last_seen[ev.item_id] = position
            position += 1
    shape = (len(rows), num_candidates)
    return ItemCandidates(names, cats, np.asarray(rows, dtype=np.int64).reshape(shape),
                          np.asarray(bonus, dtype=np.float64).reshape(shape))


def _draw_candidates(rng: np.random.Generator, cdf: np.ndarray, target: int, size: int) -> np.ndarray:
    """``target`` followed by ``size - 1`` distinct other items drawn by popularity."""
    chosen, taken = [target], {target}
    while len(chosen) < size:
        for d in np.minimum(np.searchsorted(cdf, rng.random(2 * size), side="right"), len(cdf) - 1).tolist():
            if d not in taken:
                taken.add(d)
                chosen.append(d)
                if len(chosen) == size:
                    break
    return np.asarray(chosen, dtype=np.int64)


def sampled_item_rank(scores: np.ndarray) -> float:
    """1-based rank of column 0 among the candidates; ties count against the true item."""
    return 1.0 + float(np.count_nonzero(scores[1:] >= scores[0]))


class _Collector:
    """Collects what one method predicts for every test event."""

    def __init__(self, num_categories: int) -> None:
        self.ranking = RankingAccumulator()
        self.item_ranks: list[float] = []
        self.intensity_true: list[np.ndarray] = []
        self.intensity_score: list[np.ndarray] = []
        # intensity on validation events, only to choose the decision threshold applied to test events
        self.val_true: list[np.ndarray] = []
        self.val_score: list[np.ndarray] = []
        self.num_categories = num_categories

    def result(self) -> dict[str, float]:
        out = {k: v for k, v in self.ranking.result().items()}
        if self.intensity_true:
            threshold = best_f1_threshold(np.stack(self.val_true), np.stack(self.val_score)) if self.val_true else 0.5
            report = classification_report(np.stack(self.intensity_true), np.stack(self.intensity_score), threshold)
            out.update({k: report[k] for k in INTENSITY_METRICS})
            out["intensity_threshold"] = threshold
        ranks = np.asarray(self.item_ranks)
        out["item_hr@10"] = hit_rate_from_ranks(ranks, 10)
        out["item_ndcg@10"] = ndcg_from_ranks(ranks, 10)
        return out


def _intensity_targets(featurizer: Featurizer, events: Sequence[Event]) -> np.ndarray:
    _, intensity, _ = featurizer.targets(events)
    return intensity


# --- non-neural baselines -------------------------------------------------------------------------
def evaluate_baseline(
    factory: Callable[[], OnlinePredictor], split: Split, featurizer: Featurizer, candidates: ItemCandidates
) -> dict[str, float]:
    """Online evaluation of one baseline on all three tasks (intensity derived from its scores)."""
    predictor = factory()
    predictor.fit(split.train)
    taxonomy = featurizer.taxonomy
    horizon = featurizer.spec.intensity_horizon
    collector = _Collector(len(taxonomy))
    tax_of: list[int] = []
    row = 0
    for uid in split.evaluated_users:
        predictor.reset()
        history, test = split.history(uid), split.test[uid]
        truth = _intensity_targets(featurizer, history + test)
        n_train = len(split.train[uid])
        for j, ev in enumerate(history):
            if j >= n_train:
                collector.val_true.append(truth[j - 1])
                collector.val_score.append(_derived_intensity(predictor, predictor.scores(), tax_of, taxonomy, horizon))
            predictor.observe(ev)
        for j, ev in enumerate(test):
            scores = predictor.scores()
            targets = predictor._indices([c for c in ev.categories if c != OTHER], grow=False)
            collector.ranking.add_rank(_best_rank(scores, targets) if targets else float("inf"))
            total = float(scores.sum())
            probs = scores / total if total > 0 else scores
            collector.intensity_true.append(truth[len(history) + j - 1])
            collector.intensity_score.append(_derived_intensity(predictor, scores, tax_of, taxonomy, horizon))
            index = predictor._index
            cand = [max((probs[i] if (i := index.get(c, -1)) >= 0 and i < len(probs) else 0.0)
                        for c in candidates.categories[k]) for k in candidates.candidates[row].tolist()]
            collector.item_ranks.append(sampled_item_rank(np.asarray(cand) + candidates.tie_break[row]))
            row += 1
            predictor.observe(ev)
    return collector.result()


def _derived_intensity(predictor: OnlinePredictor, scores: np.ndarray, tax_of: list[int], taxonomy: Taxonomy,
                       horizon: int) -> np.ndarray:
    """A baseline's next-window intensity: ``1 - (1 - p)^H`` of its normalised ``scores`` per taxonomy entry."""
    total = float(scores.sum())
    probs = scores / total if total > 0 else scores
    while len(tax_of) < len(probs):
        tax_of.append(taxonomy.index(predictor.vocab[len(tax_of)]))
    p_tax = np.bincount(np.asarray(tax_of[: len(probs)], dtype=np.int64), weights=probs, minlength=len(taxonomy))
    return 1.0 - (1.0 - np.clip(p_tax, 0.0, 1.0)) ** horizon


# --- LSTM methods through the tracker's prediction path -------------------------------------------
@dataclass
class _UserRun:
    """Collected per user by :func:`_collect_user` for one LSTM method."""

    val: list[BlendCase] = field(default_factory=list)
    test: list[BlendCase] = field(default_factory=list)
    intensity_true: list[np.ndarray] = field(default_factory=list)
    intensity_score: list[np.ndarray] = field(default_factory=list)
    val_intensity_true: list[np.ndarray] = field(default_factory=list)
    val_intensity_score: list[np.ndarray] = field(default_factory=list)


def _collect_user(tracker: Any, history: Sequence[Event], n_train: int, test: Sequence[Event]) -> _UserRun:
    """Replay one user through ``tracker``'s model and personal state, as the device does.

    The LSTM state runs over the whole sequence with the chunked ``infer`` the tracker uses for batches
    (identical to stepping event by event). Before each validation and test event, the five distributions
    of ``InterestTracker._next_distribution`` are taken from the tracker itself.
    """
    from vane.client.tracker import _infer_sequence

    events = list(history) + list(test)
    model, featurizer = tracker._model, tracker._featurizer
    h, c = model.zero_state(1)
    out = _infer_sequence(model, featurizer.encode(events), h, c)
    intensity_truth = _intensity_targets(featurizer, events)
    personal = tracker._new_personal()
    personal.update_many([(i + 1, ev) for i, ev in enumerate(events[:n_train])])
    run = _UserRun()
    for j in range(n_train, len(events)):
        case = tracker._blend_case(personal, out.interest[j - 1], events[j].categories)
        if j < len(history):
            run.val.append(case)
            run.val_intensity_true.append(intensity_truth[j - 1])
            run.val_intensity_score.append(np.asarray(out.intensity[j - 1], dtype=np.float64))
        else:
            run.test.append(case)
            run.intensity_true.append(intensity_truth[j - 1])
            run.intensity_score.append(np.asarray(out.intensity[j - 1], dtype=np.float64))
        personal.update(j + 1, events[j])
    return run


def _open_tracker(path: Path, blob: bytes, taxonomy: Taxonomy) -> Any:
    from vane.client.tracker import InterestTracker

    return InterestTracker.open(path, key=b"\x07" * 32, model=blob, taxonomy=taxonomy, model_version="eval")


def _score_lstm(runs: Sequence[_UserRun], mix: Mapping[str, float], candidates: ItemCandidates,
                taxonomy_size: int) -> dict[str, float]:
    weights = [mix[f] for f in MIX_FIELDS]
    collector = _Collector(taxonomy_size)
    model_only = RankingAccumulator()
    row = 0
    for run in runs:
        collector.val_true.extend(run.val_intensity_true)
        collector.val_score.extend(run.val_intensity_score)
        for case, y_true, y_score in zip(run.test, run.intensity_true, run.intensity_score, strict=True):
            scores = case.blend(weights)
            collector.ranking.add_rank(case.rank(scores, case.covered(weights)))
            model_w = (1.0, 0.0, 0.0, 0.0, 0.0)
            model_only.add_rank(case.rank(case.blend(model_w), case.covered(model_w)))
            collector.intensity_true.append(y_true)
            collector.intensity_score.append(y_score)
            prob = dict(zip(case.keys, scores.tolist(), strict=True))
            cand = [max(prob.get(c, 0.0) for c in candidates.categories[k])
                    for k in candidates.candidates[row].tolist()]
            collector.item_ranks.append(sampled_item_rank(np.asarray(cand) + candidates.tie_break[row]))
            row += 1
    result = collector.result()
    result.update({f"model_only_{k}": v for k, v in model_only.result().items() if k in CATEGORY_METRICS})
    return result


def _finish_lstm(runs: list[_UserRun], config: EvaluationConfig, candidates: ItemCandidates,
                 taxonomy: Taxonomy, federated_mix: Mapping[str, float] | None = None) -> dict[str, Any]:
    """Score with the Mix the federation picked (``federated_mix``) or else one tuned on validation events."""
    from vane.client.tracker import Mix

    default = asdict(Mix())
    mix = default
    val_objective = float("nan")
    source = "default"
    if config.tune_mix:
        mix, val_objective = tune_mix([case for run in runs for case in run.val])
        source = "tuned on the pooled validation events"
    tuned = mix
    if federated_mix is not None:
        mix, source = dict(federated_mix), "picked by federated evaluation (devices' held-out events)"
    result: dict[str, Any] = _score_lstm(runs, mix, candidates, len(taxonomy))
    result["mix"] = mix
    result["mix_source"] = source
    result["mix_val_objective"] = val_objective
    if federated_mix is not None and config.tune_mix and tuned != mix:
        central = _score_lstm(runs, tuned, candidates, len(taxonomy))
        result["central_tuned_mix"] = {"mix": tuned, **{k: central[k] for k in CATEGORY_METRICS}}
    if mix != default:
        untuned = _score_lstm(runs, default, candidates, len(taxonomy))
        result["default_mix"] = {k: untuned[k] for k in CATEGORY_METRICS}
    return result


def evaluate_with_weights(split: Split, taxonomy: Taxonomy, blob: bytes, weights: Weights | None,
                          config: EvaluationConfig, candidates: ItemCandidates, workdir: Path,
                          federated_mix: Mapping[str, float] | None = None) -> dict[str, Any]:
    """One shared model (centralised or federated) on every user through the tracker's predictor."""
    tracker = _open_tracker(workdir / "shared-model.store", blob, taxonomy)
    try:
        if weights is not None:
            tracker.set_weights(weights)
        runs = [_collect_user(tracker, split.history(uid), len(split.train[uid]), split.test[uid])
                for uid in split.evaluated_users]
    finally:
        tracker.close()
    return _finish_lstm(runs, config, candidates, taxonomy, federated_mix)


def evaluate_local_lstm(split: Split, taxonomy: Taxonomy, blob: bytes, config: EvaluationConfig,
                        candidates: ItemCandidates, workdir: Path) -> dict[str, Any]:
    """Each user's own model, trained on their own training events only (LiteRT ``train``)."""
    runs = []
    losses = []
    for i, uid in enumerate(split.evaluated_users):
        path = workdir / f"local-{i:05d}.store"
        tracker = _open_tracker(path, blob, taxonomy)
        try:
            tracker.record_many(split.train[uid])
            result = tracker.train_local(epochs=config.local_epochs, learning_rate=config.client_learning_rate,
                                         seed=config.seed + i, holdout_fraction=0.0)
            if np.isfinite(result.loss):
                losses.append(result.loss)
            tracker._fresh()
            runs.append(_collect_user(tracker, split.history(uid), len(split.train[uid]), split.test[uid]))
        finally:
            tracker.close()
        for leftover in workdir.glob(path.name + "*"):
            leftover.unlink()
    out = _finish_lstm(runs, config, candidates, taxonomy)
    out["train_loss"] = float(np.mean(losses)) if losses else float("nan")
    return out


# --- centralised training -------------------------------------------------------------------------
def _user_windows(
    featurizer: Featurizer, events: Sequence[Event]
) -> tuple[Features, np.ndarray, np.ndarray, np.ndarray]:
    feats = featurizer.encode(events)
    interest, intensity, valid = featurizer.targets(events)
    return make_windows(feats, interest, intensity, valid, featurizer.spec.window)


def train_centralised(
    split: Split, taxonomy: Taxonomy, spec: ModelSpec, epochs: int, seed: int
) -> tuple[Any, list[float]]:
    """TensorFlow training on every user's training windows pooled, carrying each user's LSTM state.

    As on the device (``train_local``), each window starts from the state the windows before it left;
    the states are recomputed with the current weights at the start of every epoch.
    """
    from vane.server.model import build_model

    model = build_model(spec)
    featurizer = Featurizer(spec, taxonomy)
    users = [_user_windows(featurizer, events) for uid, events in sorted(split.train.items()) if len(events) >= 2]
    keys = Features.FIELDS
    rng = np.random.default_rng([seed, 0xCE])
    losses: list[float] = []
    for _ in range(epochs):
        starts = _window_states(model, users, spec)
        pool = [(u, w) for u, (_, _, _, ww) in enumerate(users) for w in range(len(ww)) if ww[w].any()]
        order = rng.permutation(len(pool))
        epoch_losses = []
        for b in range(0, len(order), spec.batch):
            chosen = [pool[i] for i in order[b : b + spec.batch]]
            feats = Features(*(np.stack([getattr(users[u][0], k)[w] for u, w in chosen]) for k in keys))
            batch = pad_batch(
                feats,
                np.stack([users[u][1][w] for u, w in chosen]),
                np.stack([users[u][2][w] for u, w in chosen]),
                np.stack([users[u][3][w] for u, w in chosen]),
                spec.batch,
                spec.lstm_units,
                np.stack([starts[u][0][w] for u, w in chosen]),
                np.stack([starts[u][1][w] for u, w in chosen]),
            )
            epoch_losses.append(model.train_step(batch))
        losses.append(float(np.mean(epoch_losses)))
        logger.info("centralised epoch %d: loss %.4f", len(losses), losses[-1])
    return model, losses


def _window_states(model: Any, users: list[tuple[Features, np.ndarray, np.ndarray, np.ndarray]],
                   spec: ModelSpec) -> list[tuple[np.ndarray, np.ndarray]]:
    """The state at the start of each window of each user, window index by window index over all users."""
    keys = Features.FIELDS
    units = spec.lstm_units
    states = [(np.zeros((len(u[3]), units), np.float32), np.zeros((len(u[3]), units), np.float32)) for u in users]
    h = np.zeros((len(users), units), np.float32)
    c = np.zeros((len(users), units), np.float32)
    longest = max((len(u[3]) for u in users), default=0)
    for w in range(longest):
        active = [i for i, u in enumerate(users) if len(u[3]) > w]
        for i in active:
            states[i][0][w], states[i][1][w] = h[i], c[i]
        if w == longest - 1:
            break
        feats = Features(*(np.stack([getattr(users[i][0], k)[w] for i in active]) for k in keys))
        out = model.predict(feats, np.ones((len(active), spec.window), np.float32), h[active], c[active])
        h[active], c[active] = out["h"], out["c"]
    return states


def prepare(config: EvaluationConfig) -> tuple[Dataset, Split, Taxonomy]:
    """The dataset, its per-user temporal split and the taxonomy of the training portion."""
    dataset = load_for_evaluation(config)
    split = temporal_split(dataset.users)
    return dataset, split, train_taxonomy(split, config.taxonomy_size)


_EXPORTS: dict[str, bytes] = {}


def initial_export(spec: ModelSpec) -> bytes:
    """The training export of the untrained model of ``spec``, converted once per process."""
    if spec.hash not in _EXPORTS:
        from vane.server.model import build_model, export_training_model

        _EXPORTS[spec.hash] = export_training_model(build_model(spec))
    return _EXPORTS[spec.hash]


# --- the run --------------------------------------------------------------------------------------
def run_evaluation(config: EvaluationConfig, out_dir: str | Path, progress: Callable[[str], None] | None = None
                   ) -> dict[str, Any]:
    """Run every method of ``config`` on one split and write ``results.json``, ``report.md`` and plots."""
    say = progress or (lambda text: logger.info("%s", text))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    dataset, split, taxonomy = prepare(config)
    spec = model_spec(config, taxonomy)
    featurizer = Featurizer(spec, taxonomy)
    candidates = sample_candidates(split, config.seed)
    say(f"{dataset}: split {split.stats()}, taxonomy {len(taxonomy)}")
    results: dict[str, Any] = {
        "config": asdict(config),
        "seed": config.seed,
        "dataset": {k: v for k, v in dataset.stats.items() if k != "categories"},
        "split": {**split.stats(), **split.params},
        "taxonomy": taxonomy_coverage(split, taxonomy),
        "spec": spec.to_dict(),
        "protocol": protocol_notes(config, spec),
        "methods": {},
        "wall_seconds": {},
    }
    methods: dict[str, Any] = results["methods"]
    for name in config.methods:
        if name in BASELINES:
            t0 = time.perf_counter()
            methods[name] = evaluate_baseline(BASELINES[name], split, featurizer, candidates)
            methods[name]["intensity_source"] = "derived: 1-(1-p)^H from the normalised scores"
            results["wall_seconds"][name] = time.perf_counter() - t0
            say(f"{name}: {_brief(methods[name])}")
    lstm = [m for m in config.methods if m in LSTM_METHODS]
    if lstm:
        _run_lstm_methods(lstm, config, split, taxonomy, spec, candidates, out, results, say)
    if config.dataset == "synthetic":
        from vane.simulations.drift import run_drift

        t0 = time.perf_counter()
        results["drift"] = run_drift(out, num_users=config.max_users or 200, seed=config.seed)
        results["wall_seconds_drift"] = time.perf_counter() - t0
    results["total_wall_seconds"] = time.perf_counter() - started
    (out / "results.json").write_text(json.dumps(_jsonable(results), indent=1), encoding="utf-8")
    from vane.simulations.report import write_report

    results["outputs"] = [str(p) for p in write_report(results, out)]
    (out / "results.json").write_text(json.dumps(_jsonable(results), indent=1), encoding="utf-8")
    return results


def _run_lstm_methods(names: list[str], config: EvaluationConfig, split: Split, taxonomy: Taxonomy,
                      spec: ModelSpec, candidates: ItemCandidates, out: Path, results: dict[str, Any],
                      say: Callable[[str], None]) -> None:
    methods, walls = results["methods"], results["wall_seconds"]
    t0 = time.perf_counter()
    blob = initial_export(spec)
    export_s = time.perf_counter() - t0
    results["export_seconds"] = export_s
    with tempfile.TemporaryDirectory(prefix="vane-eval-") as tmp:
        work = Path(tmp)
        if "local-lstm" in names:
            t0 = time.perf_counter()
            methods["local-lstm"] = evaluate_local_lstm(split, taxonomy, blob, config, candidates, work)
            walls["local-lstm"] = time.perf_counter() - t0
            say(f"local-lstm: {_brief(methods['local-lstm'])}")
        if "centralised-lstm" in names:
            t0 = time.perf_counter()
            model, losses = train_centralised(split, taxonomy, spec, config.epochs, config.seed)
            train_s = time.perf_counter() - t0
            methods["centralised-lstm"] = evaluate_with_weights(split, taxonomy, blob, model.weights(), config,
                                                                candidates, work)
            methods["centralised-lstm"].update({"train_loss_by_epoch": losses, "train_seconds": train_s})
            walls["centralised-lstm"] = time.perf_counter() - t0
            say(f"centralised-lstm: {_brief(methods['centralised-lstm'])}")
        if "federated-lstm" in names:
            t0 = time.perf_counter()
            fed = _run_federation(split, taxonomy, spec, blob, config, out / "federation")
            train_s = time.perf_counter() - t0
            picked = next((r["mix"] for r in reversed(fed.rounds) if r.get("mix")), None)
            methods["federated-lstm"] = evaluate_with_weights(split, taxonomy, blob, fed.final_weights, config,
                                                              candidates, work, federated_mix=picked)
            methods["federated-lstm"]["train_seconds"] = train_s
            results["federated_rounds"] = [
                {"round": r["round"], "seconds": r["seconds"], "train": r["train"], "evaluate": r["evaluate"],
                 "mix": r.get("mix")}
                for r in fed.rounds
            ]
            walls["federated-lstm"] = time.perf_counter() - t0
            say(f"federated-lstm: {_brief(methods['federated-lstm'])}")


def _run_federation(split: Split, taxonomy: Taxonomy, spec: ModelSpec, blob: bytes, config: EvaluationConfig,
                    out: Path) -> Any:
    """Flower simulation over every user's training events (one SuperNode per user)."""
    from vane.simulations.federation import run_federated

    # Devices hold everything before the test events; each keeps its newest ~10% (at most 50, about its
    # validation events) aside: training never sees them, and the per-round evaluation on them picks the
    # blend (``mix-grid-step``) with no data leaving the devices. Test events are never on a device.
    users = {uid: split.history(uid) for uid in split.train if len(split.history(uid)) >= 2}
    return run_federated(
        users, taxonomy, spec, rounds=config.rounds, fraction=config.fraction, out_dir=out,
        local_epochs=config.fed_local_epochs, learning_rate=config.client_learning_rate, seed=config.seed,
        model_blob=blob, num_cpus=config.num_cpus or os.cpu_count(), progress=False,
        # About 100 devices per round keep the per-round evaluation cheap on large populations.
        fraction_evaluate=min(1.0, 100.0 / len(users)),
        server_config={"holdout-fraction": 0.1, "mix-grid-step": config.mix_grid_step},
    )


def protocol_notes(config: EvaluationConfig, spec: ModelSpec) -> dict[str, str]:
    return {
        "split": "per user by time: last 10% (>= 1) test, the 10% before validation, the rest training",
        "next_interest": "online over all test events; each predicted from everything before it; 'other' never hits",
        "intensity": f"which taxonomy categories occur in the next {spec.intensity_horizon} events, micro-averaged "
                     "over categories; LSTM: intensity head; baselines: derived 1-(1-p)^H from their scores; "
                     "decisions at the threshold maximising F1 on the validation events (intensity_threshold)",
        "item": f"SAMPLED: true item + {NUM_CANDIDATES - 1} items drawn by training popularity; score = P(category) "
                f"+ {RECENCY_BONUS:g}*0.5^(events since the user last saw the item / {RECENCY_HALF_LIFE_EVENTS:g}) "
                f"+ {POPULARITY_BONUS:g}*popularity/max; ties rank the true item last",
        "lstm_path": "tracker prediction path: LiteRT softmax (other's mass to own out-of-taxonomy categories) "
                     "blended with short-memory, profile, transitions and the last event by a Mix: local and "
                     "centralised tuned on the pooled validation events, federated picked by its own federated "
                     "evaluation on the devices' held-out events",
    }


def _brief(metrics: Mapping[str, Any]) -> str:
    return ", ".join(f"{k} {metrics[k]:.3f}" for k in ("hr@1", "mrr", "roc_auc", "item_hr@10") if k in metrics)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.floating, float)):
        v = float(value)
        return v if np.isfinite(v) else None
    if isinstance(value, np.integer):
        return int(value)
    return value
