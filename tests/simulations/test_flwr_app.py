"""The ClientApp of `flwr run .` (vane.simulations.flwr_app): the built-in synthetic devices.

A node with only a partition-id (no store, no $VANE_SIM_DIR) gets synthetic user i recorded
once into a git-ignored folder, the same events for the same seed; a device that already holds
the model version the server names trains without installing it again (and without the blob).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, RecordDict
from model_cache import cached_models
from privacy_runs import as_flower_task
from vane.client.store import EventStore
from vane.client.tracker import InterestTracker
from vane.shared import protocol as p
from vane.shared.errors import ConfigError
from vane.shared.spec import ModelSpec
from vane.simulations import flwr_app
from vane.simulations.synthetic import SyntheticPopulation

SPEC = ModelSpec(num_categories=13, item_buckets=64, token_buckets=32, window=8, lstm_units=16, batch=8)


def events_of(root: Path, partition: int) -> list:
    with EventStore.open(root / f"user-{partition:05d}.store", key_file=root / "store.key") as store:
        return [event for _, event in store.events()]


def test_builtin_devices_are_the_synthetic_users_recorded_once(tmp_path: Path) -> None:
    first = flwr_app.builtin_device(tmp_path / "a", 3, seed=5)
    flwr_app.builtin_device(tmp_path / "b", 3, seed=5)
    again = events_of(tmp_path / "a", 3)
    assert [e.item_id for e in again] == [e.item_id for e in events_of(tmp_path / "b", 3)]
    pop = SyntheticPopulation(4, events_per_user=flwr_app.BUILTIN_EVENTS, seed=5)
    assert [e.item_id for e in again] == [e.item_id for e in pop.users["u0003"]]
    stamp = first.stat().st_mtime_ns
    assert flwr_app.builtin_device(tmp_path / "a", 3, seed=5) == first and first.stat().st_mtime_ns == stamp
    # an interrupted preparation (a store without its ready marker) is recorded again
    first.with_suffix(".ready").unlink()
    flwr_app.builtin_device(tmp_path / "a", 3, seed=5)
    assert len(events_of(tmp_path / "a", 3)) == len(again)


def context(partition: object, seed: object = 0) -> Context:
    return Context(run_id=1, node_id=1, node_config={p.NODE_PARTITION_ID_KEY: partition, "num-partitions": 2},
                   state=RecordDict(), run_config={p.SEED_KEY: seed})


def train_message(weights: np.ndarray, blob: bytes | None) -> Message:
    config = {p.LOCAL_EPOCHS_KEY: 1, p.SEED_KEY: 0, p.HOLDOUT_FRACTION_KEY: 0.1, p.SERVER_ROUND_KEY: 1,
              p.SPEC_HASH_KEY: SPEC.hash, p.MODEL_VERSION_KEY: "v-test"}
    if blob is not None:
        config[p.MODEL_BLOB_KEY] = blob
    content = RecordDict({p.CONFIG_RECORD: ConfigRecord(config),
                          p.ARRAYS_RECORD: ArrayRecord({p.WEIGHTS_KEY: Array(weights)})})
    return Message(content, dst_node_id=1, message_type="train")


def test_the_app_trains_a_builtin_device_and_does_not_reinstall_the_version_it_holds(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    as_flower_task(monkeypatch)
    monkeypatch.delenv("VANE_SIM_DIR", raising=False)
    monkeypatch.setenv(flwr_app.BUILTIN_DIR_ENV, str(tmp_path / "sim"))
    blob = cached_models(SPEC, ["training"])["training"]
    from vane.client.runtime import LiteModel

    weights = LiteModel.from_bytes(blob).get_weights().flat.astype(np.float32)
    installs: list[str] = []
    real_install = InterestTracker.install_model

    def counting_install(self: InterestTracker, *args: object, **kwargs: object) -> None:
        installs.append("install")
        real_install(self, *args, **kwargs)

    monkeypatch.setattr(InterestTracker, "install_model", counting_install)
    first = flwr_app.app(train_message(weights, blob), context(1))
    assert first.has_content(), first.error.reason if first.has_error() else None
    assert first.content[p.METRICS_RECORD][p.NUM_EXAMPLES_KEY] > 0
    assert installs == ["install"]
    assert (tmp_path / "sim" / "synthetic-seed0" / "user-00001.store").exists()

    # the device holds v-test now: no install, and no blob needed
    second = flwr_app.app(train_message(weights, None), context(1))
    assert second.has_content(), second.error.reason if second.has_error() else None
    assert installs == ["install"]


@pytest.mark.parametrize(("partition", "seed", "words"), [("x", 0, "partition-id is 'x'"), (0, -1, "seed is -1")])
def test_a_bad_partition_or_seed_gets_an_error_reply(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     partition: object, seed: object, words: str) -> None:
    as_flower_task(monkeypatch)
    monkeypatch.delenv("VANE_SIM_DIR", raising=False)
    monkeypatch.setenv(flwr_app.BUILTIN_DIR_ENV, str(tmp_path / "sim"))
    reply = flwr_app.app(train_message(np.zeros(3, np.float32), None), context(partition, seed))
    assert reply.has_error()
    assert ConfigError.__name__ in reply.error.reason and words in reply.error.reason
    assert not list((tmp_path / "sim").rglob("*.store"))
    assert json.dumps(reply.error.reason)  # a plain string
