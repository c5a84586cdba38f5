"""One owner per store: a running app and the CLI never both write it (issue 13, item 4).

Before, ``vane client forget --item X`` printed ``removed: 1`` while an app had the store open, and
the app then wrote X back into its saved state (X reappeared in the export); a concurrent
``import-history`` was never counted by the app. Now every open takes ``STORE.lock``, and a second
writer is refused with the PID of the owner. These tests run the app and the CLI as two real processes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from vane.client.store import EventStore
from vane.client.tracker import InterestTracker
from vane.shared.errors import StoreInUseError
from vane.shared.events import Event

APP = Path(__file__).with_name("store_app.py")
FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "browser-history-fixtures"
DEMO = FIXTURES / "pyspark-plaso" / "chrome_History_demo-2019-09"


def vane(*args: str) -> subprocess.CompletedProcess[str]:
    code = "import sys; from vane.client.cli import main; sys.argv = ['vane', *sys.argv[1:]]; main()"
    env = {**os.environ, "COLUMNS": "300", "NO_COLOR": "1"}
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120, env=env)


class App:
    """The app process (tests/client/store_app.py): one command per line, one answer per line."""

    def __init__(self, db: Path) -> None:
        self.err = open(db.with_name("app.err"), "w")
        self.proc = subprocess.Popen([sys.executable, str(APP), str(db), str(db) + ".key"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.err, text=True)
        ready = self.read().split()
        assert ready[:1] == ["ready"], db.with_name("app.err").read_text()
        self.pid = int(ready[1])
        assert self.pid == self.proc.pid

    def read(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline().strip()

    def ask(self, command: str) -> str:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.read()

    def stop(self) -> None:
        try:
            if self.proc.poll() is None:
                os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        finally:
            for stream in (self.proc.stdin, self.proc.stdout):
                if stream is not None:
                    stream.close()
            self.err.close()


@pytest.fixture
def app(tmp_path: Path) -> Iterator[App]:
    running = App(tmp_path / "me.db")
    try:
        yield running
    finally:
        running.stop()


def export_items(db: Path) -> list[str]:
    out = vane("client", "export", "--store", str(db))
    assert out.returncode == 0, out.stderr
    return [e["item_id"] for e in json.loads(out.stdout)["events"]]


@pytest.mark.timeout(180)
def test_cli_forget_is_refused_while_the_app_owns_the_store_and_nothing_comes_back(tmp_path: Path, app: App) -> None:
    db = tmp_path / "me.db"
    refused = vane("client", "forget", "--store", str(db), "--item", "doomed", "--json")
    assert refused.returncode == 1 and refused.stdout == ""
    assert json.loads(refused.stderr) == {
        "error": f"store {str(db)!r} is in use by PID {app.pid}; close it there (or ask that app to do this) "
                 "and retry", "type": "StoreInUseError"}
    plain = vane("client", "forget", "--store", str(db), "--item", "doomed")
    assert plain.returncode == 1 and f"is in use by PID {app.pid}" in plain.stderr
    assert app.ask("record") == "4"  # the app goes on, and nothing was half-done to its store
    assert app.ask("close") == "closed"
    app.proc.wait(timeout=30)
    assert not (tmp_path / "me.db.lock").exists()

    forgot = vane("client", "forget", "--store", str(db), "--item", "doomed", "--json")
    assert forgot.returncode == 0, forgot.stderr
    assert json.loads(forgot.stdout) == {"removed": 1}
    again = App(db)  # the app opens again: the forgotten item does not come back from its saved state
    try:
        assert again.ask("count") == "3 3"
        assert again.ask("close") == "closed"
    finally:
        again.stop()
    assert "doomed" not in export_items(db)


@pytest.mark.timeout(180)
@pytest.mark.skipif(not DEMO.exists(), reason="browser-history fixtures not present")
def test_cli_import_is_refused_while_the_app_runs_then_counted_by_the_app(tmp_path: Path, app: App) -> None:
    db = tmp_path / "me.db"
    refused = vane("client", "import-history", str(DEMO), "--store", str(db), "--json")
    assert refused.returncode == 1 and json.loads(refused.stderr)["type"] == "StoreInUseError"
    assert f"PID {app.pid}" in json.loads(refused.stderr)["error"]
    assert app.ask("count") == "3 3"
    assert app.ask("close") == "closed"
    app.proc.wait(timeout=30)
    imported = vane("client", "import-history", str(DEMO), "--store", str(db), "--json")
    assert imported.returncode == 0, imported.stderr
    n = json.loads(imported.stdout)["imported"]
    assert n == 67
    again = App(db)
    try:
        assert again.ask("count") == f"{3 + n} {3 + n}"  # the profile sees every stored event
        again.ask("close")
    finally:
        again.stop()


def test_a_second_open_in_the_same_process_is_refused_with_its_pid(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    with EventStore.open(db, key=b"k" * 32) as store:
        store.append(Event.create("a", ["news"], datetime(2024, 1, 1, tzinfo=UTC)))
        with pytest.raises(StoreInUseError, match=rf"store '.*s\.db' is in use by PID {os.getpid()}; close it"):
            EventStore.open(db, key=b"k" * 32)
        with pytest.raises(StoreInUseError, match=f"PID {os.getpid()}"):
            InterestTracker.open(db, key=b"k" * 32)
        assert store.count() == 1  # the refused opens changed nothing
    with EventStore.open(db, key=b"k" * 32) as store:
        assert store.count() == 1


@pytest.mark.timeout(60)
def test_a_killed_owner_leaves_no_lock_behind(tmp_path: Path) -> None:
    db = tmp_path / "me.db"
    app = App(db)
    try:
        os.kill(app.pid, signal.SIGKILL)
        app.proc.wait(timeout=10)
    finally:
        app.stop()
    assert (tmp_path / "me.db.lock").exists()  # the stale file stays, but the kernel dropped the lock
    with InterestTracker.open(db, key_file=str(db) + ".key") as tracker:
        assert tracker.store.count() == 3
