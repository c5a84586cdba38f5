"""``vane sim bench ranker``: what the candidate ranker costs the device per event, beside ``record()``.

In a client-only subprocess (no TensorFlow), over a person of 2,000 events on a 256-category taxonomy:

- ``observe_p50_ms``: one event into the :class:`~vane.shared.candidates.CandidateState` (what
  ``record()`` adds for the ranker);
- ``features_p50_ms``: the candidates and their features at a query time;
- ``rank_p50_ms``: the LiteRT ``rank`` signature on one query of up to 100 candidates;
- ``features_plus_rank_p50_ms``: the two together, the per-event cost of an answer (target ≤ 1 ms);
- ``record_p50_ms`` with and without the ranker in the model, side by side in one process, and
  ``predict_p50_ms`` (features, rank and the reasons of the top 5).
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
    "features_plus_rank_p50_ms": Target("<=", 1.0, "ms", "candidate features + LiteRT rank, one query"),
    "observe_p50_ms": Target("", unit="ms"),
    "features_p50_ms": Target("", unit="ms"),
    "rank_p50_ms": Target("", unit="ms"),
    "record_p50_ms_with_ranker": Target("", unit="ms"),
    "record_p50_ms_without_ranker": Target("", unit="ms"),
    "predict_p50_ms_with_reasons": Target("", unit="ms"),
}


def _events(n: int, categories: list[str], start: datetime, seed: int) -> list[Any]:
    import numpy as np
    from vane.shared.events import Event

    rng = np.random.default_rng(seed)
    out, cat = [], categories[0]
    for i in range(n):
        if rng.random() < 0.4:
            cat = categories[int(rng.zipf(1.4)) % len(categories)]
        out.append(Event.create(item_id=f"{cat}-{int(rng.integers(5000))}", categories=[cat],
                                timestamp=start + timedelta(seconds=int(rng.integers(5, 600)) * (i + 1))))
    return out


def _p50(values: list[float]) -> float:
    return statistics.median(values)


def measure(ranker_path: str, plain_path: str, taxonomy_path: str, workdir: str) -> dict[str, float]:
    """Run in a client-only process: returns the figures."""
    from vane.client.ranker import NO_STATS, score_queries
    from vane.client.tracker import InterestTracker
    from vane.shared.candidates import CandidateState
    from vane.shared.population import population_stats
    from vane.shared.taxonomy import Taxonomy

    tax = Taxonomy.load(taxonomy_path)
    cats = list(tax.names[1:])
    work = Path(workdir)
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    history = _events(2000, cats, t0, seed=1)
    stats = population_stats([_events(3000, cats, t0, seed=s) for s in range(2, 8)])
    state = CandidateState()
    observe = []
    for event in history:
        t = time.perf_counter()
        state.observe(event)
        observe.append((time.perf_counter() - t) * 1e3)
    figures: dict[str, float] = {"observe_p50_ms": _p50(observe[200:])}
    records: dict[str, list[float]] = {"with": [], "without": []}
    trackers = {name: InterestTracker.open(work / f"{name}.db", key_file=work / "bench.key", model=path, taxonomy=tax)
                for name, path in (("with", ranker_path), ("without", plain_path))}
    for tracker in trackers.values():
        tracker.record_many(history[:1500])
    for event in history[1500:]:
        for name, tracker in trackers.items():  # side by side, alternating
            t = time.perf_counter()
            tracker.record(event)
            records[name].append((time.perf_counter() - t) * 1e3)
    figures["record_p50_ms_with_ranker"] = _p50(records["with"])
    figures["record_p50_ms_without_ranker"] = _p50(records["without"])
    tracker = trackers["with"]
    model = tracker.model
    assert model is not None and model.has_ranker
    feats, ranks, both = [], [], []
    when = history[-1].unix_time + 60.0
    for i in range(300):
        t = time.perf_counter()
        query = state.query(stats if i % 2 else NO_STATS)
        x = query.features(when + i)
        t1 = time.perf_counter()
        score_queries(model, [x])
        t2 = time.perf_counter()
        feats.append((t1 - t) * 1e3)
        ranks.append((t2 - t1) * 1e3)
        both.append((t2 - t) * 1e3)
    figures.update({"features_p50_ms": _p50(feats), "rank_p50_ms": _p50(ranks),
                    "features_plus_rank_p50_ms": _p50(both)})
    predicts = []
    for _ in range(100):
        t = time.perf_counter()
        tracker.predict(5)
        predicts.append((time.perf_counter() - t) * 1e3)
    figures["predict_p50_ms_with_reasons"] = _p50(predicts)
    for tracker in trackers.values():
        tracker.close()
    figures["tensorflow_imported"] = float("tensorflow" in sys.modules)
    return figures


def run(num_categories: int = 256) -> dict[str, float]:
    """Export the default spec with and without the ranker, then measure in a fresh client-only process."""
    from dataclasses import replace

    from vane.server.model import export_training_model
    from vane.shared.spec import ModelSpec
    from vane.shared.taxonomy import Taxonomy

    with tempfile.TemporaryDirectory() as tmp:
        tax = Taxonomy([f"category-{i:03d}" for i in range(1, num_categories)])
        plain = ModelSpec(num_categories=len(tax))
        paths = {"ranker": Path(tmp) / "ranker.tflite", "plain": Path(tmp) / "plain.tflite"}
        export_training_model(replace(plain, ranker_units=64), paths["ranker"])
        export_training_model(plain, paths["plain"])
        tax.save(Path(tmp) / "taxonomy.json")
        code = ("import json, sys; from vane.simulations.bench.ranker import measure; "
                "print(json.dumps(measure(*sys.argv[1:])))")
        proc = subprocess.run([sys.executable, "-c", code, str(paths["ranker"]), str(paths["plain"]),
                               str(Path(tmp) / "taxonomy.json"), tmp], capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"ranker benchmark failed:\n{proc.stderr[-2000:]}")
        figures: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    return figures


def print_report(figures: dict[str, float]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="the candidate ranker on the device (medians)")
    for column in ("measure", "value", "target", "met"):
        table.add_column(column)
    for name, target in TARGETS.items():
        value = figures[name]
        met = target.met(value)
        table.add_row(name, f"{value:.3f} {target.unit}", f"{target.op} {target.goal:g}" if target.op else "",
                      "" if met is None else ("yes" if met else "NO"))
    Console().print(table)
