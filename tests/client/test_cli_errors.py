"""CLI errors: usage errors exit 2, runtime errors 1, each as one clear line on stderr (JSON with --json).

The in-process cases call :func:`vane.client.cli.run`, the body of the console script; the
plug-in cases (``vane server …``, ``vane sim …``) run the real console script in a subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from vane.client.cli import run
from vane.client.tracker import InterestTracker


def vane(*args: str) -> subprocess.CompletedProcess[str]:
    code = "import sys; from vane.client.cli import main; main(sys.argv[1:])"
    env = {**os.environ, "COLUMNS": "300", "NO_COLOR": "1"}
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300, env=env)


def one_error_line(err: str, words: str) -> None:
    assert err.count("\n") == 1 and err.startswith("error: "), err
    assert words in err and "Traceback" not in err


@pytest.fixture
def store(tmp_path: Path) -> Path:
    path = tmp_path / "me.db"
    with InterestTracker.open(path, key_file=tmp_path / "me.db.key") as tracker:
        tracker.record({"item_id": "a", "timestamp": "2025-01-01T00:00:00Z", "kind": "view"})
    return path


def test_export_into_a_missing_directory_is_a_runtime_error(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = run(["client", "export", "--store", str(store), "--out", str(store.parent / "nope" / "x.json")])
    assert code == 1
    one_error_line(capsys.readouterr().err, "does not exist")


def test_export_onto_a_directory_is_a_runtime_error(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = run(["client", "export", "--store", str(store), "--out", str(store.parent)])
    assert code == 1
    one_error_line(capsys.readouterr().err, "is a directory")


def test_unknown_option_is_a_usage_error_in_one_line(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["client", "profile", "--store", str(store), "--colour"]) == 2
    one_error_line(capsys.readouterr().err, "No such option '--colour'")


def test_bad_option_value_is_a_usage_error(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["client", "profile", "--store", str(store), "--top", "abc"]) == 2
    one_error_line(capsys.readouterr().err, "'abc' is not a valid integer")


def test_missing_store_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["client", "profile", "--store", str(tmp_path / "nope.db")]) == 2
    one_error_line(capsys.readouterr().err, "does not exist")


def test_json_commands_report_errors_as_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"not a database" * 100)
    key = tmp_path / "bad.db.key"
    key.write_text("00" * 32 + "\n")
    key.chmod(0o600)
    assert run(["client", "profile", "--store", str(bad), "--json"]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    error = json.loads(captured.err)
    assert error == {"error": "the store could not be authenticated: wrong key, or damaged data",
                     "type": "StoreIntegrityError"}
    assert run(["client", "profile", "--store", str(tmp_path / "nope.db"), "--json"]) == 2
    usage = json.loads(capsys.readouterr().err)
    assert usage["type"] == "BadParameter" and "does not exist" in usage["error"]


def test_error_messages_show_hostile_paths_literally(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["client", "profile", "--store", str(tmp_path / "x\x1b[2J[bold].db")]) == 2
    err = capsys.readouterr().err
    assert "\x1b" not in err and "x\\x1b[2J[bold].db" in err


def test_server_and_sim_plugin_errors() -> None:
    with_file = Path(os.environ.get("TMPDIR", "/tmp")) / f"vane-cli-errors-{os.getpid()}"
    with_file.write_text("a file, not a directory")
    try:
        certs = vane("server", "certs", str(with_file))
        assert certs.returncode == 2
        one_error_line(certs.stderr, "is an existing file")
        assert with_file.read_text() == "a file, not a directory"
    finally:
        with_file.unlink()
    models = vane("server", "models", "--registry", "nope-not-here")
    assert models.returncode == 2 and models.stdout == ""
    one_error_line(models.stderr, "is not a directory")
    as_json = vane("server", "models", "--registry", "nope-not-here", "--json")
    assert as_json.returncode == 2 and json.loads(as_json.stderr)["type"] == "BadParameter"
    noise = vane("sim", "audit-privacy", "--noise", "abc", "--out", "unused")
    assert noise.returncode == 2
    one_error_line(noise.stderr, "--noise")
    assert not Path("unused").exists()
