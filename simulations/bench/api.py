"""``vane sim bench api``: recording one event over the local HTTP API, and the server's memory.

A store of ``--events`` synthetic browsing visits (default 10,000, no model, no encoder) is served by a
real ``vane client serve`` on 127.0.0.1. One client connection (kept alive, ``http.client``) then sends
``POST /api/events`` with one new visit (a URL, a title, no categories: the server finds them from the
URL rules) at ``--rate`` requests per second for ``--seconds`` seconds, each at its scheduled time (open
loop). Latency is counted from sending a request to its whole answer; "lag" from its scheduled time to
the answer (it adds the client's own wake-up delays, and shows a server that falls behind). Reported:
p50, p99 and max latency, p99 lag, the rate achieved, and the
server's resident memory (VmRSS) after the run and after answering interests, predict, history and
events, and its high-water mark (VmHWM) over the whole run.
"""

from __future__ import annotations

import http.client
import json
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vane.simulations.bench.browser import ServeProcess, free_port, token_of
from vane.simulations.bench.dashboard import synthetic_visits
from vane.simulations.bench.targets import Target

TARGETS = {
    "record_p50_ms": Target("<=", 3.0, "ms", "record one event over HTTP (no encoder), p50"),
    "record_p99_ms": Target("<=", 15.0, "ms", "record one event over HTTP (no encoder), p99"),
    "server_rss_mb": Target("<=", 150.0, "MB", "server RSS with the store's events, after answering"),
    "server_peak_rss_mb": Target("", 0.0, "MB", "server peak RSS (VmHWM) over the run"),
    "record_lag_p99_ms": Target("", 0.0, "ms", "scheduled time to answer, p99"),
    "achieved_rate": Target("", 0.0, "req/s", "requests per second achieved"),
}


@dataclass
class ApiBenchResult:
    events: int
    rate: float
    seconds: float
    latencies_ms: list[float]
    lags_ms: list[float]
    errors: int
    elapsed_s: float
    rss_mb: dict[str, float] = field(default_factory=dict)

    def figures(self) -> dict[str, float]:
        ordered = sorted(self.latencies_ms)
        return {"record_p50_ms": statistics.median(ordered),
                "record_p99_ms": ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))],
                "server_rss_mb": self.rss_mb.get("after answering", 0.0),
                "server_peak_rss_mb": self.rss_mb.get("peak", 0.0),
                "record_lag_p99_ms": sorted(self.lags_ms)[min(len(self.lags_ms) - 1, int(0.99 * len(self.lags_ms)))],
                "achieved_rate": len(ordered) / self.elapsed_s if self.elapsed_s else 0.0}

    def passed(self) -> bool:
        return self.errors == 0 and all(TARGETS[k].met(v) is not False for k, v in self.figures().items())


def _memory_mb(pid: int) -> tuple[float, float]:
    status = Path(f"/proc/{pid}/status").read_text()
    rss = int(status.split("VmRSS:")[1].split()[0]) / 1024
    hwm = int(status.split("VmHWM:")[1].split()[0]) / 1024
    return rss, hwm


def _request(conn: http.client.HTTPConnection, token: str, method: str, path: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    conn.request(method, path, body=data, headers={"Authorization": f"Bearer {token}",
                                                    "Content-Type": "application/json"})
    response = conn.getresponse()
    payload = response.read()
    if response.status != 200:
        raise RuntimeError(f"{method} {path} answered {response.status}: {payload[:300]!r}")
    return json.loads(payload)


def run_api_bench(events: int = 10_000, rate: float = 100.0, seconds: float = 60.0,
                  progress: Any = None) -> ApiBenchResult:
    """Build the store, serve it, send one event per request at ``rate`` for ``seconds``; the figures."""
    from vane.client.tracker import InterestTracker

    with tempfile.TemporaryDirectory(prefix="vane-bench-api-") as tmp:
        store = Path(tmp) / "bench.store"
        with InterestTracker.open(store, key_file=Path(tmp) / "bench.store.key") as tracker:
            tracker.record_many(synthetic_visits(events))
        token, port = token_of(store), free_port()
        with ServeProcess(store, port).start(token) as server:
            assert server.proc is not None
            pid = server.proc.pid
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            for i in range(20):  # warm-up: connection, first answers (events in time order, as live visits are)
                _request(conn, token, "POST", "/api/events", {"item_id": f"https://warm.example/{i}",
                                                              "timestamp": time.time(), "kind": "view"})
            total = int(rate * seconds)
            latencies: list[float] = []
            lags: list[float] = []
            errors = 0
            begin = time.perf_counter()
            for i in range(total):
                due = begin + i / rate
                pause = due - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)
                visit = {"item_id": f"https://www.bbc.com/news/bench-{i}", "kind": "link",
                         "timestamp": time.time(), "title": f"Bench story number {i}"}
                sent = time.perf_counter()
                try:
                    answer = _request(conn, token, "POST", "/api/events", visit)
                    errors += answer != {"recorded": 1, "duplicates": 0}
                except (OSError, RuntimeError, http.client.HTTPException):
                    errors += 1
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                done = time.perf_counter()
                latencies.append((done - sent) * 1e3)
                lags.append((done - due) * 1e3)
                if progress is not None and (i + 1) % int(rate * 10) == 0:
                    progress(f"  {i + 1}/{total} requests, p50 so far {statistics.median(latencies):.2f} ms")
            elapsed = time.perf_counter() - begin
            rss: dict[str, float] = {"after recording": _memory_mb(pid)[0]}
            for path in ("/api/interests?k=10&level=top", "/api/interests?k=50", "/api/predict?k=5",
                         "/api/interests/history?buckets=30", "/api/shifts", "/api/blocks", "/api/events?limit=50"):
                _request(conn, token, "GET", path)
            rss["after answering"], rss["peak"] = _memory_mb(pid)
            conn.close()
    return ApiBenchResult(events, rate, seconds, latencies, lags, errors, elapsed, rss)


def print_report(result: ApiBenchResult) -> bool:
    """Print the figures beside their targets; True when every target is met and no request failed."""
    figures = result.figures()
    print(f"vane sim bench api: {result.events:,} stored events, POST /api/events at {result.rate:g} req/s for "
          f"{result.seconds:g} s ({len(result.latencies_ms):,} requests, {result.errors} failed), one keep-alive "
          "connection")
    print(f"{'measure':<22} {'value':>10}  {'target':<12} {'met':<4} description")
    for name, target in TARGETS.items():
        value = figures[name]
        goal = f"{target.op} {target.goal:g} {target.unit}" if target.op else "-"
        met = target.met(value)
        print(f"{name:<22} {value:>10.2f}  {goal:<12} {'-' if met is None else 'yes' if met else 'NO':<4} "
              f"{target.description} ({target.unit})")
    print(f"latency max {max(result.latencies_ms):.2f} ms; server RSS "
          + ", ".join(f"{k} {v:.1f} MB" for k, v in result.rss_mb.items()))
    return result.passed()
