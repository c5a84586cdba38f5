"""Build the int8 text encoder and the TensorFlow module's reference embeddings, in a process of its own.

:mod:`encoder_cache` runs ``python build_encoder.py OUT_DIR`` when its cache is empty, so the test
process never imports TensorFlow. Writes, each through a temporary file and an atomic rename:

- ``encoder-int8.vane``: the artifact, as ``vane server export-encoder OUT`` builds it;
- ``reference.npz``: ``titles`` (vane.server.encoder.PARITY_TITLES) and ``embeddings``, the
  TensorFlow module's float32 output for each title on its own (unpadded);
- ``build.json``: the build's seconds and the parity the exporter measured.
"""

from __future__ import annotations

import io
import json
import os
import sys
from pathlib import Path


def _put(path: Path, data: bytes) -> None:
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_bytes(data)
    os.replace(partial, path)


def build(out_dir: Path) -> None:
    import numpy as np
    import tensorflow as tf
    from vane.server.encoder import PARITY_TITLES, build_encoder, parity
    from vane.shared.wordpiece import WordPiece

    built = build_encoder("int8")
    check = parity(built.module, built.artifact)
    tokenizer = WordPiece.from_bytes(built.artifact.vocab, built.artifact.max_len)
    rows = []
    for title in PARITY_TITLES:
        ids, mask = tokenizer.encode_batch([title])
        rows.append(built.module.embed(tf.constant(ids), tf.constant(mask))["embedding"].numpy()[0])
    out_dir.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.savez(buffer, titles=np.array(PARITY_TITLES), embeddings=np.stack(rows).astype(np.float32))
    _put(out_dir / "reference.npz", buffer.getvalue())
    info = {"seconds": built.seconds, "min_cosine": check.min_cosine, "mean_cosine": check.mean_cosine}
    _put(out_dir / "build.json", json.dumps(info).encode())
    _put(out_dir / "encoder-int8.vane", built.artifact.to_bytes())


if __name__ == "__main__":
    build(Path(sys.argv[1]))
