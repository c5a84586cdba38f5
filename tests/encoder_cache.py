"""The int8 text encoder for the tests, built once and kept on disk (like :mod:`model_cache`).

Building it means importing TensorFlow and converting MiniLM (~30 s). :func:`cached_encoder` returns
the files from ``.pytest_cache/vane-models/encoder-<key>/`` and, when they are missing, runs
``build_encoder.py`` in a subprocess, so a test process never imports TensorFlow. The key hashes the
sources of ``vane.server.encoder`` and every ``vane`` module it imports, the builder script, the pinned
weights' hash and the TensorFlow version.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from model_cache import REPO, _locked, _tensorflow_version, cache_root, source_closure

BUILDER = Path(__file__).resolve().parent / "build_encoder.py"
EXPORTER = "vane.server.encoder"
_FILES = ("encoder-int8.vane", "reference.npz", "build.json")


@dataclass(frozen=True)
class CachedEncoder:
    """The artifact's bytes, the parity titles and the TensorFlow module's embeddings of them."""

    blob: bytes
    titles: list[str]
    reference: np.ndarray
    build: dict[str, float]


def cache_key() -> str:
    from vane.server.encoder_weights import WEIGHTS_SHA256

    digest = hashlib.sha256(f"{WEIGHTS_SHA256}\n{_tensorflow_version()}\n".encode())
    for path in source_closure(EXPORTER):
        digest.update(path.relative_to(REPO).as_posix().encode() + b"\n" + path.read_bytes())
    digest.update(BUILDER.read_bytes())
    return f"encoder-{digest.hexdigest()[:16]}"


def cached_encoder() -> CachedEncoder:
    folder = cache_root() / cache_key()
    if not all((folder / name).is_file() for name in _FILES):
        with _locked(folder.with_name(folder.name + ".lock")):
            if not all((folder / name).is_file() for name in _FILES):
                done = subprocess.run([sys.executable, str(BUILDER), str(folder)], capture_output=True, text=True,
                                      timeout=900, cwd=REPO)
                if done.returncode != 0:
                    raise RuntimeError(f"building the test encoder failed:\n{done.stderr[-4000:]}")
    with np.load(folder / "reference.npz") as ref:
        titles, reference = [str(t) for t in ref["titles"]], np.asarray(ref["embeddings"], dtype=np.float32)
    build = json.loads((folder / "build.json").read_text())
    return CachedEncoder((folder / "encoder-int8.vane").read_bytes(), titles, reference, build)
