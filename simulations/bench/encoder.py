"""``vane sim bench encoder``: the on-device text encoder's build time, size, speed and memory.

The parent builds the int8 encoder (``vane server export-encoder``: TensorFlow) and the default
interest model; the measurements run in a fresh subprocess that never imports TensorFlow, as on a
device, with one interpreter thread. Titles are HuffPost headlines when the dataset is present
(``../shared/datasets/huffpost-news-category-head10k``), else built-in ones. Figures are medians on
this machine; it is shared, so beside each wall-clock figure the same measure in the process's CPU
time (``*_cpu_*``: what one uncontended core would take) and the load average are printed.
"""

from __future__ import annotations

import json
import os
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
    "embed_one_p50_ms": Target("<=", 3.0, "ms", "one title of at most 32 tokens, int8, one thread"),
    "record_p50_ms": Target("<=", 4.0, "ms", "record() with the encoder (and the interest model)"),
    "record_p99_ms": Target("<=", 15.0, "ms"),
    "record_many_events_per_s": Target(">=", 500.0, "ev/s", "record_many() of 10,000 titled events"),
    "encoder_file_mb": Target("<=", 25.0, "MB"),
    "rss_mb_10k_events": Target("<=", 160.0, "MB", "a reopened tracker with the encoder and 10,000 events"),
    "encoder_build_s": Target("", 0.0, "s"),
}
HUFFPOST = Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "huffpost-news-category-head10k"
_BUILTIN = (
    "Stocks rally as the Fed holds interest rates steady", "Lakers beat the Celtics in overtime thriller",
    "How to make sourdough bread at home", "NASA delays its moon landing to 2027",
    "Best budget laptops for students this year", "Climate summit ends with a deal on coal",
    "10 easy weeknight pasta recipes", "Why sleep matters for your immune system",
    "Elections: what the polls say in swing states", "A beginner's guide to index funds",
)


def _titles(n: int) -> list[tuple[str, str]]:
    """``(headline, url)`` pairs: HuffPost's when present, else built-in ones repeated."""
    path = HUFFPOST / "News_Category_Dataset_v3_head10k.json"
    if path.is_file():
        out = []
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                row = json.loads(line)
                if row.get("headline"):
                    out.append((row["headline"], row.get("link") or ""))
        return [out[i % len(out)] for i in range(n)]
    return [(f"{_BUILTIN[i % len(_BUILTIN)]} ({i})", f"https://example.com/story-{i}") for i in range(n)]


def _events(n: int, offset_days: int, categories: list[str]) -> list[Any]:
    from vane.shared.events import Event

    t0 = datetime(2025, 1, 1, tzinfo=UTC) + timedelta(days=offset_days)
    return [Event.create(url or f"https://example.com/{i}", [categories[i % len(categories)]],
                         t0 + timedelta(seconds=30 * i), title=title)
            for i, (title, url) in enumerate(_titles(n))]


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure(encoder_path: str, model_path: str, workdir: str) -> dict[str, float]:
    """Run in a client-only process: returns the figures."""
    from vane.client.encoder import TextEncoder, event_text
    from vane.client.tracker import InterestTracker

    encoder = TextEncoder.from_path(encoder_path)
    short = [t for t, _ in _titles(3000) if len(encoder.tokenizer.encode(t)) <= 32][:300]
    for t in short[:20]:
        encoder.embed_one(t)
    one, one_cpu = [], []
    for t in short:
        start, cpu = time.perf_counter(), time.process_time()
        encoder.embed_one(t)
        one.append((time.perf_counter() - start) * 1e3)
        one_cpu.append((time.process_time() - cpu) * 1e3)
    lengths = [len(encoder.tokenizer.encode(event_text(t, u))) for t, u in _titles(2000)]
    work = Path(workdir)
    tracker = InterestTracker.open(work / "bench.db", key_file=work / "bench.key", model=model_path,
                                   encoder=encoder_path)
    cats = [c for c in tracker.taxonomy.names[1:]] if tracker.taxonomy is not None else ["news"]
    for e in _events(30, 0, cats):
        tracker.record(e)
    timings, cpu_timings = [], []
    for e in _events(500, 1, cats):
        start, cpu = time.perf_counter(), time.process_time()
        tracker.record(e)
        timings.append((time.perf_counter() - start) * 1e3)
        cpu_timings.append((time.process_time() - cpu) * 1e3)
    many = _events(10_000, 30, cats)
    start, cpu = time.perf_counter(), time.process_time()
    tracker.record_many(many)
    rate, cpu_rate = len(many) / (time.perf_counter() - start), len(many) / (time.process_time() - cpu)
    stored = len(tracker.store.embeddings())
    tracker.close()
    return {
        "embed_one_p50_ms": statistics.median(one), "embed_one_min_ms": min(one),
        "embed_one_cpu_p50_ms": statistics.median(one_cpu),
        "embed_titles_measured": float(len(one)),
        "event_text_tokens_p50": float(statistics.median(lengths)),
        "event_text_tokens_p95": float(_percentile([float(x) for x in lengths], 0.95)),
        "record_p50_ms": statistics.median(timings), "record_p99_ms": _percentile(timings, 0.99),
        "record_cpu_p50_ms": statistics.median(cpu_timings), "record_cpu_p99_ms": _percentile(cpu_timings, 0.99),
        "record_many_events_per_s": rate, "record_many_events_per_cpu_s": cpu_rate,
        "embeddings_stored": float(stored),
        "tensorflow_imported": float("tensorflow" in sys.modules),
    }


def measure_rss(workdir: str) -> dict[str, float]:
    """In a fresh client process: reopen the 10k-event store (its encoder comes from the store), record a
    titled event and answer; the process's resident memory and its high-water mark."""
    from vane.client.tracker import InterestTracker

    work = Path(workdir)
    opened = time.perf_counter()
    tracker = InterestTracker.open(work / "bench.db", key_file=work / "bench.key")
    open_s = time.perf_counter() - opened
    cats = list(tracker.taxonomy.names[1:]) if tracker.taxonomy is not None else ["news"]
    seq = tracker.record(_events(1, 90, cats)[0])
    tracker.predict(5)
    status = Path("/proc/self/status").read_text()
    figures = {
        "reopen_s": open_s,
        "rss_mb_10k_events": int(status.split("VmRSS:")[1].split()[0]) / 1024,
        "peak_rss_mb_reopened": int(status.split("VmHWM:")[1].split()[0]) / 1024,
        "reopened_record_embedded": float(seq is not None and tracker.embedding(seq) is not None),
        "tensorflow_imported_reopened": float("tensorflow" in sys.modules),
    }
    tracker.close()
    return figures


def _child(function: str, *args: str) -> dict[str, float]:
    code = (f"import json, sys; from vane.simulations.bench.encoder import {function}; "
            f"print(json.dumps({function}(*sys.argv[1:])))")
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"encoder benchmark ({function}) failed:\n{proc.stderr[-3000:]}")
    out: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


def run() -> dict[str, float]:
    """Build the encoder (timed) and the default model, then measure the client in a fresh process."""
    from vane.server.encoder import build_encoder
    from vane.server.model import export_training_model
    from vane.shared.spec import ModelSpec
    from vane.shared.vocabularies import resolve_taxonomy

    with tempfile.TemporaryDirectory() as tmp:
        built = build_encoder("int8")
        encoder_path = built.artifact.save(Path(tmp) / "encoder.vane")
        taxonomy = resolve_taxonomy("builtin:browsing")
        from vane.shared.artifact import ModelArtifact, model_identity

        spec = ModelSpec(num_categories=len(taxonomy))
        model_path = ModelArtifact(export_training_model(spec), spec, taxonomy,
                                   model_identity(spec, taxonomy)).save(Path(tmp) / "model.vane")
        figures = _child("measure", str(encoder_path), str(model_path), tmp)
        figures.update(_child("measure_rss", tmp))
        figures["encoder_file_mb"] = encoder_path.stat().st_size / 1e6
        figures["encoder_build_s"] = built.seconds
        figures["load_average_1min"] = os.getloadavg()[0]
    return figures


def print_report(figures: dict[str, float]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="vane text-encoder benchmark (int8, one thread; medians on this machine)")
    for col in ("measure", "value", "target", "met"):
        table.add_column(col)
    for name, value in figures.items():
        target = TARGETS.get(name)
        ok = None if target is None else target.met(value)
        met = "" if ok is None else ("yes" if ok else "NO")
        goal = "" if target is None or not target.op else f"{target.op} {target.goal:,} {target.unit}"
        table.add_row(name, f"{value:,.3f}", goal, met)
    Console().print(table)
