"""Export LiteRT models of one ModelSpec, in a process of its own.

The test fixtures call this through :mod:`model_cache` when a cached model is
missing, so that TensorFlow is imported here and never in the test process:
``python build_models.py SPEC_JSON OUT_DIR KIND [KIND ...]``.

Each KIND is written to ``OUT_DIR/KIND.tflite`` through a temporary file and an
atomic rename. Kinds: ``training``, ``inference``, ``inference-f16``, ``inference-int8``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

#: Each model kind and the quantization of its inference export (training exports have none).
KINDS: dict[str, str | None] = {"training": None, "inference": None, "inference-f16": "f16", "inference-int8": "int8"}


def build(spec_json: str, out_dir: Path, kinds: list[str]) -> None:
    """Export every kind in ``kinds`` of a fresh model of the spec in ``spec_json`` into ``out_dir``."""
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        raise SystemExit(f"unknown model kind {unknown[0]!r}; expected one of {', '.join(KINDS)}")
    from vane.server.model import build_model, export_inference_model, export_training_model
    from vane.shared.spec import ModelSpec

    model = build_model(ModelSpec.from_dict(json.loads(spec_json)))
    out_dir.mkdir(parents=True, exist_ok=True)
    for kind in kinds:
        if kind == "training":
            blob = export_training_model(model)
        else:
            blob = export_inference_model(model, quantize=KINDS[kind])
        partial = out_dir / f".{kind}.tflite.{os.getpid()}"
        partial.write_bytes(blob)
        os.replace(partial, out_dir / f"{kind}.tflite")


if __name__ == "__main__":
    if len(sys.argv) < 4:
        raise SystemExit(__doc__)
    build(sys.argv[1], Path(sys.argv[2]), sys.argv[3:])
