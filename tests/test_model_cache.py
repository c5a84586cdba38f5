"""The on-disk model cache behind the model fixtures: keyed on what decides the bytes, built once."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import model_cache
import pytest
from model_cache import REPO, cache_key, cached_models, source_closure
from model_inputs import SMALL_SPEC
from vane.shared.spec import ModelSpec


def test_the_key_covers_the_exporter_and_the_shared_modules_it_imports() -> None:
    files = {path.relative_to(REPO).as_posix() for path in source_closure(model_cache.EXPORTER)}

    assert {"server/model.py", "server/__init__.py", "shared/spec.py", "shared/weights.py",
            "shared/features.py"} <= files
    assert not any(name.startswith(("client/", "simulations/")) for name in files)


def test_the_key_is_stable_and_changes_with_the_spec() -> None:
    assert cache_key(SMALL_SPEC) == cache_key(ModelSpec.from_dict(SMALL_SPEC.to_dict()))
    assert cache_key(SMALL_SPEC) != cache_key(ModelSpec(**{**SMALL_SPEC.to_dict(), "seed": 1}))


@pytest.fixture
def fake_builder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A builder that writes ``fake <kind>`` files slowly and logs each run; the cache goes to ``tmp_path``."""
    log = tmp_path / "builds.log"
    script = tmp_path / "fake_builder.py"
    script.write_text(textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        time.sleep(0.3)
        out = Path(sys.argv[2])
        out.mkdir(parents=True, exist_ok=True)
        for kind in sys.argv[3:]:
            (out / f"{{kind}}.tflite").write_bytes(f"fake {{kind}}".encode())
        with open({str(log)!r}, "a") as fh:
            fh.write(" ".join(sys.argv[3:]) + "\\n")
    """))
    monkeypatch.setattr(model_cache, "BUILDER", script)
    monkeypatch.setenv("VANE_TEST_MODEL_CACHE", str(tmp_path / "cache"))
    return log


def test_parallel_requests_build_once_and_later_ones_read_the_disk(fake_builder: Path) -> None:
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: cached_models(SMALL_SPEC, ["training"]), range(4)))

    assert results == [{"training": b"fake training"}] * 4
    assert fake_builder.read_text().splitlines() == ["training"]

    both = cached_models(SMALL_SPEC, ["training", "inference-int8"])

    assert both == {"training": b"fake training", "inference-int8": b"fake inference-int8"}
    assert fake_builder.read_text().splitlines() == ["training", "inference-int8"]  # only the missing kind


def test_a_failing_build_raises_with_its_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script = tmp_path / "broken_builder.py"
    script.write_text("raise SystemExit('no TensorFlow here')\n")
    monkeypatch.setattr(model_cache, "BUILDER", script)
    monkeypatch.setenv("VANE_TEST_MODEL_CACHE", str(tmp_path / "cache"))

    with pytest.raises(RuntimeError, match="no TensorFlow here"):
        cached_models(SMALL_SPEC, ["training"])


def test_a_cached_model_is_read_without_importing_tensorflow(small_training_blob: bytes) -> None:
    code = (
        "import sys\n"
        f"sys.path.insert(0, {str(REPO / 'tests')!r})\n"
        "from model_cache import cached_models\n"
        "from model_inputs import SMALL_SPEC\n"
        "blob = cached_models(SMALL_SPEC, ['training'])['training']\n"
        "print(len(blob), 'tensorflow' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)

    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == [str(len(small_training_blob)), "False"]
