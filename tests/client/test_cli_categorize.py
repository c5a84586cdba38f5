"""``vane client categorize`` and ``vane client correct`` through the console entry point, on a real store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from vane.client.tracker import InterestTracker
from vane.shared import Event


def vane(*args: str) -> subprocess.CompletedProcess[str]:
    code = "import sys; from vane.client.cli import main; sys.argv = ['vane', *sys.argv[1:]]; main()"
    env = {**os.environ, "COLUMNS": "300", "NO_COLOR": "1"}
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120, env=env)


def test_one_title_shows_full_paths_sources_and_confidences():
    shown = vane("client", "categorize", "Lakers win again", "--url", "https://m.youtube.com/watch?v=1")
    assert shown.returncode == 0, shown.stderr
    assert "/Arts & Entertainment/TV & Video" in shown.stdout and "rule" in shown.stdout
    data = json.loads(vane("client", "categorize", "Lakers", "--url", "https://www.nba.com/x", "--json").stdout)
    assert data["source"] == "rule" and data["topics"] == [{"topic": "/Sports/Basketball", "source": "rule",
                                                            "confidence": 1.0}]
    unknown = json.loads(vane("client", "categorize", "A page about knitting", "--json").stdout)
    assert unknown["topics"] == [{"topic": "other", "source": "none", "confidence": 0.0}]


def test_batch_writes_one_result_per_line_in_order(tmp_path: Path):
    urls = ["https://www.cnn.com/a", "https://unknown.example/", "https://www.booking.com/h", None]
    lines = [json.dumps({"title": f"t{i}", "url": u}) for i, u in enumerate(urls)]
    batch = tmp_path / "in.jsonl"
    batch.write_text("\n".join(lines) + "\n")
    done = vane("client", "categorize", "--batch", str(batch), "--json")
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["title"] for r in rows] == ["t0", "t1", "t2", "t3"]
    assert [r["topics"][0]["topic"] for r in rows] == ["/News", "other", "/Travel & Transportation/Hotels & "
                                                        "Accommodations", "other"]


def test_a_bad_batch_line_is_named_and_nothing_is_printed(tmp_path: Path):
    for content, named in (('{"title": "ok"}\n[1, 2]\n', "line 2 is list JSON"),
                           ('{"title": "ok"}\n{"title": "x"}\nnot json\n', "line 3 is 'not json'"),
                           ('{"title": 5}\n', "line 1: 'title' is 5"),
                           ('{"title": "a"}\n{}\n', "line 2 has neither a 'title' nor a 'url'")):
        batch = tmp_path / "bad.jsonl"
        batch.write_text(content)
        done = vane("client", "categorize", "--batch", str(batch), "--json")
        assert done.returncode == 1 and done.stdout == ""
        assert named in json.loads(done.stderr)["error"]
    both = vane("client", "categorize", "title", "--batch", str(batch))
    assert both.returncode == 2 and "either a TITLE" in both.stderr


def test_a_correction_through_the_cli_is_kept_and_beats_the_rule(tmp_path: Path):
    store = tmp_path / "me.db"
    with InterestTracker.open(store, key_file=tmp_path / "me.db.key") as tracker:
        seq = tracker.record(Event.create("https://www.espn.com/nba/1", ["/Sports"], datetime(2025, 1, 1, tzinfo=UTC),
                                          title="Cooking with LeBron"))
    fixed = vane("client", "correct", str(seq), "/Food & Drink/Cooking & Recipes", "--store", str(store), "--json")
    assert fixed.returncode == 0, fixed.stderr
    assert json.loads(fixed.stdout)["topics"] == ["/Food & Drink/Cooking & Recipes"]
    seen = json.loads(vane("client", "categorize", "Cooking with LeBron", "--url", "https://www.espn.com/nba/1",
                           "--store", str(store), "--json").stdout)
    assert seen["source"] == "correction" and seen["topics"][0]["topic"] == "/Food & Drink/Cooking & Recipes"
    refused = vane("client", "correct", str(seq), "/Sports/Curling", "--store", str(store), "--json")
    assert refused.returncode == 1 and "/Sports/Curling" in json.loads(refused.stderr)["error"]
