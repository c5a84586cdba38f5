"""The privacy audit: message audit (normal and deliberately leaky ClientApps) and the leakage attack."""

from __future__ import annotations

import json

import pytest
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from privacy_runs import as_flower_task, audit_report
from vane.simulations.audit import Needles, PrivacyLeakError, check_messages, summarise_messages
from vane.simulations.mods import MessageRecorder

ITEM = "c08-i0026"
NEEDLES = Needles(frozenset({ITEM, "Recovery sleep"}), frozenset({"health"}), (1.7e9, 1.71e9))


def _train_message() -> Message:
    content = RecordDict({"arrays": ArrayRecord(), "config": ConfigRecord({"local-epochs": 1, "taxonomy": "health"})})
    return Message(content, dst_node_id=1, message_type="train")


def _context() -> Context:
    return Context(run_id=1, node_id=1, node_config={"partition-id": 0}, state=RecordDict(), run_config={})


def _replying(metrics: dict, config: dict | None = None):
    def app(msg, context):
        content = RecordDict({"metrics": MetricRecord({"num-examples": 10.0, **metrics})})
        if config:
            content["leak"] = ConfigRecord(config)
        return Message(content, reply_to=msg)

    return app


def _audit(tmp_path, app):
    mp = pytest.MonkeyPatch()
    as_flower_task(mp)
    log = tmp_path / "messages.jsonl"
    MessageRecorder(log, NEEDLES)(_train_message(), _context(), app)
    mp.undo()
    return log


def test_clean_reply_passes_and_downlink_vocabulary_is_allowed(tmp_path):
    summary = check_messages(_audit(tmp_path, _replying({"train-loss": 1.0})))
    assert summary["passed"] and summary["messages"] == 2
    rows = {r["direction"]: r for r in summary["table"]}
    assert rows["client->server"]["metrics"] == ["metrics/num-examples", "metrics/train-loss"]
    assert "config/taxonomy:str" in rows["server->client"]["configs"]


@pytest.mark.parametrize(
    ("metrics", "config", "expected"),
    [
        ({f"hits-{ITEM}": 1.0}, None, ITEM),  # an item id in a metric name
        ({}, {"note": f"liked {ITEM}"}, ITEM),  # an item id in a config value
        ({}, {"blob": b"\x00\x01Recovery sleep\x02"}, "Recovery sleep"),  # a title in raw bytes
        ({}, {"favourite": "health"}, "health"),  # a category name sent by the client
        ({"last-seen": 1.705e9}, None, "timestamp"),  # a timestamp as a metric value
    ],
)
def test_leaky_client_app_is_caught(tmp_path, metrics, config, expected):
    log = _audit(tmp_path, _replying(metrics, config))
    assert any(expected in f for entry in summarise_messages(log)["findings"] for f in entry["findings"])
    with pytest.raises(PrivacyLeakError, match="client->server"):
        check_messages(log)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    pytest.importorskip("ray")
    return audit_report(str(tmp_path_factory.getbasetemp() / "privacy-shared"))[0]


def _row(report, prefix):
    return next(r for r in report["leakage"] if r["setting"].startswith(prefix))


@pytest.mark.slow
def test_simulated_runs_pass_the_message_audit(report):
    assert report["passed"]
    for run in report["messages"].values():
        assert run["messages"] > 0 and run["findings"] == []
    uplink = [r for r in report["messages"]["plain"]["table"] if r["direction"] == "client->server"]
    train = next(r for r in uplink if r["type"] == "train")
    assert len(train["arrays"]) == 1 and train["arrays"][0].startswith("arrays/delta:float32")


@pytest.mark.slow
def test_plain_fedavg_update_reveals_the_item_set(report):
    plain = _row(report, "plain FedAvg")
    assert plain["item precision"] >= 0.9 and plain["item recall"] >= 0.8
    assert plain["category precision"] >= 0.9


@pytest.mark.slow
def test_secagg_precision_is_near_the_popularity_guess(report):
    secagg, baseline = _row(report, "SecAgg+"), _row(report, "popularity guess")
    plain = _row(report, "plain FedAvg")
    assert secagg["item precision"] <= baseline["item precision"] + 0.15
    assert secagg["item precision"] < plain["item precision"] - 0.3


def _fake_federation(calls):
    from vane.simulations.federation import FederationResult

    def run(**kwargs):
        calls.append(kwargs)
        out = kwargs["out_dir"]
        (out / "devices").mkdir(parents=True)
        z = kwargs["server_config"]["noise-multiplier"]
        train = {"dp-epsilon": 2.0 / z, "dp-epsilon-no-amplification": 9.0 / z, "dp-delta": 1e-4} if z else \
            {"dp-epsilon": float("inf"), "dp-epsilon-no-amplification": float("inf"), "dp-delta": 1e-4}
        rounds = [{"round": 0, "train": {}, "evaluate": {"hr@5": 0.40, "ndcg@10": 0.30}},
                  {"round": kwargs["rounds"], "train": train, "evaluate": {"hr@5": 0.6 - z / 10, "ndcg@10": 0.5}}]
        return FederationResult(out, {}, rounds, None, 1.0, out / "results.json")

    return run


def test_utility_runs_sample_users_and_report_both_epsilons(tmp_path, monkeypatch):
    import json
    import sys
    import types

    from vane.simulations.audit import utility

    calls: list[dict] = []
    monkeypatch.setattr(utility, "run_isolated", _fake_federation(calls))
    monkeypatch.setitem(sys.modules, "vane.server.model",
                        types.SimpleNamespace(export_training_model=lambda spec: b"model"))
    config = utility.UtilityConfig(users=30, noise=(0.0, 1.0), rounds=5, fraction=0.1, fraction_evaluate=0.2)

    rows = utility.run_utility(tmp_path, config)

    assert [c["fraction"] for c in calls] == [0.1, 0.1] and [c["fraction_evaluate"] for c in calls] == [0.2, 0.2]
    assert [c["server_config"]["noise-multiplier"] for c in calls] == [0.0, 1.0]
    assert all(c["server_config"]["dp-mode"] == "server" and c["rounds"] == 5 for c in calls)
    assert rows[1]["ε (sampling used)"] == 2.0 and rows[1]["ε (no amplification)"] == 9.0
    assert rows[1]["users per round"] == 3 and rows[1]["untrained hr@5"] == 0.40 and rows[1]["hr@5"] == 0.5
    assert not (tmp_path / "noise-1.0" / "devices").exists()  # 1.6 MB per user, removed after each level
    saved = json.loads((tmp_path / "utility.json").read_text())
    assert [r["noise multiplier"] for r in saved["rows"]] == [0.0, 1.0] and saved["config"]["fraction"] == 0.1
    assert "| 1.000 | 5 | 0.100 | 3 | 2.000 | 9.000 | 1e-04 | 0.500 |" in (tmp_path / "utility.md").read_text()


def test_recorder_of_replies_only_writes_one_line_per_reply(tmp_path):
    from vane.simulations.mods import UPLINK

    mp = pytest.MonkeyPatch()
    as_flower_task(mp)
    log = tmp_path / "replies.jsonl"
    MessageRecorder(log, directions=(UPLINK,))(_train_message(), _context(), _replying({"train-loss": 1.0}))
    mp.undo()

    (line,) = [json.loads(text) for text in log.read_text().splitlines()]
    assert line["direction"] == UPLINK and line["type"] == "train" and line["partition"] == 0
    assert not line["error"] and line["record-keys"] == ["metrics"] and line["configs"] == {}
    assert line["metrics"] == {"metrics": {"num-examples": 10.0, "train-loss": 1.0}}


# --- the vector audit: a device's count vector (federated analytics) never in the clear -------------
def _counts(seed: int = 0, size: int = 182):
    import numpy as np

    return np.random.default_rng(seed).poisson(2.0, size).astype(float)


@pytest.mark.parametrize(
    "encode",
    [
        lambda x: x.astype("float32").tobytes(),  # the vector as a plain reply sends it
        lambda x: b"\x93NUMPY..." + (x - 8.0).astype(">f8").tobytes(),  # centred, big-endian, behind a header
        lambda x: b"abc" + ((x + 3.0) * 1000).round().astype("uint32").tobytes(),  # quantised, unaligned
        lambda x: (x / 64.0).astype("float16").tobytes(),  # rescaled to half precision
    ],
)
def test_vector_audit_finds_a_device_vector_and_its_scaled_copies(tmp_path, encode):
    from vane.simulations.audit.vectors import check_vectors, vector_copies

    x = _counts()
    (tmp_path / "p00000-train-a-0.bin").write_bytes(encode(x))

    assert vector_copies(encode(x), x)
    with pytest.raises(PrivacyLeakError, match="partition 0's vector"):
        check_vectors(tmp_path, {0: x, 1: _counts(1)})


def test_vector_audit_passes_masked_vectors_and_other_devices_data(tmp_path):
    import numpy as np
    from vane.simulations.audit.vectors import check_vectors

    x = _counts()
    rng = np.random.default_rng(3)
    quantised = ((x + 3.0) * 1000).round().astype(np.uint64)
    masked = ((quantised + rng.integers(0, 2**32, x.size, dtype=np.uint64)) % 2**32).astype(np.uint32)
    (tmp_path / "p00000-2-a-0.bin").write_bytes(masked.tobytes())
    (tmp_path / "p00001-train-b-0.bin").write_bytes(_counts(7).astype("float32").tobytes())  # an unrelated vector

    summary = check_vectors(tmp_path, {0: x})

    assert summary == {"payloads": 2, "vectors": 1, "findings": [], "passed": True}
