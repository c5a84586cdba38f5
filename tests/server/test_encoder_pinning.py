"""A federated run whose model reads text records the encoder it was trained against, and a device refuses
that model under another encoder (or none) with nothing stored changed.

Real components: the run's own ``after_round`` writes a real checkpoint and a real ``registry.json`` beside a
real encoder registry; the device is a real encrypted store with the real int8 encoder (built once, cached);
the model is a real LiteRT training export of ``TEXT_SPEC``; installs go through the ``vane`` entry point.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from model_cache import cached_models
from model_inputs import SMALL_SPEC, TEXT_SPEC
from vane.client.cli_model import install_artifact, registry_artifact
from vane.client.tracker import InterestTracker
from vane.server.config import ServerSettings
from vane.server.encoder_registry import EncoderRegistry, run_encoder_version
from vane.server.registry import ModelRegistry
from vane.shared import Event, Taxonomy
from vane.shared.artifact import ModelArtifact, check_same_encoder
from vane.shared.encoder_artifact import EncoderArtifact
from vane.shared.errors import ConfigError, ModelError
from vane.shared.protocol import ENCODER_VERSION_KEY

NAMES = ["sports", "news", "food", "travel", "music", "films", "games"]
T0 = datetime(2024, 3, 1, 8, tzinfo=UTC)


def vane(*args: str) -> subprocess.CompletedProcess[str]:
    code = "import sys; from vane.client.cli import main; sys.argv = ['vane', *sys.argv[1:]]; main()"
    env = {**os.environ, "COLUMNS": "300", "NO_COLOR": "1"}
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=180, env=env)


def other_encoder(blob: bytes) -> EncoderArtifact:
    """The real encoder with one more vocabulary line: other content, so another version."""
    real = EncoderArtifact.from_bytes(blob)
    return EncoderArtifact.build(real.tflite, real.vocab + b"[vane-test]\n", real.quantization, real.max_len, real.dims)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def publish_round(out: Path, registry: Path, rnd: int, encoder: str, blob: bytes) -> Any:
    """Round ``rnd`` of a text run taking ``encoder-version`` ``encoder``, through the run's own after_round."""
    from flwr.app import Array, ArrayRecord
    from vane.server.run import FederationRun
    from vane.server.strategies import RoundLog
    from vane.shared import protocol as p

    settings = ServerSettings.from_run_config({"out-dir": str(out), "registry-dir": str(registry),
                                               "encoder-version": encoder, "mix-grid-step": 0.0})
    run = FederationRun(settings, spec=TEXT_SPEC, taxonomy=Taxonomy(NAMES), model_blob=blob)
    run.start_round = rnd - 1
    run.strategy.rounds[rnd] = RoundLog(rnd, started=time.perf_counter(), aggregated_nodes=[1])
    run.after_round(1, ArrayRecord({p.WEIGHTS_KEY: Array(run.bundle.weights.flat)}))
    return run


@pytest.fixture(scope="module")
def text_blob() -> bytes:
    return cached_models(TEXT_SPEC, ["training"])["training"]


def test_the_run_config_names_a_published_encoder_only_when_the_model_reads_text(tmp_path: Path) -> None:
    fake = EncoderArtifact.build(b"not a tflite, never run", b"[PAD]\n[UNK]\nhello\n", "int8")
    EncoderRegistry(tmp_path).publish(fake)
    assert run_encoder_version(tmp_path, fake.version, 384) == fake.version
    assert run_encoder_version(tmp_path, "", 0) is None  # a run without text is unchanged
    with pytest.raises(ConfigError, match=rf"encoder-version is empty but the model reads text .*{fake.version}"):
        run_encoder_version(tmp_path, "", 384)
    with pytest.raises(ConfigError, match=rf"encoder-version is 'minilm-l6-v2.int8.0000000000'; expected a version "
                                          rf"published in .*encoders.json.*{fake.version}"):
        run_encoder_version(tmp_path, "minilm-l6-v2.int8.0000000000", 384)
    with pytest.raises(ConfigError, match="the model reads no text"):
        run_encoder_version(tmp_path, fake.version, 0)
    with pytest.raises(ConfigError, match="embeds 384 dims but the model reads text_dim 16"):
        run_encoder_version(tmp_path, fake.version, 16)
    with pytest.raises(ConfigError, match=r"published: none; publish one with vane server export-encoder"):
        run_encoder_version(tmp_path / "empty", "", 384)
    assert ServerSettings.from_run_config({"encoder-version": fake.version}).encoder_version == fake.version


def test_a_model_artifact_carries_its_encoder_version_and_one_without_keeps_its_bytes() -> None:
    plain = ModelArtifact(b"tflite bytes", TEXT_SPEC, Taxonomy(NAMES), "r0001-abc", "2026-11-30T00:00:00+00:00")
    assert b"encoder_version" not in plain.to_bytes()
    pinned = replace(plain, encoder_version="minilm-l6-v2.int8.1a2b3c4d5e")
    assert ModelArtifact.from_bytes(pinned.to_bytes()).encoder_version == "minilm-l6-v2.int8.1a2b3c4d5e"
    assert ModelArtifact.from_bytes(plain.to_bytes()).encoder_version is None
    check_same_encoder("m", None, 0, None)  # a model without text needs no encoder
    with pytest.raises(ModelError, match="trained against encoder e1 but this device has encoder e2; install "
                                         "that encoder first: vane client install-encoder --store S --registry "
                                         "DIR --version e1"):
        check_same_encoder("m", "e1", 384, "e2", "vane client install-encoder --store S --registry DIR --version")


@pytest.mark.slow
def test_a_text_run_records_its_encoder_and_a_device_installs_only_with_that_encoder(
        tmp_path: Path, text_blob: bytes, encoder_blob: bytes) -> None:
    pytest.importorskip("tensorflow")
    from vane.server.run import FederationRun

    registry = tmp_path / "registry"
    mine, _ = EncoderRegistry(registry).publish(EncoderArtifact.from_bytes(encoder_blob))
    theirs, _ = EncoderRegistry(registry).publish(other_encoder(encoder_blob))
    with pytest.raises(ConfigError, match="encoder-version is empty but the model reads text"):
        FederationRun(ServerSettings(out_dir=str(tmp_path / "none"), registry_dir=str(registry)), spec=TEXT_SPEC,
                      taxonomy=Taxonomy(NAMES), model_blob=text_blob)
    assert not (registry / "registry.json").exists()
    run = publish_round(tmp_path / "run-a", registry, 1, mine.id, text_blob)
    train, evaluate = run.track_configs({}, {})  # every round tells the devices which encoder
    assert train[ENCODER_VERSION_KEY] == evaluate[ENCODER_VERSION_KEY] == mine.id
    publish_round(tmp_path / "run-b", registry, 2, theirs.id, text_blob)
    first, second = ModelRegistry(registry).versions()
    assert (first.encoder_version, second.encoder_version) == (mine.id, theirs.id)
    assert [e["encoder_version"] for e in json.loads((registry / "registry.json").read_text())] == [mine.id, theirs.id]

    device = tmp_path / "device"
    device.mkdir()
    store = device / "me.db"
    with InterestTracker.open(store, key_file=device / "me.key", encoder=encoder_blob) as tracker:
        tracker.record_many([Event.create(item_id=f"https://x.example/{i}", categories=[NAMES[i % 4]], kind="view",
                                          timestamp=T0 + timedelta(minutes=5 * i), title=f"Story number {i}")
                             for i in range(30)])
    before = snapshot(device)
    args = ("client", "install-model", "--store", str(store), "--key-file", str(device / "me.key"),
            "--registry", str(registry), "--json")
    refused = vane(*args, "--version", second.id)
    assert refused.returncode == 1
    assert f"trained against encoder {theirs.id} but this device has encoder {mine.id}" in refused.stderr
    assert f"vane client install-encoder --store {store}" in refused.stderr and theirs.id in refused.stderr
    assert snapshot(device) == before  # byte-identical: nothing stored changed

    bare = tmp_path / "bare"
    bare.mkdir()
    with InterestTracker.open(bare / "me.db", key_file=bare / "me.key"):
        pass
    bare_before = snapshot(bare)
    no_encoder = vane("client", "install-model", "--store", str(bare / "me.db"), "--key-file", str(bare / "me.key"),
                      "--registry", str(registry), "--version", first.id)
    assert no_encoder.returncode == 1 and f"encoder {mine.id} but this device has no encoder" in no_encoder.stderr
    assert snapshot(bare) == bare_before

    done = vane(*args, "--version", first.id)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["version"] == first.id
    with InterestTracker.open(store, key_file=device / "me.key") as tracker:
        assert tracker.model_version == first.id and tracker.predict(3)
        with pytest.raises(ModelError, match=f"trained against encoder {theirs.id} but this device has encoder"):
            install_artifact(tracker, registry_artifact(registry, second.id))  # the API path refuses too
        assert tracker.model_version == first.id


@pytest.mark.slow
def test_an_old_registry_json_without_the_field_still_loads(tmp_path: Path, text_blob: bytes,
                                                            small_training_blob: bytes, encoder_blob: bytes) -> None:
    pytest.importorskip("tensorflow")
    from vane.server.run import FederationRun

    registry = tmp_path / "registry"
    version = EncoderRegistry(registry).publish(EncoderArtifact.from_bytes(encoder_blob))[0].id
    publish_round(tmp_path / "run", registry, 1, version, text_blob)
    plain = FederationRun(ServerSettings(out_dir=str(tmp_path / "plain")), spec=SMALL_SPEC,
                          taxonomy=Taxonomy(NAMES), model_blob=small_training_blob)
    assert plain.encoder_version is None  # a run without text records none, and sends none
    assert ENCODER_VERSION_KEY not in plain.track_configs({}, {})[0]
    entries = json.loads((registry / "registry.json").read_text())
    for entry in entries:
        del entry["encoder_version"]  # as written before the field existed
    (registry / "registry.json").write_text(json.dumps(entries))
    (old,) = ModelRegistry(registry).versions()
    assert old.encoder_version is None and old.round == 1
    artifact = registry_artifact(registry, None)
    assert artifact.encoder_version is None and artifact.version == old.id
    store = tmp_path / "me.db"
    with InterestTracker.open(store, key_file=tmp_path / "me.key", encoder=encoder_blob):
        pass
    refused = vane("client", "install-model", "--store", str(store), "--key-file", str(tmp_path / "me.key"),
                   "--registry", str(registry))
    assert refused.returncode == 1 and "reads text (text_dim 384) but records no encoder version" in refused.stderr
