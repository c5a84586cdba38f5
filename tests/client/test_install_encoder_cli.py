"""``vane client install-encoder`` and history imports with an encoder, on real stores through the entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from vane.client.tracker import InterestTracker
from vane.shared.encoder_artifact import EncoderArtifact

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "browser-history-fixtures"
DEMO = FIXTURES / "pyspark-plaso" / "chrome_History_demo-2019-09"


def vane(*args: str) -> subprocess.CompletedProcess[str]:
    code = "import sys; from vane.client.cli import main; sys.argv = ['vane', *sys.argv[1:]]; main()"
    env = {**os.environ, "COLUMNS": "300", "NO_COLOR": "1"}
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=180, env=env)


def publish(encoder_blob: bytes, registry: Path) -> str:
    # what vane server export-encoder --registry writes (the client reads it without importing the server)
    import hashlib

    artifact = EncoderArtifact.from_bytes(encoder_blob)
    path = registry / "encoders" / f"{artifact.version}.vane"
    path.parent.mkdir(parents=True)
    path.write_bytes(encoder_blob)
    entry = {"id": artifact.version, "sha256": hashlib.sha256(encoder_blob).hexdigest(), "size": len(encoder_blob),
             "quantization": "int8", "dims": 384, "max_len": 128, "created_at": "2026-11-29T00:00:00+00:00",
             "path": str(path)}
    (registry / "encoders.json").write_text(json.dumps([entry]))
    return artifact.version


def test_install_from_a_registry_then_embed_the_events_already_stored(tmp_path: Path, encoder_blob: bytes) -> None:
    version = publish(encoder_blob, tmp_path / "reg")
    store = tmp_path / "me.db"
    with InterestTracker.open(store, key_file=tmp_path / "me.db.key") as tracker:
        tracker.record_many([{"item_id": f"https://x.com/a{i}", "categories": ["news"], "kind": "view",
                              "timestamp": 1764316800 + 60 * i, "title": f"Story {i}" if i % 2 else None}
                             for i in range(20)])
    done = vane("client", "install-encoder", "--store", str(store), "--registry", str(tmp_path / "reg"),
                "--embed-missing", "--json")
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert info["encoder_version"] == version and info["embedded_now"] == 10 and info["embeddings"] == {version: 10}
    wrong = vane("client", "install-encoder", "--store", str(store), "--registry", str(tmp_path / "reg"),
                 "--version", "minilm-l6-v2.int8.0000000000")
    assert wrong.returncode != 0 and f"it has {version}" in wrong.stderr
    Path(json.loads((tmp_path / "reg" / "encoders.json").read_text())[0]["path"]).write_bytes(b"tampered")
    tampered = vane("client", "install-encoder", "--store", str(store), "--registry", str(tmp_path / "reg"))
    assert tampered.returncode != 0 and "the registry says" in tampered.stderr


def test_a_bad_file_is_refused_before_the_store_is_created(tmp_path: Path) -> None:
    bad = tmp_path / "bad.vane"
    bad.write_bytes(b"VANEMDL\x00 not an encoder")
    done = vane("client", "install-encoder", "--store", str(tmp_path / "new.db"), "--file", str(bad))
    assert done.returncode != 0 and "is not a Vane encoder artifact" in done.stderr
    assert not (tmp_path / "new.db").exists() and not (tmp_path / "new.db.key").exists()


@pytest.mark.skipif(not DEMO.exists(), reason="browser-history fixtures not present")
def test_history_import_embeds_each_titled_visit(tmp_path: Path, encoder_blob: bytes) -> None:
    store, encoder = tmp_path / "me.db", tmp_path / "encoder.vane"
    encoder.write_bytes(encoder_blob)
    assert vane("client", "install-encoder", "--store", str(store), "--file", str(encoder)).returncode == 0
    done = vane("client", "import-history", str(DEMO), "--store", str(store), "--json")
    assert done.returncode == 0, done.stderr
    with InterestTracker.open(store, key_file=tmp_path / "me.db.key") as tracker:
        titled = [seq for seq, e in tracker.store.events() if e.title]
        stored = tracker.store.embeddings()  # type: ignore[attr-defined]
        assert titled and sorted(stored) == titled
