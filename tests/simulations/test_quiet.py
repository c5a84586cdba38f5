"""Quiet by default: a short `vane sim run` prints about one line per round; -v shows the frameworks' logs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
ROUNDS = 2


def sim_run(out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_", "GLOG", "ABSL", "RAY_", "VANE_"))}
    env.pop("PYTHONWARNINGS", None)
    return subprocess.run(
        [str(BIN / "vane"), "sim", "run", "--clients", "3", "--rounds", str(ROUNDS), "--local-epochs", "1",
         "--out", str(out), *extra],
        capture_output=True, text=True, timeout=540, check=False, env=env,
    )


@pytest.mark.slow
def test_sim_run_prints_one_line_per_round_and_more_with_verbose(tmp_path: Path) -> None:
    quiet = sim_run(tmp_path / "quiet")
    assert quiet.returncode == 0, quiet.stderr[-3000:]
    lines = (quiet.stdout + quiet.stderr).splitlines()
    # round 0 (the untrained model), one line per round, one summary line
    assert len(lines) <= ROUNDS + 3, "\n".join(lines)
    assert [line.split(":")[0] for line in lines if line.startswith("round ")] == ["round 0/2", "round 1/2",
                                                                                   "round 2/2"]
    assert "3 trained" in quiet.stderr.splitlines()[-1]
    assert quiet.stdout.startswith(f"{ROUNDS} rounds in ")
    text = "\n".join(lines)
    for noise in ("DEPRECATED", "WARNING", "INFO", "oneDNN", "absl", "Warning"):
        assert noise not in text, noise

    verbose = sim_run(tmp_path / "verbose", "-v")
    assert verbose.returncode == 0, verbose.stderr[-3000:]
    loud = (verbose.stdout + verbose.stderr).splitlines()
    assert len(loud) > 10 * len(lines)
    assert any("configure_train" in line for line in loud)  # Flower's own round log


def test_version_and_usage_exit_codes(tmp_path: Path) -> None:
    from importlib.metadata import version

    shown = subprocess.run([str(BIN / "vane"), "--version"], capture_output=True, text=True, timeout=120, check=False)
    assert (shown.returncode, shown.stdout.strip()) == (0, f"vane {version('vane')}")
    bad = subprocess.run([str(BIN / "vane"), "demo", "--users", "many"], capture_output=True, text=True, timeout=120,
                         check=False)
    assert bad.returncode == 2 and "--users" in bad.stderr
    bad = subprocess.run([str(BIN / "vane"), "sim", "run", "--rounds", "0", "--clients", "2"], capture_output=True,
                         text=True, timeout=300, check=False, cwd=tmp_path)
    assert bad.returncode == 1 and "num-server-rounds is 0" in bad.stderr, bad.stderr[-2000:]
    assert not list(tmp_path.iterdir()), "a refused run created files"  # settings are checked before anything


def fake_case(users: int, round_s: float, rss_mb: float) -> dict:
    return {"case": f"u{users}-f32", "users": users, "delta_float16": False, "round_s_median": round_s,
            "round_seconds": [round_s], "clients_per_round": 100, "peak_rss_mb": rss_mb, "peak_pss_mb": rss_mb,
            "processes_at_peak": 5, "driver_vmhwm_mb": 1.0, "upload_bytes_per_client": 1.0, "events": 1,
            "generate_s": 1.0, "prepare_s": 1.0, "startup_s": 1.0, "round0_s": 1.0, "load_avg_start": [0.0],
            "load_avg_end": [0.0]}


@pytest.mark.parametrize(("round_s", "rss_mb", "code"), [(12.0, 4000.0, 0), (152.0, 4000.0, 1), (12.0, 13000.0, 1)])
def test_federation_bench_exits_1_when_a_10k_target_is_missed(monkeypatch, tmp_path: Path, capsys,
                                                               round_s: float, rss_mb: float, code: int) -> None:
    from vane.client.cli import run
    from vane.simulations.bench import federation

    def fake_bench(sizes, **kwargs):
        assert kwargs["per_round"] == 100 and kwargs["float16"] is False
        report = {"settings": {"rounds": 3, "fraction_train": 0.1, "cpus": 2}, "cases": [fake_case(10000, round_s,
                                                                                                     rss_mb)],
                  "load_avg_start": [0.0], "out_dir": str(tmp_path)}
        report["targets"] = federation.check_targets(report["cases"], 0.01)
        return report

    monkeypatch.setattr(federation, "run_federation_bench", fake_bench)
    assert run(["sim", "bench", "federation", "--users", "10000", "--per-round", "100", "--no-float16"]) == code
    if code:
        assert "a target was missed" in capsys.readouterr().err


def test_client_bench_exits_1_when_a_target_is_missed(monkeypatch) -> None:
    from vane.client.cli import run
    from vane.simulations.bench import client

    name, target = next((n, t) for n, t in client.TARGETS.items() if t.op == "<=")
    monkeypatch.setattr(client, "run", lambda num_categories: {name: target.goal * 10})
    assert run(["sim", "bench", "client"]) == 1
    monkeypatch.setattr(client, "run", lambda num_categories: {name: target.goal / 10})
    assert run(["sim", "bench", "client"]) == 0
