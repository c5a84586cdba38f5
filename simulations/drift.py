"""Drift tracking on synthetic users whose true interest mixture is known at every event.

For every user of a :class:`~vane.simulations.synthetic.SyntheticPopulation` the events are replayed
through the tracker's own state (:class:`~vane.client.shifts.ShiftDetector` with the tracker's default
settings, and the decayed profile behind ``interests()``). After each event the tracked distribution is
compared with the true mixture of the **next** event by the Jensen–Shannon divergence (bits):

``short``      the detector's short memory (what the tracker blends as "recent");
``long``       its long memory;
``profile``    the time-decayed profile of ``interests()`` without a model;
``current``    the detector's ``current`` memory (the long memory re-seeded from the short one at every
               reported shift) — what ``interests()`` ranks by, and the tracked profile this module reports;
``decayed-frequency``  the baseline: plain decayed frequency with a half-life of 20 events (the U vector).

Shift detection: a reported shift matches a true one if it comes within ``window`` events after it
(each true shift matches at most one report). Precision, recall, F1 and the mean delay of the matches
are reported. :func:`tune_detector` picks detector settings on validation populations whose seeds are
distinct from the reported ones.

Soft categories: :func:`evaluate_drift` and :func:`track_user` take optional per-user weight matrices
(``n_events x C`` over ``population.categories``, rows summing to 1, e.g. a categoriser's posterior);
every tracked distribution and the detector then take each event as those weights instead of its
categories (the ``profile`` as the same time decay, computed in numpy).
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
from vane.client.profile import DecayedProfile
from vane.client.shifts import ShiftDetector
from vane.shared.divergence import js_divergence
from vane.shared.errors import ConfigError
from vane.simulations.synthetic import SyntheticPopulation

logger = logging.getLogger("vane.simulations")

TRACKED = ("current", "short", "long", "profile", "decayed-frequency")
#: Half-life (events) of the decayed-frequency baseline, as :class:`~vane.simulations.baselines.DecayedFrequency`.
BASELINE_HALF_LIFE = 20.0
DEFAULT_WINDOW = 40
#: Events skipped at the start of each user before divergences count (every tracker starts empty).
BURN_IN = 10
#: Per user, one row of category weights per event (over ``population.categories``).
Weights: TypeAlias = Mapping[str, np.ndarray]
#: The detector settings :func:`tune_detector` searches: hysteresis (the tracker's default kind), and the
#: re-seed + cool-down kind with the total-variation distance.
DEFAULT_GRID: tuple[dict[str, tuple[Any, ...]], ...] = (
    {"short_half_life": (5.0, 8.0), "long_half_life": (30.0, 60.0), "enter": (0.12, 0.16, 0.2),
     "exit": (0.05, 0.08), "warmup": (20, 30)},
    # lower thresholds for soft category weights (a posterior's memories differ less)
    {"short_half_life": (5.0, 8.0), "long_half_life": (30.0, 60.0), "enter": (0.03, 0.05, 0.08),
     "exit": (0.02,), "warmup": (20,)},
    {"short_half_life": (5.0, 8.0), "long_half_life": (30.0, 60.0), "enter": (0.15, 0.2, 0.3, 0.4, 0.5, 0.6),
     "exit": (0.0,), "warmup": (20,), "cooldown": (40,), "measure": ("tv",)},
)


@dataclass
class UserDrift:
    """Divergence per event (from event ``BURN_IN`` on) of each tracked distribution, and the shifts."""

    divergence: dict[str, np.ndarray]
    detected: list[int]
    true: list[int]


def _vector(dist: Mapping[str, float], index: Mapping[str, int]) -> np.ndarray:
    out = np.zeros(len(index))
    for cat, p in dist.items():
        if cat in index:
            out[index[cat]] = p
    total = out.sum()
    return out / total if total > 0 else out


def _checked(population: SyntheticPopulation, weights: Weights | None) -> None:
    if weights is None:
        return
    for uid, events in population.users.items():
        w = weights.get(uid)
        shape = None if w is None else np.shape(w)
        if shape != (len(events), len(population.categories)):
            raise ConfigError(f"weights of user {uid!r} have shape {shape}; expected "
                              f"({len(events)}, {len(population.categories)}): one row per event and category")


def track_user(population: SyntheticPopulation, uid: str, detector_config: Mapping[str, Any] | None = None,
               half_life_days: float = 7.0, weights: np.ndarray | None = None) -> UserDrift:
    """Replay one synthetic user through the tracker's state and measure every tracked distribution.

    ``weights``: the user's ``n_events x C`` category weights, taken instead of the events' categories.
    """
    events = population.users[uid]
    truth = population.truth[uid]
    index = {c: i for i, c in enumerate(population.categories)}
    names = tuple(population.categories)
    detector = ShiftDetector(**dict(detector_config or {}))
    profile = DecayedProfile(half_life_s=half_life_days * 86400.0)
    soft_profile = np.zeros(len(index))
    keep_df = 0.5 ** (1.0 / BASELINE_HALF_LIFE)
    u = np.zeros(len(index))
    rows: dict[str, list[np.ndarray]] = {name: [] for name in TRACKED}
    for t, ev in enumerate(events):
        if weights is None:
            onehot = np.zeros(len(index))
            onehot[[index[c] for c in ev.categories]] = 1.0 / len(ev.categories)
            detector.update(ev.categories, t + 1, ev.unix_time)
            profile.update(t + 1, ev.item_id, ev.title, ev.categories, ev.unix_time)
        else:
            onehot = np.asarray(weights[t], dtype=np.float64)
            detector.update(names, t + 1, ev.unix_time, weights=onehot)
            gap = ev.unix_time - events[t - 1].unix_time if t else 0.0
            soft_profile = soft_profile * 0.5 ** (gap / (half_life_days * 86400.0)) + onehot
        u = keep_df * u + onehot
        short = _vector(detector.short, index)
        if t < BURN_IN or t + 1 >= len(events):
            continue
        rows["short"].append(short)
        rows["long"].append(_vector(detector.long, index))
        rows["profile"].append(_vector(profile.shares(), index) if weights is None
                               else soft_profile / soft_profile.sum())
        rows["current"].append(_vector(detector.current, index))
        rows["decayed-frequency"].append(u / u.sum())
    target = truth[BURN_IN + 1 :]
    divergence = {name: js_divergence(np.asarray(r).reshape(-1, len(index)), target) for name, r in rows.items()}
    return UserDrift(divergence, [s.event_index for s in detector.shifts], list(population.shifts[uid]))


def match_shifts(detected: Sequence[int], true: Sequence[int], window: int = DEFAULT_WINDOW) -> tuple[int, list[int]]:
    """Matches of true shifts to the first unused report within ``window`` events after each; returns
    (matches, delays)."""
    used: set[int] = set()
    delays = []
    for s in sorted(true):
        hit = next((d for d in sorted(detected) if s <= d <= s + window and d not in used), None)
        if hit is not None:
            used.add(hit)
            delays.append(hit - s)
    return len(delays), delays


@dataclass
class DriftResult:
    config: dict[str, Any]
    divergence: dict[str, float]
    detection: dict[str, float]
    users: dict[str, UserDrift] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"config": self.config, "divergence": self.divergence, "detection": self.detection}


def detection_scores(users: Mapping[str, UserDrift], window: int = DEFAULT_WINDOW) -> dict[str, float]:
    tp = reported = true = 0
    delays: list[int] = []
    for drift in users.values():
        matched, d = match_shifts(drift.detected, drift.true, window)
        tp += matched
        delays += d
        reported += len(drift.detected)
        true += len(drift.true)
    precision = tp / reported if reported else 0.0
    recall = tp / true if true else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "precision": precision, "recall": recall, "f1": f1,
        "mean_delay_events": float(np.mean(delays)) if delays else float("nan"),
        "median_delay_events": float(np.median(delays)) if delays else float("nan"),
        "true_shifts": float(true), "reported_shifts": float(reported), "matched": float(tp),
        "window_events": float(window),
    }


def evaluate_drift(population: SyntheticPopulation, detector_config: Mapping[str, Any] | None = None,
                   window: int = DEFAULT_WINDOW, weights: Weights | None = None) -> DriftResult:
    """Mean divergence (over users' events) of every tracked distribution, and shift-detection scores.

    ``weights``: per user, category weights per event taken instead of the events' categories.
    """
    _checked(population, weights)
    users = {uid: track_user(population, uid, detector_config, weights=None if weights is None else weights[uid])
             for uid in population.users}
    divergence = {name: float(np.mean(np.concatenate([u.divergence[name] for u in users.values()])))
                  for name in TRACKED}
    config = {"users": population.num_users, "seed": population.seed, "window": window,
              "detector": dict(ShiftDetector(**dict(detector_config or {})).to_dict(), names=None, short_mass=None,
                               long_mass=None, shifts=None),
              "baseline_half_life_events": BASELINE_HALF_LIFE, "burn_in": BURN_IN}
    config["detector"] = {k: v for k, v in config["detector"].items() if k in
                          ("short_half_life", "long_half_life", "enter", "exit", "warmup", "cooldown", "measure")}
    return DriftResult(config, divergence, detection_scores(users, window), users)


def _detections(population: SyntheticPopulation, config: Mapping[str, Any],
                weights: Weights | None = None) -> dict[str, UserDrift]:
    out = {}
    names = tuple(population.categories)
    for uid, events in population.users.items():
        detector = ShiftDetector(**dict(config))
        if weights is None:
            detector.update_many([(ev.categories, t + 1, ev.unix_time) for t, ev in enumerate(events)])
        else:
            detector.update_many([(names, t + 1, ev.unix_time) for t, ev in enumerate(events)], list(weights[uid]))
        out[uid] = UserDrift({}, [s.event_index for s in detector.shifts], list(population.shifts[uid]))
    return out


def tune_detector(validation: Sequence[SyntheticPopulation], window: int = DEFAULT_WINDOW,
                  grid: Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Sequence[Any]]] | None = None,
                  weights: Sequence[Weights | None] | None = None) -> tuple[dict[str, Any], float]:
    """The detector settings with the best pooled F1 over the validation populations.

    ``grid``: one grid or several (their union; default :data:`DEFAULT_GRID`). ``weights``: per
    validation population, its users' category weights (or None for its categories).
    """
    grids = DEFAULT_GRID if grid is None else ([grid] if isinstance(grid, Mapping) else list(grid))
    per_population = list(weights) if weights is not None else [None] * len(validation)
    if len(per_population) != len(validation):
        raise ConfigError(f"{len(per_population)} weight sets for {len(validation)} validation populations")
    for population, w in zip(validation, per_population, strict=True):
        _checked(population, w)
    candidates = [dict(zip(g, values, strict=True)) for g in grids for values in itertools.product(*g.values())]
    best: tuple[dict[str, Any], float] = ({}, -1.0)
    for config in candidates:
        config["warmup"] = int(config.get("warmup", 30))
        if "cooldown" in config:
            config["cooldown"] = int(config["cooldown"])
        try:
            ShiftDetector(**config)
        except ConfigError:
            continue
        users: dict[str, UserDrift] = {}
        for i, (population, w) in enumerate(zip(validation, per_population, strict=True)):
            users.update({f"{i}/{uid}": drift for uid, drift in _detections(population, config, w).items()})
        f1 = detection_scores(users, window)["f1"]
        if f1 > best[1] + 1e-12:
            best = (config, f1)
    return best


def plot_divergence(result: DriftResult, path: Path, users: Sequence[str] | None = None) -> Path:
    """Divergence to the truth over time for a few users (shifted ones first), true and detected shifts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    chosen = list(users or [])
    if not chosen:
        shifted = [uid for uid, d in result.users.items() if d.true]
        chosen = (shifted + [uid for uid in result.users if uid not in shifted])[:4]
    fig, axes = plt.subplots(len(chosen), 1, figsize=(8, 2.2 * len(chosen)), sharex=False, squeeze=False)
    for ax, uid in zip(axes[:, 0], chosen, strict=True):
        drift = result.users[uid]
        for name in ("current", "short", "decayed-frequency"):
            x = np.arange(BURN_IN, BURN_IN + len(drift.divergence[name]))
            ax.plot(x, drift.divergence[name], label=name, lw=1)
        for s in drift.true:
            ax.axvline(s, color="k", ls="--", lw=1)
        for s in drift.detected:
            ax.axvline(s, color="r", ls=":", lw=1)
        ax.set_ylabel(f"{uid}\nJS (bits)", fontsize=8)
    axes[0, 0].legend(fontsize=7, ncol=3)
    axes[0, 0].set_title("Divergence to the true mixture (dashed: true shift, dotted: reported shift)")
    axes[-1, 0].set_xlabel("event index")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def run_drift(out: Path, num_users: int = 200, seed: int = 0, validation_seeds: Sequence[int] = (),
              window: int = DEFAULT_WINDOW, detector_config: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Drift evaluation on ``SyntheticPopulation(num_users, seed=seed)``; writes ``drift.json`` and ``drift.png``.

    With ``validation_seeds`` the detector is first tuned on those populations (seeds must differ from
    ``seed``); otherwise ``detector_config`` (default: the tracker's defaults) is used.
    """
    if seed in validation_seeds:
        raise ConfigError(f"validation seeds {list(validation_seeds)} include the reported seed {seed}")
    tuned: dict[str, Any] = {}
    if validation_seeds:
        config, f1 = tune_detector([SyntheticPopulation(num_users, seed=s) for s in validation_seeds], window)
        tuned = {"validation_seeds": list(validation_seeds), "validation_f1": f1, "config": config}
        detector_config = config
    result = evaluate_drift(SyntheticPopulation(num_users, seed=seed), detector_config, window)
    payload = {**result.to_dict(), "tuning": tuned, "tracked_profile": "current"}
    out.mkdir(parents=True, exist_ok=True)
    (out / "drift.json").write_text(json.dumps(payload, indent=1), encoding="utf-8")
    payload["plot"] = str(plot_divergence(result, out / "drift.png"))
    return payload


def render_drift_markdown(drift: Mapping[str, Any]) -> str:
    div, det = drift["divergence"], drift["detection"]
    lines = [
        "## Drift tracking (synthetic users, true mixture known)",
        "",
        f"Mean Jensen–Shannon divergence (bits) between the tracked distribution after each event and the true "
        f"mixture of the next event, over {drift['config']['users']} users (seed {drift['config']['seed']}):",
        "",
        "| tracked distribution | mean JS divergence |",
        "|---|---:|",
    ]
    lines += [f"| {name}{' (tracker: what interests() ranks by)' if name == 'current' else ''} | {value:.4f} |"
              for name, value in div.items()]
    lines += [
        "",
        f"Shift detection (a report matches a true shift within {int(det['window_events'])} events after it): "
        f"precision {det['precision']:.3f}, recall {det['recall']:.3f}, F1 {det['f1']:.3f}, "
        f"mean delay {det['mean_delay_events']:.1f} events (median {det['median_delay_events']:.0f}); "
        f"{int(det['matched'])} of {int(det['true_shifts'])} true shifts found, "
        f"{int(det['reported_shifts'])} reported.",
        f"Detector settings: {drift['config']['detector']}.",
    ]
    if drift.get("tuning"):
        t = drift["tuning"]
        lines.append(f"Tuned on validation seeds {t['validation_seeds']} (F1 {t['validation_f1']:.3f}).")
    return "\n".join(lines) + "\n"
