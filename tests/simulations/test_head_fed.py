"""The categoriser head federated with Flower: plain FedAvg of the device deltas, and what the replies carry.

The real ServerApp (:mod:`vane.server.head_app`) and ClientApp (:mod:`vane.client.head_app`) run in
Flower's Simulation Engine (a fresh process each). On a tiny case the federated head equals the
``num-examples``-weighted mean of the deltas each device computes on its own; with one local step that
is exactly one central step of the class-balanced loss. The text audit finds a title, token ids or an
embedding row in a reply and finds none in the head's replies.
"""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from vane.client.head_app import fit_local, train_head_on_device
from vane.server.head_app import HeadSettings, class_weights
from vane.shared import head_protocol as h
from vane.shared import protocol as p
from vane.shared.errors import ConfigError
from vane.simulations.audit.messages import PrivacyLeakError
from vane.simulations.audit.text import TextAudit, TextNeedles, check_text_messages

DIMS, CLASSES = 6, 3


@pytest.fixture
def flower_task(monkeypatch):
    from privacy_runs import as_flower_task

    as_flower_task(monkeypatch)


def _devices(seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    out = []
    for n in (4, 7, 5):
        x = rng.normal(size=(n, DIMS)).astype(np.float16).astype(np.float32)  # as the devices keep them
        out.append((x, rng.integers(0, CLASSES, n)))
    return out


def _central_step(devices, lr: float, l2: float) -> np.ndarray:
    """One full-batch step of the class-balanced cross-entropy on all labels pooled, from zeros."""
    x = np.concatenate([d[0] for d in devices])
    y = np.concatenate([d[1] for d in devices])
    counts = np.bincount(y, minlength=CLASSES).astype(np.float64)
    weight = len(y) / (np.count_nonzero(counts) * counts[y])
    onehot = np.eye(CLASSES)[y]
    grad = (np.full((len(y), CLASSES), 1.0 / CLASSES) - onehot) * (weight / len(y))[:, None]
    w = -lr * (x.T.astype(np.float64) @ grad)
    b = -lr * grad.sum(axis=0)
    del l2  # the L2 term of zero weights is zero
    return np.concatenate([w.ravel(), b])


def test_one_local_step_averaged_is_one_central_step():
    devices = _devices()
    counts = sum(np.bincount(y, minlength=CLASSES) for _, y in devices)
    weights = class_weights(counts)
    zero = np.zeros(DIMS * CLASSES + CLASSES, np.float32)
    deltas = [fit_local(zero, x, y, DIMS, CLASSES, epochs=1, learning_rate=2.0, l2=1e-4, class_weights=weights)[0]
              for x, y in devices]
    mean = np.average(np.stack(deltas), axis=0, weights=[len(y) for _, y in devices])
    np.testing.assert_allclose(mean, _central_step(devices, 2.0, 1e-4), rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_flower_head_equals_fedavg_of_device_deltas(tmp_path):
    pytest.importorskip("ray")
    from vane.simulations.head_fed import run_head_simulation

    devices = _devices(1)
    settings = HeadSettings(dims=DIMS, classes=CLASSES, rounds=1, local_epochs=3, learning_rate=1.5,
                            min_nodes=len(devices))
    titles = [f"headline number {i} of device {d}" for d, (_, y) in enumerate(devices) for i in range(len(y))]
    tokens = [[101, 2000 + i, 3000 + i, 4000 + i, 102] for i in range(len(titles))]
    needles = TextNeedles.of(titles, tokens, np.concatenate([x for x, _ in devices]))
    audit = tmp_path / "text-audit.jsonl"
    out = run_head_simulation(devices, settings, client_mods=[TextAudit(audit, needles)], workdir=tmp_path,
                              isolated=True)

    counts = sum(np.bincount(y, minlength=CLASSES) for _, y in devices).astype(float)
    np.testing.assert_array_equal(out.counts, counts)
    zero = np.zeros(settings.size, np.float32)
    deltas = [fit_local(zero, x, y, DIMS, CLASSES, epochs=3, learning_rate=1.5, l2=settings.l2,
                        class_weights=class_weights(counts))[0] for x, y in devices]
    expected = np.average(np.stack(deltas), axis=0, weights=[len(y) for _, y in devices])
    np.testing.assert_allclose(out.weights, expected, rtol=1e-5, atol=1e-6)
    assert out.rounds[0]["aggregated-nodes"] and len(out.rounds[0]["aggregated-nodes"]) == len(devices)
    summary = check_text_messages(audit)
    assert summary["replies"] == 2 * len(devices)  # a counts reply and a train reply each
    assert summary["passed"] and summary["bytes"] > 0


def _context() -> Context:
    return Context(run_id=1, node_id=7, node_config={p.NODE_PARTITION_ID_KEY: 0}, state=RecordDict(), run_config={})


def _message(config: dict, weights: np.ndarray | None = None) -> Message:
    content = RecordDict({p.CONFIG_RECORD: ConfigRecord(config)})
    if weights is not None:
        content[p.ARRAYS_RECORD] = ArrayRecord({p.WEIGHTS_KEY: Array(weights)})
    return Message(content=content, dst_node_id=7, message_type="train")


def _reply_with(vector: np.ndarray):
    def call_next(msg: Message, context: Context) -> Message:
        content = RecordDict({p.ARRAYS_RECORD: ArrayRecord({p.DELTA_KEY: Array(vector)}),
                              p.METRICS_RECORD: MetricRecord({p.NUM_EXAMPLES_KEY: 3.0})})
        return Message(content=content, reply_to=msg)

    return call_next


@pytest.mark.parametrize("kind", ["embedding-f32", "embedding-f16", "tokens", "title", "clean"])
def test_text_audit_finds_titles_tokens_and_embeddings_in_replies(tmp_path, kind, flower_task):
    rng = np.random.default_rng(2)
    embeddings = rng.normal(size=(3, 16)).astype(np.float32)
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    titles = ["Lakers win the final in overtime", "Senate passes the budget", "A new vaccine for flu"]
    tokens = [[101, 7, 8, 9, 10, 102], [101, 11, 12, 13, 102], [101, 21, 22, 23, 102]]
    needles = TextNeedles.of(titles, tokens, embeddings)
    padding = rng.normal(size=40).astype(np.float32)
    if kind == "embedding-f32":
        vector = np.concatenate([padding, embeddings[1] * 1.0])
    elif kind == "embedding-f16":
        vector = np.frombuffer(padding.tobytes() + embeddings[2].astype(np.float16).tobytes(), dtype=np.uint8)
    elif kind == "tokens":
        vector = np.frombuffer(padding.tobytes() + np.array([11, 12, 13], np.int32).tobytes(), dtype=np.uint8)
    elif kind == "title":
        vector = np.frombuffer(padding.tobytes() + titles[0].encode(), dtype=np.uint8)
    else:
        vector = padding
    path = tmp_path / "audit.jsonl"
    TextAudit(path, needles)(_message({}), _context(), _reply_with(vector))
    if kind == "clean":
        assert check_text_messages(path)["passed"]
    else:
        with pytest.raises(PrivacyLeakError, match="title, token ids or an embedding"):
            check_text_messages(path)


def test_device_refuses_a_bad_head_message_and_answers_counts(flower_task):
    x = np.ones((4, DIMS), np.float32)
    y = np.array([0, 2, 2, 1])
    source = lambda context: (x, y)  # noqa: E731
    base = {h.DIMS_KEY: DIMS, h.CLASSES_KEY: CLASSES, h.EPOCHS_KEY: 1, h.LEARNING_RATE_KEY: 1.0, h.L2_KEY: 0.0}
    reply = train_head_on_device(_message({**base, h.HEAD_ROUND_KEY: h.ROUND_COUNTS}), _context(), source)
    np.testing.assert_array_equal(reply.content.array_records[p.ARRAYS_RECORD][p.DELTA_KEY].numpy(), [1, 1, 2])
    with pytest.raises(ConfigError, match="head-round is 'guess'"):
        train_head_on_device(_message({**base, h.HEAD_ROUND_KEY: "guess"}), _context(), source)
    with pytest.raises(ConfigError, match="head-classes is 1"):
        train_head_on_device(_message({**base, h.CLASSES_KEY: 1, h.HEAD_ROUND_KEY: h.ROUND_TRAIN}), _context(), source)
    with pytest.raises(ConfigError, match="needs arrays/weights"):
        train_head_on_device(_message({**base, h.HEAD_ROUND_KEY: h.ROUND_TRAIN}), _context(), source)
    bad = np.zeros(DIMS * CLASSES + CLASSES, np.float64)
    with pytest.raises(Exception, match="expected finite float32"):
        train_head_on_device(_message({**base, h.HEAD_ROUND_KEY: h.ROUND_TRAIN}, bad), _context(), source)
    reply = train_head_on_device(_message({**base, h.HEAD_ROUND_KEY: h.ROUND_TRAIN}, bad.astype(np.float32)),
                                 _context(), source)
    metrics = reply.content.metric_records[p.METRICS_RECORD]
    assert metrics[p.NUM_EXAMPLES_KEY] == 4 and np.isfinite(metrics[p.TRAIN_LOSS_KEY])
