"""The privacy audit's written report: ``audit.json`` and ``audit.md``, and the markdown tables."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


def fmt(value: Any) -> str:
    """A table cell: floats to 3 decimals (tiny ones like δ in e-notation), ∞, empty for None."""
    if isinstance(value, float):
        if math.isinf(value):
            return "∞"
        return f"{value:.0e}" if 0 < abs(value) < 1e-3 else f"{value:.3f}"  # δ
    return "" if value is None else str(value)


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """A markdown table of ``rows`` (the first row's keys are the columns)."""
    if not rows:
        return ""
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(fmt(r.get(k)) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


def write_report(out: Path, report: dict[str, Any]) -> None:
    """``audit.json`` and ``audit.md`` in ``out``: messages per run, leakage, utility when present."""
    (out / "audit.json").write_text(json.dumps(report, indent=1, default=str), encoding="utf-8")
    parts = ["# Privacy audit", "", f"Population: {report.get('config')}", ""]
    for name, messages in report.get("messages", {}).items():
        parts += [f"## Messages, {name} run ({messages['messages']} recorded) — "
                  f"{'PASS' if messages['passed'] else 'FAIL'}", ""]
        parts.append(markdown_table([{**r, **{k: ", ".join(r[k]) for k in ("arrays", "metrics", "configs")}}
                                     for r in messages["table"]]))
        if messages["findings"]:
            parts += ["", "Findings:", *[f"- {f}" for f in messages["findings"][:20]]]
        parts.append("")
    if report.get("leakage"):
        parts += ["## Item-set and category leakage (mean over clients)", "", markdown_table(report["leakage"]), ""]
    if report.get("utility"):
        parts += ["## Utility vs privacy", "", markdown_table(report["utility"]), ""]
    (out / "audit.md").write_text("\n".join(parts), encoding="utf-8")
