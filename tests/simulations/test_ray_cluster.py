"""`vane sim run --ray-address` on a 2-node Ray cluster started on 127.0.0.1 (head + one worker).

The head has 1 CPU and the worker 2, so Flower's actor pool has 3 ClientApp actors only when
the simulation runs on this cluster (a Ray instance of its own would have one per local CPU).
Every Ray process the test starts carries a marker in its environment; they are all killed by
PID at the end (`ray stop` would kill every Ray process on the machine, other users' too).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
MARKER = "VANE_TEST_RAY_CLUSTER"

pytestmark = pytest.mark.slow


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


def marked_pids(value: str) -> list[int]:
    needle = f"{MARKER}={value}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if needle in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def kill_marked(value: str) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in marked_pids(value):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 15
        while marked_pids(value) and time.monotonic() < deadline:
            time.sleep(0.3)


def node_ports() -> list[str]:
    ports = free_ports(8)
    names = ["--node-manager-port", "--object-manager-port", "--metrics-export-port", "--runtime-env-agent-port",
             "--dashboard-agent-grpc-port", "--dashboard-agent-listen-port", "--min-worker-port", "--max-worker-port"]
    low = max(ports[6], 20000)
    ports[6], ports[7] = low, low + 40
    return [arg for name, port in zip(names, ports) for arg in (name, str(port))]


@pytest.fixture
def ray_cluster():
    marker = uuid.uuid4().hex
    temp = Path(tempfile.mkdtemp(prefix="vr-", dir="/tmp"))  # Ray's socket paths must stay short
    env = {**os.environ, MARKER: marker, "RAY_USAGE_STATS_ENABLED": "0",
           "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    gcs, client = free_ports(2)
    address = f"127.0.0.1:{gcs}"
    try:
        for cmd in (
            ["start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(gcs), "--num-cpus", "1",
             "--include-dashboard=false", "--temp-dir", str(temp), "--ray-client-server-port", str(client),
             "--disable-usage-stats", *node_ports()],
            ["start", "--address", address, "--node-ip-address", "127.0.0.1", "--num-cpus", "2",
             "--disable-usage-stats", *node_ports()],
        ):
            started = subprocess.run([str(BIN / "ray"), *cmd], env=env, capture_output=True, text=True, timeout=180,
                                     check=False)
            assert started.returncode == 0, started.stdout[-2000:] + started.stderr[-2000:]
        yield address, env
    finally:
        kill_marked(marker)
        left = marked_pids(marker)
        shutil.rmtree(temp, ignore_errors=True)
        assert not left, f"Ray processes still running: {left}"


def test_sim_run_on_a_two_node_ray_cluster(tmp_path: Path, ray_cluster: tuple[str, dict[str, str]]) -> None:
    address, env = ray_cluster
    out = tmp_path / "run"
    run = subprocess.run(
        [str(BIN / "vane"), "sim", "run", "--clients", "4", "--rounds", "2", "--local-epochs", "1", "--out", str(out),
         "--ray-address", address, "-v"],
        env=env, capture_output=True, text=True, timeout=540, check=False,
    )
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-4000:]
    assert "Constructed ActorPool with: 3 actors" in log, log[-4000:]  # 1 CPU on the head + 2 on the worker
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["completed-rounds"] == 2
    trained = [r for r in results["rounds"] if r["round"] > 0]
    assert [r["aggregated"] for r in trained] == [4, 4]
    assert all(not r["failed"] for r in trained)
