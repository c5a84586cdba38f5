"""On-device training and local evaluation of the interest model.

The newest events of a device are its holdout (:func:`holdout_size`): :func:`train_local` never
trains on them and :func:`evaluate_local` predicts each of them from everything before it, as the
tracker would have answered at that moment. The tracker's ``train_local``/``evaluate_local``
call these with its own store, model and predictor; a federated round calls the tracker.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from vane.client.answers import ranked
from vane.client.personal import PersonalState
from vane.client.predictor import NextInterestPredictor
from vane.client.runtime import LiteModel
from vane.shared.blend import BlendCase, grid_ranks
from vane.shared.errors import ConfigError
from vane.shared.events import Event
from vane.shared.features import Features, Featurizer, make_windows, pad_batch
from vane.shared.metrics import RankingAccumulator, classification_report
from vane.shared.protocol import NUM_EXAMPLES_KEY, mix_metric_key


@dataclass(frozen=True)
class TrainResult:
    """What one :func:`train_local` call did.

    Attributes
    ----------
    loss : float
        Mean training loss over the steps.
    num_examples : int
        Events trained on (non-padding window positions).
    steps, epochs : int
        Optimiser steps taken and epochs asked for.
    holdout : int
        Newest events kept aside.
    """

    loss: float
    num_examples: int
    steps: int
    epochs: int
    holdout: int


def holdout_size(n: int, fraction: float = 0.1, cap: int = 50) -> int:
    """Newest events kept aside for evaluation: 10% (at least 1, at most ``cap``), none below 10 events."""
    if n < 10:
        return 0
    return max(1, min(cap, int(round(n * fraction))))


def window_states(model: LiteModel, windows: Features) -> tuple[np.ndarray, np.ndarray]:
    """The LSTM state at the start of each window, carried from the windows before it.

    Parameters
    ----------
    model : LiteModel
        The model whose current weights compute the states.
    windows : Features
        One person's consecutive windows, shapes (W, T, ...).

    Returns
    -------
    h0, c0 : ndarray
        (W, U) each.
    """
    units = model.spec.lstm_units
    n = len(windows.item)
    h0 = np.zeros((n, units), np.float32)
    c0 = np.zeros((n, units), np.float32)
    h, c = model.zero_state(1)
    for w in range(n):
        h0[w], c0[w] = h[0], c[0]
        out = model.infer_sequence(windows.select(w), h, c)
        h, c = out.h, out.c
    return h0, c0


def train_local(model: LiteModel, featurizer: Featurizer, events: Sequence[Event], epochs: int = 1,
                learning_rate: float | None = None, seed: int = 0, holdout_fraction: float = 0.1,
                text: np.ndarray | None = None) -> TrainResult:
    """Train ``model`` on ``events`` (oldest first) through the LiteRT ``train`` signature.

    ``text``: the events' text embeddings, ``(len(events), text_dim)``, for a model with ``text_dim``
    (zeros when omitted).

    The newest :func:`holdout_size` events are never trained on. Windows carry the LSTM state of
    the windows before them, recomputed with the current weights at the start of every epoch.

    Raises
    ------
    ConfigError
        For ``epochs`` below 1, a learning rate that is not a positive number, or fewer than 2 events
        left to train on (the message says how many there are).
    """
    if not isinstance(epochs, int) or epochs < 1:
        raise ConfigError(f"epochs is {epochs!r}; expected an integer >= 1")
    spec = model.spec
    lr = spec.learning_rate if learning_rate is None else float(learning_rate)
    if not (lr > 0 and math.isfinite(lr)):
        raise ConfigError(f"learning_rate is {learning_rate!r}; expected a positive number")
    holdout = holdout_size(len(events), holdout_fraction)
    train = list(events[: len(events) - holdout])
    if len(train) < 2:
        raise ConfigError(f"need at least 2 events to train on (each example is an event and the one after it); "
                          f"have {len(train)} after holding out the newest {holdout} of {len(events)} for evaluation")
    feats = featurizer.encode(train, text=None if text is None else text[: len(train)])
    interest, intensity, valid = featurizer.targets(train)
    wf, wi, wn, ww = make_windows(feats, interest, intensity, valid, spec.window)
    rng = np.random.default_rng(seed)
    losses: list[float] = []
    steps = 0
    for _ in range(epochs):
        h0, c0 = window_states(model, wf)
        order = rng.permutation(len(wf.item))
        for start in range(0, len(order), spec.batch):
            idx = order[start : start + spec.batch]
            batch = pad_batch(wf.select(idx), wi[idx], wn[idx], ww[idx], spec.batch, spec.lstm_units, h0[idx], c0[idx])
            losses.append(model.train(batch, lr))
            steps += 1
    return TrainResult(float(np.mean(losses)), int(np.count_nonzero(ww)), steps, epochs, holdout)


def evaluate_local(events: Sequence[tuple[int, Event]], new_personal: Callable[[], PersonalState],
                   predictor: NextInterestPredictor, model: LiteModel | None, featurizer: Featurizer | None,
                   holdout_fraction: float = 0.1, ks: tuple[int, ...] = (1, 5, 10),
                   mix_candidates: Sequence[Sequence[float]] = (), text: np.ndarray | None = None) -> dict[str, float]:
    """Metrics on the held-out newest ``events``, each predicted from everything before it.

    Parameters
    ----------
    events : sequence of (int, Event)
        The device's stored events with their sequence numbers, oldest first.
    new_personal : callable
        Makes an empty :class:`PersonalState` (the tracker's half-life and detector settings).
    predictor : NextInterestPredictor
        The blend to score.
    model, featurizer : optional
        The interest model and its featurizer; without them only the blend is scored.
    holdout_fraction : float
        Share of the newest events held out (see :func:`holdout_size`).
    ks : tuple of int
        Cut-offs of the hit rates.
    mix_candidates : sequence of weights
        Candidate blends (weights in ``MIX_FIELDS`` order, e.g. ``mix_grid(0.25)``) to score too.
    text : ndarray, optional
        The events' text embeddings, ``(len(events), text_dim)``, for a model with ``text_dim``.

    Returns
    -------
    dict
        Next-interest ``hr@k``, ``ndcg@10``, ``mrr`` (``other`` is never a hit); with a model the
        intensity ``accuracy``, ``recall``, ``f1``, ``auc``; per candidate ``i``, ``mix-{i}-hr@1`` and
        ``mix-{i}-mrr`` of the blend under it (only these means leave the device, from which the server
        picks the population's best blend); ``num-examples``.
    """
    holdout = holdout_size(len(events), holdout_fraction)
    if holdout == 0:
        return {NUM_EXAMPLES_KEY: 0.0}
    personal = new_personal()
    cut = len(events) - holdout
    for seq, ev in events[:cut]:
        personal.update(seq, ev)
    plain = [ev for _, ev in events]
    interest = None
    if model is not None and featurizer is not None:
        h, c = model.zero_state(1)
        feats = featurizer.encode(plain, text=text)
        out = model.infer_sequence(feats.rows(0, cut), h, c)
        h, c, interest, last_intensity = out.h, out.c, out.interest[-1], out.intensity[-1]
        _, target_intensity, _ = featurizer.targets(plain)
    acc = RankingAccumulator(ks=ks)
    y_true: list[np.ndarray] = []
    y_score: list[np.ndarray] = []
    cases: list[BlendCase] = []
    for j in range(cut, len(plain)):
        dist, _ = predictor.next_interest(personal, interest)
        acc.add_ranked([cat for cat, _ in ranked(dist)], plain[j].categories)
        if mix_candidates:
            cases.append(predictor.blend_case(personal, interest, plain[j].categories))
        if interest is not None and model is not None:
            y_true.append(target_intensity[j - 1])
            y_score.append(last_intensity)
            step = model.step(feats.rows(j, j + 1), h, c)
            h, c, interest, last_intensity = step.h, step.c, step.interest, step.intensity
        personal.update(events[j][0], plain[j])
    metrics = {k.lower(): float(v) for k, v in acc.result().items()}
    if y_true:
        report = classification_report(np.stack(y_true), np.stack(y_score))
        metrics.update({"accuracy": report["accuracy"], "recall": report["recall"], "f1": report["f1"],
                        "auc": report["roc_auc"]})
    if mix_candidates:
        ranks = grid_ranks(cases, mix_candidates)
        for i, row in enumerate(ranks):
            metrics[mix_metric_key(i, "hr@1")] = float(np.mean(row <= 1))
            metrics[mix_metric_key(i, "mrr")] = float(np.mean(1.0 / row))
    metrics[NUM_EXAMPLES_KEY] = float(holdout)
    return metrics
