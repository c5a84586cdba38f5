"""Markdown report and plots of an evaluation (:func:`vane.simulations.evaluate.run_evaluation`).

``report.md`` holds one table with every method × every metric and its wall time; the plots are
``metrics.png`` (a bar chart of the methods per metric) and, after a federated run,
``federated_rounds.png`` (the clients' evaluate metrics by round). Matplotlib runs with the Agg backend.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from vane.simulations.report_slices import render_slices

CATEGORY_COLUMNS = ("hr@1", "hr@5", "hr@10", "ndcg@10", "mrr")
INTENSITY_COLUMNS = ("accuracy", "recall", "f1", "roc_auc")
ITEM_COLUMNS = ("item_hr@10", "item_ndcg@10")
COLUMNS = CATEGORY_COLUMNS + INTENSITY_COLUMNS + ITEM_COLUMNS
HEADERS = {
    "hr@1": "HR@1", "hr@5": "HR@5", "hr@10": "HR@10", "ndcg@10": "NDCG@10", "mrr": "MRR",
    "accuracy": "int. acc", "recall": "int. recall", "f1": "int. F1", "roc_auc": "int. AUC",
    "item_hr@10": "item HR@10 (sampled)", "item_ndcg@10": "item NDCG@10 (sampled)",
}
ROUND_METRICS = ("hr@1", "hr@5", "hr@10", "ndcg@10", "mrr", "auc")


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def metrics_table(methods: Mapping[str, Mapping[str, Any]], walls: Mapping[str, float]) -> str:
    """Markdown: one row per method, one column per metric, then the wall time."""
    head = "| method | " + " | ".join(HEADERS[c] for c in COLUMNS) + " | wall s |"
    rule = "|---|" + "---:|" * (len(COLUMNS) + 1)
    rows = [head, rule]
    for name, metrics in methods.items():
        cells = [_fmt(metrics.get(c)) for c in COLUMNS]
        rows.append(f"| {name} | " + " | ".join(cells) + f" | {_fmt(float(walls.get(name, float('nan'))))} |")
    return "\n".join(rows)


def _targets_section(methods: Mapping[str, Mapping[str, Any]]) -> list[str]:
    baselines = {n: m for n, m in methods.items() if not n.endswith("lstm") and not n.startswith("lightgbm")}
    fed, central = methods.get("federated-lstm"), methods.get("centralised-lstm")
    lines = []
    if baselines and fed:
        for metric in ("hr@1", "mrr"):
            best_name = max(baselines, key=lambda n: baselines[n].get(metric) or 0.0)
            best = baselines[best_name][metric]
            ratio = fed[metric] / best if best else float("nan")
            lines.append(f"- federated {metric} {fed[metric]:.3f} vs best baseline ({best_name}) {best:.3f}: "
                         f"×{ratio:.3f} (target ≥ 1.05: {'met' if ratio >= 1.05 else 'not met'})")
    if fed and central and central.get("hr@1"):
        ratio = fed["hr@1"] / central["hr@1"]
        verdict = "met" if ratio >= 0.95 else "not met"
        lines.append(f"- federated ÷ centralised HR@1: {ratio:.3f} (target ≥ 0.95: {verdict})")
    return lines


def _mix_section(methods: Mapping[str, Mapping[str, Any]]) -> list[str]:
    lines = []
    for name, metrics in methods.items():
        mix = metrics.get("mix")
        if not mix:
            continue
        weights = ", ".join(f"{k} {v:g}" for k, v in mix.items())
        extra = ""
        if "model_only_hr@1" in metrics:
            extra = f"; model alone: HR@1 {_fmt(metrics['model_only_hr@1'])}, MRR {_fmt(metrics['model_only_mrr'])}"
        if "default_mix" in metrics:
            d = metrics["default_mix"]
            extra += f"; default Mix: HR@1 {_fmt(d['hr@1'])}, MRR {_fmt(d['mrr'])}"
        if "central_tuned_mix" in metrics:
            c = metrics["central_tuned_mix"]
            tuned = ", ".join(f"{k} {v:g}" for k, v in c["mix"].items())
            extra += f"; Mix({tuned}) tuned centrally on validation: HR@1 {_fmt(c['hr@1'])}, MRR {_fmt(c['mrr'])}"
        source = f" ({metrics['mix_source']})" if "mix_source" in metrics else ""
        lines.append(f"- {name}: Mix({weights}){source}{extra}")
    return lines


def render_markdown(results: Mapping[str, Any]) -> str:
    config, split, tax = results["config"], results["split"], results["taxonomy"]
    methods, walls = results["methods"], results["wall_seconds"]
    lines = [
        f"# Evaluation: {config['dataset']} (seed {results['seed']})",
        "",
        f"Split: {split['evaluated_users']} evaluated users ({split['train_only_users']} train-only), "
        f"{split['train_events']} train / {split['val_events']} validation / {split['test_events']} test events.",
        f"Taxonomy (training portion only): {int(tax['taxonomy_size'])} entries incl. `other` of "
        f"{int(tax['train_categories'])} training categories; "
        f"{tax['test_share_outside_taxonomy']:.1%} of test events fall outside it.",
        "",
        metrics_table(methods, walls),
        "",
        "## How each column is measured",
    ]
    lines += [f"- **{key}**: {text}" for key, text in results.get("protocol", {}).items()]
    mix = _mix_section(methods)
    if mix:
        lines += ["", "## Blend weights of the LSTM methods", *mix]
    targets = _targets_section(methods)
    if targets:
        lines += ["", "## Targets", *targets]
    if results.get("federated_rounds"):
        lines += ["", "## Federated rounds (sampled devices' check on their held-out newest events: the model "
                  "alone, then the blend picked from that round's candidates)", "",
                  "| round | seconds | train loss | " + " | ".join(ROUND_METRICS)
                  + " | blend hr@1 | blend mrr | blend |",
                  "|---:|---:|---:|" + "---:|" * len(ROUND_METRICS) + "---:|---:|---|"]
        for r in results["federated_rounds"]:
            ev = r.get("evaluate", {})
            mix = r.get("mix")
            blend = ", ".join(f"{k} {v:g}" for k, v in mix.items() if v) if mix else "–"
            lines.append(f"| {r['round']} | {_fmt(float(r.get('seconds') or 0.0))} | "
                         f"{_fmt(r.get('train', {}).get('train-loss'))} | "
                         + " | ".join(_fmt(ev.get(m)) for m in ROUND_METRICS)
                         + f" | {_fmt(ev.get('mix-hr@1'))} | {_fmt(ev.get('mix-mrr'))} | {blend} |")
    lines += render_slices(results)
    if results.get("drift"):
        from vane.simulations.drift import render_drift_markdown

        lines += ["", render_drift_markdown(results["drift"]).rstrip(),
                  f"Drift wall time {results.get('wall_seconds_drift', float('nan')):.1f} s; plot: drift.png."]
    lines += ["", f"Total wall time {results.get('total_wall_seconds', float('nan')):.1f} s."]
    return "\n".join(lines) + "\n"


def plot_methods(methods: Mapping[str, Mapping[str, Any]], path: Path, columns: Sequence[str] = COLUMNS) -> Path:
    """A grouped bar chart: one group per metric, one bar per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    names = list(methods)
    fig, ax = plt.subplots(figsize=(max(8, 1.1 * len(columns)), 4.5))
    width = 0.8 / max(1, len(names))
    x = np.arange(len(columns))
    for i, name in enumerate(names):
        values = [methods[name].get(c) for c in columns]
        heights = [v if isinstance(v, float) and math.isfinite(v) else 0.0 for v in values]
        ax.bar(x + i * width - 0.4 + width / 2, heights, width, label=name)
    ax.set_xticks(x)
    ax.set_xticklabels([HEADERS[c] for c in columns], rotation=30, ha="right", fontsize=8)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7, ncol=3)
    ax.set_title("Methods per metric (item metrics are sampled, 100 candidates)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_rounds(rounds: Sequence[Mapping[str, Any]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for metric in ROUND_METRICS:
        points = [(r["round"], r["evaluate"][metric]) for r in rounds if metric in r.get("evaluate", {})]
        if points:
            ax.plot(*zip(*points, strict=True), marker="o", label=metric)
    ax.set_xlabel("round (0 = untrained)")
    ax.set_ylabel("client-weighted mean")
    ax.set_title("Federated LSTM by round")
    ax.legend(fontsize=8, ncol=3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_report(results: Mapping[str, Any], out: Path) -> list[Path]:
    """``report.md``, ``metrics.png`` and (after a federated run) ``federated_rounds.png`` in ``out``."""
    paths = [out / "report.md"]
    paths[0].write_text(render_markdown(results), encoding="utf-8")
    if results["methods"]:
        paths.append(plot_methods(results["methods"], out / "metrics.png"))
    if results.get("federated_rounds"):
        paths.append(plot_rounds(results["federated_rounds"], out / "federated_rounds.png"))
    if results.get("drift", {}).get("plot"):
        paths.append(Path(results["drift"]["plot"]))
    return paths
