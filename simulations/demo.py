"""The main job, ``make demo``: federated training on the built-in synthetic population.

It runs the real ClientApp and ServerApp in Flower's Simulation Engine over
synthetic users whose interests drift, evaluates the federated model through
the same on-device prediction path the tracker ships, and compares it with what
an app could do alone (decayed frequency, repeat-last, Markov) and with global
popularity. Everything lands in a report folder with plots.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from vane.simulations.collector import CATEGORY_METRICS as METRICS

DEMO_METHODS = ("popularity", "decayed-frequency", "repeat-last", "markov", "federated-lstm", "federated-ranker")
#: The federated models (the rest are the baselines an app could run alone).
FEDERATED = ("federated-lstm", "federated-ranker")


def run_demo(out_dir: str | Path | None = None, users: int = 40, rounds: int = 5, seed: int = 0) -> int:
    """Run the demo; returns the process exit code (frameworks quieted unless ``vane demo -v``)."""
    from vane.simulations.progress import MethodProgress, configure_output, is_verbose

    configure_output(is_verbose())
    from rich.console import Console
    from rich.table import Table
    from vane.simulations.evaluate import EvaluationConfig, run_evaluation

    console = Console()
    out = Path(out_dir or os.environ.get("VANE_DEMO_OUT", "reports/demo"))
    console.rule("[bold]Vane demo[/bold]: federated interest tracking on a synthetic population")
    console.print(f"{users} simulated devices, {rounds} Flower rounds, report in {out}/")
    started = time.perf_counter()
    config = EvaluationConfig(dataset="synthetic", seed=seed, max_users=users, rounds=rounds, methods=DEMO_METHODS,
                              taxonomy_size=64, fed_local_epochs=5, ranker_rounds=rounds,
                              ranker_fraction=1.0, ranker_local_epochs=15, new_users=False)
    with MethodProgress(DEMO_METHODS) as phases:
        results = run_evaluation(config, out, progress=phases.say)
    methods: dict[str, Any] = results["methods"]
    table = Table(title=f"Next-interest prediction on {users} synthetic users (test = each user's newest events)")
    table.add_column("method")
    for metric in METRICS:
        table.add_column(metric.upper(), justify="right")
    best_baseline = max((m for m in methods if m not in FEDERATED), key=lambda m: methods[m]["mrr"])
    for name in DEMO_METHODS:
        scores = methods[name]
        style = "bold green" if name == "federated-ranker" else ("bold" if name == best_baseline else "")
        table.add_row(name, *(f"{scores[m]:.3f}" for m in METRICS), style=style)
    console.print(table)
    fed, base = methods["federated-ranker"], methods[best_baseline]
    lstm = methods["federated-lstm"]
    console.print(f"[bold]federated ranker vs best baseline ({best_baseline}): HR@1 x{fed['hr@1'] / base['hr@1']:.2f}, "
                  f"MRR x{fed['mrr'] / base['mrr']:.2f}[/bold] "
                  f"(federated LSTM: HR@1 x{lstm['hr@1'] / base['hr@1']:.2f})")
    plots = ", ".join(p for p in results["outputs"] if p.endswith(".png"))
    console.print(f"report: {out / 'report.md'}; plots: {plots}")
    console.print(f"finished in {time.perf_counter() - started:.0f} s")
    (out / "demo.json").write_text(json.dumps({"best_baseline": best_baseline, "federated_ranker": fed,
                                               "federated_lstm": lstm, "baseline": base}, indent=1, default=str))
    return 0
