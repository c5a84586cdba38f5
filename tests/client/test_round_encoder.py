"""A federated round of a model that reads text: a device trains only when it embeds with the round's encoder.

The real ClientApp (its mods included) gets real Flower messages on real encrypted stores holding the real
int8 encoder and a real LiteRT training export of ``TEXT_SPEC``; a refused round leaves every event and
tracker slot as it was.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, RecordDict
from model_cache import cached_models
from model_inputs import TEXT_SPEC
from privacy_runs import as_flower_task
from vane.client import persistence
from vane.client.app import build_client_app
from vane.client.store import EventStore
from vane.client.tracker import InterestTracker
from vane.shared import Event, Taxonomy
from vane.shared import protocol as p
from vane.shared.encoder_artifact import EncoderArtifact

NAMES = ["sports", "news", "food", "travel", "music", "films", "games"]
T0 = datetime(2024, 3, 1, 8, tzinfo=UTC)
SLOTS = (persistence.STATE, persistence.MODEL, persistence.MODEL_VERSION, persistence.WEIGHTS, persistence.TAXONOMY)


@pytest.fixture(scope="module")
def text_blob() -> bytes:
    return cached_models(TEXT_SPEC, ["training"])["training"]


def device(root: Path, blob: bytes, encoder: bytes | None) -> tuple[Context, np.ndarray, str]:
    store, key_file = root / "device.db", root / "device.key"
    with InterestTracker.open(store, key_file=key_file, model=blob, taxonomy=Taxonomy(NAMES), model_version="v1",
                              encoder=encoder) as tracker:
        tracker.record_many([Event.create(f"{NAMES[i % 4]}-{i}", [NAMES[i % 4]], T0 + timedelta(minutes=9 * i),
                                          title=f"{NAMES[i % 4]} story {i}") for i in range(60)])
        weights, spec_hash = tracker.get_weights().flat.astype(np.float32), tracker.spec.hash
    context = Context(run_id=1, node_id=1, node_config={"store": str(store), "key-file": str(key_file)},
                      state=RecordDict(), run_config={})
    return context, weights, spec_hash


def snapshot(context: Context) -> dict[str, Any]:
    with EventStore.open(str(context.node_config["store"]), key_file=str(context.node_config["key-file"])) as store:
        return {"events": store.events(), **{name: store.get_state(name) for name in SLOTS}}


def train_message(weights: np.ndarray, spec_hash: str, encoder: str) -> Message:
    config = ConfigRecord({p.LOCAL_EPOCHS_KEY: 1, p.SEED_KEY: 0, p.HOLDOUT_FRACTION_KEY: 0.1, p.SERVER_ROUND_KEY: 1,
                           p.SPEC_HASH_KEY: spec_hash, p.MODEL_VERSION_KEY: "v1", p.ENCODER_VERSION_KEY: encoder})
    arrays = ArrayRecord({p.WEIGHTS_KEY: Array(weights + np.float32(0.01))})
    return Message(RecordDict({p.CONFIG_RECORD: config, p.ARRAYS_RECORD: arrays}), dst_node_id=1, message_type="train")


def test_a_device_trains_a_text_model_only_under_the_rounds_encoder(
        tmp_path: Path, text_blob: bytes, encoder_blob: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    as_flower_task(monkeypatch)
    mine = EncoderArtifact.from_bytes(encoder_blob).version
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    context, weights, spec_hash = device(tmp_path / "a", text_blob, encoder_blob)
    before = snapshot(context)
    refused = build_client_app()(train_message(weights, spec_hash, "minilm-l6-v2.int8.0000000000"), context)
    assert refused.has_error() and refused.error.reason is not None
    assert refused.error.reason.startswith("ModelError: model v1 was trained against encoder "
                                           f"minilm-l6-v2.int8.0000000000 but this device has encoder {mine}")
    assert snapshot(context) == before

    trained = build_client_app()(train_message(weights, spec_hash, mine), context)
    assert trained.has_content(), trained.error if trained.has_error() else None
    assert snapshot(context)[persistence.WEIGHTS] != before[persistence.WEIGHTS]

    bare, bare_weights, _ = device(tmp_path / "b", text_blob, None)
    bare_before = snapshot(bare)
    no_encoder = build_client_app()(train_message(bare_weights, spec_hash, mine), bare)
    assert no_encoder.has_error() and f"encoder {mine} but this device has no encoder" in str(no_encoder.error.reason)
    assert snapshot(bare) == bare_before
