"""The LiteRT exports behave exactly like the TensorFlow model they came from.

What the exports do on their own, without TensorFlow, is in test_runtime.py.
"""

from __future__ import annotations

import dataclasses
from importlib.util import find_spec

import numpy as np
import pytest
from model_cache import cached_models
from model_inputs import random_batch, random_features
from vane.client.runtime import LiteModel
from vane.shared.weights import num_weights, weight_layout

pytest.importorskip("ai_edge_litert")
#: Collecting this file does not import TensorFlow; its tests do, through vane.server.model.
pytestmark = pytest.mark.skipif(find_spec("tensorflow") is None, reason="needs tensorflow (the server extra)")


def test_tf_variables_follow_the_weight_layout(small_spec):
    from vane.server.model import build_model

    model = build_model(small_spec)

    assert [tuple(p.shape) for p in model.params] == [shape for _, shape in weight_layout(small_spec)]
    assert model.weights().flat.size == num_weights(small_spec)


def test_adam_training_in_litert_matches_tensorflow(small_spec, small_training_blob):
    from vane.server.model import build_model

    tf_model = build_model(small_spec)
    lite = LiteModel.from_bytes(small_training_blob, small_spec)
    rng = np.random.default_rng(1)

    for _ in range(120):
        batch = random_batch(small_spec, rng)
        tf_loss = tf_model.train_step(batch, 0.01)
        lite_loss = lite.train(batch, 0.01)
        assert abs(tf_loss - lite_loss) <= 1e-4 * max(1.0, abs(tf_loss))

    diff = np.max(np.abs(tf_model.weights().flat - lite.get_weights().flat))
    assert diff <= 1e-5
    assert np.max(np.abs(lite.get_weights().flat - build_model(small_spec).weights().flat)) > 1e-2


def test_sgd_training_in_litert_matches_tensorflow(small_spec):
    from vane.server.model import build_model

    spec = dataclasses.replace(small_spec, optimizer="sgd")
    tf_model = build_model(spec)
    lite = LiteModel.from_bytes(cached_models(spec, ["training"])["training"], spec)
    rng = np.random.default_rng(2)

    for _ in range(20):
        batch = random_batch(spec, rng)
        tf_model.train_step(batch, 0.1)
        lite.train(batch, 0.1)

    assert np.max(np.abs(tf_model.weights().flat - lite.get_weights().flat)) <= 1e-5


def test_litert_infer_matches_tensorflow(small_spec, small_training_blob):
    from vane.server.model import build_model

    rng = np.random.default_rng(3)
    f = random_features(small_spec, rng, 3, small_spec.window)
    mask = (rng.random((3, small_spec.window)) < 0.8).astype(np.float32)
    h0 = rng.standard_normal((3, small_spec.lstm_units)).astype(np.float32) * 0.1
    c0 = np.zeros_like(h0)

    expected = build_model(small_spec).predict(f, mask, h0, c0)
    got = LiteModel.from_bytes(small_training_blob).infer(f, mask, h0, c0)

    assert np.max(np.abs(expected["interest"] - got.interest)) <= 1e-5
    assert np.max(np.abs(expected["intensity"] - got.intensity)) <= 1e-5
    assert np.max(np.abs(expected["h"] - got.h)) <= 1e-5
