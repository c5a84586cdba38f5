"""An export never destroys the store, its sidecars or its key, and is written atomically, 0600.

Every case runs through the CLI (exit code 1, one clear line on stderr, store and key intact and
still opening) and through the Python API (``tracker.export(path)`` and ``store.export(path)``).
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from vane.client.cli import run
from vane.client.tracker import InterestTracker
from vane.shared.errors import ConfigError

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
N_EVENTS = 5


def make_store(tmp_path: Path) -> tuple[Path, Path]:
    store, key = tmp_path / "me.db", tmp_path / "me.db.key"
    with InterestTracker.open(store, key_file=key) as tracker:
        for i in range(N_EVENTS):
            tracker.record({"item_id": f"item-{i}", "categories": ["news"], "timestamp": T0 + timedelta(minutes=i),
                            "kind": "view", "title": f"Title {i}"})
    return store, key


def snapshot(paths: list[Path]) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in paths if p.is_file()}


def assert_store_intact(store: Path, key: Path, before: dict[str, bytes]) -> None:
    assert key.read_bytes() == before[key.name]
    with InterestTracker.open(store, key_file=key) as tracker:
        assert tracker.store.count() == N_EVENTS
        assert [e.item_id for _, e in tracker.store.events()] == [f"item-{i}" for i in range(N_EVENTS)]


# Each case: (name, how to build the destination from the store dir, words of the error).
Dest = Callable[[Path], Path]


def _symlink_to_key(d: Path) -> Path:
    (d / "link.json").symlink_to(d / "me.db.key")
    return d / "link.json"


def _symlink_to_new_file(d: Path) -> Path:
    (d / "dangling.json").symlink_to(d / "elsewhere.json")
    return d / "dangling.json"


def _hard_link_to_key(d: Path) -> Path:
    os.link(d / "me.db.key", d / "backup-of-something")
    return d / "backup-of-something"


def _dot_spelling_of_store(d: Path) -> Path:
    (d / "sub").mkdir()
    return d / "sub" / ".." / "." / "me.db"


def _key_copy_under_other_name(d: Path) -> Path:
    other = d / "old-key.txt"
    other.write_bytes((d / "me.db.key").read_bytes())
    return other


def _a_directory(d: Path) -> Path:
    (d / "folder").mkdir()
    return d / "folder"


CASES: list[tuple[str, Dest, str]] = [
    ("the key file", lambda d: d / "me.db.key", "store's own file"),
    ("the store", lambda d: d / "me.db", "store's own file"),
    ("the WAL sidecar", lambda d: d / "me.db-wal", "store's own file"),
    ("the shared-memory sidecar", lambda d: d / "me.db-shm", "store's own file"),
    ("the lock file", lambda d: d / "me.db.lock", "store's own file"),
    ("a ./.. spelling of the store", _dot_spelling_of_store, "store's own file"),
    ("a symlink to the key", _symlink_to_key, "symbolic link"),
    ("a dangling symlink", _symlink_to_new_file, "symbolic link"),
    ("a hard link to the key", _hard_link_to_key, "store's own file"),
    ("a copy of a key under another name", _key_copy_under_other_name, "Vane key file"),
    ("a directory", _a_directory, "is a directory"),
    ("a file in a missing directory", lambda d: d / "missing" / "out.json", "does not exist"),
]


@pytest.mark.parametrize(("name", "dest", "words"), CASES, ids=[c[0] for c in CASES])
def test_cli_export_refuses_unsafe_destinations(tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str,
                                                dest: Dest, words: str) -> None:
    store, key = make_store(tmp_path)
    target = dest(tmp_path)
    before = snapshot([store, key, target])
    code = run(["client", "export", "--store", str(store), "--out", str(target)])
    captured = capsys.readouterr()
    assert code == 1, captured
    assert words in captured.err and captured.err.count("\n") == 1 and "Traceback" not in captured.err
    assert "Wrote" not in captured.out
    if target.is_file() and not target.is_symlink():
        assert target.read_bytes() == before[target.name]
    assert_store_intact(store, key, before)
    assert not (tmp_path / "elsewhere.json").exists()  # a symlink is never followed


@pytest.mark.parametrize(("name", "dest", "words"), CASES, ids=[c[0] for c in CASES])
def test_api_export_refuses_unsafe_destinations(tmp_path: Path, name: str, dest: Dest, words: str) -> None:
    store, key = make_store(tmp_path)
    target = dest(tmp_path)
    before = snapshot([store, key])
    with InterestTracker.open(store, key_file=key) as tracker:
        with pytest.raises(ConfigError, match=words):
            tracker.export(target)
        with pytest.raises(ConfigError, match=words):
            tracker.store.export(target)
        assert tracker.store.count() == N_EVENTS  # still open and readable
    assert_store_intact(store, key, before)


def test_custom_key_file_is_refused_by_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store, key = tmp_path / "me.db", tmp_path / "keys" / "secret"
    key.parent.mkdir()
    with InterestTracker.open(store, key_file=key) as tracker:
        tracker.record({"item_id": "a", "timestamp": T0, "kind": "view"})
    before = key.read_bytes()
    code = run(["client", "export", "--store", str(store), "--key-file", str(key), "--out", str(key)])
    assert code == 1 and "store's own file" in capsys.readouterr().err
    assert key.read_bytes() == before


def test_export_replaces_an_old_export_atomically_with_mode_0600(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    store, key = make_store(tmp_path)
    out = tmp_path / "export.json"
    out.write_text("old export")
    out.chmod(0o644)
    assert run(["client", "export", "--store", str(store), "--out", str(out)]) == 0
    assert f"Wrote {N_EVENTS} events" in capsys.readouterr().out
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert len(json.loads(out.read_text())["events"]) == N_EVENTS
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []  # no temporary file left
    with InterestTracker.open(store, key_file=key) as tracker:
        tracker.store.export(out)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600 and json.loads(out.read_text())["count"] == N_EVENTS


def test_a_new_export_is_created_0600(tmp_path: Path) -> None:
    store, key = make_store(tmp_path)
    with InterestTracker.open(store, key_file=key) as tracker:
        tracker.export(tmp_path / "new.json")
    assert stat.S_IMODE((tmp_path / "new.json").stat().st_mode) == 0o600
