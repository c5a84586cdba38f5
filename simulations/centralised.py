"""The centralised LSTM: TensorFlow training on every user's training windows pooled.

It is the evaluation's upper reference for what the federated LSTM could reach with the data in one place.
As on the device (``InterestTracker.train_local``), each window starts from the LSTM state the windows before
it left; :func:`window_states` recomputes those states with the current weights at the start of every epoch.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from vane.shared.events import Event
from vane.shared.features import Features, Featurizer, make_windows, pad_batch
from vane.shared.spec import ModelSpec
from vane.shared.taxonomy import Taxonomy
from vane.simulations.split import Split

if TYPE_CHECKING:
    from vane.server.model import InterestModel

logger = logging.getLogger("vane.simulations")

#: One user's windows: features (W, T, ...), next-interest and intensity targets, per-step weights.
UserWindows = tuple[Features, np.ndarray, np.ndarray, np.ndarray]


def user_windows(featurizer: Featurizer, events: Sequence[Event]) -> UserWindows:
    """One user's training windows (as ``train_local`` cuts them on the device)."""
    feats = featurizer.encode(events)
    interest, intensity, valid = featurizer.targets(events)
    return make_windows(feats, interest, intensity, valid, featurizer.spec.window)


def train_centralised(
    split: Split, taxonomy: Taxonomy, spec: ModelSpec, epochs: int, seed: int
) -> tuple[InterestModel, list[float]]:
    """TensorFlow training on every user's training windows pooled, carrying each user's LSTM state.

    As on the device (``train_local``), each window starts from the state the windows before it left;
    the states are recomputed with the current weights at the start of every epoch.

    Parameters
    ----------
    split : Split
        Users with at least two training events take part.
    taxonomy : Taxonomy
    spec : ModelSpec
    epochs : int
    seed : int
        Seeds the order of the pooled windows.

    Returns
    -------
    (InterestModel, list of float)
        The trained model and the mean loss of each epoch.
    """
    from vane.server.model import build_model

    model = build_model(spec)
    featurizer = Featurizer(spec, taxonomy)
    users = [user_windows(featurizer, events) for uid, events in sorted(split.train.items()) if len(events) >= 2]
    keys = Features.FIELDS
    rng = np.random.default_rng([seed, 0xCE])
    losses: list[float] = []
    for _ in range(epochs):
        starts = window_states(model, users, spec)
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


def window_states(model: InterestModel, users: list[UserWindows],
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

