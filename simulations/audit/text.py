"""The text audit: no reply of a device carries a title, its token ids or its embedding.

:class:`TextNeedles` holds, for every headline the devices hold, the title (UTF-8), the encodings of its
token ids (WordPiece ids after ``[CLS]``, three in a row, as int32 and int64) and the first values of its
embedding row (four in a row, as float32 and float16, the store's precision), and optionally each device's
label counts (the whole vector as float32, float64 and int64: a head counts reply in the clear; the findings
are reported as ``counts:DEVICE``). :class:`TextAudit` is a ClientApp mod that searches every reply's
arrays, metric values and config values for them and writes one JSON line per reply;
:func:`check_text_messages` raises :class:`~vane.simulations.audit.messages.PrivacyLeakError` on any
finding. A byte pattern is searched anywhere (at any offset) in the reply.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from vane.simulations.audit.messages import PrivacyLeakError
from vane.simulations.mods import partition_id

if TYPE_CHECKING:
    from flwr.app import Context, Message
    from flwr.clientapp.typing import ClientAppCallable

__all__ = ["TextAudit", "TextNeedles", "check_text_messages"]

#: Token ids in a row that make a finding; embedding values in a row that make one.
TOKEN_RUN = 3
EMBEDDING_RUN = 4


@dataclass(frozen=True)
class TextNeedles:
    """Byte patterns by kind (``title``, ``tokens``, ``embedding``) → pattern → the headline's index."""

    patterns: dict[str, dict[bytes, int]]

    @classmethod
    def of(cls, titles: Sequence[str], token_ids: Sequence[Sequence[int]], embeddings: np.ndarray,
           counts: Sequence[np.ndarray] = ()) -> TextNeedles:
        """The patterns of every headline: its title, its tokens (``[CLS]`` dropped) and its embedding row;
        and of every device's label counts in ``counts`` (kind ``counts``, indexed by device)."""
        if not len(titles) == len(token_ids) == len(embeddings):
            raise ValueError(f"{len(titles)} titles, {len(token_ids)} token lists, {len(embeddings)} embeddings; "
                             "expected one of each per headline")
        out: dict[str, dict[bytes, int]] = {"title": {}, "tokens": {}, "embedding": {}}
        for i, title in enumerate(titles):
            raw = title.encode("utf-8")
            if len(raw) >= 8:
                out["title"][raw] = i
            ids = [t for t in token_ids[i][1:] if t][:TOKEN_RUN]
            if len(ids) == TOKEN_RUN:
                for dtype in ("<i4", "<i8"):
                    out["tokens"][np.asarray(ids, dtype=dtype).tobytes()] = i
            row = np.asarray(embeddings[i], dtype=np.float32)[:EMBEDDING_RUN]
            for dtype in ("<f4", "<f2"):
                out["embedding"][row.astype(dtype).tobytes()] = i
        if len(counts):
            out["counts"] = {np.asarray(c).astype(dtype).tobytes(): d for d, c in enumerate(counts)
                             for dtype in ("<f4", "<f8", "<i8")}
        return cls(out)

    def search(self, data: bytes) -> list[str]:
        """``kind:index`` of every pattern found in ``data`` (at any byte offset).

        Every 4-byte window of ``data`` is looked up among the patterns' first 4 bytes with numpy, and only
        the hits are compared in full, so a reply is searched once whatever the number of patterns.
        """
        table = self._table()
        if len(data) < 4 or not table:
            return []
        arr = np.frombuffer(data, dtype=np.uint8).astype(np.uint32)
        n = len(arr) - 3
        windows = arr[:n] | (arr[1 : n + 1] << 8) | (arr[2 : n + 2] << 16) | (arr[3 : n + 3] << 24)
        keys = np.fromiter(table.keys(), dtype=np.uint32, count=len(table))
        found = []
        for i in np.flatnonzero(np.isin(windows, keys)).tolist():
            found += [f"{kind}:{index}" for pattern, kind, index in table[int(windows[i])]
                      if data.startswith(pattern, i)]
        return found

    def _table(self) -> dict[int, list[tuple[bytes, str, int]]]:
        cached: dict[int, list[tuple[bytes, str, int]]] | None = self.__dict__.get("_prefixes")
        if cached is None:
            cached = {}
            for kind, patterns in self.patterns.items():
                for pattern, index in patterns.items():
                    cached.setdefault(int.from_bytes(pattern[:4], "little"), []).append((pattern, kind, index))
            object.__setattr__(self, "_prefixes", cached)
        return cached


def _reply_bytes(message: Message) -> list[tuple[str, bytes]]:
    """Every payload of a reply as bytes: arrays, metric values (as float64/int64), config values."""
    if not message.has_content():
        return []
    parts: list[tuple[str, bytes]] = []
    content = message.content
    for name, rec in content.array_records.items():
        parts += [(f"{name}/{key}", bytes(arr.data)) for key, arr in rec.items()]
    for name, metrics in content.metric_records.items():
        for key, metric in metrics.items():
            numbers = metric if isinstance(metric, list) else [metric]
            parts.append((f"{name}/{key}", np.asarray(numbers, dtype="<f8").tobytes()
                          + np.asarray([int(v) for v in numbers], dtype="<i8").tobytes()))
    for name, configs in content.config_records.items():
        for key, value in configs.items():
            values = value if isinstance(value, list) else [value]
            for v in values:
                data = v if isinstance(v, bytes) else str(v).encode("utf-8")
                parts.append((f"{name}/{key}", data))
    return parts


class TextAudit:
    """ClientApp mod: searches each reply for :class:`TextNeedles`; one JSON line per reply in ``path``."""

    def __init__(self, path: str | Path, needles: TextNeedles) -> None:
        self.path = str(path)
        self.needles = needles

    def __call__(self, msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
        reply = call_next(msg, context)
        findings: list[str] = []
        checked = 0
        for where, data in _reply_bytes(reply):
            checked += len(data)
            findings += [f"{where}:{f}" for f in self.needles.search(data)]
        line = {"partition": partition_id(context), "type": str(msg.metadata.message_type),
                "error": reply.has_error(), "bytes": checked, "findings": findings}
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(line) + "\n")
        return reply


def check_text_messages(path: str | Path) -> dict[str, Any]:
    """The replies recorded by :class:`TextAudit`; raises PrivacyLeakError if any carried a needle."""
    lines = [json.loads(x) for x in Path(path).read_text(encoding="utf-8").splitlines() if x.strip()]
    bad = [x for x in lines if x["findings"]]
    summary = {"replies": len(lines), "bytes": sum(x["bytes"] for x in lines), "findings": len(bad),
               "passed": not bad}
    if bad:
        raise PrivacyLeakError(f"{len(bad)} of {len(lines)} replies carried a title, token ids or an embedding; "
                               f"first (partition {bad[0]['partition']}): {bad[0]['findings'][:5]}")
    return summary
