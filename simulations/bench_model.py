"""``vane sim bench model``: speed, size and footprint of the exported interest model.

The parent process trains the TensorFlow model briefly on synthetic sessions
(so that its predictions are confident enough for a meaningful top-1
comparison) and exports it. Every runtime figure comes from fresh
subprocesses that never import TensorFlow, as on a device. Figures are medians.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from vane.shared.events import KINDS
from vane.shared.features import Features, TrainingBatch
from vane.shared.spec import ModelSpec

#: measure -> (comparison, target, unit)
TARGETS: dict[str, tuple[str, float, str]] = {
    "step_us": ("<=", 60.0, "µs"),
    "infer_b1_ms": ("<=", 0.3, "ms"),
    "train_events_per_s": (">=", 4000.0, "ev/s"),
    "training_model_mb": ("<=", 2.0, "MB"),
    "f32_model_mb": ("", 0.0, "MB"),
    "f16_model_mb": ("", 0.0, "MB"),
    "int8_model_mb": ("<=", 0.3, "MB"),
    "f16_top1_agreement": (">=", 0.99, ""),
    "int8_top1_agreement": (">=", 0.99, ""),
    "client_rss_mb": ("<=", 80.0, "MB"),
    "client_import_s": ("", 0.0, "s"),
}


def random_features(spec: ModelSpec, rng: np.random.Generator, rows: int, length: int) -> Features:
    """Uniformly random (rows, length, ...) features, some category slots padded."""
    k, l_ = spec.max_categories_per_event, spec.tokens_per_title
    cats = rng.integers(1, spec.num_categories + 1, (rows, length, k)).astype(np.int32)
    cats[..., 1:] *= rng.random((rows, length, k - 1)) < 0.3
    return Features(
        cats,
        rng.integers(0, spec.item_buckets, (rows, length)).astype(np.int32),
        rng.integers(0, spec.token_buckets, (rows, length, l_)).astype(np.int32),
        rng.integers(0, spec.gap_buckets, (rows, length)).astype(np.int32),
        rng.integers(1, len(KINDS) + 1, (rows, length)).astype(np.int32),
    )


def session_batch(spec: ModelSpec, rng: np.random.Generator, rows: int) -> TrainingBatch:
    """Windows of sticky, category-driven sessions with their next-interest and intensity targets."""
    t, c, h = spec.window, spec.num_categories, spec.intensity_horizon
    length = t + h
    category = np.empty((rows, length), np.int64)
    category[:, 0] = rng.integers(0, c, rows)
    for i in range(1, length):
        stay = rng.random(rows) < 0.75
        category[:, i] = np.where(stay, category[:, i - 1], (category[:, i - 1] + rng.integers(1, 4, rows)) % c)
    k, l_ = spec.max_categories_per_event, spec.tokens_per_title
    cats = np.zeros((rows, t, k), np.int32)
    cats[..., 0] = category[:, :t] + 1
    item = ((category[:, :t] * 31 + rng.integers(0, 8, (rows, t))) % spec.item_buckets).astype(np.int32)
    tokens = ((category[:, :t, None] * 7 + rng.integers(0, 5, (rows, t, l_))) % spec.token_buckets).astype(np.int32)
    gap = rng.integers(0, spec.gap_buckets, (rows, t)).astype(np.int32)
    kind = rng.integers(1, len(KINDS) + 1, (rows, t)).astype(np.int32)
    onehot = np.eye(c, dtype=np.float32)[category]
    interest = onehot[:, 1 : t + 1]
    intensity = np.stack([onehot[:, i + 1 : i + 1 + h].max(axis=1) for i in range(t)], axis=1)
    zeros = np.zeros((rows, spec.lstm_units), np.float32)
    weight = np.ones((rows, t), np.float32)
    return TrainingBatch(Features(cats, item, tokens, gap, kind), zeros, zeros.copy(), interest, intensity, weight)


def export_models(spec: ModelSpec, out: Path, train_steps: int) -> dict[str, float]:
    """Train briefly in TensorFlow, write every export to ``out``; returns sizes in MB."""
    from vane.server.model import build_model, export_inference_model, export_training_model

    model = build_model(spec)
    rng = np.random.default_rng(spec.seed)
    for _ in range(train_steps):
        model.train_step(session_batch(spec, rng, spec.batch), spec.learning_rate)
    sizes = {"training_model_mb": len(export_training_model(model, out / "training.tflite")) / 1e6}
    for name, quantize in (("f32", None), ("f16", "f16"), ("int8", "int8")):
        sizes[f"{name}_model_mb"] = len(export_inference_model(model, out / f"{name}.tflite", quantize)) / 1e6
    return sizes


# The two client-only workers. Each starts from a fresh interpreter: no TensorFlow, as on a device.
_FOOTPRINT = """
import json, sys, time
t0 = time.perf_counter()
import numpy as np
import vane.client
from vane.client.runtime import LiteModel
from vane.shared.features import Features
import_s = time.perf_counter() - t0
model = LiteModel.from_path(sys.argv[1])
spec = model.spec
row = Features(np.ones((1, spec.max_categories_per_event), np.int32), np.ones(1, np.int32),
               np.ones((1, spec.tokens_per_title), np.int32), np.ones(1, np.int32), np.ones(1, np.int32))
model.step(row, *model.zero_state())
rss_kb = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmRSS:"))
print(json.dumps({"client_import_s": import_s, "client_rss_mb": rss_kb / 1024,
                  "tensorflow_loaded": "tensorflow" in sys.modules}))
"""

_SPEED = """
import json, sys
from pathlib import Path
from vane.simulations.bench_model import measure_speed
print(json.dumps(measure_speed(Path(sys.argv[1]))))
"""


def measure_speed(folder: Path) -> dict[str, float]:
    """Latency, throughput and quantization agreement (run in a TensorFlow-free process)."""
    import time

    from vane.client.runtime import LiteModel

    model = LiteModel.from_path(folder / "training.tflite")
    spec = model.spec
    rng = np.random.default_rng(1)
    f = random_features(spec, rng, 1, spec.window)
    row = f.map(lambda a: a[0, :1])
    h, c = model.zero_state()

    def median_s(fn: Any, calls: int) -> float:
        fn()
        times = []
        for _ in range(calls):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    batch = session_batch(spec, rng, spec.batch)
    result = {
        "step_us": median_s(lambda: model.step(row, h, c), 5000) * 1e6,
        "infer_b1_ms": median_s(lambda: model.infer(f), 1000) * 1e3,
        "train_events_per_s": spec.batch * spec.window / median_s(lambda: model.train(batch, 1e-4), 40),
    }
    probe = session_batch(spec, rng, 256).features
    reference = LiteModel.from_path(folder / "f32.tflite").infer(probe).interest.argmax(-1)
    for name in ("f16", "int8"):
        top1 = LiteModel.from_path(folder / f"{name}.tflite").infer(probe).interest.argmax(-1)
        result[f"{name}_top1_agreement"] = float(np.mean(top1 == reference))
    return result


def _worker(script: str, arg: Path) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-c", script, str(arg)], capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"benchmark worker failed:\n{done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def run_model_bench(spec: ModelSpec | None = None, train_steps: int = 300, footprint_runs: int = 3) -> dict[str, float]:
    """Every measure of :data:`TARGETS` for ``spec`` (default: the default ModelSpec)."""
    spec = spec or ModelSpec()
    with tempfile.TemporaryDirectory(prefix="vane-bench-") as tmp:
        folder = Path(tmp)
        result = export_models(spec, folder, train_steps)
        result.update(_worker(_SPEED, folder))
        runs = [_worker(_FOOTPRINT, folder / "training.tflite") for _ in range(footprint_runs)]
    if any(run["tensorflow_loaded"] for run in runs):
        raise RuntimeError("the client-only worker imported tensorflow")
    for key in ("client_rss_mb", "client_import_s"):
        result[key] = statistics.median(run[key] for run in runs)
    return result


def meets_target(name: str, value: float) -> bool | None:
    op, target, _ = TARGETS[name]
    if not op:
        return None
    return value <= target if op == "<=" else value >= target


def print_report(result: dict[str, float]) -> None:
    """Print the measures as a rich table."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="vane model benchmark (medians, this machine)")
    for column in ("measure", "value", "target", "ok"):
        table.add_column(column, justify="left" if column == "measure" else "right")
    for name, (op, target, unit) in TARGETS.items():
        value = result[name]
        shown = f"{value:.1%}" if "agreement" in name else f"{value:,.3g} {unit}".strip()
        goal = "" if not op else (f"{op} {target:.0%}" if "agreement" in name else f"{op} {target:g} {unit}".strip())
        ok = meets_target(name, value)
        table.add_row(name, shown, goal, "" if ok is None else ("[green]yes[/green]" if ok else "[red]no[/red]"))
    Console().print(table)
