"""Seeded synthetic model inputs, numpy only (also used by the tflite-runtime venv)."""

from __future__ import annotations

import numpy as np
from vane.shared.features import TrainingBatch
from vane.shared.spec import ModelSpec
from vane.simulations.bench.inputs import random_features

__all__ = ["SMALL_SPEC", "random_batch", "random_features"]

SMALL_SPEC = ModelSpec(num_categories=8, item_buckets=64, token_buckets=32, window=8, lstm_units=16, batch=8)


def random_batch(spec: ModelSpec, rng: np.random.Generator, rows: int | None = None) -> TrainingBatch:
    """A training batch of ``rows`` windows (default ``spec.batch``) with random targets and weights."""
    rows = spec.batch if rows is None else rows
    t, c, u = spec.window, spec.num_categories, spec.lstm_units
    interest = rng.random((rows, t, c)).astype(np.float32) ** 4
    interest /= interest.sum(axis=-1, keepdims=True)
    intensity = (rng.random((rows, t, c)) < 0.3).astype(np.float32)
    weight = (rng.random((rows, t)) < 0.9).astype(np.float32)
    h0 = (0.1 * rng.standard_normal((rows, u))).astype(np.float32)
    c0 = (0.1 * rng.standard_normal((rows, u))).astype(np.float32)
    return TrainingBatch(random_features(spec, rng, rows, t), h0, c0, interest, intensity, weight)


#: SMALL_SPEC with the candidate ranker (12 candidates, batches of 4 queries).
RANKER_SPEC = ModelSpec(num_categories=8, item_buckets=64, token_buckets=32, window=8, lstm_units=16, batch=8,
                        ranker_units=16, ranker_candidates=12, ranker_batch=4)


def random_ranker_examples(spec: ModelSpec, rng: np.random.Generator, rows: int | None = None):  # type: ignore[no-untyped-def]
    """``rows`` ranker queries (default ``spec.ranker_batch``) with random features, masks and targets."""
    from vane.shared.ranker_data import FEATURE_SCALE, RankerExamples

    rows = spec.ranker_batch if rows is None else rows
    c, f = spec.ranker_candidates, spec.ranker_features
    features = (rng.random((rows, c, f)) * FEATURE_SCALE).astype(np.float32)
    mask = np.ones((rows, c), np.float32)
    for i in range(rows):
        mask[i, rng.integers(2, c + 1):] = 0.0
    target = np.zeros((rows, c), np.float32)
    target[np.arange(rows), rng.integers(0, 2, rows)] = 1.0
    future = (rng.random((rows, c)) < 0.3).astype(np.float32) * mask
    return RankerExamples(features * mask[..., None], mask, target, future)


#: SMALL_SPEC reading each event's text embedding (384 floats, as the MiniLM encoder gives, projected to 8).
TEXT_SPEC = ModelSpec(num_categories=8, item_buckets=64, token_buckets=32, window=8, lstm_units=16, batch=8,
                      text_dim=384, text_proj=8)
