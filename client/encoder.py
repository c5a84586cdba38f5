"""The on-device text encoder: an encoder artifact run by the LiteRT runtime, with its own WordPiece.

:class:`TextEncoder` opens an artifact built by ``vane server export-encoder``
(:mod:`vane.shared.encoder_artifact`) in the runtime :mod:`vane.client.runtime` picks
(ai-edge-litert, or tflite-runtime with ``VANE_RUNTIME=tflite-runtime``), tokenizes with
:mod:`vane.shared.wordpiece` and returns L2-normalised float32 sentence embeddings. No TensorFlow.

:func:`event_text` is what an event is embedded as: its title, then the words of its URL.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
from vane.client.runtime import _interpreter_class, _Signature
from vane.shared.encoder_artifact import EncoderArtifact
from vane.shared.errors import ModelError
from vane.shared.wordpiece import WordPiece

#: The most texts one interpreter call embeds, and the most padded tokens in one call (B x L): the
#: cost per token is flat beyond a few texts, while the interpreter's arena grows with B x L.
BATCH = 16
BATCH_TOKENS = 512
#: Padded lengths are rounded up to a multiple of this. 1: a new shape costs the interpreter little,
#: while rounding up to 8 cost ~15% more compute on titles (measured: 510 vs 600 titles per CPU second).
LENGTH_STEP = 1
_SPLIT = re.compile(r"[-_/.+~:;,=&%!]+")
_SECOND_LEVEL = frozenset({"co", "com", "org", "net", "gov", "ac", "edu", "ne", "or", "go"})
_NOISE_WORDS = frozenset({"www", "amp", "html", "htm", "php", "asp", "aspx", "jsp", "cgi", "index", "shtml", "entry"})
_HEXISH = re.compile(r"^[0-9a-f]{8,}$")


def url_words(url: str) -> list[str]:
    """The words of a URL: its host without ``www`` and the top-level domain, then its path segments
    split on ``- _ / .``, without numbers, ids, file extensions or the query string."""
    if not url or ("://" not in url and "." not in url):
        return []
    try:
        parts = urlsplit(url if "://" in url else "//" + url)
        host = (parts.hostname or "").lower()
    except ValueError:
        return []
    labels = [x for x in host.split(".") if x]
    if len(labels) > 1:
        labels.pop()  # the top-level domain
        if len(labels) > 1 and labels[-1] in _SECOND_LEVEL:
            labels.pop()
    words = []
    for piece in [*labels, *_SPLIT.split(parts.path)]:
        word = piece.lower()
        if len(word) < 2 or word in _NOISE_WORDS or any(c.isdigit() for c in word) or _HEXISH.match(word):
            continue
        words.append(piece)
    return words


def event_text(title: str | None, url: str | None = None) -> str:
    """The text an event is embedded as: its title, then the words of its URL the title lacks (a slug
    repeating the title adds nothing but tokens); either may be missing."""
    title = (title or "").strip()
    seen = set(re.findall(r"\w+", title.lower()))
    words = []
    for word in url_words(url) if url else []:
        if word.lower() not in seen:
            seen.add(word.lower())
            words.append(word)
    return " ".join(x for x in (title, " ".join(words)) if x)


class TextEncoder:
    """An encoder artifact in a LiteRT interpreter; :meth:`embed` is thread-safe (one call at a time).

    Parameters
    ----------
    artifact : EncoderArtifact
    num_threads : int, default 1
        The interpreter's threads (one keeps a device's background work light).
    """

    def __init__(self, artifact: EncoderArtifact, num_threads: int = 1) -> None:
        if int(num_threads) < 1:
            raise ModelError(f"num_threads is {num_threads}; expected at least 1")
        self.artifact = artifact
        self.tokenizer = WordPiece.from_bytes(artifact.vocab, artifact.max_len)
        interpreter_class = _interpreter_class()
        try:
            self._interpreter = interpreter_class(model_content=artifact.tflite, num_threads=int(num_threads))
            keys = self._interpreter.get_signature_list()
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"encoder {artifact.version}: the .tflite is not a loadable LiteRT model: {exc}") from None
        if "embed" not in keys:
            raise ModelError(f"encoder {artifact.version} lacks the 'embed' signature (it has {sorted(keys)})")
        self._embed = _Signature(self._interpreter, "embed")
        self._lock = threading.Lock()

    @classmethod
    def from_bytes(cls, blob: bytes, num_threads: int = 1) -> TextEncoder:
        """An encoder from an artifact's bytes (checked: magic, manifest, sizes, digests)."""
        return cls(EncoderArtifact.from_bytes(blob), num_threads)

    @classmethod
    def from_path(cls, path: str | Path, num_threads: int = 1) -> TextEncoder:
        return cls(EncoderArtifact.load(path), num_threads)

    @property
    def version(self) -> str:
        return self.artifact.version

    @property
    def dims(self) -> int:
        return self.artifact.dims

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """``float32[n, dims]`` L2-normalised embeddings of ``texts``, in order.

        Texts are tokenized, sorted by length and run in batches of up to :data:`BATCH` texts and
        :data:`BATCH_TOKENS` padded tokens, padded to the batch's longest (rounded up to
        :data:`LENGTH_STEP`), so short titles never pay for long ones.
        """
        if isinstance(texts, str):
            raise ModelError("embed takes a sequence of texts; wrap a single text in a list")
        rows = [self.tokenizer.encode(t) for t in texts]
        out = np.zeros((len(rows), self.dims), dtype=np.float32)
        order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
        start = 0
        while start < len(order):
            # the longest text of a chunk is its last (sorted); grow it while B x L stays in budget
            end = start + 1
            while end < min(len(order), start + BATCH) and \
                    (end - start + 1) * self._padded(len(rows[order[end]])) <= BATCH_TOKENS:
                end += 1
            chunk, start = order[start:end], end
            length = self._padded(len(rows[chunk[-1]]))
            ids = np.zeros((len(chunk), length), dtype=np.int32)
            mask = np.zeros((len(chunk), length), dtype=np.int32)
            for j, i in enumerate(chunk):
                ids[j, : len(rows[i])] = rows[i]
                mask[j, : len(rows[i])] = 1
            with self._lock:
                result = self._embed(input_ids=ids, attention_mask=mask)
            out[chunk] = np.asarray(result["embedding"], dtype=np.float32)
        return out

    def _padded(self, length: int) -> int:
        return min(-(-length // LENGTH_STEP) * LENGTH_STEP, self.artifact.max_len)

    def embed_one(self, text: str) -> np.ndarray:
        """``float32[dims]``: one text's embedding."""
        return self.embed([text])[0]
