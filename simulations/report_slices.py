"""Markdown of where each method wins: ratios to the best baseline, per-bucket, per-type, explore, new users.

Renders the ``slices`` and ``new_users`` sections of an evaluation's results
(:mod:`vane.simulations.evaluate_ranker`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from vane.simulations.baselines import BASELINES
from vane.simulations.evaluate_slices import BUCKETS, EVENT_TYPES, EXPLORE_K


def _f(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:.3f}"


def _ratio(r: Mapping[str, float] | None) -> str:
    if not r:
        return "–"
    return f"×{r['ratio']:.3f} [{r['low']:.3f}, {r['high']:.3f}]"


def ratio_table(section: Mapping[str, Any], methods: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Every traced method's HR@1 / HR@5 / MRR and its ratios to the best baseline (95% user bootstrap)."""
    best, ratios = section.get("best_baseline"), section.get("ratios") or {}
    lines = [f"Ratios to the best non-neural baseline by HR@1 (**{best}**), 95% user-bootstrap intervals:", "",
             "| method | HR@1 | HR@5 | MRR | HR@1 ratio | MRR ratio |", "|---|---:|---:|---:|---|---|"]
    for name in section["methods"]:
        m = methods.get(name, {})
        r = ratios.get(name, {})
        lines.append(f"| {name} | {_f(m.get('hr@1'))} | {_f(m.get('hr@5'))} | {_f(m.get('mrr'))} | "
                     f"{_ratio(r.get('hr@1'))} | {_ratio(r.get('mrr'))} |")
    return lines


def slice_tables(section: Mapping[str, Any]) -> list[str]:
    """HR@1 (and MRR) per bucket of prior events and per event type; the explore list's HR@5."""
    per = section["methods"]
    if not per:
        return []
    first = next(iter(per.values()))
    heads = [f"{label} prior ({int(first['buckets'][label]['count'])})" for label, _, _ in BUCKETS]
    heads += [f"{kind} ({int(first['types'][kind]['count'])})" for kind in EVENT_TYPES]
    lines = ["HR@1 / MRR per bucket of prior events and per event type (event counts in brackets); explore: "
             f"HR@{EXPLORE_K} on events new to the person, ranking only categories they have not seen "
             f"({int(first['explore']['count'])} events):", "",
             "| method | " + " | ".join(heads) + f" | explore HR@{EXPLORE_K} |",
             "|---|" + "---:|" * (len(heads) + 1)]
    for name, s in per.items():
        cells = [f"{_f(s['buckets'][b]['hr@1'])} / {_f(s['buckets'][b]['mrr'])}" for b, _, _ in BUCKETS]
        cells += [f"{_f(s['types'][k]['hr@1'])} / {_f(s['types'][k]['mrr'])}" for k in EVENT_TYPES]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {_f(s['explore'][f'hr@{EXPLORE_K}'])} |")
    return lines


def bucket_ratio_table(section: Mapping[str, Any]) -> list[str]:
    """Per bucket of prior events: each non-baseline method's HR@1 ratio to the best baseline of that bucket."""
    per = section.get("bucket_ratios") or {}
    if not per:
        return []
    names = [n for n in next(iter(per.values()))["hr@1"] if n not in BASELINES]
    if not names:
        return []
    lines = ["HR@1 ratio to the best baseline *within* each bucket of prior events (95% user bootstrap):", "",
             "| bucket | best baseline | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for label, row in per.items():
        cells = " | ".join(_ratio(row["hr@1"][n]) for n in names)
        lines.append(f"| {label} | {row['best_baseline']} | {cells} |")
    return lines


def render_slices(results: Mapping[str, Any]) -> list[str]:
    """The report lines of the ``slices`` and ``new_users`` sections (empty when neither ran)."""
    lines: list[str] = []
    section = results.get("slices")
    if section:
        lines += ["", "## Where each method wins (test events)", "", *ratio_table(section, results["methods"]), "",
                  *slice_tables(section), "", *bucket_ratio_table(section)]
        lightgbm = [n for n in results["methods"] if n.startswith("lightgbm")]
        for name in lightgbm:
            top = results["methods"][name].get("feature_importance") or {}
            lines.append("")
            rounds = results["methods"][name].get("boosting_rounds")
            lines.append(f"- {name}: {rounds} boosting rounds; top features by gain: "
                         + ", ".join(f"{k} {v:.2f}" for k, v in list(top.items())[:6]))
    new = results.get("new_users")
    if new:
        lines += ["", f"## New users ({new['users']} held out of training entirely, online on their first "
                  f"{new['events_per_user']} events; {new['events']} scored events)", "",
                  *ratio_table(new, new["overall"]), "", *slice_tables(new), "", *bucket_ratio_table(new),
                  "", f"New-user wall time {results.get('wall_seconds_new_users', float('nan')):.1f} s."]
    return lines
