"""Synthetic inputs of the interest model: random features and sticky, category-driven sessions.

NumPy only, so the benchmark's TensorFlow-free workers and the tflite-runtime venv can use them.
"""

from __future__ import annotations

import numpy as np
from vane.shared.events import KINDS
from vane.shared.features import Features, TrainingBatch
from vane.shared.spec import ModelSpec


def random_features(spec: ModelSpec, rng: np.random.Generator, rows: int, length: int) -> Features:
    """Uniformly random (rows, length, ...) features, some category slots padded."""
    k, l_ = spec.max_categories_per_event, spec.tokens_per_title
    cats = rng.integers(1, spec.num_categories + 1, (rows, length, k)).astype(np.int32)
    cats[..., 1:] *= rng.random((rows, length, k - 1)) < 0.3
    return Features(
        cats,
        rng.integers(0, spec.item_buckets, (rows, length)).astype(np.int32),
        rng.integers(0, spec.token_buckets, (rows, length, l_)).astype(np.int32),
        rng.integers(0, spec.gap_buckets, (rows, length)).astype(np.int32),
        rng.integers(1, len(KINDS) + 1, (rows, length)).astype(np.int32),
        _unit_rows(rng.standard_normal((rows, length, spec.text_dim))) if spec.text_dim else None,
    )


def _unit_rows(a: np.ndarray) -> np.ndarray:
    """``a`` with every last-axis row scaled to length 1 (as the text encoder's embeddings are), float32."""
    return (a / np.maximum(np.linalg.norm(a, axis=-1, keepdims=True), 1e-9)).astype(np.float32)


def session_batch(spec: ModelSpec, rng: np.random.Generator, rows: int) -> TrainingBatch:
    """Windows of sticky, category-driven sessions with their next-interest and intensity targets."""
    t, c, h = spec.window, spec.num_categories, spec.intensity_horizon
    length = t + h
    category = np.empty((rows, length), np.int64)
    category[:, 0] = rng.integers(0, c, rows)
    for i in range(1, length):
        stay = rng.random(rows) < 0.75
        category[:, i] = np.where(stay, category[:, i - 1], (category[:, i - 1] + rng.integers(1, 4, rows)) % c)
    k, l_ = spec.max_categories_per_event, spec.tokens_per_title
    cats = np.zeros((rows, t, k), np.int32)
    cats[..., 0] = category[:, :t] + 1
    item = ((category[:, :t] * 31 + rng.integers(0, 8, (rows, t))) % spec.item_buckets).astype(np.int32)
    tokens = ((category[:, :t, None] * 7 + rng.integers(0, 5, (rows, t, l_))) % spec.token_buckets).astype(np.int32)
    gap = rng.integers(0, spec.gap_buckets, (rows, t)).astype(np.int32)
    kind = rng.integers(1, len(KINDS) + 1, (rows, t)).astype(np.int32)
    onehot = np.eye(c, dtype=np.float32)[category]
    interest = onehot[:, 1 : t + 1]
    intensity = np.stack([onehot[:, i + 1 : i + 1 + h].max(axis=1) for i in range(t)], axis=1)
    zeros = np.zeros((rows, spec.lstm_units), np.float32)
    weight = np.ones((rows, t), np.float32)
    text = None
    if spec.text_dim:  # each category's texts lie near a direction of its own
        directions = np.random.default_rng(spec.seed).standard_normal((c, spec.text_dim))
        text = _unit_rows(directions[category[:, :t]] + 0.5 * rng.standard_normal((rows, t, spec.text_dim)))
    return TrainingBatch(Features(cats, item, tokens, gap, kind, text), zeros, zeros.copy(), interest, intensity,
                         weight)
