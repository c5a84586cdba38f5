"""The federated candidate ranker in the evaluation, and the same network trained centrally.

``federated-ranker``: the real thing, end to end. One Flower simulation over the training users' devices
(one encrypted store each, holding the user's training and validation events):

1. the population statistics are summed by federated analytics (``population-stats``, under SecAgg+
   when ``secure`` is on) and shipped to the devices with the model;
2. every round each device trains only the ranker (``train-parts = ranker``) on its own events, with
   the statistics *less its own counts*, and the server averages the updates (FedAvg by default);
3. the final weights are scored on the test events with LiteRT (``rank``), with the published
   statistics, at the predicted event's own time (the tracker knows when it is asked).

``central-ranker``: the same network, trained in TensorFlow on every training user's queries pooled,
with out-of-fold statistics (as the LightGBM reference), scored the same way. It says how much of the
gap to LightGBM is federation and how much is the network.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from vane.client.runtime import LiteModel
from vane.shared.events import OTHER, Event
from vane.shared.metrics import hit_rate_from_ranks, ndcg_from_ranks, roc_auc
from vane.shared.population import PopulationStats, population_stats
from vane.shared.ranker_data import RankerExamples, pack, ranker_examples
from vane.shared.spec import ModelSpec
from vane.shared.taxonomy import Taxonomy
from vane.simulations.candidates import ItemCandidates, sampled_item_rank
from vane.simulations.evaluate_ranker import evaluation_sequences
from vane.simulations.evaluate_slices import EventTrace, ranking_metrics
from vane.simulations.ranker_reference import fold_statistics, score_sequences
from vane.simulations.split import Split

logger = logging.getLogger("vane.simulations")

FED_RANKER_METHODS = ("federated-ranker", "central-ranker")


@dataclass
class FedRankerConfig:
    """Settings of the ranker methods.

    Parameters
    ----------
    units : int, default 64
        The ranker's first hidden layer (the second has half).
    rounds, fraction, local_epochs, learning_rate : federated training (Adam on the device, FedAvg on the
        server): 120 rounds of a sampled tenth of the devices, 2 local epochs each. Every device in every
        round with 15 local epochs levelled off by round 1-3 (Taobao HR@1 0.410-0.413, against the pooled
        network's 0.420): the average of many devices' long local runs is a client-drift fixed point. Small
        cohorts with short local runs take many more, smaller global steps for the same device work
        (Taobao HR@1 0.4165 after 80 rounds, 0.4181 after 120; MovieLens 0.5487 and 0.5475).
    learning_rate_decay : float, default 1.0
        The device's rate in round ``r`` is ``learning_rate * learning_rate_decay ** (r - 1)``.
    strategy : str, default "fedavg"
    secure : bool, default False
        Run the federation under SecAgg+ (the statistics round and every training round); off, the sums are
        formed in the clear, which changes nothing but SecAgg+'s rounding (tests/simulations/
        test_population_fed.py shows the sums equal) and takes a fraction of the time.
    central_epochs, central_learning_rate : the central network's training
    """

    units: int = 64
    rounds: int = 120
    fraction: float = 0.1
    local_epochs: int = 2
    learning_rate: float = 0.005
    learning_rate_decay: float = 1.0
    strategy: str = "fedavg"
    secure: bool = False
    central_epochs: int = 4
    central_learning_rate: float = 0.003
    seed: int = 0


def ranker_spec(base: ModelSpec, config: FedRankerConfig) -> ModelSpec:
    """``base`` with the ranker (the LSTM's fields stay as they are)."""
    return replace(base, ranker_units=config.units, ranker_candidates=100, ranker_batch=32)


class LiteScorer:
    """A LiteRT model's ``rank`` behind the ``predict(features)`` of a LightGBM booster (for the traces)."""

    def __init__(self, model: LiteModel) -> None:
        self.model = model
        self.last_intensity: np.ndarray = np.zeros(0)

    def predict(self, features: np.ndarray, num_threads: int = 1) -> np.ndarray:
        c = self.model.spec.ranker_candidates
        n = len(features)
        x, mask = pack([features], c)
        score, intensity = self.model.rank(x, mask)
        out = np.full(n, -1e9)
        out[: min(n, c)] = score[0, : min(n, c)]
        self.last_intensity = np.zeros(n)
        self.last_intensity[: min(n, c)] = intensity[0, : min(n, c)]
        return out


def score_model(model: LiteModel, stats: PopulationStats, split: Split, taxonomy: Taxonomy, horizon: int,
                candidates: ItemCandidates) -> tuple[dict[str, Any], EventTrace]:
    """Every test event ranked by ``model`` at its own time: the metrics, with intensity AUC, and the trace."""
    scorer = LiteScorer(model)
    probs: list[dict[str, float]] = []
    intensity_rows: list[np.ndarray] = []
    # A category that is no candidate gets a thousandth of its population share (it ranks below every
    # candidate, and popular ones above rare ones).
    prior = np.array([1e-3 * stats.share(name) for name in taxonomy.names])

    def keep(variant: str, p: dict[str, float]) -> None:
        if variant != "query-time":
            return
        probs.append(p)
        row = prior.copy()
        for name, value in zip(p, scorer.last_intensity, strict=False):
            i = taxonomy.index(name) if name in taxonomy else 0
            row[i] = max(row[i], float(value))
        intensity_rows.append(row)

    sequences = evaluation_sequences(split)
    # The strict variant asks the same model, trained on query times, at the time of the event before plus
    # the person's median gap (asked at the event before's own time it reads "no time has passed").
    traces = score_sequences({"query-time": scorer, "strict": LiteScorer(model)}, stats, sequences, keep,
                             strict_gap=True)
    trace = traces["query-time"]
    strict = ranking_metrics(np.asarray(traces["strict"].ranks))
    truth = intensity_truth(sequences, taxonomy, horizon)
    item_ranks = np.asarray([sampled_item_rank(candidates.scores(row, p)) for row, p in enumerate(probs)])
    metrics = {**ranking_metrics(np.asarray(trace.ranks)), "item_hr@10": hit_rate_from_ranks(item_ranks, 10),
               "item_ndcg@10": ndcg_from_ranks(item_ranks, 10),
               "roc_auc": roc_auc(truth, np.stack(intensity_rows)) if intensity_rows else float("nan"),
               **dict.fromkeys(("accuracy", "recall", "f1"), float("nan")),
               "strict_hr@1": strict["hr@1"], "strict_mrr": strict["mrr"]}
    return metrics, trace


def intensity_truth(sequences: Sequence[tuple[Sequence[Event], Sequence[Event]]], taxonomy: Taxonomy,
                    horizon: int) -> np.ndarray:
    """Per test event: which taxonomy categories occur in it and the next ``horizon - 1`` test events."""
    rows = []
    for _, scored in sequences:
        for j in range(len(scored)):
            row = np.zeros(len(taxonomy))
            for event in scored[j: j + horizon]:
                for name in event.categories:
                    row[taxonomy.index(name) if name in taxonomy else taxonomy.index(OTHER)] = 1.0
            rows.append(row)
    return np.stack(rows) if rows else np.zeros((0, len(taxonomy)))


def device_histories(split: Split) -> dict[str, list[Event]]:
    """What each training user's device holds: its training and validation events."""
    return {u: list(split.train[u]) + list(split.val.get(u, [])) for u in split.train}


def train_federated_ranker(split: Split, taxonomy: Taxonomy, base: ModelSpec, config: FedRankerConfig,
                           workdir: Path, num_cpus: int | None = None
                           ) -> tuple[LiteModel, PopulationStats, dict[str, Any]]:
    """Train the ranker with Flower over ``split``'s training users (statistics by federated analytics first).

    Returns the LiteRT model with the final weights, the published statistics and the run's figures.
    """
    from vane.server.model import export_training_model
    from vane.shared.population_artifact import PopulationArtifact
    from vane.simulations.federation import run_isolated

    spec = ranker_spec(base, config)
    blob = export_training_model(spec)
    users = device_histories(split)
    t0 = time.perf_counter()
    result = run_isolated(users=users, taxonomy=taxonomy, spec=spec, rounds=config.rounds, fraction=config.fraction,
                          out_dir=workdir / "federated-ranker", strategy=config.strategy,
                          local_epochs=config.local_epochs, learning_rate=config.learning_rate, seed=config.seed,
                          fraction_evaluate=0.05, model_blob=blob, num_cpus=num_cpus, progress=False,
                          server_config={"population-stats": True, "train-parts": "ranker",
                                         "learning-rate-decay": config.learning_rate_decay,
                                         "evaluate-initial": False, "secure-aggregation": config.secure})
    train_s = time.perf_counter() - t0
    found = sorted((workdir / "federated-ranker").rglob("*.vpop"))
    if not found:
        raise FileNotFoundError(f"the federated run published no population statistics under {workdir}")
    artifact = PopulationArtifact.load(found[-1], taxonomy)
    model = LiteModel.from_bytes(blob, spec)
    assert result.final_weights is not None
    model.set_weights(result.final_weights)
    info = {"rounds": config.rounds, "fraction": config.fraction, "local_epochs": config.local_epochs,
            "learning_rate": config.learning_rate, "learning_rate_decay": config.learning_rate_decay,
            "devices_per_round": float(np.median([len(r.get("aggregated-nodes", [])) for r in result.rounds
                                                  if r.get("round", 0) > 0] or [0])),
            "devices": len(users), "train_seconds": train_s, "statistics_version": artifact.version,
            "statistics_secure_aggregation": artifact.secure_aggregation, "statistics_dp": dict(artifact.dp),
            "statistics_devices": artifact.devices,
            "population_features": "training: global statistics less the device's own counts; test: global"}
    return model, artifact.stats(taxonomy), info


def run_federated_ranker(split: Split, taxonomy: Taxonomy, base: ModelSpec, config: FedRankerConfig,
                         candidates: ItemCandidates, workdir: Path, num_cpus: int | None = None,
                         progress: Callable[[str], None] | None = None) -> tuple[dict[str, Any], EventTrace]:
    """Train the ranker with Flower and score it on the test events."""
    say = progress or (lambda _: None)
    model, stats, info = train_federated_ranker(split, taxonomy, base, config, workdir, num_cpus)
    metrics, trace = score_model(model, stats, split, taxonomy, model.spec.intensity_horizon, candidates)
    metrics.update(info)
    say(f"federated-ranker: HR@1 {metrics['hr@1']:.4f}, MRR {metrics['mrr']:.4f}, AUC {metrics['roc_auc']:.4f} "
        f"({info['train_seconds']:.0f} s, {config.rounds} rounds)")
    return metrics, trace


def central_examples(split: Split, config: FedRankerConfig, spec: ModelSpec, taxonomy: Taxonomy | None
                     ) -> tuple[RankerExamples, RankerExamples]:
    """Pooled training and validation queries, each user's with out-of-fold statistics."""
    stats_of = fold_statistics(split.train, 5, config.seed)
    parts: dict[str, list[RankerExamples]] = {"train": [], "val": []}
    for u in split.train:
        events = list(split.train[u]) + list(split.val.get(u, []))
        n_train = len(split.train[u])
        parts["train"].append(ranker_examples(events, stats_of[u], spec.ranker_candidates, spec.intensity_horizon,
                                              stop=n_train))
        if len(events) > n_train:
            parts["val"].append(ranker_examples(events, stats_of[u], spec.ranker_candidates,
                                                spec.intensity_horizon, start=n_train))

    def join(items: list[RankerExamples]) -> RankerExamples:
        return RankerExamples(*(np.concatenate([getattr(e, f) for e in items]) for f in
                                ("features", "mask", "target", "future")))

    return join(parts["train"]), join(parts["val"])


def train_central_ranker(split: Split, base: ModelSpec, config: FedRankerConfig,
                         progress: Callable[[str], None] | None = None) -> tuple[LiteModel, PopulationStats, float]:
    """The network trained centrally in TensorFlow on pooled queries; its LiteRT export, the statistics of
    every training user (what it is asked with) and the training seconds."""
    from vane.server.model import build_model, export_inference_model
    from vane.server.ranker_model import train_ranker_step

    say = progress or (lambda _: None)
    spec = ranker_spec(base, config)
    t0 = time.perf_counter()
    train, _ = central_examples(split, config, spec, None)
    model = build_model(spec)
    rng = np.random.default_rng(config.seed)
    for epoch in range(config.central_epochs):
        order = rng.permutation(len(train))
        losses = [train_ranker_step(model, train.take(order[i: i + spec.ranker_batch]), config.central_learning_rate)
                  for i in range(0, len(order), spec.ranker_batch)]
        say(f"central-ranker epoch {epoch + 1}: loss {np.mean(losses):.4f}")
    lite = LiteModel.from_bytes(export_inference_model(model), spec)
    return lite, population_stats(split.train.values()), time.perf_counter() - t0


def run_central_ranker(split: Split, taxonomy: Taxonomy, base: ModelSpec, config: FedRankerConfig,
                       candidates: ItemCandidates, progress: Callable[[str], None] | None = None
                       ) -> tuple[dict[str, Any], EventTrace]:
    """The same network trained centrally (TensorFlow, pooled queries), exported and scored with LiteRT."""
    say = progress or (lambda _: None)
    lite, stats, train_s = train_central_ranker(split, base, config, say)
    metrics, trace = score_model(lite, stats, split, taxonomy, lite.spec.intensity_horizon, candidates)
    metrics.update({"train_seconds": train_s, "epochs": config.central_epochs})
    say(f"central-ranker: HR@1 {metrics['hr@1']:.4f}, MRR {metrics['mrr']:.4f}, AUC {metrics['roc_auc']:.4f}")
    return metrics, trace


def new_user_traces(names: Sequence[str], split: Split, held: Sequence[str], taxonomy: Taxonomy, base: ModelSpec,
                    config: FedRankerConfig, sequences: Sequence[tuple[Sequence[Event], Sequence[Event]]],
                    num_cpus: int | None, say: Callable[[str], None]) -> dict[str, EventTrace]:
    """The ranker methods trained without the ``held`` users (never on a device, never in the statistics)
    and asked on their ``sequences`` (query time)."""
    import tempfile

    out = set(held)
    rest = Split({u: e for u, e in split.train.items() if u not in out},
                 {u: e for u, e in split.val.items() if u not in out}, {})
    traces: dict[str, EventTrace] = {}
    for name in names:
        if name == "federated-ranker":
            with tempfile.TemporaryDirectory(prefix="vane-fed-ranker-new-") as tmp:
                model, stats, _ = train_federated_ranker(rest, taxonomy, base, config, Path(tmp), num_cpus)
        else:
            model, stats, _ = train_central_ranker(rest, base, config)
        scored = score_sequences({"query-time": LiteScorer(model)}, stats, sequences)
        traces[name] = scored["query-time"]
        say(f"new users, {name}: HR@1 {ranking_metrics(np.asarray(traces[name].ranks))['hr@1']:.4f}")
    return traces


__all__ = ["FED_RANKER_METHODS", "FedRankerConfig", "LiteScorer", "new_user_traces", "run_central_ranker",
           "run_federated_ranker", "run_ranker_methods", "score_model", "train_central_ranker",
           "train_federated_ranker"]


def run_ranker_methods(names: Sequence[str], split: Split, taxonomy: Taxonomy, base: ModelSpec,
                       config: FedRankerConfig, candidates: ItemCandidates, results: dict[str, Any],
                       num_cpus: int | None, say: Callable[[str], None]) -> dict[str, EventTrace]:
    """Run the requested :data:`FED_RANKER_METHODS` into ``results`` (metrics and wall times); their traces."""
    import tempfile

    traces: dict[str, EventTrace] = {}
    for name in names:
        t0 = time.perf_counter()
        if name == "federated-ranker":
            with tempfile.TemporaryDirectory(prefix="vane-fed-ranker-") as tmp:
                metrics, trace = run_federated_ranker(split, taxonomy, base, config, candidates, Path(tmp),
                                                      num_cpus, say)
        else:
            metrics, trace = run_central_ranker(split, taxonomy, base, config, candidates, say)
        results["methods"][name] = metrics
        results["wall_seconds"][name] = time.perf_counter() - t0
        traces[name] = trace
    return traces


Sequences = Sequence[tuple[Sequence[Event], Sequence[Event]]]


def ranker_new_users(config: Any, split: Split, say: Callable[[str], None]
                     ) -> Callable[[list[str], Sequences], dict[str, EventTrace]] | None:
    """The new-user run's ``extra`` for the ranker methods of an ``EvaluationConfig`` (None when it has none)."""
    names = [m for m in config.methods if m in FED_RANKER_METHODS]
    if not names:
        return None
    taxonomy, base, ranker = _settings(config, split)

    def extra(held: list[str], sequences: Sequences) -> dict[str, EventTrace]:
        return new_user_traces(names, split, held, taxonomy, base, ranker, sequences, config.num_cpus, say)

    return extra


def _settings(config: Any, split: Split) -> tuple[Taxonomy, ModelSpec, FedRankerConfig]:
    """The taxonomy, the LSTM's spec and the ranker settings of an ``EvaluationConfig``."""
    from vane.simulations.split import train_taxonomy

    taxonomy = train_taxonomy(split, config.taxonomy_size)
    base = ModelSpec(num_categories=len(taxonomy), window=config.window, lstm_units=config.lstm_units,
                     intensity_horizon=config.intensity_horizon, learning_rate=config.learning_rate, seed=config.seed)
    return taxonomy, base, FedRankerConfig(rounds=config.ranker_rounds, fraction=config.ranker_fraction,
                                           local_epochs=config.ranker_local_epochs, seed=config.seed,
                                           secure=config.ranker_secure)


def traced_ranker_methods(config: Any, split: Split, candidates: ItemCandidates, results: dict[str, Any],
                          say: Callable[[str], None]) -> dict[str, EventTrace]:
    """:func:`run_ranker_methods` for the ranker methods an ``EvaluationConfig`` asks for (none: nothing)."""
    names = [m for m in config.methods if m in FED_RANKER_METHODS]
    if not names:
        return {}
    taxonomy, base, ranker = _settings(config, split)
    return run_ranker_methods(names, split, taxonomy, base, ranker, candidates, results, config.num_cpus, say)
