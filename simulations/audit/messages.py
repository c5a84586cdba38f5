"""The message audit: what crossed the wire, and whether any of it was the users' own data.

:class:`~vane.simulations.mods.MessageRecorder`, placed outside every other ClientApp mod, records each
message a device receives and each reply it sends, and searches them for the :class:`Needles`: item ids,
titles, category names and timestamps. Category names are the published vocabulary (the server sends the
taxonomy), so they count as a leak only in replies. :func:`summarise_messages` groups the recorded lines;
:func:`check_messages` raises :class:`PrivacyLeakError` on any finding. The client side sees both
directions, so the server side needs no separate capture.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from vane.shared.errors import VaneError
from vane.shared.events import Event

_ISO_RE = re.compile(rb"(19|20)\d\d-[01]\d-[0-3]\dT[0-2]\d:[0-5]\d")


class PrivacyLeakError(VaneError):
    """A message between server and device carried the users' own data."""


@dataclass(frozen=True)
class Needles:
    """The users' strings that must never cross the wire."""

    private: frozenset[str]  # item ids, titles: never, in either direction
    vocabulary: frozenset[str]  # category names: only the server may send them
    time_range: tuple[float, float]  # epoch seconds of the users' events

    @classmethod
    def of(cls, users: Mapping[str, Sequence[Event]]) -> Needles:
        """The item ids, titles, categories and time range of every event of ``users``."""
        private: set[str] = set()
        vocabulary: set[str] = set()
        times: list[float] = []
        for events in users.values():
            for ev in events:
                private.add(ev.item_id)
                if ev.title:
                    private.add(ev.title)
                vocabulary.update(ev.categories)
                times.append(ev.timestamp.timestamp())
        return cls(frozenset(private), frozenset(vocabulary), (min(times), max(times)))

    def search_text(self, text: str, uplink: bool) -> list[str]:
        """Needles inside ``text`` (category names only ``uplink``), and any ISO timestamp."""
        found = [n for n in self.private if n in text] if len(text) >= 3 else []
        if uplink:
            found += [n for n in self.vocabulary if n in text]
        if _ISO_RE.search(text.encode("utf-8", "replace")):
            found.append("<ISO timestamp>")
        return found

    def search_bytes(self, data: bytes, uplink: bool) -> list[str]:
        """Needles of 4+ bytes anywhere in ``data`` (4-byte prefixes matched with numpy, then verified)."""
        found: list[str] = []
        if _ISO_RE.search(data):
            found.append("<ISO timestamp>")
        table = _prefix_table(self.private | self.vocabulary if uplink else self.private)
        if len(data) < 4 or not table:
            return found
        arr = np.frombuffer(data, dtype=np.uint8).astype(np.uint32)
        n = len(arr) - 3
        windows = arr[:n] | (arr[1 : n + 1] << 8) | (arr[2 : n + 2] << 16) | (arr[3 : n + 3] << 24)
        keys = np.fromiter(table.keys(), dtype=np.uint32, count=len(table))
        for i in np.flatnonzero(np.isin(windows, keys)).tolist():
            found += [needle.decode("utf-8") for needle in table[int(windows[i])] if data.startswith(needle, i)]
        return found

    def is_timestamp(self, value: float) -> bool:
        """Whether ``value`` lies within a day of the users' events (epoch seconds)."""
        lo, hi = self.time_range
        return lo - 86400 <= value <= hi + 86400


_TABLES: dict[int, dict[int, list[bytes]]] = {}


def _prefix_table(needles: frozenset[str]) -> dict[int, list[bytes]]:
    key = hash(needles)
    if key not in _TABLES:
        table: dict[int, list[bytes]] = {}
        for needle in needles:
            raw = needle.encode("utf-8")
            if len(raw) >= 4:
                table.setdefault(int.from_bytes(raw[:4], "little"), []).append(raw)
        _TABLES[key] = table
    return _TABLES[key]



def summarise_messages(path: str | Path) -> dict[str, Any]:
    """What crossed, per (direction, type, stage): array/metric/config keys; and every finding."""
    groups: dict[tuple[str, str, str], dict[str, Any]] = {}
    findings: list[dict[str, Any]] = []
    count = 0
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        entry = json.loads(line)
        count += 1
        key = (entry["direction"], entry["type"], entry.get("stage", ""))
        g = groups.setdefault(key, {"messages": 0, "arrays": set(), "metrics": set(), "configs": set()})
        g["messages"] += 1
        for rec, arrays in entry.get("arrays", {}).items():
            g["arrays"].update(f"{rec}/{k}:{a['dtype']}{a['shape']}" for k, a in arrays.items())
        for rec, metrics in entry.get("metrics", {}).items():
            g["metrics"].update(f"{rec}/{k}" for k in metrics)
        for rec, configs in entry.get("configs", {}).items():
            g["configs"].update(f"{rec}/{k}:{t}" for k, t in configs.items())
        if entry.get("findings"):
            findings.append({k: entry[k] for k in ("direction", "type", "stage", "partition", "findings")})
    table = [
        {"direction": d, "type": t, "stage": s, "messages": g["messages"],
         **{k: sorted(g[k]) for k in ("arrays", "metrics", "configs")}}
        for (d, t, s), g in sorted(groups.items())
    ]
    return {"messages": count, "table": table, "findings": findings, "passed": not findings}


def check_messages(path: str | Path) -> dict[str, Any]:
    """:func:`summarise_messages`, raising :class:`PrivacyLeakError` on any finding."""
    summary = summarise_messages(path)
    if summary["findings"]:
        first = summary["findings"][0]
        raise PrivacyLeakError(
            f"{len(summary['findings'])} message(s) carried user data; first: {first['direction']} "
            f"{first['type']} (partition {first['partition']}): {first['findings'][:5]}"
        )
    return summary


