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
from vane.shared.spec import ModelSpec
from vane.simulations.bench.inputs import random_features, session_batch
from vane.simulations.bench.targets import Target

TARGETS: dict[str, Target] = {
    "step_us": Target("<=", 60.0, "µs"),
    "infer_b1_ms": Target("<=", 0.3, "ms"),
    "train_events_per_s": Target(">=", 4000.0, "ev/s"),
    "training_model_mb": Target("<=", 2.0, "MB"),
    "f32_model_mb": Target("", 0.0, "MB"),
    "f16_model_mb": Target("", 0.0, "MB"),
    "int8_model_mb": Target("<=", 0.3, "MB"),
    "f16_top1_agreement": Target(">=", 0.99),
    "int8_top1_agreement": Target(">=", 0.99),
    "client_rss_mb": Target("<=", 80.0, "MB"),
    "client_import_s": Target("", 0.0, "s"),
}


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
from vane.simulations.bench.model import measure_speed
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
    """Every measure of :data:`TARGETS` for ``spec`` (default: the default ModelSpec).

    Parameters
    ----------
    spec : ModelSpec, optional
    train_steps : int, default 300
        TensorFlow steps on synthetic sessions before the export (for a meaningful top-1 agreement).
    footprint_runs : int, default 3
        Fresh client-only processes measuring import time and RSS; the median is kept.
    """
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


def print_report(result: dict[str, float]) -> None:
    """Print the measures as a rich table."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="vane model benchmark (medians, this machine)")
    for column in ("measure", "value", "target", "ok"):
        table.add_column(column, justify="left" if column == "measure" else "right")
    for name, target in TARGETS.items():
        op, unit = target.op, target.unit
        value = result[name]
        shown = f"{value:.1%}" if "agreement" in name else f"{value:,.3g} {unit}".strip()
        goal = "" if not op else (f"{op} {target.goal:.0%}" if "agreement" in name
                                  else f"{op} {target.goal:g} {unit}".strip())
        ok = target.met(value)
        table.add_row(name, shown, goal, "" if ok is None else ("[green]yes[/green]" if ok else "[red]no[/red]"))
    Console().print(table)
