"""``vane client …`` commands on a real store, through the console entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "browser-history-fixtures"
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


# --- hostile page strings are shown literally in every view ---------------------------------

HOSTILE_TITLES = [
    "[/bold] closing tag",
    "[link=https://evil.example/]click me[/link]",
    "\x1b]8;;https://evil.example/\x07osc link\x1b]8;;\x07",
    "\x1b[2J\x1b[Hcleared \x07bell \x9b31m",
    "\u202egnp.exe\x08\x7f",
]
HOSTILE_CATEGORIES = ["[bold]news", "\x1b[31mred", "rtl\u202e", "[link=https://evil.example/]x", "plain"]
#: Bytes no view may emit: ESC, BEL, backspace, DEL, the C1 CSI, and a bidi override.
FORBIDDEN = ["\x1b", "\x07", "\x08", "\x7f", "\x9b", "\u202e"]


def assert_terminal_safe(text: str) -> None:
    for char in FORBIDDEN:
        assert char not in text, f"{char!r} reached the terminal"


def hostile_store(tmp_path: Path) -> Path:
    from vane.client.tracker import InterestTracker

    store = tmp_path / "me.db"
    with InterestTracker.open(store, key_file=tmp_path / "me.db.key") as tracker:
        for i, (title, cat) in enumerate(zip(HOSTILE_TITLES, HOSTILE_CATEGORIES, strict=True)):
            tracker.record({"item_id": f"id-{i}-\x1b[2J", "categories": [cat], "kind": "view", "title": title,
                            "timestamp": f"2025-01-01T00:0{i}:00Z"})
    return store


def test_hostile_titles_are_shown_literally_in_profile_tables_and_json(tmp_path: Path) -> None:
    from vane.client.cli_views import literal

    store = str(hostile_store(tmp_path))
    table = vane("client", "profile", "--store", store)
    assert table.returncode == 0, table.stderr
    assert_terminal_safe(table.stdout)
    for title in HOSTILE_TITLES:
        assert literal(title[:40]) in table.stdout
    for cat in HOSTILE_CATEGORIES:
        assert literal(cat) in table.stdout
    as_json = vane("client", "profile", "--store", store, "--json")
    assert as_json.returncode == 0, as_json.stderr
    assert_terminal_safe(as_json.stdout)
    shown = json.loads(as_json.stdout)
    assert {c["category"] for c in shown["interests"]["top"]} == set(HOSTILE_CATEGORIES)


def test_hostile_strings_are_literal_in_export_forget_and_import_views(tmp_path: Path) -> None:
    from history_files import chrome_history
    from vane.client.cli_views import literal

    store = str(hostile_store(tmp_path))
    exported = vane("client", "export", "--store", store)
    assert exported.returncode == 0 and "\x1b" not in exported.stdout
    assert [e["title"] for e in json.loads(exported.stdout)["events"]] == HOSTILE_TITLES  # exact, once parsed
    out = tmp_path / "out\x1b[2J[bold].json"
    summary = vane("client", "export", "--store", store, "--out", str(out))
    assert summary.returncode == 0, summary.stderr
    assert_terminal_safe(summary.stdout)
    assert literal(str(out)) in summary.stdout
    forgot = vane("client", "forget", "--store", store, "--item", "id-0-\x1b[2J")
    assert forgot.returncode == 0 and "Forgot 1 event(s)." in forgot.stdout
    assert_terminal_safe(forgot.stdout)
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({"hosts": {"[link=https://evil.example/]cat\x1b[2J": ["evil.example"]}}))
    history = chrome_history(tmp_path / "History[bold]\x1b]0;title\x07",
                             [{"url": "https://evil.example/a", "title": HOSTILE_TITLES[2]}])
    imported = vane("client", "import-history", str(history), "--store", store, "--rules", str(rules))
    assert imported.returncode == 0, imported.stderr
    assert_terminal_safe(imported.stdout)
    assert literal(history.name) in imported.stdout
    assert literal("[link=https://evil.example/]cat\x1b[2J (1)") in imported.stdout
