"""The text evaluation's report: ``report.md`` (tables beside the issue's targets) and ``text_eval.png``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["render_markdown", "write_report"]


def _f(value: Any, digits: int = 3) -> str:
    return "n/a" if value is None else f"{float(value):.{digits}f}"


def _targets(results: Mapping[str, Any]) -> list[tuple[str, str, str, bool | None]]:
    cat, track, fix = results["categorisation"], results["tracking"], results["fixtures"]
    fed = cat.get("head-federated-10%")
    central = cat["head-central-10%"]
    best_few = max(("centroid+prior-1%", "centroid-1%", "head-central-1%"), key=lambda m: cat[m]["top1"])
    rows: list[tuple[str, str, str, bool | None]] = []
    if fed is not None:
        rows.append(("top-1, federated head (10% labels)", "≥ 0.58 and ≥ 0.95 × central",
                     f"{_f(fed['top1'])} ({_f(fed['ratio_to_central'])} × central {_f(central['top1'])})",
                     fed["top1"] >= 0.58 and fed["ratio_to_central"] >= 0.95))
        rows.append(("macro recall, federated head (10% labels)", "≥ 0.25", _f(fed["macro_recall"]),
                     fed["macro_recall"] >= 0.25))
    rows.append((f"top-1 with 1% labels ({best_few})", "≥ 0.50", _f(cat[best_few]["top1"]),
                 cat[best_few]["top1"] >= 0.50))
    if {"encoder", "oracle", "hashed-tokens"} <= track.keys():
        ora, bow = track["oracle"], track["hashed-tokens"]
        for name in ("encoder", "encoder-soft", "encoder-soft+prior", "head-100%-soft", "head-100%-soft+prior",
                     "encoder-100%-soft", "encoder-100%-soft+prior"):
            if name not in track:
                continue
            enc = track[name]
            rows.append((f"tracking divergence ({name}, {enc.get('labels', '?')} labels)",
                         "≤ 1.25 × oracle, < hashed tokens",
                         f"{_f(enc['divergence'], 4)} ({_f(enc['divergence_ratio_to_oracle'])} × oracle "
                         f"{_f(ora['divergence'], 4)}; hashed {_f(bow['divergence'], 4)})",
                         enc["divergence_ratio_to_oracle"] <= 1.25 and enc["divergence"] < bow["divergence"]))
        enc = track["encoder"]
        rows.append(("shift-detection F1 (encoder, default detector)", "≥ 0.75", _f(enc["detection"]["f1"]),
                     enc["detection"]["f1"] >= 0.75))
        text = [n for n in track if n != "oracle" and "detection_tuned" in track[n]]
        if text:
            best = max(text, key=lambda n: track[n]["detection_tuned"]["f1"])
            f1 = track[best]["detection_tuned"]["f1"]
            ceiling = _f(ora["detection_tuned"]["f1"]) if "detection_tuned" in ora else "n/a"
            rows.append(("shift-detection F1 (best text tracker, tuned detector)", "≥ 0.75",
                         f"{_f(f1)} ({best}; oracle tuned {ceiling})", f1 >= 0.75))
    if "skipped" not in fix:
        rows.append(("real fixtures left other (rules + encoder)", "≤ 10%",
                     f"{100 * fix['other_rules_and_encoder']:.1f}%", fix["other_rules_and_encoder"] <= 0.10))
    return rows


def _detector(config: Mapping[str, Any] | None) -> str:
    if not config:
        return ""
    kind = (f"re-seed + cool-down {config['cooldown']}, {config.get('measure', 'js').upper()}"
            if config.get("cooldown") else f"hysteresis, exit {config['exit']}")
    return (f"short {config['short_half_life']:g} / long {config['long_half_life']:g}, enter {config['enter']}, "
            f"{kind}")


def _tracking_intro(track: Mapping[str, Any]) -> list[str]:
    any_entry: Mapping[str, Any] = next(iter(track.values()), {})
    return [f"{any_entry.get('users', '?')} synthetic users over 29 equally likely categories "
            f"({any_entry.get('events', '?')} events); each event is a test headline of its true category. "
            "`argmax`: the method's top label (today's categoriser); `soft`: its posterior as per-category "
            "weights; `soft+prior`: the posterior times a personal prior from the tracker's current memory, "
            f"weight `a` chosen on a validation population (seed {any_entry.get('validation_seed', '?')}). "
            "`head-N%`: central class-balanced heads on N% of the pool's labels (the label-count curve). "
            "Shift F1: the tracker's default detector, and the detector tuned on the validation population "
            "with the variant's own stream (`vane.simulations.drift.tune_detector`, hysteresis or re-seed + "
            "cool-down settings)."]


def render_markdown(results: Mapping[str, Any]) -> str:
    """The report as Markdown."""
    config, cat, track, fix = results["config"], results["categorisation"], results["tracking"], results["fixtures"]
    lines = ["# Text evaluation: HuffPost headlines", "",
             f"{config['headlines']} headlines, {len(config['categories'])} HuffPost categories, "
             f"seed {config['seed']}, encoder `{config['encoder_version']}` (int8). "
             f"Wall time {results['wall_seconds']:.0f} s.", "",
             "HuffPost's editors filed headlines under 29 sections of their own, not Topics paths, so every method "
             "predicts those 29 labels: the head has the on-device head's form (softmax regression on the 384-d "
             "embedding) with 29 outputs instead of one per Topics topic. The prior embeds a short description "
             "of each section.", "", "## Targets", "", "| measure | target | measured | met |", "|---|---|---|---|"]
    for name, target, measured, met in _targets(results):
        lines.append(f"| {name} | {target} | {measured} | {'yes' if met else 'NO'} |")
    lines += ["", "## Categorisation", "",
              f"{config['test_size']} test headlines; the labelled headlines come from the devices' slices.", "",
              "| method | labels | top-1 | top-3 | macro recall |", "|---|---|---|---|---|"]
    for name, entry in cat.items():
        lines.append(f"| {name} | {entry['labels']} | {_f(entry['top1'])} | {_f(entry['top3'])} | "
                     f"{_f(entry['macro_recall'])} |")
    fed = cat.get("head-federated-10%")
    if fed is not None:
        audit = fed["audit"]
        lines += ["", f"Federated head: Flower Simulation Engine, {fed['devices']} devices, one label-count round, "
                      f"then {fed['rounds']} FedAvg rounds of {fed['local_epochs']} local steps; "
                      f"{fed['seconds']:.0f} s; {fed['uplink_bytes_per_device_round'] / 1024:.1f} KiB up per device "
                      f"and round. Text audit: {audit['replies']} replies, {audit['bytes']} bytes searched, "
                      f"{audit['findings']} carried a title, token ids or an embedding row."]
    lines += ["", "## Text-only tracking", "", *_tracking_intro(track), "",
              "| tracker | labels from | labels | head top-1 / macro | mode | label error | JS (bits) | × oracle | "
              "shift F1 default (P / R) | shift F1 tuned | tuned detector |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, entry in track.items():
        d, t = entry["detection"], entry.get("detection_tuned")
        mode = entry.get("mode", "")
        if "prior_weight" in entry:
            mode += f" (a = {entry['prior_weight']})"
        head = (f"{_f(entry['head_top1'])} / {_f(entry['head_macro_recall'])}" if "head_top1" in entry else "")
        lines.append(f"| {name} | {entry['method']} | {entry.get('labels', '')} | {head} | {mode} | "
                     f"{_f(entry['label_error'])} | {_f(entry['divergence'], 4)} | "
                     f"{_f(entry.get('divergence_ratio_to_oracle'))} | {_f(d['f1'])} ({_f(d['precision'])} / "
                     f"{_f(d['recall'])}) | {_f(t['f1']) if t else 'n/a'} | "
                     f"{_detector(entry.get('tuned_detector'))} |")
    lines += ["", "## Real browser fixtures", ""]
    if "skipped" in fix:
        lines.append(f"Skipped: {fix['skipped']}.")
    else:
        lines += [f"{fix['visits']} visits. Left `other`: older coarse rules {100 * fix['other_older_rules']:.1f}%, "
                  f"Topics site rules {100 * fix['other_topics_rules']:.1f}%, rules + encoder (prior) "
                  f"{100 * fix['other_rules_and_encoder']:.1f}% ({fix['untitled_other']} untitled visits no rule "
                  "knows)."]
    lines += ["", "Settings chosen on this split (so optimistic): the prior's pseudo-count "
                  f"k = {config['prior_weight']} in centroid+prior; {config['fed_local_epochs']} local steps per "
                  "federated round.", ""]
    return "\n".join(lines)


def write_report(results: Mapping[str, Any], out: Path) -> list[Path]:
    """``report.md`` and ``text_eval.png`` in ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    report = out / "report.md"
    report.write_text(render_markdown(results), encoding="utf-8")
    cat, track = results["categorisation"], results["tracking"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5), gridspec_kw={"width_ratios": [2, 1]})
    names = list(cat)
    pos = np.arange(len(names))
    for i, metric in enumerate(("top1", "top3", "macro_recall")):
        left.bar(pos + (i - 1) * 0.27, [cat[n][metric] for n in names], 0.27, label=metric)
    left.set_xticks(pos, names, rotation=35, ha="right", fontsize=8)
    left.set_ylim(0, 1)
    left.set_title("HuffPost categorisation (test headlines)")
    left.legend(fontsize=8)
    curve = {mode: [(track[n]["labels"], track[n]["divergence_ratio_to_oracle"])
                    for n in (f"head-1%{mode}", f"head-10%{mode}", f"head-100%{mode}")
                    if n in track and "labels" in track[n]] for mode in ("", "-soft", "-soft+prior")}
    for mode, points in curve.items():
        if points:
            right.plot(*zip(*points, strict=True), marker="o", label=f"central head{mode or ' (argmax)'}")
    for name, style in (("encoder", "x"), ("encoder-soft", "s"), ("encoder-100%-soft+prior", "D"),
                        ("hashed-tokens", "v"), ("hashed-100%-soft", "^")):
        if name in track and "labels" in track[name]:
            right.plot(track[name]["labels"], track[name]["divergence_ratio_to_oracle"], style, label=name)
    right.axhline(1.25, color="k", ls="--", lw=1, label="target 1.25 × oracle")
    right.set_xscale("log")
    right.set_xlabel("labelled headlines")
    right.set_ylabel("tracking JS divergence / oracle's")
    right.set_title("Text-only tracking: labels vs divergence")
    right.legend(fontsize=7)
    fig.tight_layout()
    plot = out / "text_eval.png"
    fig.savefig(plot, dpi=100)
    plt.close(fig)
    return [report, plot]
