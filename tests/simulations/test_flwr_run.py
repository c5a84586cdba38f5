"""`flwr run .` from the repository root, in simulation, with the defaults of pyproject.toml.

The app directory is a copy of the repository's pyproject.toml (the components live in the
installed `vane` package), so the run's working directory, and with it `.vane/`, is a temporary
folder. Flower's local SuperLink runs on free ports with a private FLWR_HOME; every process the
run started (the detached SuperLink, flwr-simulation, Ray) is found by that FLWR_HOME in its
environment and killed by PID.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pids_with_env(name: str, value: str) -> list[int]:
    """PIDs of processes whose environment holds ``name=value`` (what this test started)."""
    needle = f"{name}={value}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def kill_started(name: str, value: str) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids_with_env(name, value):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 10
        while pids_with_env(name, value) and time.monotonic() < deadline:
            time.sleep(0.2)


@pytest.fixture
def flwr_env(tmp_path: Path):
    home = tmp_path / "flwr-home"
    home.mkdir()
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "FLWR_HOME": str(home),
        "FLWR_LOCAL_SUPERLINK_HTTP_API_PORT": str(free_port()),
        "FLWR_LOCAL_CONTROL_API_PORT": str(free_port()),
        "FLWR_DISABLE_UPDATE_CHECK": "1",
    }
    env.pop("VANE_SIM_DIR", None)
    env.pop("VANE_BUILTIN_SIM_DIR", None)
    try:
        yield env
    finally:
        kill_started("FLWR_HOME", str(home))
    assert not pids_with_env("FLWR_HOME", str(home)), "a process started by `flwr run` is still running"


def flwr(env: dict[str, str], cwd: Path, *args: str, timeout: float = 420) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "flwr"), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


def last_run(env: dict[str, str], cwd: Path) -> dict:
    listing = flwr(env, cwd, "ls", "--format", "json", timeout=60)
    runs = json.loads(listing.stdout)["runs"]
    return max(runs, key=lambda r: r["pending-at"])


def test_flwr_run_dot_trains_the_builtin_population(tmp_path: Path, flwr_env: dict[str, str]) -> None:
    app = tmp_path / "app"
    app.mkdir()
    shutil.copy(REPO / "pyproject.toml", app / "pyproject.toml")
    before = (app / "pyproject.toml").read_bytes()

    done = flwr(flwr_env, app, "run", ".", "--stream")
    assert done.returncode == 0, done.stderr[-2000:]
    status = last_run(flwr_env, app)["status"]
    assert status == "finished:completed", done.stdout[-3000:]
    assert (app / "pyproject.toml").read_bytes() == before, "flwr run rewrote pyproject.toml"

    out = app / ".vane" / "runs" / "flwr-run"
    rounds = json.loads((out / "metrics.json").read_text())
    trained = [r for r in rounds if r["round"] > 0]
    assert [r["round"] for r in trained] == [1, 2, 3]
    for r in trained:  # Flower's default local federation: 2 simulated SuperNodes, both trained
        assert len(r["aggregated-nodes"]) == 2 and not r["failed"], r
        assert r["train"]["train-steps"] > 0 and 0 < r["train"]["train-loss"] < 20
    assert (out / "checkpoints" / "round-0003" / "weights.vw").exists()
    devices = sorted(p.name for p in (app / ".vane" / "sim" / "synthetic-seed0").glob("*.store"))
    assert devices == ["user-00000.store", "user-00001.store"]

    # every output lands in folders git ignores
    for path in (".vane/runs/flwr-run/metrics.json", ".vane/sim/synthetic-seed0/user-00000.store"):
        assert subprocess.run(["git", "check-ignore", "-q", path], cwd=REPO, check=False).returncode == 0, path

    # a run in which every device fails shows as failed (`flwr run` itself exits 0 either way)
    failed = flwr(flwr_env, app, "run", ".", "--stream", "--run-config", "seed=-1 num-server-rounds=1")
    assert failed.returncode == 0
    run = last_run(flwr_env, app)
    assert run["status"] == "finished:failed", failed.stdout[-3000:]
    assert "RunFailedError" in failed.stdout + failed.stderr
    assert "aggregated no device update" in failed.stdout + failed.stderr
