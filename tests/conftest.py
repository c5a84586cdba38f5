"""Shared fixtures. Exports are session-scoped: converting a model takes seconds."""

from __future__ import annotations

import pytest
from model_inputs import SMALL_SPEC
from vane.shared.spec import ModelSpec


@pytest.fixture(scope="session")
def small_spec() -> ModelSpec:
    return SMALL_SPEC


@pytest.fixture(scope="session")
def small_training_blob(small_spec: ModelSpec) -> bytes:
    """The training export of a fresh model of ``small_spec``."""
    from vane.server.model import export_training_model

    return export_training_model(small_spec)


@pytest.fixture(scope="session")
def small_inference_blobs(small_spec: ModelSpec) -> dict[str | None, bytes]:
    """Inference exports of a fresh model of ``small_spec``: float32, f16 and int8."""
    from vane.server.model import build_model, export_inference_model

    model = build_model(small_spec)
    return {q: export_inference_model(model, quantize=q) for q in (None, "f16", "int8")}


@pytest.fixture(scope="session")
def default_training_blob() -> bytes:
    """The training export of the default ModelSpec."""
    from vane.server.model import export_training_model

    return export_training_model(ModelSpec())
