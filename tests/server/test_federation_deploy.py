"""Deployment end to end: a TLS SuperLink with SuperNode authentication and authenticated SuperNodes,
each training on its own encrypted store: two of them with plain FedAvg, and three with SecAgg+ (one of
which drops out after key sharing). After the FedAvg run, each device's own tracker answers with the
last round's model (its version, weights and predictions).

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
from contextlib import contextmanager
from importlib.util import find_spec

import numpy as np
import pytest

# find_spec, not importorskip: collecting the fast suite must not import TensorFlow for these slow tests
if find_spec("tensorflow") is None:
    pytest.skip("needs tensorflow (the server extra)", allow_module_level=True)

from vane.client.store import write_key_file
from vane.client.tracker import InterestTracker
from vane.server.certs import generate_deployment_keys
from vane.server.deploy import (
    deployment_env,
    flower_executable,
    node_config_arg,
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


@contextmanager
def _deployment(tmp_path, users: int, supernode_keys: int):
    """A running TLS SuperLink with SuperNode auth, ``supernode_keys`` key pairs and one encrypted store per user."""
    keys = generate_deployment_keys(tmp_path / "certs", num_supernodes=supernode_keys)
    pop = SyntheticPopulation(users, seed=1)
    taxonomy = Taxonomy(pop.categories)
    # The devices' taxonomy, named to the run (a deployment app defaults to the browsing one, which
    # these synthetic devices would refuse).
    taxonomy.save(tmp_path / "taxonomy.json")
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


def _register(env, public_key) -> None:
    registered = _flwr(env, "supernode", "register", str(public_key), "vane")
    assert registered.returncode == 0, registered.stdout + registered.stderr


def _run_to_the_end(env, app_dir, run_config=None) -> dict:
    """``flwr run`` the app and poll ``flwr ls`` until the run finishes (``flwr run`` exits 0 even on failure)."""
    overrides = ["--run-config", node_config_arg(run_config)] if run_config else []
    started = _flwr(env, "run", str(app_dir), "vane", *overrides, "--format", "json")
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
    return run


def _completed(run: dict) -> bool:
    return "completed" in run["status"] or "completed" in str(run.get("status-details", ""))


@pytest.fixture
def deployment(tmp_path):
    with _deployment(tmp_path, users=2, supernode_keys=3) as running:
        yield running


def test_two_authenticated_supernodes_train_two_rounds_and_an_unregistered_one_is_refused(deployment):
    root, keys, stores, port, env, procs = deployment
    superlink = f"127.0.0.1:{port}"
    for pub in keys.supernode_public_keys[:2]:
        _register(env, pub)
    for i, (store, key_file) in enumerate(stores):
        cmd = supernode_command(superlink, keys.ca_cert, keys.supernode_keys[i], store, key_file, _free_port())
        procs.start(cmd, f"supernode-{i}")
    intruder = procs.start(
        supernode_command(superlink, keys.ca_cert, keys.supernode_keys[2], *stores[0], _free_port(), max_retries=1),
        "intruder",
    )

    out = root / "out"
    app_dir = write_app_dir(root / "app", {"num-server-rounds": ROUNDS, "out-dir": str(out), "local-epochs": 2,
                                           "taxonomy-file": str(root / "taxonomy.json")})
    run = _run_to_the_end(env, app_dir)
    assert _completed(run), run

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

    # The model came back: each device's tracker, opened after the run, answers with round N's model.
    _assert_devices_answer_with(stores, registry[-1], root / "reference")


def _assert_devices_answer_with(stores, version: dict, scratch) -> None:
    """Each store's tracker has ``version``'s id and weights, and predicts as that checkpoint's model does
    (with the blend the run picked)."""
    from vane.server.checkpoint import CheckpointStore

    checkpoint = CheckpointStore.load(version["path"])
    scratch.mkdir()
    for i, (store, key_file) in enumerate(stores):
        with InterestTracker.open(store, key_file=key_file) as tracker:
            assert tracker.model_version == version["id"] == f"r{ROUNDS:04d}-{checkpoint.spec.hash[:8]}"
            assert tracker.taxonomy == checkpoint.taxonomy
            assert np.array_equal(tracker.get_weights().flat, checkpoint.weights.flat)
            got = tracker.predict(5).to_dict()
            events = [ev for _, ev in tracker.store.events()]
            mix = tracker.mix  # the blend the federation picked and the device kept
        write_key_file(scratch / f"{i}.key", os.urandom(32))
        with InterestTracker.open(scratch / f"{i}.db", key_file=scratch / f"{i}.key",
                                  model=checkpoint.model_path.read_bytes(), taxonomy=checkpoint.taxonomy,
                                  mix=mix) as ref:
            ref.set_weights(checkpoint.weights)
            ref.record_many(events)
            expected = ref.predict(5).to_dict()
        assert got["source"] == expected["source"] == "model+profile"
        for key in ("next_interest", "intensity"):
            assert [r["category"] for r in got[key]] == [r["category"] for r in expected[key]]
            assert [r["probability"] for r in got[key]] == pytest.approx(
                [r["probability"] for r in expected[key]], abs=1e-9)


# --- SecAgg+ in deployment ---------------------------------------------------------
SECAGG_NODES = 3
DROPOUT_NODE = 2
#: 3 shares per node (all of them) and 2 needed to reconstruct: one node may drop out.
SECAGG = {"secure-aggregation": True, "secagg-num-shares": 3, "secagg-reconstruction-threshold": 2}

#: The production ClientApp plus a test mod: a node whose node_config sets ``drop-out-after-key-sharing``
#: fails the masked-vector stage, i.e. leaves SecAgg+ after its key shares went out. The module ships in
#: the FAB (Flower puts the app directory on the ClientApp's sys.path).
DROPOUT_CLIENTAPP = '''"""Vane's ClientApp; a flagged node drops out of SecAgg+ after key sharing (test only)."""
from vane.client.app import build_client_app


def drop_out_after_key_sharing(msg, context, call_next):
    configs = msg.content.config_records.get("secaggplus_configs")
    stage = configs.get("stage") if configs is not None else None
    if stage == "collect_masked_vectors" and context.node_config.get("drop-out-after-key-sharing"):
        raise RuntimeError("this SuperNode drops out after sharing its keys")
    return call_next(msg, context)


app = build_client_app(mods=[drop_out_after_key_sharing])
'''


def _local_delta(store, key_file, weights, spec_hash):
    """The delta and num-examples the ClientApp on ``store`` computed in round 1 (same config and seed)."""
    from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, RecordDict
    from vane.client.app import train_on_device

    config = ConfigRecord({"local-epochs": 2, "learning-rate": 0.0, "seed": 0, "holdout-fraction": 0.1,
                           "server-round": 1, "spec-hash": spec_hash})
    msg = Message(RecordDict({"arrays": ArrayRecord({"weights": Array(weights)}), "config": config}),
                  dst_node_id=1, message_type="train")
    context = Context(run_id=1, node_id=1, node_config={"store": str(store), "key-file": str(key_file)},
                      state=RecordDict(), run_config={})
    reply = train_on_device(msg, context)
    return reply.content["arrays"]["delta"].numpy(), float(reply.content["metrics"]["num-examples"])


def _local_hr5(store, key_file, weights, spec_hash):
    """hr@5 and num-examples the ClientApp on ``store`` reports when it evaluates ``weights``."""
    from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, RecordDict
    from vane.client.app import evaluate_on_device

    config = ConfigRecord({"holdout-fraction": 0.1, "spec-hash": spec_hash})
    msg = Message(RecordDict({"arrays": ArrayRecord({"weights": Array(weights)}), "config": config}),
                  dst_node_id=1, message_type="evaluate")
    context = Context(run_id=1, node_id=1, node_config={"store": str(store), "key-file": str(key_file)},
                      state=RecordDict(), run_config={})
    metrics = evaluate_on_device(msg, context).content["metrics"]
    return float(metrics["hr@5"]), int(metrics["num-examples"])


def _assert_secagg_equals_fedavg(aggregate, deltas, weights):
    """SecAgg+'s aggregate is FedAvg of the clipped deltas, up to its quantisation."""
    from vane.server.config import SecAggSettings

    settings = SecAggSettings.from_run_config(SECAGG)
    c, w_max = settings.secagg_clipping_range, settings.secagg_max_weight
    clipped = [np.clip(d, -c, c) for d in deltas]
    fedavg = np.average(np.stack(clipped), axis=0, weights=np.minimum(weights, w_max))
    bound = settings.quantization_bound(weights, max(float(np.abs(d).max()) for d in clipped))
    assert np.all(np.isfinite(aggregate))
    assert np.max(np.abs(aggregate - fedavg)) <= bound, (np.max(np.abs(aggregate - fedavg)), bound)
    assert np.max(np.abs(fedavg)) > 100 * bound  # a real update, far above the quantisation error


@pytest.mark.timeout(360)
def test_secagg_round_in_deployment_completes_when_a_supernode_drops_out_after_key_sharing(tmp_path, monkeypatch):
    from privacy_runs import as_flower_task
    from vane.server.checkpoint import CheckpointStore
    from vane.server.model import build_model

    with _deployment(tmp_path, users=SECAGG_NODES, supernode_keys=SECAGG_NODES) as running:
        root, keys, stores, port, env, procs = running
        for i, (store, key_file) in enumerate(stores):
            _register(env, keys.supernode_public_keys[i])
            flag = {"drop-out-after-key-sharing": True} if i == DROPOUT_NODE else {}
            cmd = supernode_command(f"127.0.0.1:{port}", keys.ca_cert, keys.supernode_keys[i], store, key_file,
                                    _free_port(), node_config=flag)
            procs.start(cmd, f"supernode-{i}")
        out = root / "out"
        every_node = {f"min-{kind}-nodes": SECAGG_NODES for kind in ("train", "evaluate", "available")}
        app_dir = write_app_dir(root / "app", {"num-server-rounds": 1, "out-dir": str(out), "local-epochs": 2,
                                               "taxonomy-file": str(root / "taxonomy.json"), **every_node},
                                clientapp="secagg_dropout_app:app")
        (app_dir / "secagg_dropout_app.py").write_text(DROPOUT_CLIENTAPP)
        run = _run_to_the_end(env, app_dir, run_config=SECAGG)  # the app declares every SecAgg+ key
    assert _completed(run), run

    (entry,) = json.loads((out / "metrics.json").read_text())  # SecAgg+ runs no untrained round 0
    assert entry["round"] == 1
    assert len(entry["aggregated-nodes"]) == SECAGG_NODES - 1 and not entry["rejected"]
    assert "drops out after sharing its keys" in json.dumps(entry["failed"])
    assert not entry["evaluate-failed"]  # the dropped node still evaluates
    assert [v["round"] for v in json.loads((out / "registry" / "registry.json").read_text())] == [1]
    assert (out / "checkpoints" / "LATEST").read_text() == "round-0001"

    # The unmasked aggregate is FedAvg of the two survivors' own deltas: the dropped node's masks were removed.
    as_flower_task(monkeypatch)
    checkpoint = CheckpointStore.load(out / "checkpoints" / "round-0001")
    initial = build_model(checkpoint.spec).weights().flat.astype(np.float32)
    # The round's hr@5 is the num-examples-weighted mean of what each of the three devices reports for
    # the round-1 weights: recomputed here on their stores, it fails if evaluation or its aggregation broke.
    local = [_local_hr5(*store, checkpoint.weights.flat, checkpoint.spec.hash) for store in stores]
    expected_hr5 = sum(h * n for h, n in local) / sum(n for _, n in local)
    assert 0 < entry["evaluate"]["hr@5"] <= 1
    assert entry["evaluate"]["hr@5"] == pytest.approx(expected_hr5, abs=1e-6), (entry["evaluate"], local)
    survivors = [stores[i] for i in range(SECAGG_NODES) if i != DROPOUT_NODE]
    deltas, weights = zip(*(_local_delta(*store, initial, checkpoint.spec.hash) for store in survivors))
    _assert_secagg_equals_fedavg(checkpoint.weights.flat - initial, deltas, weights)
