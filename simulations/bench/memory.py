"""Memory of a process tree: RSS and PSS summed over a process and all its descendants, sampled in the
background (Linux ``/proc``)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

#: Seconds between samples.
SAMPLE_SECONDS = 0.5


def _parent_map() -> dict[int, int]:
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: split after the last ')'.
        parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    return parents


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for pid, ppid in _parent_map().items():
        children.setdefault(ppid, []).append(pid)
    tree, stack = [], [root]
    while stack:
        pid = stack.pop()
        tree.append(pid)
        stack.extend(children.get(pid, []))
    return tree


def kb_field(path: str, name: str) -> int:
    """A ``kB`` field (``VmRSS:``, ``Pss:`` …) of a ``/proc`` status file; 0 when unreadable."""
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(name):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


class ProcessTreeMemory:
    """Background thread: samples the RSS and PSS sums of a process tree; keeps the peaks.

    Parameters
    ----------
    root : int, default os.getpid()
    interval : float, default 0.5
        Seconds between samples.
    """

    def __init__(self, root: int | None = None, interval: float = SAMPLE_SECONDS) -> None:
        self.root = root or os.getpid()
        self.interval = interval
        self.peak_rss_kb = 0
        self.peak_pss_kb = 0
        self.peak_processes = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="vane-memory-sampler", daemon=True)

    def sample(self) -> None:
        pids = process_tree(self.root)
        rss = sum(kb_field(f"/proc/{p}/status", "VmRSS:") for p in pids)
        pss = sum(kb_field(f"/proc/{p}/smaps_rollup", "Pss:") for p in pids)
        self.samples += 1
        if rss > self.peak_rss_kb:
            self.peak_rss_kb, self.peak_processes = rss, len(pids)
        self.peak_pss_kb = max(self.peak_pss_kb, pss)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def __enter__(self) -> ProcessTreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    def figures(self) -> dict[str, float]:
        return {
            "peak_rss_mb": self.peak_rss_kb / 1024,
            "peak_pss_mb": self.peak_pss_kb / 1024,
            "processes_at_peak": float(self.peak_processes),
            "memory_samples": float(self.samples),
        }
