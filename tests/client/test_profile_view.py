"""Issue 14, item 9: ``vane client profile`` a person understands, on real stores through the console entry point.

One score per interest with its meaning as the table caption, ``other`` never listed as an interest (the
uncategorised events are counted instead), the time span covered and the newest event's age when it is
old, a hint on an empty store, full titles with ``--because N``, and a versioned ``--json`` page.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from vane.client.tracker import InterestTracker
from vane.shared import Event, Taxonomy

OLD = datetime(2019, 9, 5, 8, tzinfo=UTC)
LONG_TITLE = "A very long headline about the travel plans of a person who reads everything to the end"


def vane(*args: str) -> subprocess.CompletedProcess[str]:
    code = "import sys; from vane.client.cli import main; sys.argv = ['vane', *sys.argv[1:]]; main()"
    env = {**os.environ, "COLUMNS": "400", "NO_COLOR": "1"}
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120, env=env)


def events(start: datetime) -> list[Event]:
    """12 sports, then 18 travel (one with a long title), with 6 uncategorised (``other``) among them."""
    out = []
    for i in range(36):
        cat = "other" if i % 6 == 5 else ("sports" if i < 12 else "travel")
        title = LONG_TITLE if i == 33 else f"{cat} page {i}"
        out.append(Event.create(item_id=f"https://{cat}.example/{i}", categories=[cat] if cat != "other" else [],
                                timestamp=start + timedelta(minutes=10 * i), title=title))
    return out


def make_store(tmp_path: Path, start: datetime, model: bytes | None = None) -> str:
    store = tmp_path / "me.db"
    taxonomy = Taxonomy(["sports", "travel", "news", "food", "music", "films", "games"]) if model else None
    with InterestTracker.open(store, key_file=tmp_path / "me.db.key", model=model, taxonomy=taxonomy) as tracker:
        tracker.record_many(events(start))
    return str(store)


def test_an_empty_store_gets_a_hint_not_empty_tables(tmp_path: Path) -> None:
    store = tmp_path / "new.db"
    InterestTracker.open(store, key_file=tmp_path / "new.db.key").close()
    shown = vane("client", "profile", "--store", str(store))
    assert shown.returncode == 0, shown.stderr
    assert "No events in" in shown.stdout and f"vane client import-history PATH --store {store}" in shown.stdout
    assert "InterestTracker.record" in shown.stdout
    assert "Your interests now" not in shown.stdout and "What comes next" not in shown.stdout
    page = json.loads(vane("client", "profile", "--store", str(store), "--json").stdout)
    assert page["format"] == 2 and page["shown"] == []
    assert page["summary"]["events_seen"] == 0 and page["summary"]["newest_event"] is None


def test_one_explained_score_no_other_the_time_span_and_the_age_of_old_data(tmp_path: Path) -> None:
    store = make_store(tmp_path, OLD)
    shown = vane("client", "profile", "--store", store)
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout
    assert "Your profile covers 36 events from 2019-09-05 to 2019-09-05." in text
    age = (time.time() - (OLD + timedelta(minutes=350)).timestamp()) / 86400
    assert f"The newest event is {age:.0f} days old" in text or f"The newest event is {age - 1:.0f} days old" in text
    # One score, and what it means, in the table; the old contradictory columns are gone.
    assert "share now" in text and "halves after 30 newer events" in text
    assert "profile share" not in text and "│ model" not in text
    rows = [line for line in text.splitlines() if line.startswith("│ ")]
    interests = [row.split("│")[1].strip() for row in rows if row.count("│") == 5]
    assert interests == ["travel", "sports"]  # ``other`` is not an interest
    assert "6 of 36 events had no category (uncategorised)" in text
    assert LONG_TITLE[:40] in text and LONG_TITLE not in text  # short by default

    page = json.loads(vane("client", "profile", "--store", store, "--json").stdout)
    assert page["format"] == 2
    assert [c["category"] for c in page["shown"]] == ["travel", "sports"]
    assert [c["events"] for c in page["shown"]] == [20, 10]
    assert page["summary"]["uncategorised_events"] == 6 and page["summary"]["events_seen"] == 36
    assert page["summary"]["first_event"] == OLD.isoformat()
    assert page["summary"]["newest_event_age_days"] > 2000
    assert "other" in [c["category"] for c in page["interests"]["top"]]  # the tracker's answer, unchanged
    assert sum(c["score"] for c in page["interests"]["top"]) <= 1.0 + 1e-9
    assert set(page) == {"format", "level", "interests", "prediction", "shifts", "shown", "summary"}
    assert page["level"] == "full"


def test_because_shows_the_newest_events_with_full_titles(tmp_path: Path) -> None:
    store = make_store(tmp_path, OLD)
    shown = vane("client", "profile", "--store", store, "--because", "4", "--top", "1")
    assert shown.returncode == 0, shown.stderr
    assert "Behind travel: the newest 4 event(s)" in shown.stdout and "Behind sports" not in shown.stdout
    assert LONG_TITLE in shown.stdout
    page = json.loads(vane("client", "profile", "--store", store, "--because", "4", "--top", "1", "--json").stdout)
    behind = page["because"]["travel"]
    assert [ev["title"] for ev in behind] == ["travel page 34", LONG_TITLE, "travel page 32", "travel page 31"]
    bad = vane("client", "profile", "--store", store, "--because", "-1")
    assert bad.returncode == 2 and "--because" in bad.stderr


def test_fresh_data_is_not_called_old_and_a_model_is_named_in_the_meaning(tmp_path: Path,
                                                                         small_training_blob: bytes) -> None:
    start = datetime.fromtimestamp(time.time(), UTC) - timedelta(hours=7)
    store = make_store(tmp_path, start, model=small_training_blob)
    shown = vane("client", "profile", "--store", store)
    assert shown.returncode == 0, shown.stderr
    assert "Your profile covers 36 events" in shown.stdout and "days old" not in shown.stdout
    assert "the model's chance that it comes next" in shown.stdout
    assert "in the next window" in shown.stdout  # the model's intensity column, absent without a model
    assert "other" not in [c["category"] for c in json.loads(
        vane("client", "profile", "--store", store, "--json").stdout)["shown"]]


def tree_store(tmp_path: Path) -> str:
    """A store on the Topics taxonomy: 60 basketball, 60 soccer, then 60 politics events, nine minutes apart."""
    store = tmp_path / "tree.db"
    cats = ["/Sports/Basketball"] * 60 + ["/Sports/Soccer"] * 60 + ["/News/Politics"] * 60
    with InterestTracker.open(store, key_file=tmp_path / "tree.db.key") as tracker:
        tracker.record_many([Event.create(item_id=f"https://example.com/{i}", categories=[cat], title=f"story {i}",
                                          timestamp=OLD + timedelta(minutes=9 * i)) for i, cat in enumerate(cats)])
    return str(store)


def test_level_top_rolls_interests_predictions_and_shifts_up_to_the_top_level_topics(tmp_path: Path) -> None:
    store = tree_store(tmp_path)
    default = json.loads(vane("client", "profile", "--store", store, "--json").stdout)
    full = json.loads(vane("client", "profile", "--store", store, "--json", "--level", "full").stdout)
    top = json.loads(vane("client", "profile", "--store", store, "--json", "--level", "top", "--because", "2").stdout)
    same = ("interests", "prediction", "shifts", "shown")
    assert default["level"] == full["level"] == "full" and {k: default[k] for k in same} == {k: full[k] for k in same}
    assert {c["category"] for c in full["shown"]} == {"/Sports/Basketball", "/Sports/Soccer", "/News/Politics"}
    first = full["shifts"][0]
    assert (first["from_categories"][0], first["to_categories"][0]) == ("/Sports/Basketball", "/Sports/Soccer")

    assert top["level"] == "top"
    shown = {c["category"]: c for c in top["shown"]}
    assert set(shown) == {"/Sports", "/News"}
    assert {name: c["events"] for name, c in shown.items()} == {"/Sports": 120, "/News": 60}
    scores = {c["category"]: c["score"] for c in full["shown"]}
    assert shown["/Sports"]["score"] == pytest.approx(scores["/Sports/Basketball"] + scores["/Sports/Soccer"])
    chances = {p["category"]: p["probability"] for p in top["prediction"]["next_interest"]}
    assert set(chances) == {"/Sports", "/News"}
    assert chances["/Sports"] == pytest.approx(sum(p["probability"] for p in full["prediction"]["next_interest"]
                                                   if p["category"].startswith("/Sports/")))
    assert [(s["from_categories"][0], s["to_categories"][0]) for s in top["shifts"]] == [("/Sports", "/News")]
    assert [ev["title"] for ev in top["because"]["/Sports"]] == ["story 119", "story 118"]
    age = pytest.approx(full["summary"]["newest_event_age_days"])
    assert top["summary"] == {**full["summary"], "newest_event_age_days": age}

    text = vane("client", "profile", "--store", store, "--level", "top")
    assert text.returncode == 0, text.stderr
    rows = [line.split("│")[1].strip() for line in text.stdout.splitlines()
            if line.startswith("│ ") and line.count("│") == 5]
    assert sorted(rows) == ["/News", "/Sports"]
    assert "/Sports/" not in text.stdout and ": /Sports, /News -> /News, /Sports (JS divergence" in text.stdout
    assert "--level" in vane("client", "profile", "--help").stdout


def test_a_bad_level_is_refused_naming_it_and_the_store_is_untouched(tmp_path: Path) -> None:
    store = tree_store(tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    for bad in ("middle", "Top", ""):
        refused = vane("client", "profile", "--store", store, "--level", bad)
        assert refused.returncode == 2, refused.stdout
        assert f"level is {bad!r}; expected 'full'" in refused.stderr and "--level" in refused.stderr
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
