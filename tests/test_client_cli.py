"""``vane client …`` commands on a real store, through the console entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "browser-history-fixtures"
DEMO = FIXTURES / "pyspark-plaso" / "chrome_History_demo-2019-09"


def vane(*args: str) -> subprocess.CompletedProcess[str]:
    code = "import sys; from vane.client.cli import main; sys.argv = ['vane', *sys.argv[1:]]; main()"
    env = {**os.environ, "COLUMNS": "300", "NO_COLOR": "1"}
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120, env=env)


@pytest.mark.skipif(not DEMO.exists(), reason="browser-history fixtures not present")
def test_import_profile_export_forget_round_trip(tmp_path: Path) -> None:
    store = str(tmp_path / "me.db")
    first = vane("client", "import-history", str(DEMO), "--store", store, "--json")
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout)
    assert summary["imported"] == 67 and summary["skipped"]["redirect"] == 20
    again = json.loads(vane("client", "import-history", str(DEMO), "--store", store, "--json").stdout)
    assert again["imported"] == 0
    profile = json.loads(vane("client", "profile", "--store", store, "--json").stdout)
    assert profile["interests"]["events_seen"] == 67 and profile["prediction"]["source"] == "profile"
    exported = json.loads(vane("client", "export", "--store", store).stdout)
    assert len(exported["events"]) == 67
    forgot = json.loads(vane("client", "forget", "--store", store, "--everything", "--json").stdout)
    assert forgot["removed"] == 67
    assert json.loads(vane("client", "export", "--store", store).stdout)["events"] == []


def test_bad_arguments_get_clear_errors(tmp_path: Path) -> None:
    missing = vane("client", "profile", "--store", str(tmp_path / "nope.db"))
    assert missing.returncode != 0 and "does not exist" in missing.stderr
    nothing = vane("client", "forget", "--store", str(tmp_path / "nope.db"))
    assert nothing.returncode != 0 and "say what to forget" in nothing.stderr
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"not a database at all" * 100)
    (tmp_path / "bad.db.key").write_text("00" * 32 + "\n")
    (tmp_path / "bad.db.key").chmod(0o600)
    corrupt = vane("client", "profile", "--store", str(bad))
    # A runtime error (exit 1, usage errors are 2), in one line without a traceback.
    assert corrupt.returncode == 1 and "could not be authenticated" in corrupt.stderr
    assert corrupt.stderr.count("\n") == 1 and "Traceback" not in corrupt.stderr
