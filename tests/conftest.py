"""Shared fixtures.

Model exports come from :mod:`model_cache`: built once by a subprocess and kept on
disk, so a test process gets its ``.tflite`` bytes without importing TensorFlow.
"""

from __future__ import annotations

import pytest
from encoder_cache import CachedEncoder, cached_encoder
from model_cache import cached_models
from model_inputs import SMALL_SPEC
from vane.shared.spec import ModelSpec


@pytest.fixture(scope="session")
def small_spec() -> ModelSpec:
    return SMALL_SPEC


@pytest.fixture(scope="session")
def small_blobs(small_spec: ModelSpec) -> dict[str, bytes]:
    """Every export of a fresh model of ``small_spec``, by kind; one build on a clean checkout."""
    return cached_models(small_spec, ["training", "inference", "inference-f16", "inference-int8"])


@pytest.fixture(scope="session")
def small_training_blob(small_blobs: dict[str, bytes]) -> bytes:
    """The training export of a fresh model of ``small_spec``."""
    return small_blobs["training"]


@pytest.fixture(scope="session")
def small_inference_blobs(small_blobs: dict[str, bytes]) -> dict[str | None, bytes]:
    """Inference exports of a fresh model of ``small_spec``: float32, f16 and int8."""
    return {None: small_blobs["inference"], "f16": small_blobs["inference-f16"], "int8": small_blobs["inference-int8"]}


@pytest.fixture(scope="session")
def default_training_blob() -> bytes:
    """The training export of the default ModelSpec."""
    return cached_models(ModelSpec(), ["training"])["training"]


@pytest.fixture(scope="session")
def test_encoder() -> CachedEncoder:
    """The int8 text encoder artifact with the TensorFlow module's embeddings of fixed titles."""
    return cached_encoder()


@pytest.fixture(scope="session")
def encoder_blob(test_encoder: CachedEncoder) -> bytes:
    """The bytes of the int8 text-encoder artifact (``vane server export-encoder``), built once."""
    return test_encoder.blob
