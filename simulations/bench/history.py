"""``vane sim bench import``: importing a large browser history in bounded memory.

A synthetic Chrome ``History`` file (``urls`` + ``visits`` with Chrome's column names, visit times
in microseconds since 1601, real transition qualifiers) is written to a temporary folder, then a
child process imports it into a fresh store with :meth:`InterestTracker.import_history`. The child
runs alone so that its peak RSS (its own ``VmHWM`` on Linux, else ``ru_maxrss`` of the waited-for
child) measures the import and nothing else.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from vane.simulations.bench.targets import Target

#: What the import should reach at one million visits.
TARGETS: dict[str, Target] = {
    "peak_rss_mib": Target("<=", 200.0, "MiB", "peak RSS of the importing process"),
    "visits_per_s": Target("", 0.0, "visits/s", "visits read and imported per second"),
}

_CHROME_EPOCH = datetime(1601, 1, 1, tzinfo=UTC)
_CHAIN_END = 0x20000000
_HOSTS = ("news.example.com", "shop.example.org", "video.example.net", "docs.example.io", "sport.example.com",
          "recipes.example.org", "travel.example.com", "music.example.net")


def _chrome_time(when: datetime) -> int:
    return (when - _CHROME_EPOCH) // timedelta(microseconds=1)


def _visit_rows(n_visits: int, n_urls: int, end: datetime, seed: int) -> Iterator[tuple[int, int, int, int, int]]:
    """``(id, url id, visit_time, transition, visit_duration)`` rows, about two years up to ``end``."""
    state = seed * 2654435761 % 2**32 or 1
    start = _chrome_time(end - timedelta(days=730))
    step = max(1, (_chrome_time(end) - start) // max(1, n_visits))
    for vid in range(1, n_visits + 1):
        state = (1103515245 * state + 12345) % 2**31  # a small LCG: no numpy, same rows for a seed
        core = (0, 0, 0, 1, 8, 5, 0, 2)[state % 8]
        chain_end = 0 if state % 23 == 0 else _CHAIN_END  # about 4% redirect hops
        yield vid, 1 + state % n_urls, start + vid * step, core | chain_end, (state % 600) * 1_000_000


def make_chrome_history(path: str | os.PathLike[str], n_visits: int, n_urls: int = 50_000, seed: int = 0,
                        end: datetime | None = None) -> Path:
    """Write a synthetic Chrome ``History`` database with ``n_visits`` visits of ``n_urls`` pages.

    Rows are streamed into SQLite, so writing a million visits needs little memory.
    """
    out = Path(path)
    end = end or datetime.now(UTC) - timedelta(days=1)
    con = sqlite3.connect(out)
    try:
        con.executescript(
            "CREATE TABLE meta(key LONGVARCHAR NOT NULL UNIQUE PRIMARY KEY, value LONGVARCHAR);"
            "INSERT INTO meta VALUES ('version', '67');"
            "CREATE TABLE urls(id INTEGER PRIMARY KEY, url LONGVARCHAR, title LONGVARCHAR, visit_count INTEGER "
            "DEFAULT 0, typed_count INTEGER DEFAULT 0, last_visit_time INTEGER, hidden INTEGER DEFAULT 0);"
            "CREATE TABLE visits(id INTEGER PRIMARY KEY, url INTEGER NOT NULL, visit_time INTEGER NOT NULL, "
            "from_visit INTEGER, transition INTEGER DEFAULT 0 NOT NULL, segment_id INTEGER, "
            "visit_duration INTEGER DEFAULT 0 NOT NULL);"
            "CREATE INDEX visits_time_index ON visits (visit_time);"
        )
        con.executemany(
            "INSERT INTO urls(id, url, title) VALUES (?, ?, ?)",
            ((i, f"https://{_HOSTS[i % len(_HOSTS)]}/page/{i}?ref=feed", f"Page {i} on {_HOSTS[i % len(_HOSTS)]}")
             for i in range(1, n_urls + 1)),
        )
        con.executemany(
            "INSERT INTO visits(id, url, visit_time, transition, visit_duration) VALUES (?, ?, ?, ?, ?)",
            _visit_rows(n_visits, n_urls, end, seed),
        )
        con.commit()
    finally:
        con.close()
    return out


_CHILD = """
import json, sys, time
from vane.client.tracker import InterestTracker
history, store = sys.argv[1], sys.argv[2]
start = time.perf_counter()
with InterestTracker.open(store, key_file=store + ".key") as tracker:
    summary = tracker.import_history(history)
seconds = time.perf_counter() - start
# VmHWM is this process's own peak RSS; ru_maxrss of a child also counts its parent's RSS at fork.
status = open("/proc/self/status").read().splitlines() if sys.platform == "linux" else []
hwm = [line.split()[1] for line in status if line.startswith("VmHWM:")]
print(json.dumps({"seconds": seconds, "summary": summary.to_dict(), "peak_kib": int(hwm[0]) if hwm else None}))
"""


@dataclass(frozen=True)
class ImportBenchResult:
    """One import run: its size, time, peak memory and what was imported."""

    visits: int
    file_mib: float
    seconds: float
    peak_rss_mib: float
    imported: int
    skipped: dict[str, int]

    @property
    def visits_per_s(self) -> float:
        """Visits read per second of the whole import (opening the store included)."""
        return self.visits / self.seconds if self.seconds > 0 else 0.0

    def passed(self) -> bool:
        """Whether every target with a goal is met."""
        return all(TARGETS[name].met(value) is not False for name, value in
                   (("peak_rss_mib", self.peak_rss_mib), ("visits_per_s", self.visits_per_s)))


def run_import_bench(visits: int = 1_000_000, seed: int = 0, workdir: str | None = None) -> ImportBenchResult:
    """Generate a ``visits``-visit Chrome history and import it in a child process; measure it."""
    with tempfile.TemporaryDirectory(prefix="vane-bench-import-", dir=workdir) as tmp:
        history = make_chrome_history(Path(tmp) / "History", visits, seed=seed)
        store = str(Path(tmp) / "me.db")
        with open(Path(tmp) / "child.out", "w+") as out, open(Path(tmp) / "child.err", "w+") as err:
            child = subprocess.Popen([sys.executable, "-c", _CHILD, str(history), store], stdout=out, stderr=err)
            # wait4 gives this child's own resource usage: its peak RSS and nothing else's.
            _, status, usage = os.wait4(child.pid, 0)
            child.returncode = os.waitstatus_to_exitcode(status)
            out.seek(0)
            err.seek(0)
            stdout, stderr = out.read(), err.read()
        if child.returncode != 0:
            raise RuntimeError(f"the import child failed ({child.returncode}): {stderr.strip()[-2000:]}")
        report = json.loads(stdout.strip().splitlines()[-1])
        summary = report["summary"]
        return ImportBenchResult(
            visits=visits, file_mib=history.stat().st_size / 2**20, seconds=float(report["seconds"]),
            peak_rss_mib=(report.get("peak_kib") or usage.ru_maxrss) / 1024, imported=int(summary["imported"]),
            skipped=dict(summary["skipped"]),
        )


def print_report(result: ImportBenchResult) -> bool:
    """Print the figures against the targets; return whether all targets are met."""
    print(f"history: {result.visits:,} visits, {result.file_mib:.1f} MiB (synthetic Chrome)")
    print(f"imported {result.imported:,} events, skipped {sum(result.skipped.values()):,} {result.skipped}")
    print(f"time: {result.seconds:.1f} s, {result.visits_per_s:,.0f} visits/s")
    target = TARGETS["peak_rss_mib"]
    verdict = "ok" if target.met(result.peak_rss_mib) else "FAILED"
    print(f"peak RSS: {result.peak_rss_mib:.0f} MiB (target {target.op} {target.goal:.0f} {target.unit}): {verdict}")
    return result.passed()


def main(argv: list[str] | None = None) -> int:
    """``python -m vane.simulations.bench.history [VISITS]``: run and print; 1 when a target fails."""
    args = sys.argv[1:] if argv is None else argv
    started = time.perf_counter()
    ok = print_report(run_import_bench(int(args[0]) if args else 1_000_000))
    print(f"(benchmark wall time {time.perf_counter() - started:.0f} s)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
