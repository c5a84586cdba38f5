"""Check the client runtime on tflite-runtime against values TensorFlow computed.

tflite-runtime 2.14 needs numpy<2 and crashes when tensorflow shares its
process, so this runs in two processes (``make test-tflite-runtime``)::

    .venv/bin/python tests/run_tflite_runtime.py --prepare DIR     # TensorFlow: model + expected values
    VANE_RUNTIME=tflite-runtime .venv-tflite/bin/python tests/run_tflite_runtime.py DIR

The second prints ``N passed, M failed in S s`` and exits non-zero on a failure.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np
from model_inputs import SMALL_SPEC, random_batch, random_features
from vane.shared.features import Features, TrainingBatch, pad_batch

_KEYS = Features.FIELDS
_BATCH_KEYS = ("h0", "c0", "interest", "intensity", "weight")
_TRAIN_STEPS = 6
#: The int8 encoder's stated parity: min cosine of its embeddings to the TensorFlow module's.
ENCODER_MIN_COSINE = 0.99
_LR = 0.01


def _inputs(rng: np.random.Generator) -> dict[str, np.ndarray]:
    spec = SMALL_SPEC
    data: dict[str, np.ndarray] = {}
    f = random_features(spec, rng, 2, spec.window)
    data.update({f"infer_{k}": getattr(f, k) for k in _KEYS})
    data["infer_mask"] = (rng.random((2, spec.window)) < 0.8).astype(np.float32)
    for i in range(_TRAIN_STEPS):
        b = random_batch(spec, rng, rows=spec.batch - (i % 3))  # some partial batches
        data.update({f"train{i}_{k}": getattr(b.features, k) for k in _KEYS})
        data.update({f"train{i}_{k}": getattr(b, k) for k in _BATCH_KEYS})
    data["set_flat"] = rng.standard_normal(_num_weights()).astype(np.float32)
    return data


def _num_weights() -> int:
    from vane.shared.weights import num_weights

    return num_weights(SMALL_SPEC)


def _features(data: dict[str, np.ndarray], prefix: str) -> Features:
    return Features(*(data[f"{prefix}_{k}"] for k in _KEYS))


def _batch(data: dict[str, np.ndarray], i: int) -> TrainingBatch:
    return TrainingBatch(_features(data, f"train{i}"), *(data[f"train{i}_{k}"] for k in _BATCH_KEYS))


def prepare(out: Path) -> None:
    """Export the model and compute the expected values with TensorFlow."""
    from vane.server.model import build_model, export_training_model

    spec = SMALL_SPEC
    data = _inputs(np.random.default_rng(0))
    model = build_model(spec)
    export_training_model(model, out / "model.tflite")
    f = _features(data, "infer")
    zeros = np.zeros((2, spec.lstm_units), np.float32)
    expected = model.predict(f, data["infer_mask"], zeros, zeros)
    data.update({f"expected_infer_{k}": v for k, v in expected.items()})
    h = c = zeros[:1]
    steps = []
    for t in range(spec.window):
        out_t = model.step(*(getattr(f, k)[0, t : t + 1] for k in _KEYS), h, c)
        h, c = out_t["h"], out_t["c"]
        steps.append(out_t["interest"].numpy()[0])
    data["expected_step_interest"] = np.stack(steps)
    losses = []
    for i in range(_TRAIN_STEPS):
        b = _batch(data, i)
        full = pad_batch(b.features, b.interest, b.intensity, b.weight, spec.batch, spec.lstm_units, b.h0, b.c0)
        losses.append(model.train_step(full, _LR))
    data["expected_losses"] = np.asarray(losses, np.float32)
    data["expected_weights"] = model.weights().flat
    np.savez(out / "expected.npz", **data)
    from encoder_cache import cached_encoder  # the int8 text encoder and TensorFlow's embeddings of fixed titles

    encoder = cached_encoder()
    (out / "encoder.vane").write_bytes(encoder.blob)
    np.savez(out / "encoder_expected.npz", titles=np.array(encoder.titles), embeddings=encoder.reference)
    from model_cache import cached_models, cached_reference  # the text LSTM and TensorFlow's outputs, cached
    from model_inputs import TEXT_SPEC

    (out / "text_model.tflite").write_bytes(cached_models(TEXT_SPEC, ["training"])["training"])
    (out / "text_reference.npz").write_bytes(cached_reference(TEXT_SPEC).read_bytes())


def check(workdir: Path) -> int:
    """Run every check with the runtime VANE_RUNTIME selects; returns the exit code."""
    from vane.client.runtime import LiteModel, runtime_name
    from vane.shared.errors import SpecMismatchError
    from vane.shared.weights import Weights

    spec = SMALL_SPEC
    data = dict(np.load(workdir / "expected.npz"))
    model = LiteModel.from_path(workdir / "model.tflite", spec)

    def runtime_is_tflite_runtime() -> None:
        assert runtime_name() == "tflite-runtime", runtime_name()
        assert type(model._interpreter).__module__.startswith("tflite_runtime")

    def infer_matches_tensorflow() -> None:
        out = model.infer(_features(data, "infer"), data["infer_mask"])
        np.testing.assert_allclose(out.interest, data["expected_infer_interest"], atol=1e-5)
        np.testing.assert_allclose(out.h, data["expected_infer_h"], atol=1e-5)

    def step_matches_tensorflow() -> None:
        f = _features(data, "infer")
        h, c = model.zero_state()
        for t in range(spec.window):
            out = model.step(Features(*(getattr(f, k)[0, t : t + 1] for k in _KEYS)), h, c)
            h, c = out.h, out.c
            np.testing.assert_allclose(out.interest, data["expected_step_interest"][t], atol=1e-5)

    def training_matches_tensorflow() -> None:
        losses = [model.train(_batch(data, i), _LR) for i in range(_TRAIN_STEPS)]
        np.testing.assert_allclose(losses, data["expected_losses"], rtol=1e-4)
        np.testing.assert_allclose(model.get_weights().flat, data["expected_weights"], atol=1e-5)

    def set_then_get_weights_is_exact() -> None:
        model.set_weights(Weights.from_flat(spec, data["set_flat"]))
        np.testing.assert_array_equal(model.get_weights().flat, data["set_flat"])
        model.reset_optimizer()

    def another_spec_is_refused() -> None:
        try:
            LiteModel.from_path(workdir / "model.tflite", dataclasses.replace(spec, seed=7))
        except SpecMismatchError:
            return
        raise AssertionError("a model of another spec was accepted")

    def encoder_matches_tensorflow() -> None:
        from vane.client.encoder import TextEncoder

        expected = np.load(workdir / "encoder_expected.npz")
        got = TextEncoder.from_path(workdir / "encoder.vane").embed([str(t) for t in expected["titles"]])
        cosines = np.sum(got * expected["embeddings"], axis=1)
        assert cosines.min() >= ENCODER_MIN_COSINE, cosines.min()

    def text_lstm_matches_tensorflow() -> None:
        from model_inputs import TEXT_SPEC
        from model_reference import check_against_reference

        reference = dict(np.load(workdir / "text_reference.npz"))
        check_against_reference((workdir / "text_model.tflite").read_bytes(), TEXT_SPEC, reference)

    def tensorflow_never_imported() -> None:
        assert "tensorflow" not in sys.modules

    checks: list[Callable[[], None]] = [
        runtime_is_tflite_runtime,
        infer_matches_tensorflow,
        step_matches_tensorflow,
        training_matches_tensorflow,
        set_then_get_weights_is_exact,
        another_spec_is_refused,
        encoder_matches_tensorflow,
        text_lstm_matches_tensorflow,
        tensorflow_never_imported,
    ]
    return _report(checks)


def _report(checks: list[Callable[[], None]]) -> int:
    start = time.perf_counter()
    failed = 0
    for fn in checks:
        try:
            fn()
            print(f"PASSED {fn.__name__}")
        except Exception:
            failed += 1
            print(f"FAILED {fn.__name__}\n{traceback.format_exc()}")
    passed = len(checks) - failed
    print(f"{passed} passed, {failed} failed in {time.perf_counter() - start:.2f}s (tflite-runtime)")
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--prepare", action="store_true", help="export and compute expected values (needs TF)")
    args = parser.parse_args()
    if args.prepare:
        prepare(args.workdir)
        return 0
    return check(args.workdir)


if __name__ == "__main__":
    sys.exit(main())
