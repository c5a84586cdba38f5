"""The LiteRT exports on their own: state carrying, weights, training rules, spec checks, quantization.

Needs no TensorFlow: the models come from the on-disk cache (conftest.py). That they
match the TensorFlow model they came from is in test_model_parity.py.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from model_inputs import random_batch, random_features
from vane.client.runtime import LiteModel
from vane.shared.errors import ModelError, SpecMismatchError, WeightsError
from vane.shared.features import Features, TrainingBatch
from vane.shared.spec import ModelSpec
from vane.shared.weights import Weights, num_weights

pytest.importorskip("ai_edge_litert")


def _first_rows(batch: TrainingBatch, rows: int) -> TrainingBatch:
    f = batch.features.rows(0, rows)
    return TrainingBatch(
        f, batch.h0[:rows], batch.c0[:rows], batch.interest[:rows], batch.intensity[:rows], batch.weight[:rows]
    )


def _event(f: Features, row: int, t: int) -> Features:
    return Features(
        f.cats[row, t : t + 1],
        f.item[row, t : t + 1],
        f.tokens[row, t : t + 1],
        f.gap[row, t : t + 1],
        f.kind[row, t : t + 1],
    )


def test_step_event_by_event_matches_infer_on_the_window(small_spec, small_training_blob):
    lite = LiteModel.from_bytes(small_training_blob)
    f = random_features(small_spec, np.random.default_rng(4), 1, small_spec.window)
    whole = lite.infer(f)

    h, c = lite.zero_state()
    for t in range(small_spec.window):
        out = lite.step(_event(f, 0, t), h, c)
        h, c = out.h, out.c
        assert np.max(np.abs(out.interest - whole.interest[0, t])) <= 1e-6
        assert np.max(np.abs(out.intensity - whole.intensity[0, t])) <= 1e-6

    assert np.max(np.abs(h - whole.h)) <= 1e-6


def test_chunked_infer_with_carried_state_equals_one_shot(small_spec, small_training_blob):
    lite = LiteModel.from_bytes(small_training_blob)
    w = small_spec.window
    f = random_features(small_spec, np.random.default_rng(5), 2, 3 * w - 3)
    one_shot = lite.infer(f)

    first = lite.infer(f.map(lambda a: a[:, :w]))
    rest = lite.infer(
        f.map(lambda a: a[:, w:]), None, first.h, first.c
    )

    np.testing.assert_allclose(np.concatenate([first.interest, rest.interest], axis=1), one_shot.interest, atol=1e-7)
    np.testing.assert_allclose(rest.h, one_shot.h, atol=1e-7)
    assert one_shot.interest.shape == (2, 3 * w - 3, small_spec.num_categories)


def test_masked_positions_pass_the_state_through(small_spec, small_training_blob):
    lite = LiteModel.from_bytes(small_training_blob)
    f = random_features(small_spec, np.random.default_rng(6), 1, small_spec.window)
    h0, c0 = lite.zero_state()
    h0 += 0.5

    out = lite.infer(f, np.zeros((1, small_spec.window), np.float32), h0, c0)

    np.testing.assert_array_equal(out.h, h0)
    np.testing.assert_array_equal(out.c, c0)


def test_set_weights_then_get_weights_is_exact(small_spec, small_training_blob):
    lite = LiteModel.from_bytes(small_training_blob)
    flat = np.random.default_rng(7).standard_normal(num_weights(small_spec)).astype(np.float32)

    lite.set_weights(Weights.from_flat(small_spec, flat))

    np.testing.assert_array_equal(lite.get_weights().flat, flat)


def test_zero_weight_padding_rows_change_nothing(small_spec, small_training_blob):
    rng = np.random.default_rng(8)
    batches = [random_batch(small_spec, rng) for _ in range(5)]
    padded_with_zeros = LiteModel.from_bytes(small_training_blob)
    padded_with_noise = LiteModel.from_bytes(small_training_blob)

    for batch in batches:
        padded_with_zeros.train(_first_rows(batch, 5), 0.01)
        batch.weight[5:] = 0.0
        padded_with_noise.train(batch, 0.01)

    np.testing.assert_array_equal(padded_with_zeros.get_weights().flat, padded_with_noise.get_weights().flat)


def test_reset_optimizer_restarts_adam(small_spec, small_training_blob):
    batch = random_batch(small_spec, np.random.default_rng(9))
    fresh = LiteModel.from_bytes(small_training_blob)
    reset = LiteModel.from_bytes(small_training_blob)
    reset.train(batch, 0.01)
    start = fresh.get_weights()

    reset.set_weights(start)
    reset.reset_optimizer()
    reset.train(batch, 0.01)
    fresh.train(batch, 0.01)

    np.testing.assert_array_equal(reset.get_weights().flat, fresh.get_weights().flat)


def test_model_of_another_spec_is_refused(small_spec, small_training_blob):
    other = dataclasses.replace(small_spec, lstm_units=32)

    with pytest.raises(SpecMismatchError, match=small_spec.hash):
        LiteModel.from_bytes(small_training_blob, other)


def test_weights_of_another_spec_are_refused(small_spec, small_training_blob):
    lite = LiteModel.from_bytes(small_training_blob)
    other = dataclasses.replace(small_spec, seed=1)

    with pytest.raises(SpecMismatchError):
        lite.set_weights(Weights(other.hash, np.zeros(num_weights(small_spec), np.float32)))
    with pytest.raises(SpecMismatchError):
        lite.set_weights(Weights(small_spec.hash, np.zeros(7, np.float32)))
    with pytest.raises(WeightsError):
        lite.set_weights(Weights(small_spec.hash, np.full(num_weights(small_spec), np.nan, np.float32)))


def test_unloadable_bytes_raise_model_error():
    with pytest.raises(ModelError):
        LiteModel.from_bytes(b"definitely not a flatbuffer")


def test_inference_exports_have_no_training(small_spec, small_inference_blobs):
    for blob in small_inference_blobs.values():
        lite = LiteModel.from_bytes(blob, small_spec)
        assert not lite.has_training
        with pytest.raises(ModelError):
            lite.get_weights()


def test_quantized_exports_agree_with_float32_on_top1(small_spec, small_inference_blobs):
    f = random_features(small_spec, np.random.default_rng(10), 64, small_spec.window)
    reference = LiteModel.from_bytes(small_inference_blobs[None]).infer(f).interest.argmax(-1)

    for quantize in ("f16", "int8"):
        top1 = LiteModel.from_bytes(small_inference_blobs[quantize]).infer(f).interest.argmax(-1)
        assert np.mean(top1 == reference) >= 0.95, quantize


def test_loads_in_ai_edge_litert_without_flex_and_trains(small_spec, small_training_blob, monkeypatch):
    monkeypatch.setenv("VANE_RUNTIME", "ai-edge-litert")
    lite = LiteModel.from_bytes(small_training_blob, small_spec)
    batch = random_batch(small_spec, np.random.default_rng(11))

    losses = [lite.train(batch, 0.01) for _ in range(30)]

    assert type(lite._interpreter).__module__.startswith("ai_edge_litert")
    assert losses[-1] < losses[0]


def test_default_spec_exports_and_trains(default_training_blob):
    spec = ModelSpec()
    lite = LiteModel.from_bytes(default_training_blob, spec)
    rng = np.random.default_rng(12)

    loss = lite.train(random_batch(spec, rng), spec.learning_rate)
    out = lite.step(_event(random_features(spec, rng, 1, 1), 0, 0), *lite.zero_state())

    assert np.isfinite(loss)
    assert out.interest.shape == (spec.num_categories,)
    assert abs(float(out.interest.sum()) - 1.0) < 1e-5
    assert lite.get_weights().flat.size == num_weights(spec)
