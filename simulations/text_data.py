"""HuffPost headlines for the text evaluation: loading, the fixed split, the encoder and cached embeddings.

The dataset is ``../shared/datasets/huffpost-news-category-head10k/`` (JSON lines with ``link``,
``headline`` and ``category``; 29 categories, read at run time, never copied). :func:`split_headlines`
draws, with a fixed seed, the test headlines and gives the rest to the simulated devices, with a share of
them labelled. Each headline is embedded once as :func:`vane.client.encoder.event_text` (headline and URL
words, what a device embeds) by the int8 encoder, and the matrix is cached on disk, keyed by the encoder's
content-derived version and the dataset file's hash (:func:`cached_embeddings`).

:func:`hashed_bow` is the light-mode comparison: the hashed title tokens of :mod:`vane.shared.hashing`
as a bag of words (what the tracker has without an encoder).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from vane.shared.errors import ConfigError

DATASET_DIR = "huffpost-news-category-head10k"
DATASET_FILE = "News_Category_Dataset_v3_head10k.json"
#: Where the encoder and the embeddings are cached (under the repository's working directory).
CACHE_DIR = Path(".vane") / "text-eval"


@dataclass(frozen=True)
class Headlines:
    """Every headline of the file, in file order, and the category names (sorted)."""

    titles: list[str]
    links: list[str]
    labels: np.ndarray  # int64 index into categories
    categories: list[str]
    sha256: str

    def __len__(self) -> int:
        return len(self.titles)


def dataset_path(root: str | Path) -> Path:
    """The JSON lines file under ``root`` (the datasets folder or the dataset's own folder)."""
    root = Path(root)
    for candidate in (root / DATASET_FILE, root / DATASET_DIR / DATASET_FILE):
        if candidate.is_file():
            return candidate
    raise ConfigError(f"no {DATASET_FILE} under {str(root)!r}; expected the datasets folder "
                      f"(e.g. ../shared/datasets) or its {DATASET_DIR}/ folder")


def load_headlines(root: str | Path, limit: int | None = None) -> Headlines:
    """Read the headlines (the first ``limit`` rows when given); a malformed row raises ConfigError."""
    path = dataset_path(root)
    raw = path.read_bytes()
    titles, links, names = [], [], []
    for number, line in enumerate(raw.decode("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            title, link, category = str(row["headline"]).strip(), str(row.get("link") or ""), str(row["category"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{path}:{number}: not a HuffPost row ({exc}); expected JSON with headline, "
                              "link and category") from None
        if not title:
            continue
        titles.append(title)
        links.append(link)
        names.append(category)
        if limit is not None and len(titles) >= limit:
            break
    categories = sorted(set(names))
    index = {c: i for i, c in enumerate(categories)}
    labels = np.array([index[c] for c in names], dtype=np.int64)
    return Headlines(titles, links, labels, categories, hashlib.sha256(raw).hexdigest())


@dataclass(frozen=True)
class Split:
    """Row indices: ``test``; ``pool`` (everything else, dealt to the devices); ``labelled`` ⊂ pool;
    ``few`` ⊂ labelled (the 1% set); ``devices``: the pool dealt to each device."""

    test: np.ndarray
    pool: np.ndarray
    labelled: np.ndarray
    few: np.ndarray
    devices: list[np.ndarray]


def split_headlines(n: int, *, test_size: int, devices: int, label_fraction: float, few_labels: int,
                    seed: int) -> Split:
    """The fixed split: ``test_size`` test rows, the rest dealt round-robin (shuffled) to ``devices``;
    on each device ``label_fraction`` of its rows labelled (at least one); ``few_labels`` of the labelled."""
    if not 0 < test_size < n:
        raise ConfigError(f"test_size is {test_size}; expected 1..{n - 1} for {n} headlines")
    if devices < 1 or not 0 < label_fraction <= 1:
        raise ConfigError(f"devices={devices}, label_fraction={label_fraction}; expected >= 1 and in (0, 1]")
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    test, pool = np.sort(order[:test_size]), order[test_size:]
    per_device = [pool[i::devices] for i in range(devices)]
    labelled_parts = []
    for rows in per_device:
        k = max(1, int(round(label_fraction * len(rows)))) if len(rows) else 0
        labelled_parts.append(rows[:k])
    labelled = np.concatenate(labelled_parts) if labelled_parts else np.zeros(0, np.int64)
    few = rng.choice(labelled, size=min(few_labels, len(labelled)), replace=False)
    return Split(test, pool, labelled, np.sort(few), per_device)


# --- the encoder and the embeddings -----------------------------------------------------------------
def encoder_artifact(cache: Path = CACHE_DIR, say: Callable[[str], None] = print) -> Path:
    """The int8 encoder artifact, built from the pinned weights once (in a subprocess) and cached.

    The file name holds a key of the weights' hash and the exporter's source, so a change rebuilds it.
    """
    from vane.server import encoder as exporter
    from vane.server.encoder_weights import WEIGHTS_SHA256

    source = Path(exporter.__file__).read_bytes()
    key = hashlib.sha256(WEIGHTS_SHA256.encode() + source).hexdigest()[:16]
    path = cache / f"encoder-int8-{key}.vane"
    if path.is_file():
        return path
    cache.mkdir(parents=True, exist_ok=True)
    say(f"building the int8 text encoder into {path} (~1 min, once)")
    code = ("import sys; from vane.server.encoder import build_encoder; "
            "b = build_encoder('int8'); open(sys.argv[1], 'wb').write(b.artifact.to_bytes())")
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    done = subprocess.run([sys.executable, "-c", code, str(partial)], capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise ConfigError(f"building the encoder failed:\n{done.stderr[-2000:]}")
    os.replace(partial, path)
    return path


def cached_embeddings(data: Headlines, encoder_path: str | Path, cache: Path = CACHE_DIR,
                      progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """``float32[len(data), dims]``: each headline's :func:`event_text` embedded once, cached on disk
    under ``cache`` keyed by the encoder version, the dataset's hash and the number of rows."""
    from vane.client.encoder import TextEncoder, event_text

    encoder = TextEncoder.from_path(encoder_path)
    path = cache / f"embeddings-{encoder.version[:24]}-{data.sha256[:12]}-{len(data)}.npy"
    if path.is_file():
        cached = np.load(path)
        if cached.shape[0] == len(data):
            return np.asarray(cached, dtype=np.float32)
    texts = [event_text(t, u) for t, u in zip(data.titles, data.links, strict=True)]
    out = np.zeros((len(texts), encoder.dims), dtype=np.float32)
    step = 256
    for start in range(0, len(texts), step):
        out[start : start + step] = encoder.embed(texts[start : start + step])
        if progress is not None:
            progress(min(start + step, len(texts)), len(texts))
    cache.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.stem}.{os.getpid()}.npy")
    np.save(partial, out)
    os.replace(partial, path)
    return out


def encoder_version(encoder_path: str | Path) -> str:
    from vane.shared.encoder_artifact import EncoderArtifact

    return EncoderArtifact.load(encoder_path).version


# --- hashed bag of words ----------------------------------------------------------------------------
def hashed_bow(titles: Sequence[str], buckets: int = 4096) -> np.ndarray:
    """``float32[n, buckets]``: each title's hashed tokens (:func:`vane.shared.hashing.token_ids`, as the
    tracker hashes them without an encoder), counted and L2-normalised."""
    from vane.shared.hashing import token_ids

    out = np.zeros((len(titles), buckets), dtype=np.float32)
    for i, title in enumerate(titles):
        for token in token_ids(title, buckets, 64):
            if token:
                out[i, token] += 1.0
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.maximum(norms, 1e-12)
