"""The text-encoder artifact: one file a device needs to embed text (``vane server export-encoder OUT``).

Layout (integers big-endian), like the model artifact (:mod:`vane.shared.artifact`)::

    8 bytes   magic  b"VANEENC\\x00"
    4 bytes   N, the length of the manifest
    N bytes   the manifest, UTF-8 JSON (below)
    ...       the LiteRT ``.tflite`` bytes (``tflite_size`` of them): signature ``embed``
    ...       the tokenizer's ``vocab.txt`` (``vocab_size`` bytes)

The manifest::

    {"format": "vane.encoder/1", "version": "minilm-l6-v2.int8.1a2b3c4d5e", "created": "...",
     "model": "all-MiniLM-L6-v2", "dims": 384, "max_len": 128, "quantization": "int8",
     "pooling": "mean", "normalized": true, "source_sha256": "<the safetensors file's sha256>",
     "tflite_size": 123, "tflite_sha256": "...", "vocab_size": 231508, "vocab_sha256": "..."}

The version is derived from the content (quantization + the first hex digits of the sha256 of the
``.tflite`` and vocabulary), so a device holding version V holds exactly those bytes. Reading checks the
magic, every field, both sizes and both digests before anything is used; a failure raises
:class:`~vane.shared.errors.ModelError` naming what is wrong.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vane.shared.errors import ModelError
from vane.shared.jsonfile import write_bytes_atomic

MAGIC = b"VANEENC\x00"
ENCODER_FORMAT = "vane.encoder/1"
MODEL_NAME = "all-MiniLM-L6-v2"
DIMS = 384
QUANTIZATIONS = ("int8", "f16", "none")
_HEADER = struct.Struct(">I")
_MAX_MANIFEST = 1 << 16


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def encoder_version(tflite: bytes, vocab: bytes, quantization: str) -> str:
    """The content-derived version label of an encoder."""
    return f"minilm-l6-v2.{quantization}.{_sha(_sha(tflite).encode() + _sha(vocab).encode())[:10]}"


@dataclass(frozen=True)
class EncoderArtifact:
    """A LiteRT text encoder with its WordPiece vocabulary and manifest."""

    tflite: bytes
    vocab: bytes
    version: str
    quantization: str
    max_len: int = 128
    dims: int = DIMS
    source_sha256: str = ""
    created: str = field(default_factory=_utc_now)

    def __post_init__(self) -> None:
        if self.quantization not in QUANTIZATIONS:
            raise ModelError(f"encoder quantization is {self.quantization!r}; expected one of {QUANTIZATIONS}")
        if not 2 <= int(self.max_len) <= 512:
            raise ModelError(f"encoder max_len is {self.max_len}; expected 2..512")
        if int(self.dims) <= 0:
            raise ModelError(f"encoder dims is {self.dims}; expected a positive size")
        if self.version != encoder_version(self.tflite, self.vocab, self.quantization):
            raise ModelError(f"encoder version {self.version!r} does not match its content "
                             f"({encoder_version(self.tflite, self.vocab, self.quantization)!r})")

    @classmethod
    def build(cls, tflite: bytes, vocab: bytes, quantization: str, max_len: int = 128, dims: int = DIMS,
              source_sha256: str = "") -> EncoderArtifact:
        """An artifact whose version is derived from ``tflite``, ``vocab`` and ``quantization``."""
        return cls(bytes(tflite), bytes(vocab), encoder_version(tflite, vocab, quantization), quantization,
                   int(max_len), int(dims), source_sha256)

    @property
    def vocab_sha256(self) -> str:
        return _sha(self.vocab)

    def manifest(self) -> dict[str, Any]:
        return {
            "format": ENCODER_FORMAT, "version": self.version, "created": self.created, "model": MODEL_NAME,
            "dims": self.dims, "max_len": self.max_len, "quantization": self.quantization, "pooling": "mean",
            "normalized": True, "source_sha256": self.source_sha256,
            "tflite_size": len(self.tflite), "tflite_sha256": _sha(self.tflite),
            "vocab_size": len(self.vocab), "vocab_sha256": self.vocab_sha256,
        }

    def to_bytes(self) -> bytes:
        manifest = json.dumps(self.manifest(), sort_keys=True).encode("utf-8")
        return MAGIC + _HEADER.pack(len(manifest)) + manifest + self.tflite + self.vocab

    def sha256(self) -> str:
        """The digest of the whole file (the registry's hash of this version)."""
        return _sha(self.to_bytes())

    def save(self, path: str | Path) -> Path:
        """Write the artifact atomically (a temporary file, then a rename)."""
        return write_bytes_atomic(path, self.to_bytes())

    @staticmethod
    def is_encoder(data: bytes) -> bool:
        return bytes(data[: len(MAGIC)]) == MAGIC

    @classmethod
    def load(cls, path: str | Path) -> EncoderArtifact:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise ModelError(f"encoder file {str(path)!r} cannot be read: {exc.strerror or exc}") from None
        return cls.from_bytes(data, f"encoder file {str(path)!r}")

    @classmethod
    def from_bytes(cls, data: bytes, source: str = "encoder artifact") -> EncoderArtifact:
        """Parse and check an encoder artifact.

        Raises
        ------
        ModelError
            When the magic, the manifest, a size or a digest is wrong (the message names which).
        """
        data = bytes(data)
        if not cls.is_encoder(data):
            raise ModelError(f"{source} is not a Vane encoder artifact (no {MAGIC!r} header; "
                             "build one with vane server export-encoder)")
        start = len(MAGIC) + _HEADER.size
        if len(data) < start:
            raise ModelError(f"{source} is truncated: it ends inside the header")
        (size,) = _HEADER.unpack_from(data, len(MAGIC))
        if size > _MAX_MANIFEST or start + size > len(data):
            raise ModelError(f"{source}: manifest length {size} exceeds the file ({len(data)} bytes)")
        try:
            m = json.loads(data[start : start + size].decode("utf-8"))
        except ValueError as exc:
            raise ModelError(f"{source}: the manifest is not UTF-8 JSON ({exc})") from None
        if not isinstance(m, dict) or m.get("format") != ENCODER_FORMAT:
            raise ModelError(f"{source}: manifest format is not {ENCODER_FORMAT!r}")
        try:
            tsize, vsize = int(m["tflite_size"]), int(m["vocab_size"])
            fields = (str(m["version"]), str(m["quantization"]), int(m["max_len"]), int(m["dims"]),
                      str(m.get("source_sha256", "")), str(m["created"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"{source}: manifest field missing or malformed ({type(exc).__name__}: {exc})") from None
        body = data[start + size :]
        if len(body) != tsize + vsize:
            raise ModelError(f"{source}: body is {len(body)} bytes; the manifest promises {tsize} + {vsize}")
        tflite, vocab = body[:tsize], body[tsize:]
        if _sha(tflite) != m.get("tflite_sha256"):
            raise ModelError(f"{source}: the .tflite bytes do not match tflite_sha256 (damaged file)")
        if _sha(vocab) != m.get("vocab_sha256"):
            raise ModelError(f"{source}: the vocabulary does not match vocab_sha256 (damaged file)")
        version, quantization, max_len, dims, source_sha, created = fields
        try:
            return cls(tflite, vocab, version, quantization, max_len, dims, source_sha, created)
        except ModelError as exc:
            raise ModelError(f"{source}: {exc}") from None
