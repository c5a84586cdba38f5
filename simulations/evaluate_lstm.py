"""The three LSTM methods of the evaluation, answered through the tracker's on-device prediction path.

- **local-lstm**: each user's own model, trained on their own training events only (LiteRT ``train``,
  ``InterestTracker.train_local``);
- **centralised-lstm**: one model trained in TensorFlow on the pooled training windows
  (:mod:`vane.simulations.centralised`);
- **federated-lstm**: one model trained by the Flower simulation (:mod:`vane.simulations.federation`).

Every user is replayed event by event as on the device: the LiteRT softmax (its ``other`` mass handed to
the person's own out-of-taxonomy categories) blended with the short-memory, profile, transition and
last-event distributions by a :class:`~vane.client.predictor.Mix`. The five distributions before each
validation and test event are kept in the compact :class:`~vane.shared.blend.BlendCase` form, so one
replay scores any Mix: the local and centralised LSTMs use one tuned on the pooled validation events,
the federated LSTM the one its own federated evaluation picked.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from vane.shared.blend import MIX_FIELDS, BlendCase, tune_mix
from vane.shared.events import Event
from vane.shared.metrics import RankingAccumulator
from vane.shared.spec import ModelSpec
from vane.shared.taxonomy import Taxonomy
from vane.shared.weights import Weights
from vane.simulations.candidates import ItemCandidates, sampled_item_rank
from vane.simulations.collector import CATEGORY_METRICS, MethodCollector, intensity_targets
from vane.simulations.split import Split

if TYPE_CHECKING:
    from vane.client.tracker import InterestTracker

#: Key of the devices' store files during an evaluation (the stores live in a temporary folder).
_EVAL_KEY = b"\x07" * 32

_EXPORTS: dict[str, bytes] = {}


def initial_export(spec: ModelSpec) -> bytes:
    """The training export of the untrained model of ``spec``, converted once per process."""
    if spec.hash not in _EXPORTS:
        from vane.server.model import build_model, export_training_model

        _EXPORTS[spec.hash] = export_training_model(build_model(spec))
    return _EXPORTS[spec.hash]


@dataclass
class UserRun:
    """What one user's replay collected for one LSTM method (validation and test events)."""

    val: list[BlendCase] = field(default_factory=list)
    test: list[BlendCase] = field(default_factory=list)
    intensity_true: list[np.ndarray] = field(default_factory=list)
    intensity_score: list[np.ndarray] = field(default_factory=list)
    val_intensity_true: list[np.ndarray] = field(default_factory=list)
    val_intensity_score: list[np.ndarray] = field(default_factory=list)


def replay_user(tracker: InterestTracker, history: Sequence[Event], n_train: int, test: Sequence[Event]) -> UserRun:
    """Replay one user through ``tracker``'s model and predictor, as the device does.

    The LSTM runs over the whole sequence (``LiteModel.infer_sequence``, the same numbers as stepping event
    by event). A fresh personal state learns the training events; before each validation and test event,
    the tracker's :class:`~vane.client.predictor.NextInterestPredictor` gives the five distributions it
    blends (:meth:`~vane.client.predictor.NextInterestPredictor.blend_case`).

    Parameters
    ----------
    tracker : InterestTracker
        A tracker with a model; its own store and state are not used.
    history : sequence of Event
        The user's training then validation events.
    n_train : int
        How many of ``history`` are training events.
    test : sequence of Event
    """
    model, featurizer = tracker.model, tracker.featurizer
    if model is None or featurizer is None:
        raise ValueError("the evaluation's tracker has no model; open it with model=...")
    events = list(history) + list(test)
    h, c = model.zero_state(1)
    out = model.infer_sequence(featurizer.encode(events), h, c)
    intensity_truth = intensity_targets(featurizer, events)
    personal = tracker.new_personal_state()
    predictor = tracker.predictor
    personal.update_many([(i + 1, ev) for i, ev in enumerate(events[:n_train])])
    run = UserRun()
    for j in range(n_train, len(events)):
        case = predictor.blend_case(personal, out.interest[j - 1], events[j].categories)
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


def _open_tracker(path: Path, blob: bytes, taxonomy: Taxonomy) -> InterestTracker:
    from vane.client.tracker import InterestTracker

    return InterestTracker.open(path, key=_EVAL_KEY, model=blob, taxonomy=taxonomy, model_version="eval")


def score_runs(runs: Sequence[UserRun], mix: Mapping[str, float], candidates: ItemCandidates) -> dict[str, float]:
    """The metrics of the replays ``runs`` (every evaluated user, in order) under the blend ``mix``."""
    weights = [mix[f] for f in MIX_FIELDS]
    collector = MethodCollector()
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
            collector.item_ranks.append(sampled_item_rank(candidates.scores(row, prob)))
            row += 1
    result = collector.result()
    result.update({f"model_only_{k}": v for k, v in model_only.result().items() if k in CATEGORY_METRICS})
    return result


def finish_runs(runs: list[UserRun], candidates: ItemCandidates, tune: bool,
                federated_mix: Mapping[str, float] | None = None) -> dict[str, Any]:
    """Score with the Mix the federation picked (``federated_mix``) or else one tuned on validation events.

    Parameters
    ----------
    runs : list of UserRun
        Every evaluated user's replay, in evaluation order.
    candidates : ItemCandidates
    tune : bool
        Tune the Mix on the pooled validation events (else the default Mix); with ``federated_mix``, the
        tuned Mix is reported beside it.
    federated_mix : mapping, optional
        The Mix the federated evaluation picked.
    """
    from vane.client.predictor import Mix

    default = asdict(Mix())
    mix = default
    val_objective = float("nan")
    source = "default"
    if tune:
        mix, val_objective = tune_mix([case for run in runs for case in run.val])
        source = "tuned on the pooled validation events"
    tuned = mix
    if federated_mix is not None:
        mix, source = dict(federated_mix), "picked by federated evaluation (devices' held-out events)"
    result: dict[str, Any] = score_runs(runs, mix, candidates)
    result["mix"] = mix
    result["mix_source"] = source
    result["mix_val_objective"] = val_objective
    if federated_mix is not None and tune and tuned != mix:
        central = score_runs(runs, tuned, candidates)
        result["central_tuned_mix"] = {"mix": tuned, **{k: central[k] for k in CATEGORY_METRICS}}
    if mix != default:
        untuned = score_runs(runs, default, candidates)
        result["default_mix"] = {k: untuned[k] for k in CATEGORY_METRICS}
    return result


def evaluate_with_weights(split: Split, taxonomy: Taxonomy, blob: bytes, weights: Weights | None,
                          candidates: ItemCandidates, workdir: Path, tune: bool = True,
                          federated_mix: Mapping[str, float] | None = None) -> dict[str, Any]:
    """One shared model (centralised or federated) on every user through the tracker's predictor.

    Parameters
    ----------
    split : Split
    taxonomy : Taxonomy
    blob : bytes
        The training export of the model's spec.
    weights : Weights or None
        The trained weights (None: the export's own).
    candidates : ItemCandidates
    workdir : path
        Where the evaluation's store lives (a temporary folder).
    tune : bool, default True
        See :func:`finish_runs`.
    federated_mix : mapping, optional
        See :func:`finish_runs`.
    """
    tracker = _open_tracker(workdir / "shared-model.store", blob, taxonomy)
    try:
        if weights is not None:
            tracker.set_weights(weights)
        runs = [replay_user(tracker, split.history(uid), len(split.train[uid]), split.test[uid])
                for uid in split.evaluated_users]
    finally:
        tracker.close()
    return finish_runs(runs, candidates, tune, federated_mix)


def evaluate_local_lstm(split: Split, taxonomy: Taxonomy, blob: bytes, candidates: ItemCandidates, workdir: Path,
                        epochs: int, learning_rate: float, seed: int, tune: bool = True) -> dict[str, Any]:
    """Each user's own model, trained on their own training events only (LiteRT ``train``).

    Parameters
    ----------
    split, taxonomy, blob, candidates, workdir
        As for :func:`evaluate_with_weights`.
    epochs : int
        Local training epochs per user.
    learning_rate : float
    seed : int
        User ``i`` trains with seed ``seed + i``.
    tune : bool, default True
        See :func:`finish_runs`.
    """
    runs = []
    losses = []
    for i, uid in enumerate(split.evaluated_users):
        path = workdir / f"local-{i:05d}.store"
        tracker = _open_tracker(path, blob, taxonomy)
        try:
            tracker.record_many(split.train[uid])
            if len(split.train[uid]) >= 2:  # train_local refuses fewer (ConfigError)
                result = tracker.train_local(epochs=epochs, learning_rate=learning_rate, seed=seed + i,
                                             holdout_fraction=0.0)
                losses.append(result.loss)
            tracker.refresh()
            runs.append(replay_user(tracker, split.history(uid), len(split.train[uid]), split.test[uid]))
        finally:
            tracker.close()
        for leftover in workdir.glob(path.name + "*"):
            leftover.unlink()
    out = finish_runs(runs, candidates, tune)
    out["train_loss"] = float(np.mean(losses)) if losses else float("nan")
    return out



