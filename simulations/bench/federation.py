"""``vane sim bench federation``: round time, memory and upload size of Flower simulations.

Each case (a population size, float32 or float16 deltas) runs in a fresh
subprocess, because a second Flower simulation in one process was seen to hang
(see :func:`vane.simulations.federation.run_isolated`), and so that the memory of one
case does not leak into the next. Inside that process:

1. a :class:`~vane.simulations.synthetic.SyntheticPopulation` is generated;
2. one encrypted store per user is prepared in a process pool
   (:func:`~vane.simulations.federation.prepare_devices` with ``workers``), timed
   apart from the run: it is set-up, not federation;
3. :func:`~vane.simulations.federation.run_federated` runs the real ServerApp and
   ClientApp over Ray, while :class:`~vane.simulations.bench.memory.ProcessTreeMemory` samples the RSS and PSS
   of the whole process tree (the driver and every Ray process) every 0.5 s.

Figures:

- **seconds per round** after start-up: the median of rounds 1..R as the
  ServerApp times them (train, evaluate, checkpoint, publish). Ray start-up and
  round 0 (the untrained model's evaluation, during which the Ray actors come
  up) are excluded and reported apart;
- **peak memory**: the largest sum over the process tree of RSS (counts shared
  pages once per process, so it over-states) and of PSS (shares them out), and
  the driver's own ``VmHWM``;
- **bytes uploaded per client per round**: the sizes of the ArrayRecords in the
  real train replies, as the server's strategy records them
  (``uploaded-bytes`` in ``results.json``), with float32 deltas and with the
  ``delta-float16`` run_config option, on the same population.

The machine is shared: the load average is recorded with each case.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from vane.shared.errors import ConfigError
from vane.simulations.bench.memory import ProcessTreeMemory, kb_field
from vane.simulations.bench.targets import Target

TARGETS: dict[str, Target] = {
    "round_s@100": Target("<=", 3.0, "s", "seconds per round, 100 users, fraction 0.1"),
    "peak_rss_gb@1000": Target("<=", 16.0, "GB", "peak RSS of the run's process tree, 1,000 users"),
    "float16_upload_ratio": Target("<=", 0.5, "", "float16 / float32 bytes uploaded per client per round"),
    "round_s@10000": Target("<=", 30.0, "s", "seconds per round after start-up, 10,000 users, 100 per round"),
    "peak_rss_gb@10000": Target("<=", 12.0, "GB", "peak RSS of the run's process tree, 10,000 users"),
}

#: Each reply array carries a 128-byte .npy header, so float16 lands a hair above 0.5.
RATIO_HEADER_SLACK = 1e-3


@dataclass(frozen=True)
class BenchCase:
    """One simulation of the benchmark."""

    users: int
    rounds: int
    fraction: float
    delta_float16: bool
    out_dir: str
    events_per_user: tuple[int, int] = (60, 120)
    local_epochs: int = 1
    seed: int = 0
    prepare_workers: int = 0

    @property
    def name(self) -> str:
        return f"u{self.users}-{'f16' if self.delta_float16 else 'f32'}"


# --- one case, in its own process ----------------------------------------------------
def measure_case(case: BenchCase) -> dict[str, Any]:
    """Generate, prepare and run one case in this process; returns its figures."""
    from vane.shared.taxonomy import Taxonomy
    from vane.simulations import federation
    from vane.simulations.synthetic import SyntheticPopulation

    out = Path(case.out_dir)
    figures: dict[str, Any] = {"case": case.name, **asdict(case), "load_avg_start": list(os.getloadavg())}
    started = time.perf_counter()
    pop = SyntheticPopulation(case.users, events_per_user=case.events_per_user, seed=case.seed)
    taxonomy = Taxonomy(pop.categories)
    figures["generate_s"] = time.perf_counter() - started
    figures["events"] = sum(len(e) for e in pop.users.values())

    started = time.perf_counter()
    with ProcessTreeMemory() as prep_memory:
        order = federation.prepare_devices(pop.users, taxonomy, out / "devices", case.prepare_workers)
    figures["prepare_s"] = time.perf_counter() - started
    figures["prepare_peak_rss_mb"] = prep_memory.figures()["peak_rss_mb"]

    # run_federated would prepare the stores again, serially; this process exists only for
    # this run, so point its module-level prepare_devices at the stores made above.
    def already_prepared(users: Any, tax: Any, devices_dir: Path) -> list[str]:
        if Path(devices_dir).resolve() != (out / "devices").resolve():
            raise RuntimeError(f"device stores were prepared in {out / 'devices'}, not {devices_dir}")
        return order

    federation.prepare_devices = already_prepared
    with ProcessTreeMemory() as memory:
        result = federation.run_federated(
            pop.users, taxonomy, None, rounds=case.rounds, fraction=case.fraction, out_dir=out,
            local_epochs=case.local_epochs, seed=case.seed, delta_float16=case.delta_float16,
            fraction_evaluate=case.fraction, progress=False,
        )
    figures.update(memory.figures())
    figures["driver_vmhwm_mb"] = kb_field("/proc/self/status", "VmHWM:") / 1024
    figures.update(_round_figures(result.rounds, result.wall_seconds))
    figures["load_avg_end"] = list(os.getloadavg())
    return figures


def _round_figures(rounds: list[dict[str, Any]], wall_seconds: float) -> dict[str, Any]:
    trained = sorted((r for r in rounds if r["round"] > 0), key=lambda r: r["round"])
    seconds = [float(r["seconds"]) for r in trained]
    uploads = [int(b) for r in trained for b in r["uploaded-bytes"].values()]
    return {
        "round_seconds": seconds,
        "round_s_median": statistics.median(seconds),
        "round0_s": next((float(r["seconds"]) for r in rounds if r["round"] == 0), float("nan")),
        "wall_s": wall_seconds,
        "startup_s": wall_seconds - sum(seconds),
        "clients_per_round": statistics.median(len(r["uploaded-bytes"]) for r in trained),
        "upload_bytes_per_client": statistics.median(uploads) if uploads else float("nan"),
        "upload_bytes_min_max": [min(uploads), max(uploads)] if uploads else [],
        "failed": sum(len(r["failed"]) for r in trained),
        "rejected": sum(len(r["rejected"]) for r in trained),
    }


def _child_main(case_path: str) -> None:
    case_file = Path(case_path)
    raw = json.loads(case_file.read_text(encoding="utf-8"))
    raw["events_per_user"] = tuple(raw["events_per_user"])
    figures = measure_case(BenchCase(**raw))
    case_file.with_name("figures.json").write_text(json.dumps(figures, indent=1), encoding="utf-8")


def run_case_isolated(case: BenchCase, timeout: float = 3600.0) -> dict[str, Any]:
    """:func:`measure_case` in a fresh Python process; its output goes to ``OUT/bench.log``."""
    out = Path(case.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    case_file = out / "case.json"
    case_file.write_text(json.dumps(asdict(case)), encoding="utf-8")
    (out / "figures.json").unlink(missing_ok=True)
    code = "import sys; from vane.simulations.bench.federation import _child_main; _child_main(sys.argv[1])"
    started = time.perf_counter()
    with open(out / "bench.log", "w", encoding="utf-8") as log:
        try:
            proc = subprocess.run([sys.executable, "-c", code, str(case_file)], stdout=log, stderr=subprocess.STDOUT,
                                  timeout=timeout, check=False)
            error = None if proc.returncode == 0 else f"exit code {proc.returncode}; see {out / 'bench.log'}"
        except subprocess.TimeoutExpired:
            error = f"timed out after {timeout:.0f}s; see {out / 'bench.log'}"
    figures_file = out / "figures.json"
    if error is None and figures_file.exists():
        figures: dict[str, Any] = json.loads(figures_file.read_text(encoding="utf-8"))
    else:
        figures = {"case": case.name, **asdict(case), "error": error or "no figures.json written"}
    figures["process_s"] = time.perf_counter() - started
    return figures


# --- the benchmark -----------------------------------------------------------------
def run_federation_bench(
    users: Sequence[int] = (10, 100, 1000),
    rounds: int = 3,
    fraction: float = 0.1,
    out_dir: str | Path | None = None,
    events_per_user: tuple[int, int] = (60, 120),
    prepare_workers: int = 0,
    keep_devices: bool = False,
    progress: Callable[[str], None] | None = None,
    per_round: int = 0,
    float16: bool = True,
) -> dict[str, Any]:
    """Float32 runs at every population size, plus a float16 run at the smallest; writes ``federation-bench.json``.

    Parameters
    ----------
    users : sequence of int, default (10, 100, 1000)
    rounds : int, default 3
    fraction : float, default 0.1
        Fraction of users trained, and evaluated, per round.
    out_dir : path, optional
        Default: a new temporary directory.
    events_per_user : (int, int), default (60, 120)
    prepare_workers : int, default 0
        Processes preparing the device stores; 0 means one per CPU.
    keep_devices : bool, default False
        Keep the encrypted device stores (``OUT/<case>/devices``) after each case.
    progress : callable, optional
        Receives one line per case.
    per_round : int, default 0
        Users trained and evaluated per round at every size (``fraction`` = per_round / users); 0 uses ``fraction``.
    float16 : bool, default True
        Also run the smallest size with float16 deltas (the upload ratio).
    """
    import shutil

    say = progress or (lambda line: None)
    out = Path(out_dir) if out_dir is not None else Path(tempfile.mkdtemp(prefix="vane-bench-federation-"))
    out.mkdir(parents=True, exist_ok=True)
    sizes = sorted({int(n) for n in users})
    if not sizes or sizes[0] < 1 or rounds < 1 or not 0 < fraction <= 1 or per_round < 0:
        raise ConfigError(f"users={list(users)}, rounds={rounds}, fraction={fraction}, per-round={per_round}; "
                          "expected users >= 1, rounds >= 1, 0 < fraction <= 1 and per-round >= 0")
    plan = [(n, False) for n in sizes] + ([(sizes[0], True)] if float16 else [])

    def fraction_of(n: int) -> float:
        return min(1.0, per_round / n) if per_round else fraction

    report: dict[str, Any] = {
        "settings": {"users": sizes, "rounds": rounds, "fraction_train": fraction, "fraction_evaluate": fraction,
                     "per_round": per_round,
                     "evaluate_initial": True, "local_epochs": 1, "events_per_user": list(events_per_user),
                     "cpus": os.cpu_count()},
        "load_avg_start": list(os.getloadavg()),
        "cases": [],
        "out_dir": str(out),
    }
    for n, f16 in plan:
        case = BenchCase(n, rounds, fraction_of(n), f16, str(out / f"u{n}-{'f16' if f16 else 'f32'}"),
                         events_per_user=events_per_user, prepare_workers=prepare_workers)
        say(f"{case.name}: running (load {os.getloadavg()[0]:.1f})")
        figures = run_case_isolated(case)
        report["cases"].append(figures)
        if not keep_devices:
            shutil.rmtree(Path(case.out_dir) / "devices", ignore_errors=True)
        say(f"{case.name}: " + (f"failed: {figures['error']}" if "error" in figures else
                                f"{figures['round_s_median']:.2f} s/round, peak RSS {figures['peak_rss_mb']:.0f} MB"))
        _write(out, report)
    report["load_avg_end"] = list(os.getloadavg())
    report["targets"] = check_targets(report["cases"], fraction)
    _write(out, report)
    return report


def _write(out: Path, report: dict[str, Any]) -> None:
    (out / "federation-bench.json").write_text(json.dumps(report, indent=1), encoding="utf-8")


def check_targets(cases: list[dict[str, Any]], fraction: float) -> dict[str, dict[str, Any]]:
    """Each target's measured value and whether it is met (None: not measured in this run)."""
    ok = {(c["users"], c["delta_float16"]): c for c in cases if "error" not in c}
    values: dict[str, float | None] = {
        "round_s@100": ok[(100, False)]["round_s_median"] if (100, False) in ok and fraction == 0.1 else None,
        "peak_rss_gb@1000": ok[(1000, False)]["peak_rss_mb"] / 1024 if (1000, False) in ok else None,
        "float16_upload_ratio": None,
        "round_s@10000": (ok[(10000, False)]["round_s_median"]
                          if (10000, False) in ok and ok[(10000, False)]["clients_per_round"] == 100 else None),
        "peak_rss_gb@10000": ok[(10000, False)]["peak_rss_mb"] / 1024 if (10000, False) in ok else None,
    }
    pairs = [(c16, ok[(n, False)]) for (n, f16), c16 in ok.items() if f16 and (n, False) in ok]
    if pairs:
        c16, c32 = pairs[0]
        values["float16_upload_ratio"] = c16["upload_bytes_per_client"] / c32["upload_bytes_per_client"]
    failed = {c["users"] for c in cases if "error" in c}
    checked: dict[str, dict[str, Any]] = {}
    for name, target in TARGETS.items():
        value = values[name]
        slack = RATIO_HEADER_SLACK if name == "float16_upload_ratio" else 0.0
        met = None if value is None else target.met(value, slack)
        if name.startswith("peak_rss_gb@") and int(name.split("@")[1]) in failed:
            met = False  # a case that did not finish (out of memory, timeout) misses its memory target
        checked[name] = {"value": value, "op": target.op, "target": target.goal, "met": met,
                         "description": target.description}
    return checked


def targets_met(report: dict[str, Any]) -> bool:
    """False when a measured target was missed or a case failed (the command then exits 1)."""
    missed = any(t["met"] is False for t in report.get("targets", {}).values())
    return not missed and not any("error" in c for c in report["cases"])


def print_report(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    s = report["settings"]
    sampled = (f"{s['per_round']} users trained and evaluated per round" if s.get("per_round")
               else f"fraction-train = fraction-evaluate = {s['fraction_train']}")
    table = Table(title=f"vane federation benchmark: {s['rounds']} rounds, {sampled}, local-epochs 1, {s['cpus']} CPUs")
    table.add_column("measure")
    for c in report["cases"]:
        table.add_column(c["case"], justify="right")
    for label, show in _ROWS:
        table.add_row(label, *[("FAILED" if label == "s/round (median)" else "") if "error" in c else show(c)
                               for c in report["cases"]])
    console.print(table)
    for c in report["cases"]:
        if "error" in c:
            console.print(f"{c['case']} failed: {c['error']}")
    targets = Table(title="targets")
    for col in ("measure", "value", "target", "met"):
        targets.add_column(col)
    for name, t in report.get("targets", {}).items():
        value = "not measured" if t["value"] is None else f"{t['value']:.5g}"
        met = "" if t["met"] is None else ("yes" if t["met"] else "NO")
        slack = f" (+{RATIO_HEADER_SLACK:g}: .npy headers)" if name == "float16_upload_ratio" else ""
        targets.add_row(f"{name} ({t['description']})", value, f"{t['op']} {t['target']:g}{slack}", met)
    console.print(targets)
    console.print(f"load average (1, 5, 15 min): start {_fmt_load(report['load_avg_start'])}, "
                  f"end {_fmt_load(report.get('load_avg_end', report['load_avg_start']))}")
    console.print(f"wrote {Path(report['out_dir']) / 'federation-bench.json'}")


_ROWS: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
    ("events", lambda c: f"{c['events']:,}"),
    ("generate population s", lambda c: f"{c['generate_s']:.1f}"),
    ("prepare stores s (pool)", lambda c: f"{c['prepare_s']:.1f}"),
    ("start-up s (Ray, export, round 0)", lambda c: f"{c['startup_s']:.1f}"),
    ("round 0 s (initial evaluate)", lambda c: f"{c['round0_s']:.1f}"),
    ("s/round (median)", lambda c: f"{c['round_s_median']:.2f}"),
    ("s of rounds 1..R", lambda c: " ".join(f"{x:.1f}" for x in c["round_seconds"])),
    ("clients trained/round", lambda c: f"{c['clients_per_round']:.0f}"),
    ("peak RSS MB (tree)", lambda c: f"{c['peak_rss_mb']:,.0f}"),
    ("peak PSS MB (tree)", lambda c: f"{c['peak_pss_mb']:,.0f}"),
    ("processes at peak", lambda c: f"{c['processes_at_peak']:.0f}"),
    ("driver VmHWM MB", lambda c: f"{c['driver_vmhwm_mb']:,.0f}"),
    ("upload B/client/round", lambda c: f"{c['upload_bytes_per_client']:,.0f}"),
    ("load 1m start/end", lambda c: f"{c['load_avg_start'][0]:.1f}/{c['load_avg_end'][0]:.1f}"),
]


def _fmt_load(load: Sequence[float]) -> str:
    return ", ".join(f"{x:.1f}" for x in load)
