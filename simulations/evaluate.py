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
   :class:`~vane.client.predictor.Mix`. The Mix of the local and centralised LSTMs is tuned on the pooled
   validation events (never on test); the federated LSTM uses the Mix its own federated evaluation picked
   (each device scores candidate blends on its held-out events, only the means leave it), with the centrally
   tuned one reported beside it. Both are stored in the results.

   The central reference (``lightgbm-strict``, ``lightgbm-query-time``; :mod:`~vane.simulations.ranker_reference`)
   ranks the device's candidates (:mod:`vane.shared.candidates`) with LightGBM lambdarank; population statistics
   are out-of-fold by user for its training rows.
4. Where each method wins (:mod:`~vane.simulations.evaluate_slices`, for the baselines and the reference): rows
   per bucket of prior events and per event type (repeat, switch to a seen category, new to the person), the
   explore list (HR@5 on new-to-the-person events, ranking only unseen categories), ratios to the best
   non-neural baseline with 95% user-bootstrap intervals, and a new-user run (users held out of training
   entirely, online on their first 20 events; :func:`~vane.simulations.evaluate_ranker.run_new_users`).

Outputs in ``out``: ``results.json``, ``report.md`` and plots (see :mod:`vane.simulations.report`).

Where each piece lives: the sampled next-item task in :mod:`~vane.simulations.candidates`, the per-method
metrics in :mod:`~vane.simulations.collector`, the baselines' run in
:mod:`~vane.simulations.evaluate_baselines`, the LSTMs' replay through the device's predictor in
:mod:`~vane.simulations.evaluate_lstm` and the centralised training in :mod:`~vane.simulations.centralised`.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from vane.shared.errors import ConfigError
from vane.shared.events import OTHER
from vane.shared.features import Featurizer
from vane.shared.protocol import HOLDOUT_FRACTION_KEY, MIX_GRID_STEP_KEY
from vane.shared.spec import ModelSpec
from vane.shared.taxonomy import Taxonomy
from vane.simulations.baselines import BASELINES
from vane.simulations.candidates import (
    NUM_CANDIDATES,
    POPULARITY_BONUS,
    RECENCY_BONUS,
    RECENCY_HALF_LIFE_EVENTS,
    ItemCandidates,
    sample_candidates,
)
from vane.simulations.centralised import train_centralised
from vane.simulations.datasets import Dataset, load_dataset
from vane.simulations.evaluate_baselines import baseline_trace, evaluate_baseline
from vane.simulations.evaluate_fed_ranker import FED_RANKER_METHODS, ranker_new_users, traced_ranker_methods
from vane.simulations.evaluate_lstm import evaluate_local_lstm, evaluate_with_weights, initial_export
from vane.simulations.evaluate_ranker import evaluate_reference, evaluation_sequences, run_new_users, slices_section
from vane.simulations.evaluate_slices import EventInfo, EventTrace
from vane.simulations.federation import FederationResult
from vane.simulations.ranker_reference import VARIANTS, RankerConfig
from vane.simulations.split import Split, temporal_split, train_taxonomy

logger = logging.getLogger("vane.simulations")

LSTM_METHODS = ("local-lstm", "centralised-lstm", "federated-lstm")
RANKER_METHODS: tuple[str, ...] = tuple(VARIANTS)
METHODS: tuple[str, ...] = (*BASELINES, *RANKER_METHODS, *FED_RANKER_METHODS, *LSTM_METHODS)


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
    ranker_rounds, ranker_fraction, ranker_local_epochs : default 120, 0.1, 2
        ``federated-ranker``'s rounds, devices sampled per round, local epochs; ``ranker_secure``: SecAgg+.
    new_users : bool, default True
        Also run the new-user evaluation (users held out of training, their first 20 events) for the
        baselines and the LightGBM reference among ``methods``.
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
    new_users: bool = True
    ranker_rounds: int = 120
    ranker_fraction: float = 0.1
    ranker_local_epochs: int = 2
    ranker_secure: bool = False

    def __post_init__(self) -> None:
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise ConfigError(f"unknown method {unknown[0]!r}; expected some of {', '.join(METHODS)}")
        if self.dataset not in ("taobao", "movielens", "synthetic"):
            raise ConfigError(f"dataset is {self.dataset!r}; expected taobao, movielens or synthetic")
        if not 0.0 < self.ranker_fraction <= 1.0:
            raise ConfigError(f"ranker_fraction is {self.ranker_fraction!r}; expected a fraction in (0, 1]")
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


def prepare(config: EvaluationConfig) -> tuple[Dataset, Split, Taxonomy]:
    """The dataset, its per-user temporal split and the taxonomy of the training portion."""
    dataset = load_for_evaluation(config)
    split = temporal_split(dataset.users)
    return dataset, split, train_taxonomy(split, config.taxonomy_size)

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
    traces = _run_traced_methods(config, split, candidates, results, say)
    lstm = [m for m in config.methods if m in LSTM_METHODS]
    if lstm:
        _run_lstm_methods(lstm, config, split, taxonomy, spec, candidates, out, results, say)
    if traces:
        results["slices"] = slices_section(traces, EventInfo.of(evaluation_sequences(split)), methods, config.seed)
    simple = [m for m in config.methods if m in BASELINES or m in VARIANTS]
    if config.new_users and simple:
        t0 = time.perf_counter()
        results["new_users"] = run_new_users(split, simple, RankerConfig(seed=config.seed), config.seed, progress=say,
                                             extra=ranker_new_users(config, split, say))
        results["wall_seconds_new_users"] = time.perf_counter() - t0
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


def _run_traced_methods(config: EvaluationConfig, split: Split, candidates: ItemCandidates, results: dict[str, Any],
                        say: Callable[[str], None]) -> dict[str, EventTrace]:
    """The LightGBM reference, and every method's per-event ranks (baselines replayed once more, untimed)."""
    traces: dict[str, EventTrace] = {}
    sequences = evaluation_sequences(split)
    for name in config.methods:
        if name in BASELINES:
            predictor = BASELINES[name]()
            predictor.fit(split.train)
            traces[name] = baseline_trace(predictor, sequences)
    ranker = [m for m in config.methods if m in VARIANTS]
    if ranker:
        t0 = time.perf_counter()
        scored, ranker_traces = evaluate_reference(split, ranker, candidates, RankerConfig(seed=config.seed), say)
        wall = time.perf_counter() - t0
        for name in ranker:
            results["methods"][name] = scored[name]
            results["wall_seconds"][name] = wall
            say(f"{name}: {_brief(scored[name])}")
        results["wall_seconds_note"] = "the LightGBM variants share one pass (rows, fits, scoring): both show its total"
        traces.update(ranker_traces)
    traces.update(traced_ranker_methods(config, split, candidates, results, say))  # federated-ranker, central-ranker
    return traces


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
            methods["local-lstm"] = evaluate_local_lstm(
                split, taxonomy, blob, candidates, work, epochs=config.local_epochs,
                learning_rate=config.client_learning_rate, seed=config.seed, tune=config.tune_mix)
            walls["local-lstm"] = time.perf_counter() - t0
            say(f"local-lstm: {_brief(methods['local-lstm'])}")
        if "centralised-lstm" in names:
            t0 = time.perf_counter()
            model, losses = train_centralised(split, taxonomy, spec, config.epochs, config.seed)
            train_s = time.perf_counter() - t0
            methods["centralised-lstm"] = evaluate_with_weights(split, taxonomy, blob, model.weights(), candidates,
                                                                work, tune=config.tune_mix)
            methods["centralised-lstm"].update({"train_loss_by_epoch": losses, "train_seconds": train_s})
            walls["centralised-lstm"] = time.perf_counter() - t0
            say(f"centralised-lstm: {_brief(methods['centralised-lstm'])}")
        if "federated-lstm" in names:
            t0 = time.perf_counter()
            fed = _run_federation(split, taxonomy, spec, blob, config, out / "federation")
            train_s = time.perf_counter() - t0
            picked = next((r["mix"] for r in reversed(fed.rounds) if r.get("mix")), None)
            methods["federated-lstm"] = evaluate_with_weights(split, taxonomy, blob, fed.final_weights, candidates,
                                                              work, tune=config.tune_mix, federated_mix=picked)
            methods["federated-lstm"]["train_seconds"] = train_s
            results["federated_rounds"] = [
                {"round": r["round"], "seconds": r["seconds"], "train": r["train"], "evaluate": r["evaluate"],
                 "mix": r.get("mix")}
                for r in fed.rounds
            ]
            walls["federated-lstm"] = time.perf_counter() - t0
            say(f"federated-lstm: {_brief(methods['federated-lstm'])}")


def _run_federation(split: Split, taxonomy: Taxonomy, spec: ModelSpec, blob: bytes, config: EvaluationConfig,
                    out: Path) -> FederationResult:
    """Flower simulation over every user's training events (one SuperNode per user)."""
    from vane.simulations.federation import run_federated

    # Devices hold everything before the test events; each keeps its newest ~10% (at most 50, about its
    # validation events) aside: training never sees them, and the per-round evaluation on them picks the
    # blend (``mix-grid-step``) with no data leaving the devices. Test events are never on a device.
    users = {uid: split.history(uid) for uid in split.train if len(split.history(uid)) >= 2}
    return run_federated(
        users, taxonomy, spec, rounds=config.rounds, fraction=config.fraction, out_dir=out,
        local_epochs=config.fed_local_epochs, learning_rate=config.client_learning_rate, seed=config.seed,
        model_blob=blob, num_cpus=config.num_cpus or os.cpu_count(), progress=True,
        # About 100 devices per round keep the per-round evaluation cheap on large populations.
        fraction_evaluate=min(1.0, 100.0 / len(users)),
        server_config={HOLDOUT_FRACTION_KEY: 0.1, MIX_GRID_STEP_KEY: config.mix_grid_step},
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
        "lightgbm": "central reference: LightGBM lambdarank over the device's candidates (last 60 distinct, top-20 "
                    "popular, top-20 population transitions; the rest by popularity) and their 49 features; population "
                    "statistics out-of-fold by user for training rows (5 folds), all training users' training events "
                    "for test rows; early stopping on validation events; strict: time features at the last event's "
                    "time; query-time: at the predicted event's time",
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
