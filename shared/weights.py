"""The model's weights as one flat float32 vector or as named arrays.

The order of :func:`weight_layout` is the contract: the TensorFlow model
creates its variables in it, the LiteRT ``get_weights``/``set_weights``
signatures concatenate in it, and Flower ships it as one array.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from vane.shared.errors import SpecMismatchError, WeightsError
from vane.shared.events import KINDS
from vane.shared.spec import ModelSpec

_MAGIC = b"VANEW1\n"


def weight_layout(spec: ModelSpec) -> list[tuple[str, tuple[int, ...]]]:
    """Names and shapes of every trainable array, in flat-vector order: the LSTM's, then the ranker's."""
    return [*lstm_layout(spec), *ranker_layout(spec)]


def ranker_layout(spec: ModelSpec) -> list[tuple[str, tuple[int, ...]]]:
    """The candidate ranker's arrays (none without a ranker): a two-layer MLP with two outputs per
    candidate, the next-category score and the next-window intensity logit."""
    if not spec.ranker_units:
        return []
    f, h1 = spec.ranker_features, spec.ranker_units
    h2 = max(1, h1 // 2)
    return [("ranker/hidden1_kernel", (f, h1)), ("ranker/hidden1_bias", (h1,)),
            ("ranker/hidden2_kernel", (h1, h2)), ("ranker/hidden2_bias", (h2,)),
            ("ranker/out_kernel", (h2, 2)), ("ranker/out_bias", (2,))]


def lstm_layout(spec: ModelSpec) -> list[tuple[str, tuple[int, ...]]]:
    """The LSTM's arrays: embeddings, the cell and its two heads; then, with ``spec.text_dim``, the text
    projection (last, so every other array keeps its place)."""
    c, u = spec.num_categories, spec.lstm_units
    text = [("text/kernel", (spec.text_dim, spec.text_proj)), ("text/bias", (spec.text_proj,))] if spec.text_dim else []
    return [
        ("emb/category", (c + 1, spec.category_dim)),
        ("emb/item", (spec.item_buckets, spec.item_dim)),
        ("emb/token", (spec.token_buckets, spec.token_dim)),
        ("emb/gap", (spec.gap_buckets, spec.gap_dim)),
        ("emb/kind", (len(KINDS) + 1, spec.kind_dim)),
        ("lstm/kernel", (spec.input_dim, 4 * u)),
        ("lstm/recurrent", (u, 4 * u)),
        ("lstm/bias", (4 * u,)),
        ("head/interest_kernel", (u, c)),
        ("head/interest_bias", (c,)),
        ("head/intensity_kernel", (u, c)),
        ("head/intensity_bias", (c,)),
        *text,
    ]


def num_weights(spec: ModelSpec) -> int:
    """Length of the flat weight vector."""
    return sum(int(np.prod(shape)) for _, shape in weight_layout(spec))


def layout_slices(spec: ModelSpec) -> dict[str, slice]:
    """Where each named array lives in the flat vector."""
    out: dict[str, slice] = {}
    offset = 0
    for name, shape in weight_layout(spec):
        size = int(np.prod(shape))
        out[name] = slice(offset, offset + size)
        offset += size
    return out


@dataclass(frozen=True)
class Weights:
    """A flat float32 weight vector tagged with the hash of its ModelSpec."""

    spec_hash: str
    flat: np.ndarray

    @classmethod
    def from_flat(cls, spec: ModelSpec, flat: np.ndarray) -> Weights:
        arr = np.asarray(flat)
        if arr.ndim != 1 or arr.dtype.kind != "f":
            raise WeightsError(f"weights must be a 1-D float vector; got shape {arr.shape} dtype {arr.dtype}")
        expected = num_weights(spec)
        if arr.size != expected:
            raise SpecMismatchError(
                f"weight vector has {arr.size} values but spec {spec.hash} needs {expected}; "
                "these weights belong to another model spec"
            )
        if not np.all(np.isfinite(arr)):
            raise WeightsError("weight vector contains NaN or infinite values")
        return cls(spec.hash, arr.astype(np.float32, copy=True))

    @classmethod
    def from_named(cls, spec: ModelSpec, arrays: dict[str, np.ndarray]) -> Weights:
        parts = []
        for name, shape in weight_layout(spec):
            if name not in arrays:
                raise WeightsError(f"weights lack array {name!r} required by spec {spec.hash}")
            arr = np.asarray(arrays[name], dtype=np.float32)
            if arr.shape != shape:
                raise SpecMismatchError(f"array {name!r} has shape {arr.shape}; spec {spec.hash} expects {shape}")
            parts.append(arr.reshape(-1))
        return cls.from_flat(spec, np.concatenate(parts))

    def check(self, spec: ModelSpec) -> None:
        """Refuse these weights unless they were made for ``spec``."""
        if self.spec_hash != spec.hash:
            raise SpecMismatchError(
                f"weights were made for model spec {self.spec_hash} but this model has spec {spec.hash}"
            )

    def named(self, spec: ModelSpec) -> dict[str, np.ndarray]:
        self.check(spec)
        return {
            name: self.flat[sl].reshape(shape)
            for (name, shape), sl in zip(weight_layout(spec), layout_slices(spec).values())
        }

    def to_bytes(self) -> bytes:
        header = json.dumps({"spec_hash": self.spec_hash, "n": int(self.flat.size)}).encode()
        body = self.flat.astype("<f4").tobytes()
        return _MAGIC + struct.pack("<I", len(header)) + header + body + hashlib.sha256(body).digest()

    @classmethod
    def from_bytes(cls, blob: bytes) -> Weights:
        if not blob.startswith(_MAGIC) or len(blob) < len(_MAGIC) + 4:
            raise WeightsError("not a Vane weights file (bad magic)")
        (hlen,) = struct.unpack_from("<I", blob, len(_MAGIC))
        start = len(_MAGIC) + 4
        try:
            header = json.loads(blob[start : start + hlen])
            spec_hash, n = str(header["spec_hash"]), int(header["n"])
        except (ValueError, KeyError, TypeError):
            raise WeightsError("Vane weights file has a corrupt header") from None
        body = blob[start + hlen : start + hlen + 4 * n]
        digest = blob[start + hlen + 4 * n :]
        if len(body) != 4 * n or hashlib.sha256(body).digest() != digest:
            raise WeightsError("Vane weights file is truncated or corrupt (checksum mismatch)")
        return cls(spec_hash, np.frombuffer(body, dtype="<f4").astype(np.float32))

    def save(self, path: str | Path) -> None:
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(self.to_bytes())
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path) -> Weights:
        try:
            return cls.from_bytes(Path(path).read_bytes())
        except FileNotFoundError:
            raise WeightsError(f"weights file {str(path)!r} does not exist") from None
