"""Deployment end to end: a TLS SuperLink with SuperNode authentication and two SuperNodes.

Every process runs in its own session and is stopped by process group; ports
are picked free; the whole test is bounded by a pytest timeout.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time

import pytest

pytest.importorskip("tensorflow")

from vane.client.store import write_key_file
from vane.client.tracker import InterestTracker
from vane.server.certs import generate_deployment_keys
from vane.server.deploy import (
    deployment_env,
    flower_executable,
    superlink_command,
    supernode_command,
    write_app_dir,
    write_flower_config,
)
from vane.shared.taxonomy import Taxonomy
from vane.simulations.synthetic import SyntheticPopulation

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

ROUNDS = 2
RUN_DEADLINE_S = 420


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for_port(port: int, deadline_s: float = 60) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


class Processes:
    def __init__(self, root, env):
        self.root, self.env, self.procs = root, env, []

    def start(self, cmd, name):
        log = open(self.root / f"{name}.log", "w")
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True)
        self.procs.append((proc, log))
        return proc

    def stop_all(self):
        for proc, _ in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc, log in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
            log.close()


def _flwr(env, *args):
    return subprocess.run([flower_executable("flwr"), *args], env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture
def deployment(tmp_path):
    keys = generate_deployment_keys(tmp_path / "certs", num_supernodes=3)
    pop = SyntheticPopulation(2, seed=1)
    taxonomy = Taxonomy(pop.categories)
    stores = []
    for i, uid in enumerate(sorted(pop.users)):
        key_file = tmp_path / f"user{i}.key"
        write_key_file(key_file, os.urandom(32))
        with InterestTracker.open(tmp_path / f"user{i}.store", key_file=key_file, taxonomy=taxonomy) as tracker:
            tracker.record_many(pop.users[uid])
        stores.append((tmp_path / f"user{i}.store", key_file))
    port = _free_port()
    env = deployment_env(tmp_path / "flwr-home")
    write_flower_config(tmp_path / "flwr-home", "vane", f"127.0.0.1:{port}", keys.ca_cert)
    procs = Processes(tmp_path, env)
    try:
        procs.start(superlink_command(tmp_path / "certs", port, tmp_path / "state.db"), "superlink")
        _wait_for_port(port)
        yield tmp_path, keys, stores, port, env, procs
    finally:
        procs.stop_all()


def test_two_authenticated_supernodes_train_two_rounds_and_an_unregistered_one_is_refused(deployment):
    root, keys, stores, port, env, procs = deployment
    superlink = f"127.0.0.1:{port}"
    for pub in keys.supernode_public_keys[:2]:
        registered = _flwr(env, "supernode", "register", str(pub), "vane")
        assert registered.returncode == 0, registered.stdout + registered.stderr
    for i, (store, key_file) in enumerate(stores):
        cmd = supernode_command(superlink, keys.ca_cert, keys.supernode_keys[i], store, key_file, _free_port())
        procs.start(cmd, f"supernode-{i}")
    intruder = procs.start(
        supernode_command(superlink, keys.ca_cert, keys.supernode_keys[2], *stores[0], _free_port(), max_retries=1),
        "intruder",
    )

    out = root / "out"
    app_dir = write_app_dir(root / "app", {"num-server-rounds": ROUNDS, "out-dir": str(out), "local-epochs": 2})
    started = _flwr(env, "run", str(app_dir), "vane", "--format", "json")
    assert json.loads(started.stdout)["success"], started.stdout + started.stderr

    run = None
    end = time.monotonic() + RUN_DEADLINE_S
    while time.monotonic() < end:
        listed = json.loads(_flwr(env, "ls", "vane", "--format", "json").stdout)
        run = listed["runs"][0]
        if run["status"].startswith("finished"):
            break
        time.sleep(5)
    assert run is not None and run["status"].startswith("finished"), run
    assert "completed" in run["status"] or "completed" in str(run.get("status-details", "")), run

    assert (out / "checkpoints" / "LATEST").read_text() == f"round-{ROUNDS:04d}"
    rounds = json.loads((out / "metrics.json").read_text())
    assert [r["round"] for r in rounds] == [0, 1, 2]
    for entry in rounds[1:]:
        assert len(entry["aggregated-nodes"]) == 2 and not entry["failed"] and not entry["rejected"]
        assert entry["evaluate"]["num-examples"] > 0 if "num-examples" in entry["evaluate"] else entry["evaluate"]
    registry = json.loads((out / "registry" / "registry.json").read_text())
    assert [v["round"] for v in registry] == [1, 2]

    assert intruder.wait(timeout=60) != 0
    assert "Failed to activate SuperNode" in (root / "intruder.log").read_text()
