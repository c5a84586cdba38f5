"""The interest model with the text input (spec.text_dim): LiteRT equals TensorFlow, builtins only.

A spec without ``text_dim`` is the model from before the text input existed: same hash, same arrays.
"""

from __future__ import annotations

import dataclasses
from importlib.util import find_spec

import numpy as np
import pytest
from model_cache import cached_models
from model_inputs import SMALL_SPEC, TEXT_SPEC, random_batch, random_features
from vane.client.runtime import LiteModel
from vane.shared.errors import SpecMismatchError
from vane.shared.features import Featurizer
from vane.shared.spec import ModelSpec
from vane.shared.taxonomy import Taxonomy
from vane.shared.weights import layout_slices, lstm_layout, weight_layout

pytest.importorskip("ai_edge_litert")
needs_tf = pytest.mark.skipif(find_spec("tensorflow") is None, reason="needs tensorflow (the server extra)")


@pytest.fixture(scope="module")
def text_blob() -> bytes:
    return cached_models(TEXT_SPEC, ["training"])["training"]


def test_a_spec_without_text_keeps_its_hash_and_its_arrays() -> None:
    assert ModelSpec().hash == "f16eccb960a8b248"
    assert "text_dim" not in ModelSpec().to_dict() and "text_proj" not in SMALL_SPEC.to_dict()
    assert not any(name.startswith("text/") for name, _ in weight_layout(SMALL_SPEC))
    with_text = dataclasses.replace(SMALL_SPEC, text_dim=384, text_proj=8)
    assert with_text == TEXT_SPEC and with_text.hash != SMALL_SPEC.hash and with_text.has_text
    assert ModelSpec.from_dict(with_text.to_dict()) == with_text
    assert with_text.input_dim == SMALL_SPEC.input_dim + 8
    # The projection comes last in the LSTM's arrays: every other array keeps its place.
    assert lstm_layout(with_text)[-2:] == [("text/kernel", (384, 8)), ("text/bias", (8,))]
    assert [n for n, _ in lstm_layout(with_text)[:-2]] == [n for n, _ in lstm_layout(SMALL_SPEC)]
    with pytest.raises(Exception, match="text_dim is -1"):
        ModelSpec(text_dim=-1)


def test_the_featurizer_carries_the_embeddings_and_refuses_a_wrong_width() -> None:
    taxonomy = Taxonomy([f"c{i}" for i in range(7)])
    from vane.shared.events import Event

    events = [Event.create(item_id=f"i{i}", categories=["c1"], timestamp=1.7e9 + i, title="t") for i in range(3)]
    text = np.random.default_rng(0).standard_normal((3, 384)).astype(np.float32)
    feats = Featurizer(TEXT_SPEC, taxonomy).encode(events, text=text)
    assert feats.names == ("cats", "item", "tokens", "gap", "kind", "text") and np.array_equal(feats.text, text)
    assert np.array_equal(feats.rows(1, 2).text, text[1:2])
    assert not Featurizer(TEXT_SPEC, taxonomy).encode(events).text.any()  # no embeddings: zeros
    assert Featurizer(SMALL_SPEC, taxonomy).encode(events, text=text).text is None  # a model without text
    with pytest.raises(SpecMismatchError, match=r"text embeddings have shape \(3, 24\); the model reads \(3, 384\)"):
        Featurizer(TEXT_SPEC, taxonomy).encode(events, text=text[:, :24])


def test_the_exports_take_text_only_with_text_dim(text_blob: bytes, small_training_blob: bytes) -> None:
    with_text = LiteModel.from_bytes(text_blob, TEXT_SPEC)._interpreter.get_signature_list()
    without = LiteModel.from_bytes(small_training_blob, SMALL_SPEC)._interpreter.get_signature_list()
    for name in ("infer", "step", "train"):
        assert "text" in with_text[name]["inputs"]
        assert "text" not in without[name]["inputs"]


def test_step_equals_infer_and_the_text_changes_the_answer(text_blob: bytes) -> None:
    model = LiteModel.from_bytes(text_blob, TEXT_SPEC)
    rng = np.random.default_rng(4)
    f = random_features(TEXT_SPEC, rng, 1, 11).select(0)
    whole = model.infer_sequence(f, *model.zero_state())
    h, c = model.zero_state()
    for t in range(len(f)):
        out = model.step(f.rows(t, t + 1), h, c)
        h, c = out.h, out.c
        assert np.max(np.abs(out.interest - whole.interest[t])) <= 1e-5
    blind = dataclasses.replace(f, text=np.zeros_like(f.text))
    assert np.max(np.abs(model.infer_sequence(blind, *model.zero_state()).interest - whole.interest)) > 1e-4


@needs_tf
def test_adam_training_with_text_in_litert_matches_tensorflow(text_blob: bytes) -> None:
    from vane.server.model import build_model

    tf_model = build_model(TEXT_SPEC)
    lite = LiteModel.from_bytes(text_blob, TEXT_SPEC)
    rng = np.random.default_rng(5)
    for _ in range(60):
        batch = random_batch(TEXT_SPEC, rng)
        tf_loss = tf_model.train_step(batch, 0.01)
        lite_loss = lite.train(batch, 0.01)
        assert abs(tf_loss - lite_loss) <= 1e-4 * max(1.0, abs(tf_loss))
    got, expected = lite.get_weights().flat, tf_model.weights().flat
    assert np.max(np.abs(got - expected)) <= 1e-5
    kernel = layout_slices(TEXT_SPEC)["text/kernel"]
    assert np.max(np.abs(got[kernel] - build_model(TEXT_SPEC).weights().flat[kernel])) > 1e-3  # the projection learnt

    f = random_features(TEXT_SPEC, rng, 3, TEXT_SPEC.window)
    mask = (rng.random((3, TEXT_SPEC.window)) < 0.8).astype(np.float32)
    h0 = (0.1 * rng.standard_normal((3, TEXT_SPEC.lstm_units))).astype(np.float32)
    reference = tf_model.predict(f, mask, h0, np.zeros_like(h0))
    out = lite.infer(f, mask, h0, np.zeros_like(h0))
    assert np.max(np.abs(reference["interest"] - out.interest)) <= 1e-5
    assert np.max(np.abs(reference["h"] - out.h)) <= 1e-5
