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
