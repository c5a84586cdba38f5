"""The candidate ranker inside the interest model: its LiteRT signatures equal TensorFlow's."""

from __future__ import annotations

from importlib.util import find_spec

import numpy as np
import pytest
from model_cache import cached_models
from model_inputs import RANKER_SPEC, SMALL_SPEC, random_batch, random_ranker_examples
from vane.client.runtime import LiteModel
from vane.shared.spec import ModelSpec
from vane.shared.weights import lstm_layout, num_weights, weight_layout

pytest.importorskip("ai_edge_litert")
pytestmark = pytest.mark.skipif(find_spec("tensorflow") is None, reason="needs tensorflow (the server extra)")


@pytest.fixture(scope="module")
def ranker_blobs() -> dict[str, bytes]:
    return cached_models(RANKER_SPEC, ["training", "inference"])


def test_a_spec_without_ranker_keeps_its_hash_and_layout() -> None:
    # The hash of the default spec before the ranker fields existed.
    assert ModelSpec().hash == "f16eccb960a8b248"
    assert weight_layout(SMALL_SPEC) == lstm_layout(SMALL_SPEC)
    assert "ranker_units" not in SMALL_SPEC.to_dict()
    assert RANKER_SPEC.to_dict()["ranker_units"] == 16
    assert ModelSpec.from_dict(RANKER_SPEC.to_dict()) == RANKER_SPEC
    assert num_weights(RANKER_SPEC) - num_weights(SMALL_SPEC) == 49 * 16 + 16 + 16 * 8 + 8 + 8 * 2 + 2


def test_ranker_training_in_litert_matches_tensorflow(ranker_blobs) -> None:
    from vane.server.model import build_model
    from vane.server.ranker_model import rank_scores, train_ranker_step

    tf_model = build_model(RANKER_SPEC)
    lite = LiteModel.from_bytes(ranker_blobs["training"], RANKER_SPEC)
    rng = np.random.default_rng(7)
    for step in range(30):
        examples = random_ranker_examples(RANKER_SPEC, rng, rows=4 if step % 3 else 3)
        tf_loss = train_ranker_step(tf_model, examples, 0.01)
        lite_loss = lite.train_ranker(examples, 0.01)
        assert abs(tf_loss - lite_loss) <= 1e-4 * max(1.0, abs(tf_loss))
    tf_flat, lite_flat = tf_model.weights().flat, lite.get_weights().flat
    assert np.max(np.abs(tf_flat - lite_flat)) <= 1e-5
    first = sum(int(np.prod(s)) for _, s in lstm_layout(RANKER_SPEC))
    fresh = build_model(RANKER_SPEC).weights().flat
    assert np.array_equal(lite_flat[:first], fresh[:first])  # train_ranker leaves the LSTM alone
    assert np.max(np.abs(lite_flat[first:] - fresh[first:])) > 1e-2  # ... and moved the ranker

    probe = random_ranker_examples(RANKER_SPEC, rng, rows=5)
    tf_out = rank_scores(tf_model, probe.features, probe.mask)
    score, intensity = lite.rank(probe.features, probe.mask)
    real = probe.mask > 0
    assert np.max(np.abs(score[real] - tf_out["score"][real])) <= 1e-4
    assert np.max(np.abs(intensity - tf_out["intensity"])) <= 1e-5
    assert np.all(score[~real] < -1e8)  # padding is masked out of the softmax


def test_lstm_training_leaves_the_ranker_alone(ranker_blobs) -> None:
    lite = LiteModel.from_bytes(ranker_blobs["training"], RANKER_SPEC)
    before = lite.get_weights().flat.copy()
    lite.train(random_batch(RANKER_SPEC, np.random.default_rng(3)), 0.01)
    after = lite.get_weights().flat
    first = sum(int(np.prod(s)) for _, s in lstm_layout(RANKER_SPEC))
    assert np.array_equal(before[first:], after[first:])
    assert not np.array_equal(before[:first], after[:first])


def test_the_inference_export_ranks_but_cannot_train(ranker_blobs) -> None:
    lite = LiteModel.from_bytes(ranker_blobs["inference"], RANKER_SPEC)
    examples = random_ranker_examples(RANKER_SPEC, np.random.default_rng(4), rows=2)
    score, _ = lite.rank(examples.features, examples.mask)
    assert score.shape == (2, RANKER_SPEC.ranker_candidates)
    from vane.shared.errors import ModelError

    with pytest.raises(ModelError, match="inference-only"):
        lite.train_ranker(examples, 0.01)
