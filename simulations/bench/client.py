"""``vane sim bench client``: latency, throughput, memory and import time of the device SDK.

The measurements run in a fresh subprocess that never imports TensorFlow, as
on a device; the parent only exports the model. Figures are medians of
repeated runs on this machine (shared and noisy: compare ratios, not absolutes).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from vane.simulations.bench.targets import Target

TARGETS: dict[str, Target] = {
    "record_p50_ms": Target("<=", 1.0, "ms"),
    "record_p99_ms": Target("<=", 5.0, "ms"),
    "record_many_events_per_s": Target(">=", 20000.0, "ev/s"),
    "interests_p50_ms": Target("<=", 0.5, "ms"),
    "predict_p50_ms": Target("<=", 0.5, "ms"),
    "rss_mb_10k_events": Target("<=", 80.0, "MB"),
    "import_s": Target("<=", 0.5, "s"),
}


def _events(n: int, categories: list[str], seed: int = 0) -> list[Any]:
    import numpy as np
    from vane.shared.events import Event

    rng = np.random.default_rng(seed)
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    out = []
    for i in range(n):
        cat = categories[int(rng.zipf(1.6)) % len(categories)]
        out.append(Event.create(item_id=f"{cat}-{int(rng.integers(5000))}", categories=[cat],
                                timestamp=t0 + timedelta(seconds=30 * i), title=f"{cat} story {i % 97}"))
    return out


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure(model_path: str, taxonomy_path: str, workdir: str) -> dict[str, float]:
    """Run in a client-only process: returns the figures."""

    from vane.client.tracker import InterestTracker
    from vane.shared.taxonomy import Taxonomy

    tax = Taxonomy.load(taxonomy_path)
    cats = list(tax.names[1:])
    work = Path(workdir)
    tracker = InterestTracker.open(work / "bench.db", key_file=work / "bench.key", model=model_path, taxonomy=tax)
    warm = _events(50, cats, seed=1)
    for e in warm:
        tracker.record(e)
    timings = []
    for e in _events(500, cats, seed=2):
        shifted = type(e)(e.item_id, e.categories, e.timestamp + timedelta(days=30), e.kind, e.title, e.dwell_s)
        t = time.perf_counter()
        tracker.record(shifted)
        timings.append((time.perf_counter() - t) * 1e3)
    many = _events(10000, cats, seed=3)
    many = [type(e)(e.item_id, e.categories, e.timestamp + timedelta(days=60), e.kind, e.title, e.dwell_s)
            for e in many]
    t = time.perf_counter()
    tracker.record_many(many)
    rate = len(many) / (time.perf_counter() - t)
    interests, predicts = [], []
    for _ in range(200):
        t = time.perf_counter()
        tracker.interests(5)
        interests.append((time.perf_counter() - t) * 1e3)
        t = time.perf_counter()
        tracker.predict(5)
        predicts.append((time.perf_counter() - t) * 1e3)
    tracker.close()
    del many
    # A process that opens a store of 10,000+ events and answers from it: its resident memory
    # (VmRSS) and high-water mark (VmHWM; not ru_maxrss, which Linux carries over exec from the
    # TensorFlow parent).
    tracker = InterestTracker.open(work / "bench.db", key_file=work / "bench.key")
    tracker.predict(5)
    tracker.interests(5)
    status = Path("/proc/self/status").read_text()
    rss_mb = int(status.split("VmRSS:")[1].split()[0]) / 1024
    hwm_mb = int(status.split("VmHWM:")[1].split()[0]) / 1024
    tracker.close()
    return {
        "record_p50_ms": statistics.median(timings),
        "record_p99_ms": _percentile(timings, 0.99),
        "record_many_events_per_s": rate,
        "interests_p50_ms": statistics.median(interests),
        "predict_p50_ms": statistics.median(predicts),
        "rss_mb_10k_events": rss_mb,
        "peak_rss_mb_whole_benchmark": hwm_mb,
        "tensorflow_imported": float("tensorflow" in sys.modules),
    }


def _import_time(runs: int = 5) -> float:
    code = "import time; t=time.perf_counter(); import vane.client.tracker; print(time.perf_counter()-t)"
    times = [float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
                   .stdout.strip()) for _ in range(runs)]
    return statistics.median(times)


def run(num_categories: int = 64) -> dict[str, float]:
    """Export a default-spec model, then measure the client in a fresh process."""
    from vane.server.model import export_training_model
    from vane.shared.spec import ModelSpec
    from vane.shared.taxonomy import Taxonomy

    with tempfile.TemporaryDirectory() as tmp:
        tax = Taxonomy([f"category-{i:02d}" for i in range(1, num_categories)])
        spec = ModelSpec(num_categories=len(tax))
        model_path, tax_path = Path(tmp) / "model.tflite", Path(tmp) / "taxonomy.json"
        export_training_model(spec, model_path)
        tax.save(tax_path)
        code = ("import json, sys; from vane.simulations.bench.client import measure; "
                "print(json.dumps(measure(sys.argv[1], sys.argv[2], sys.argv[3])))")
        proc = subprocess.run([sys.executable, "-c", code, str(model_path), str(tax_path), tmp],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"client benchmark failed:\n{proc.stderr[-2000:]}")
        figures: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    figures["import_s"] = _import_time()
    return figures


def print_report(figures: dict[str, float]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="vane client benchmark (medians on this machine)")
    for col in ("measure", "value", "target", "met"):
        table.add_column(col)
    for name, value in figures.items():
        target = TARGETS.get(name)
        ok = None if target is None else target.met(value)
        met = "" if ok is None else ("yes" if ok else "NO")
        table.add_row(name, f"{value:,.3f}", "" if target is None else f"{target.op} {target.goal:,}", met)
    Console().print(table)
