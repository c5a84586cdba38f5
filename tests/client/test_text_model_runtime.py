"""The text LSTM (a spec with ``text_dim``) under the active LiteRT runtime equals TensorFlow's reference.

The model file and TensorFlow's outputs on fixed inputs come from the model cache
(:func:`model_cache.cached_reference`), so this process never imports TensorFlow. The same check
(:func:`model_reference.check_against_reference`) runs under tflite-runtime in ``make test-tflite-runtime``
(``tests/run_tflite_runtime.py``, check ``text_lstm_matches_tensorflow``).
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
from model_cache import cached_models, cached_reference
from model_inputs import TEXT_SPEC
from model_reference import check_against_reference
from vane.client.runtime import runtime_name


@pytest.fixture(scope="module")
def text_model() -> tuple[bytes, dict[str, np.ndarray]]:
    blob = cached_models(TEXT_SPEC, ["training"])["training"]
    return blob, dict(np.load(cached_reference(TEXT_SPEC)))


def test_text_lstm_inference_and_training_match_tensorflow(text_model: tuple[bytes, dict[str, np.ndarray]]) -> None:
    blob, reference = text_model
    assert reference["infer_text"].shape == (2, TEXT_SPEC.window, TEXT_SPEC.text_dim)
    assert np.abs(reference["infer_text"]).max() > 0  # the text input is really fed
    check_against_reference(blob, TEXT_SPEC, reference)
    assert runtime_name() in ("ai-edge-litert", "tflite-runtime") and "tensorflow" not in sys.modules


def test_the_check_fails_when_the_text_changes(text_model: tuple[bytes, dict[str, np.ndarray]]) -> None:
    blob, reference = text_model
    shuffled = dict(reference, infer_text=reference["infer_text"][::-1].copy())
    with pytest.raises(AssertionError):
        check_against_reference(blob, TEXT_SPEC, shuffled)
