"""What TensorFlow computes for a fresh model of one spec on fixed inputs, and the check of a LiteRT model against it.

:func:`model_cache.cached_reference` runs this file in a subprocess (TensorFlow is imported only there)::

    python model_reference.py SPEC_JSON OUT.npz

and keeps the ``.npz`` beside the cached models. It holds the inputs themselves (so a venv with another
numpy reads exactly the same ones) and TensorFlow's outputs: ``infer`` on two masked sequences from a
non-zero state, ``step`` along one sequence, the losses of :data:`TRAIN_STEPS` Adam steps and the
weights after them, and ``infer`` again with the trained weights. :func:`check_against_reference` runs
the same through :class:`~vane.client.runtime.LiteModel` under whichever runtime is active
(ai-edge-litert, or tflite-runtime in ``make test-tflite-runtime``); numpy and ``vane`` only.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
from vane.shared.features import Features, TrainingBatch
from vane.shared.spec import ModelSpec

#: Adam steps compared, and their learning rate.
TRAIN_STEPS = 2
LR = 0.01
#: Agreement asked of LiteRT: outputs and weights (absolute), losses (relative).
ATOL, LOSS_RTOL = 1e-5, 1e-4
_BATCH_KEYS = ("h0", "c0", "interest", "intensity", "weight")


def _put(data: dict[str, np.ndarray], prefix: str, f: Features) -> None:
    data.update({f"{prefix}_{name}": getattr(f, name) for name in f.names})


def _features(data: dict[str, np.ndarray], prefix: str) -> Features:
    text = data.get(f"{prefix}_{Features.TEXT}")
    return Features(*(data[f"{prefix}_{name}"] for name in Features.FIELDS), text)


def _batch(data: dict[str, np.ndarray], i: int) -> TrainingBatch:
    return TrainingBatch(_features(data, f"train{i}"), *(data[f"train{i}_{k}"] for k in _BATCH_KEYS))


def reference_inputs(spec: ModelSpec) -> dict[str, np.ndarray]:
    """The fixed inputs (seeded): two sequences, a mask, a start state and :data:`TRAIN_STEPS` full batches."""
    from model_inputs import random_batch, random_features

    rng = np.random.default_rng(2024)
    data: dict[str, np.ndarray] = {}
    _put(data, "infer", random_features(spec, rng, 2, spec.window))
    data["infer_mask"] = (rng.random((2, spec.window)) < 0.8).astype(np.float32)
    data["infer_h0"] = (0.1 * rng.standard_normal((2, spec.lstm_units))).astype(np.float32)
    for i in range(TRAIN_STEPS):
        batch = random_batch(spec, rng)
        _put(data, f"train{i}", batch.features)
        data.update({f"train{i}_{k}": getattr(batch, k) for k in _BATCH_KEYS})
    return data


def build_reference(spec: ModelSpec, out: Path) -> None:
    """Write the inputs and TensorFlow's outputs for a fresh model of ``spec`` to ``out`` (atomically)."""
    from vane.server.model import build_model

    model = build_model(spec)
    data = reference_inputs(spec)
    f, mask, h0 = _features(data, "infer"), data["infer_mask"], data["infer_h0"]
    c0 = np.zeros_like(h0)
    data.update({f"expected_infer_{k}": v for k, v in model.predict(f, mask, h0, c0).items()})
    one = f.select(slice(0, 1))
    zeros = np.zeros((1, spec.lstm_units), np.float32)
    along = model.predict(one, np.ones((1, spec.window), np.float32), zeros, zeros)
    data["expected_step_interest"] = along["interest"][0]
    losses = [model.train_step(_batch(data, i), LR) for i in range(TRAIN_STEPS)]
    data["expected_losses"] = np.asarray(losses, np.float32)
    data["expected_weights"] = model.weights().flat
    data.update({f"expected_trained_{k}": v for k, v in model.predict(f, mask, h0, c0).items()})
    partial = out.with_name(f".{out.name}.{os.getpid()}.npz")
    np.savez(partial, **data)  # type: ignore[arg-type]  # numpy's stub takes **data for allow_pickle
    os.replace(partial, out)


def check_against_reference(blob: bytes, spec: ModelSpec, data: dict[str, np.ndarray]) -> None:
    """Raise AssertionError unless the training export ``blob`` computes what TensorFlow did in ``data``."""
    from vane.client.runtime import LiteModel

    model = LiteModel.from_bytes(blob, spec)
    f, mask, h0 = _features(data, "infer"), data["infer_mask"], data["infer_h0"]
    out = model.infer(f, mask, h0, np.zeros_like(h0))
    np.testing.assert_allclose(out.interest, data["expected_infer_interest"], atol=ATOL)
    np.testing.assert_allclose(out.h, data["expected_infer_h"], atol=ATOL)
    one = f.select(0)
    h, c = model.zero_state()
    for t in range(spec.window):
        step = model.step(one.rows(t, t + 1), h, c)
        h, c = step.h, step.c
        np.testing.assert_allclose(step.interest, data["expected_step_interest"][t], atol=ATOL)
    losses = [model.train(_batch(data, i), LR) for i in range(TRAIN_STEPS)]
    np.testing.assert_allclose(losses, data["expected_losses"], rtol=LOSS_RTOL)
    np.testing.assert_allclose(model.get_weights().flat, data["expected_weights"], atol=ATOL)
    trained = model.infer(f, mask, h0, np.zeros_like(h0))
    np.testing.assert_allclose(trained.interest, data["expected_trained_interest"], atol=ATOL)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    build_reference(ModelSpec.from_dict(json.loads(sys.argv[1])), Path(sys.argv[2]))
