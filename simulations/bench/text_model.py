"""``vane sim bench text-model``: the interest model with and without the text input, side by side.

Both specs are the same but for ``text_dim`` (384, the MiniLM encoder's width) and ``text_proj``; each is
measured by :func:`vane.simulations.bench.model.run_model_bench` (TensorFlow-free worker processes, medians):
export sizes, the per-event ``step`` latency, ``infer`` at batch 1, training throughput and client RSS.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from vane.shared.spec import ModelSpec
from vane.simulations.bench.model import run_model_bench

#: The measures compared, with their units.
MEASURES = {"training_model_mb": "MB", "f32_model_mb": "MB", "int8_model_mb": "MB", "step_us": "µs",
            "infer_b1_ms": "ms", "train_events_per_s": "ev/s", "client_rss_mb": "MB"}


def run(spec: ModelSpec | None = None, text_dim: int = 384, text_proj: int = 16,
        train_steps: int = 100) -> dict[str, dict[str, float]]:
    """``{"without": figures, "with": figures}`` for ``spec`` (default: the default spec) without text, and with it."""
    base = dataclasses.replace(spec or ModelSpec(), text_dim=0)
    with_text = dataclasses.replace(base, text_dim=text_dim, text_proj=text_proj)
    return {"without": run_model_bench(base, train_steps, footprint_runs=1),
            "with": run_model_bench(with_text, train_steps, footprint_runs=1)}


def print_report(result: dict[str, dict[str, Any]]) -> None:
    """Print both columns and their ratio as a rich table."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="interest model with and without text (medians, this machine)")
    for column in ("measure", "without text", "with text", "ratio"):
        table.add_column(column, justify="left" if column == "measure" else "right")
    for name, unit in MEASURES.items():
        low, high = float(result["without"][name]), float(result["with"][name])
        table.add_row(name, f"{low:,.3g} {unit}", f"{high:,.3g} {unit}", f"{high / low:.2f}x" if low else "")
    Console().print(table)
