"""Malformed train and evaluate messages to the ClientApp: a clear error reply, and the device untouched.

Every case goes through the real ClientApp (its mods included) with a real Flower ``Message`` on a
real encrypted store. Before issue 13 these messages raised ``KeyError``/``ValueError`` out of the
handlers (or, for int32 weights, were silently converted and trained on); now each is answered
with a Flower error reply naming a :class:`~vane.shared.errors.VaneError`, and the store's events,
model, weights, blend and state read back byte for byte as before.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.common.constant import ErrorCode
from privacy_runs import as_flower_task
from vane.client import persistence
from vane.client.app import build_client_app, train_on_device
from vane.client.store import EventStore
from vane.client.tracker import InterestTracker
from vane.shared import Event, Taxonomy
from vane.shared import protocol as p
from vane.shared.errors import MessageError

NAMES = ["sports", "news", "food", "travel", "music", "films", "games"]
T0 = datetime(2024, 3, 1, 8, tzinfo=UTC)
SLOTS = (persistence.STATE, persistence.MODEL, persistence.MODEL_VERSION, persistence.WEIGHTS,
         persistence.TAXONOMY, persistence.MIX)


class Device:
    """One encrypted store with a model and 60 events, and what a ClientApp needs to reach it."""

    def __init__(self, root: Path, blob: bytes) -> None:
        self.store, self.key_file = root / "device.db", root / "device.key"
        with InterestTracker.open(self.store, key_file=self.key_file, model=blob, taxonomy=Taxonomy(NAMES),
                                  model_version="v1") as tracker:
            tracker.record_many([Event.create(f"{NAMES[i % 4]}-{i}", [NAMES[i % 4]], T0 + timedelta(minutes=9 * i),
                                              title=f"story {i}") for i in range(60)])
            assert tracker.spec is not None
            self.spec_hash = tracker.spec.hash
            self.weights = tracker.get_weights().flat.astype(np.float32)

    def context(self) -> Context:
        return Context(run_id=1, node_id=1, node_config={"store": str(self.store), "key-file": str(self.key_file)},
                       state=RecordDict(), run_config={})

    def snapshot(self) -> dict[str, Any]:
        """Every event and every tracker slot, decrypted: what a bad message must leave as it was."""
        with EventStore.open(self.store, key_file=self.key_file) as store:
            return {"count": store.count(), "events": store.events(),
                    **{name: store.get_state(name) for name in SLOTS}}


@pytest.fixture
def device(tmp_path: Path, small_training_blob: bytes, monkeypatch: pytest.MonkeyPatch) -> Device:
    as_flower_task(monkeypatch)
    return Device(tmp_path, small_training_blob)


def message(device: Device, kind: str = "train", config: dict[str, Any] | None = None,
            weights: np.ndarray | None = None, records: dict[str, Any] | None = None) -> Message:
    """A message as the server sends it, with ``config`` keys added and ``records`` replacing its records."""
    base: dict[str, Any] = {p.LOCAL_EPOCHS_KEY: 1, p.SEED_KEY: 0, p.HOLDOUT_FRACTION_KEY: 0.1,
                            p.SERVER_ROUND_KEY: 1, p.SPEC_HASH_KEY: device.spec_hash, p.MODEL_VERSION_KEY: "v1"}
    content = {p.CONFIG_RECORD: ConfigRecord({**base, **(config or {})}),
               p.ARRAYS_RECORD: ArrayRecord({p.WEIGHTS_KEY: Array(device.weights if weights is None else weights)})}
    content.update(records or {})
    return Message(RecordDict({k: v for k, v in content.items() if v is not None}), dst_node_id=1, message_type=kind)


def call_app(device: Device, msg: Message) -> Message:
    return build_client_app()(msg, device.context())


def test_a_good_message_trains_and_changes_the_device(device: Device) -> None:
    """The control: the snapshot sees what a real round changes, so "unchanged" below means something."""
    before = device.snapshot()
    reply = call_app(device, message(device, weights=device.weights + np.float32(0.01)))
    assert reply.has_content(), reply.error if reply.has_error() else None
    assert reply.content[p.ARRAYS_RECORD][p.DELTA_KEY].numpy().shape == device.weights.shape
    after = device.snapshot()
    assert after[persistence.WEIGHTS] != before[persistence.WEIGHTS]
    assert after["events"] == before["events"]


def _drop(record: str) -> Callable[[Device, str], Message]:
    return lambda d, kind: message(d, kind, records={record: None})


def _weights(change: Callable[[np.ndarray], np.ndarray]) -> Callable[[Device, str], Message]:
    return lambda d, kind: message(d, kind, weights=change(d.weights))


def _config(**values: Any) -> Callable[[Device, str], Message]:
    return lambda d, kind: message(d, kind, config={k.replace("_", "-"): v for k, v in values.items()})


def _nan_first(w: np.ndarray) -> np.ndarray:
    bad = w.copy()
    bad[0] = np.nan
    return bad


#: (case, message builder, error class, words of the reason)
BAD_MESSAGES = [
    ("no config record", _drop(p.CONFIG_RECORD), "MessageError", "has no ConfigRecord 'config'"),
    ("no arrays record", _drop(p.ARRAYS_RECORD), "MessageError", "has no ArrayRecord 'arrays'"),
    ("arrays without weights",
     lambda d, kind: message(d, kind, records={p.ARRAYS_RECORD: ArrayRecord({"other": Array(d.weights)})}),
     "MessageError", "holding 'weights'"),
    ("local-epochs abc", _config(local_epochs="abc"), "ConfigError", "local-epochs is 'abc'; expected an integer"),
    ("holdout-fraction nan", _config(holdout_fraction=float("nan")), "ConfigError", "holdout-fraction is nan"),
    ("holdout-fraction 1.5", _config(holdout_fraction=1.5), "ConfigError", "holdout-fraction is 1.5"),
    ("int32 weights", _weights(lambda w: w.astype(np.int32)), "MessageError", "dtype int32; expected float32"),
    ("float64 weights", _weights(lambda w: w.astype(np.float64)), "MessageError", "dtype float64; expected float32"),
    ("2-D weights", _weights(lambda w: w.reshape(1, -1)), "MessageError", "have shape (1, "),
    ("short weights", _weights(lambda w: w[:-1]), "MessageError", "expected ("),
    ("NaN weights", _weights(_nan_first), "MessageError", "NaN or infinite"),
    ("other spec", _config(spec_hash="0123abcd"), "SpecMismatchError", "spec '0123abcd'"),
    ("new version without blob", _config(model_version="v2"), "ConfigError", "lacks model version 'v2'"),
    ("new version, broken blob", _config(model_version="v2", model_blob=b"not a model"), "ModelError",
     "not a loadable"),
    ("mix of strings", _config(mix=["a", "b"]), "MessageError", "mix is ['a', 'b']"),
    ("mix of wrong length", _config(mix=[1.0, 0.0]), "ConfigError", "mix is"),
]


@pytest.mark.parametrize("kind", ["train", "evaluate"])
@pytest.mark.parametrize(("case", "build", "error", "words"), BAD_MESSAGES, ids=[c[0] for c in BAD_MESSAGES])
def test_a_bad_message_gets_an_error_reply_and_leaves_the_device_unchanged(
        device: Device, kind: str, case: str, build: Callable[[Device, str], Message], error: str, words: str) -> None:
    before = device.snapshot()
    reply = call_app(device, build(device, kind))
    assert reply.has_error() and not reply.has_content(), case
    assert reply.error.code == ErrorCode.CLIENT_APP_RAISED_EXCEPTION
    assert reply.error.reason is not None and reply.error.reason.startswith(f"{error}: "), reply.error.reason
    assert words in reply.error.reason
    assert reply.metadata.message_type == kind
    assert device.snapshot() == before


def test_a_new_model_with_a_broken_taxonomy_is_not_installed(device: Device, small_training_blob: bytes) -> None:
    before = device.snapshot()
    msg = message(device, config={p.MODEL_VERSION_KEY: "v2", p.MODEL_BLOB_KEY: small_training_blob,
                                  p.TAXONOMY_KEY: "{not json"})
    reply = call_app(device, msg)
    assert reply.has_error() and reply.error.reason is not None
    assert reply.error.reason.startswith("MessageError: taxonomy is not a taxonomy as JSON")
    assert device.snapshot() == before


@pytest.mark.parametrize("norm", ["abc", 0.0, float("inf")])
def test_a_bad_clipping_norm_is_refused_before_training(device: Device, norm: object) -> None:
    before = device.snapshot()
    reply = call_app(device, message(device, config={p.CLIPPING_NORM_KEY: norm}))
    assert reply.has_error() and reply.error.reason is not None
    assert reply.error.reason.startswith(f"MessageError: clipping_norm is {norm!r}")
    assert device.snapshot() == before


def test_a_legacy_fit_message_with_int32_weights_is_refused_not_converted(device: Device) -> None:
    """The legacy (SecAgg+) path used to cast the weights to float32 before the ClientApp saw them."""
    from flwr.common import FitIns, ndarrays_to_parameters
    from flwr.compat.common import recorddict_compat as compat

    before = device.snapshot()
    config = {p.LOCAL_EPOCHS_KEY: 1, p.SPEC_HASH_KEY: device.spec_hash, p.MODEL_VERSION_KEY: "v1"}
    content = compat.fitins_to_recorddict(FitIns(ndarrays_to_parameters([device.weights.astype(np.int32)]), config),
                                          keep_input=True)
    reply = call_app(device, Message(content, dst_node_id=1, message_type="train"))
    assert reply.has_error() and reply.error.reason is not None
    assert reply.error.reason.startswith("MessageError: the global weights have dtype int32; expected float32")
    assert device.snapshot() == before


def test_the_handler_itself_raises_the_vane_error(device: Device) -> None:
    """Called without the app's error replies, the handler raises the named error (no KeyError)."""
    with pytest.raises(MessageError, match="has no ConfigRecord 'config'"):
        train_on_device(message(device, records={p.CONFIG_RECORD: None}), device.context())


def test_the_server_counts_an_error_reply_as_a_failure_and_aggregates_the_others(device: Device) -> None:
    from vane.server.strategies import make_strategy

    class Nodes:  # all a strategy asks of the grid to configure a round
        def get_node_ids(self) -> list[int]:
            return [7, 8, 9]

    strategy = make_strategy("fedavg", model_blob=b"", model_version="v1")
    strategy.configure_train(1, ArrayRecord({p.WEIGHTS_KEY: Array(device.weights)}), ConfigRecord({}),
                             Nodes())  # type: ignore[arg-type]
    refused = call_app(device, message(device, config={p.LOCAL_EPOCHS_KEY: "abc"}))
    refused.metadata.__dict__["_src_node_id"] = 7
    good = []
    for node, value in ((8, 0.5), (9, 1.5)):
        delta = ArrayRecord({p.DELTA_KEY: Array(np.full_like(device.weights, value))})
        metrics = MetricRecord({p.NUM_EXAMPLES_KEY: 10.0})
        reply = Message(RecordDict({p.ARRAYS_RECORD: delta, p.METRICS_RECORD: metrics}), reply_to=message(device))
        reply.metadata.__dict__["_src_node_id"] = node
        good.append(reply)
    arrays, _ = strategy.aggregate_train(1, [refused, *good])
    log = strategy.rounds[1]
    assert set(log.failed) == {7}
    assert log.failed[7] == "ConfigError: message config local-epochs is 'abc'; expected an integer"
    assert sorted(log.aggregated_nodes) == [8, 9]
    assert arrays is not None
    np.testing.assert_allclose(arrays[p.WEIGHTS_KEY].numpy(), device.weights + 1.0, rtol=0, atol=1e-6)

