"""The local HTTP API (``vane client serve``): every endpoint over a real uvicorn server on 127.0.0.1,
checked against the tracker's own answers once the server has stopped and released the store."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from api_server import running
from vane.client.tracker import InterestTracker
from vane.shared import Event, EventValidationError, Taxonomy

T0 = datetime(2024, 3, 1, 8, tzinfo=UTC)
NAMES = ["sports", "news", "food", "travel", "music", "films", "games"]


def visits(n: int, seed: int = 0, start: int = 0) -> list[dict[str, object]]:
    rng = np.random.default_rng(seed)
    out: list[dict[str, object]] = []
    for i in range(start, start + n):
        cat = "sports" if rng.random() < 0.6 else NAMES[int(rng.integers(1, len(NAMES)))]
        out.append({"item_id": f"{cat}-{i}", "categories": [cat], "kind": "view", "title": f"{cat} story {i}",
                    "timestamp": (T0 + timedelta(minutes=11 * i)).isoformat()})
    return out


def make_store(tmp_path: Path, blob: bytes | None = None, events: int = 0, name: str = "s.db") -> Path:
    store = tmp_path / name
    with InterestTracker.open(store, key_file=tmp_path / (name + ".key"), model=blob,
                              taxonomy=Taxonomy(NAMES) if blob else None) as tracker:
        tracker.record_many(visits(events))
    return store


def reopen(store: Path) -> InterestTracker:
    return InterestTracker.open(store, key_file=store.with_name(store.name + ".key"))


def test_record_one_and_a_batch_and_the_answers_are_the_trackers(tmp_path: Path, small_training_blob: bytes) -> None:
    store = make_store(tmp_path, small_training_blob, events=40)
    batch = visits(30, seed=1, start=40)
    with running(store) as api:
        one = api.client.post("/api/events", json=visits(1, seed=2, start=70)[0])
        assert one.status_code == 200 and one.json() == {"recorded": 1, "duplicates": 0}
        again = api.client.post("/api/events", json=visits(1, seed=2, start=70)[0])
        assert again.json() == {"recorded": 0, "duplicates": 1}
        many = api.client.post("/api/events", json={"events": batch + [batch[-1]]})
        assert many.status_code == 200 and many.json() == {"recorded": 30, "duplicates": 1}
        assert api.client.get("/api/health").json() == {"ok": True, "events": 71, "version": api.client.get(
            "/api/versions").json()["vane"]}
        interests = api.client.get("/api/interests", params={"k": 4}).json()
        prediction = api.client.get("/api/predict", params={"k": 3}).json()
        shifts = api.client.get("/api/shifts").json()
        exported = api.client.get("/api/export").json()
        versions = api.client.get("/api/versions").json()
        recommended = api.client.post("/api/recommend", json={"candidates": [
            {"item_id": "x", "categories": ["food"]}, {"item_id": "y", "categories": ["sports"], "title": "t"}],
            "k": 2}).json()
        behind = api.client.get("/api/events", params={"topic": "sports", "limit": 5}).json()
        history = api.client.get("/api/interests/history", params={"buckets": 4}).json()
        assert api.stop() == 0
    with reopen(store) as tracker:
        want = tracker.interests(4)
        assert [(i["topic"], i["share"]) for i in interests["interests"]] == \
            [(c.category, pytest.approx(c.score)) for c in want.top]
        assert [e["seq"] for e in interests["interests"][0]["events"]] == [b.seq for b in want.top[0].because]
        want_prediction = tracker.predict(3)
        assert [(p["topic"], p["probability"]) for p in prediction["predictions"]] == \
            [(c, pytest.approx(p)) for c, p in want_prediction.next_interest]
        assert all(p["reasons"] and all(isinstance(r, str) for r in p["reasons"]) for p in prediction["predictions"])
        assert prediction["intensity"] == pytest.approx(dict(want_prediction.intensity)) and prediction["intensity"]
        assert shifts == {"shifts": [s.to_dict() for s in tracker.shifts()], "level": "full"}
        assert len(exported["events"]) == 71 and exported["events"] == tracker.export()["events"]
        assert versions["model"] == {"version": tracker.model_version, "taxonomy": Taxonomy(NAMES).version}
        assert versions["encoder"] is None
        assert [r["item_id"] for r in recommended["recommendations"]] == \
            [r.item_id for r in tracker.recommend([{"item_id": "x", "categories": ["food"]},
                                                   {"item_id": "y", "categories": ["sports"]}], k=2)]
        sports = sorted(((ev.unix_time, seq) for seq, ev in tracker.store.events() if "sports" in ev.categories),
                        reverse=True)
        assert [e["seq"] for e in behind["events"]] == [seq for _, seq in sports[:5]]
        assert behind["total"] == len(sports) and behind["events"][0]["title"].startswith("sports story")
    assert len(history["buckets"]) == 4
    assert sum(b["events"] for b in history["buckets"]) == pytest.approx(71)
    assert all(sum(b["shares"].values()) == pytest.approx(1.0) for b in history["buckets"] if b["shares"])


def test_a_visit_without_categories_gets_the_url_rules_topics(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    with running(store) as api:
        sent = api.client.post("/api/events", json={"item_id": "https://www.bbc.com/sport/football/1",
                                                    "timestamp": T0.timestamp(), "kind": "link",
                                                    "title": "<script>alert(1)</script>", "transition": "link"})
        assert sent.status_code == 200, sent.text
        topics = api.client.post("/api/categorize", json={"title": "t", "url": "https://www.bbc.com/sport/x"}).json()
        assert topics == {"topics": [{"topic": "/Sports", "source": "rule", "confidence": 1.0},
                                     {"topic": "/News", "source": "rule", "confidence": 1.0}]}
        unknown = api.client.post("/api/categorize", json={"title": "a page"}).json()  # light mode: no encoder
        assert unknown == {"topics": [{"topic": "other", "source": "none", "confidence": 0.0}]}
        assert api.client.post("/api/categorize", json={}).status_code == 400
        assert api.client.post("/api/categorize", json={"url": 5}).status_code == 400
        top = api.client.get("/api/interests", params={"level": "top"}).json()
        assert {i["topic"] for i in top["interests"]} == {"/Sports", "/News"}
    with reopen(store) as tracker:
        (_, event), = tracker.store.events()
        assert event.categories == ("/Sports", "/News") and event.title == "<script>alert(1)</script>"
        assert event.kind == "link"
    coarse = make_store(tmp_path, name="coarse.db", blob=None)
    with InterestTracker.open(coarse, key_file=tmp_path / "coarse.db.key", taxonomy=Taxonomy(NAMES)):
        pass
    with running(coarse) as api:  # a store that speaks the coarse browsing vocabulary keeps its URL rules
        answer = api.client.post("/api/categorize", json={"url": "https://www.bbc.com/sport/x"}).json()
        assert answer["topics"][0] == {"topic": "sports", "source": "rule", "confidence": 1.0}
        api.client.post("/api/events", json={"item_id": "https://www.bbc.com/news/1", "timestamp": T0.timestamp(),
                                             "kind": "view"})
        assert api.client.get("/api/events").json()["events"][0]["categories"] == ["news"]


def test_bad_input_gets_400_with_the_python_apis_message_and_stores_nothing(tmp_path: Path) -> None:
    store = make_store(tmp_path, events=5)
    bad = {"item_id": "a", "timestamp": T0.isoformat(), "kind": "jump"}
    with pytest.raises(EventValidationError) as raised:
        Event.from_dict(bad)
    with running(store) as api:
        one = api.client.post("/api/events", json=bad)
        assert one.status_code == 400
        assert one.json() == {"error": {"type": "EventValidationError", "message": str(raised.value)}}
        batch = api.client.post("/api/events", json={"events": visits(2, start=10) + [bad]})
        assert batch.status_code == 400 and batch.json()["error"]["message"] == str(raised.value)
        assert batch.json()["error"]["index"] == 2
        broken = api.client.post("/api/events", content=b'{"item_id": "a",',
                                 headers={"content-type": "application/json"})
        assert broken.status_code == 400
        assert broken.json()["error"]["message"].startswith("the request body is not valid JSON: Expecting")
        assert api.client.post("/api/events", content=b"").json()["error"]["message"].startswith(
            "the request body is empty")
        k = api.client.get("/api/interests", params={"k": "many"})
        assert k.status_code == 400 and k.json()["error"]["message"].startswith("k is 'many'")
        assert api.client.get("/api/interests", params={"level": "middle"}).status_code == 400
        forget = api.client.post("/api/forget", json={"before": "yesterday"})
        assert forget.status_code == 400 and "before is 'yesterday'" in forget.json()["error"]["message"]
        assert api.client.post("/api/forget", json={"item_id": "a", "topic": "b"}).status_code == 400
        assert api.client.post("/api/recommend", json={"candidates": "x"}).status_code == 400
        assert api.client.post("/api/blocks", json={"topic": ""}).json()["error"]["type"] == "ConfigError"
        missing = api.client.get("/api/nowhere")
        assert missing.status_code == 404 and missing.json()["error"]["type"] == "NotFoundError"
        assert api.client.get("/api/health").json()["events"] == 5


def test_forget_by_item_time_range_topic_and_everything(tmp_path: Path) -> None:
    store = make_store(tmp_path, events=60)
    with reopen(store) as tracker:
        events = [ev for _, ev in tracker.store.events()]
    first = events[0].item_id
    cut = T0 + timedelta(minutes=11 * 10)
    low, high = T0 + timedelta(minutes=11 * 20), T0 + timedelta(minutes=11 * 30)
    with running(store) as api:
        def forget(body: dict[str, object]) -> int:
            answer = api.client.post("/api/forget", json=body)
            assert answer.status_code == 200, answer.text
            return int(answer.json()["forgotten"])

        assert forget({"item_id": first}) == 1
        assert forget({"before": cut.timestamp()}) == 9
        assert forget({"after": low.isoformat(), "before": high.isoformat()}) == 10
        left = [ev for ev in events[10:] if not low <= ev.timestamp < high]
        food = sum(1 for ev in left if "food" in ev.categories)
        assert food and forget({"topic": "food"}) == food
        assert api.client.get("/api/events", params={"topic": "food"}).json()["events"] == []
        assert forget({"everything": True}) == len(left) - food
        assert api.client.get("/api/health").json()["events"] == 0
    with reopen(store) as tracker:
        assert tracker.store.count() == 0


def test_blocks_over_http(tmp_path: Path) -> None:
    store = make_store(tmp_path, events=50)
    with running(store) as api:
        assert api.client.get("/api/predict", params={"k": 1}).json()["predictions"][0]["topic"] == "sports"
        added = api.client.post("/api/blocks", json={"topic": "sports"})
        assert added.json() == {"blocked": ["sports"], "added": True}
        assert api.client.get("/api/blocks").json() == {"blocked": ["sports"]}
        topics = [p["topic"] for p in api.client.get("/api/predict", params={"k": 10}).json()["predictions"]]
        assert topics and "sports" not in topics
        assert "sports" not in [i["topic"] for i in api.client.get("/api/interests").json()["interests"]]
        recs = api.client.post("/api/recommend", json={"candidates": [{"item_id": "s", "categories": ["sports"]}]})
        assert recs.json() == {"recommendations": []}
        path_topic = api.client.post("/api/blocks", json={"topic": "/Sports/Ball"})
        assert path_topic.status_code == 200
        assert api.client.delete("/api/blocks/%2FSports%2FBall").json() == {"blocked": ["sports"]}
        gone = api.client.delete("/api/blocks/news")
        assert gone.status_code == 404 and gone.json()["error"]["message"] == "topic 'news' is not blocked"
        assert api.client.delete("/api/blocks/sports").json() == {"blocked": []}
        api.client.post("/api/blocks", json={"topic": "games"})
    with reopen(store) as tracker:
        assert tracker.blocked() == {"games"}


def test_openapi_schema_and_the_dashboard_files(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    with running(store) as api:
        schema = api.client.get("/api/openapi.json").json()
        for path in ("/api/health", "/api/events", "/api/interests", "/api/interests/history", "/api/predict",
                     "/api/shifts", "/api/recommend", "/api/forget", "/api/export", "/api/categorize",
                     "/api/blocks", "/api/blocks/{topic}", "/api/versions"):
            assert path in schema["paths"], path
        plain = httpx.get(api.url + "/")  # no token: the page holds no data
        dashboard = Path(__file__).resolve().parents[2] / "client" / "dashboard" / "index.html"
        if dashboard.exists():
            assert plain.status_code == 200 and plain.text == dashboard.read_text()
            assert plain.headers["content-type"].startswith("text/html")
        else:
            assert plain.status_code == 404 and plain.json()["error"]["type"] == "NotFoundError"
        escape = httpx.get(api.url + "/static/%2E%2E/%2E%2E/client/tracker.py")
        assert escape.status_code == 404
        assert httpx.get(api.url + "/static/nothing.js").status_code == 404


@pytest.mark.slow
def test_with_an_encoder_a_titled_visit_no_rule_knows_gets_the_categorisers_topics(tmp_path: Path,
                                                                                   encoder_blob: bytes) -> None:
    store = tmp_path / "words.db"
    with InterestTracker.open(store, key_file=tmp_path / "words.db.key", encoder=encoder_blob) as tracker:
        version = tracker.store.encoder_version
    with running(store) as api:
        assert api.client.get("/api/versions").json()["encoder"] == {"version": version}
        page = {"title": "Lakers beat the Celtics in overtime", "url": "http://127.0.0.1:9/p/1"}
        topics = api.client.post("/api/categorize", json=page).json()["topics"]
        assert topics and topics[0]["source"] in ("model", "prior") and topics[0]["topic"].startswith("/")
        sent = api.client.post("/api/events", json={"item_id": page["url"], "title": page["title"], "kind": "view",
                                                    "timestamp": T0.timestamp()})
        assert sent.json() == {"recorded": 1, "duplicates": 0}
        stored = api.client.get("/api/events").json()["events"][0]
        assert stored["categories"] == [t["topic"] for t in topics]


def tree_store(tmp_path: Path) -> Path:
    """A store on the Topics taxonomy: 60 basketball, 60 soccer, then 60 politics events, nine minutes apart."""
    store = tmp_path / "tree.db"
    plan = [("/Sports/Basketball", 60), ("/Sports/Soccer", 60), ("/News/Politics", 60)]
    cats = [cat for cat, n in plan for _ in range(n)]
    with InterestTracker.open(store, key_file=tmp_path / "tree.db.key") as tracker:
        tracker.record_many([{"item_id": f"t-{i}", "categories": [cat], "kind": "view", "title": f"story {i}",
                              "timestamp": (T0 + timedelta(minutes=9 * i)).isoformat()} for i, cat in enumerate(cats)])
    return store


def test_predict_and_shifts_at_the_top_level_roll_up_the_topics_tree(tmp_path: Path) -> None:
    store = tree_store(tmp_path)
    with running(store) as api:
        def get(path: str, **params: str | int) -> dict[str, Any]:
            answer = api.client.get(path, params=params)
            assert answer.status_code == 200, answer.text
            return dict(answer.json())

        top, full, default = (get("/api/predict", k=10, level="top"), get("/api/predict", k=10, level="full"),
                              get("/api/predict", k=10))
        top_shifts, full_shifts, default_shifts = (get("/api/shifts", level="top"), get("/api/shifts", level="full"),
                                                   get("/api/shifts"))
        schema = get("/api/openapi.json")
        assert api.stop() == 0
    with reopen(store) as tracker:
        want_full, want_top = tracker.predict(10), tracker.predict(10, level="top")
        parts = tracker.predictor.components(tracker.personal_state, tracker.model_state.interest)
        assert {s.to_dict()["from_categories"][0] for s in tracker.shifts()} >= {"/Sports/Basketball"}
        want_shifts = json.loads(json.dumps({"full": [s.to_dict() for s in tracker.shifts()],
                                             "top": [s.to_dict() for s in tracker.shifts(level="top")]}))
    # Full: today's answers, unchanged, and the default.
    assert full == {**default, "level": "full"} and default["level"] == "full"
    assert [(p["topic"], p["probability"]) for p in full["predictions"]] == \
        [(c, pytest.approx(p)) for c, p in want_full.next_interest]
    assert {p["topic"] for p in full["predictions"]} == {"/Sports/Basketball", "/Sports/Soccer", "/News/Politics"}
    assert full_shifts == default_shifts == {"shifts": want_shifts["full"], "level": "full"}
    assert ("/Sports/Basketball", "/Sports/Soccer") in [(s["from_categories"][0], s["to_categories"][0])
                                                        for s in full_shifts["shifts"]]
    # Top: only top-level topics, each the sum of the topics under it, with reasons summed the same way.
    assert top["level"] == "top" and top["source"] == full["source"] == "profile"
    chances = {p["topic"]: p["probability"] for p in top["predictions"]}
    assert set(chances) == {"/Sports", "/News"}
    assert chances == pytest.approx(dict(want_top.next_interest))
    assert chances["/Sports"] == pytest.approx(sum(p["probability"] for p in full["predictions"]
                                                   if p["topic"].startswith("/Sports/")))
    assert sum(chances.values()) == pytest.approx(sum(p["probability"] for p in full["predictions"]))
    shares = parts[2]  # the person's interests over time
    sports = next(p for p in top["predictions"] if p["topic"] == "/Sports")
    assert f"{sum(v for c, v in shares.items() if c.startswith('/Sports/')):.0%} of your interests over time" \
        in sports["reasons"]
    assert all(p["reasons"] and all(isinstance(r, str) for r in p["reasons"]) for p in top["predictions"])
    # A change inside /Sports is no top-level shift; sports to news is.
    assert top_shifts == {"shifts": want_shifts["top"], "level": "top"}
    assert [(s["from_categories"][0], s["to_categories"][0]) for s in top_shifts["shifts"]] == [("/Sports", "/News")]
    for path in ("/api/predict", "/api/shifts"):
        level = next(p for p in schema["paths"][path]["get"]["parameters"] if p["name"] == "level")
        assert level["in"] == "query" and level["schema"]["default"] == "full" and "top" in level["description"]


def test_a_bad_level_is_refused_naming_it_and_changes_nothing(tmp_path: Path) -> None:
    store = tree_store(tmp_path)
    with running(store) as api:
        before = (api.client.get("/api/predict").json(), api.client.get("/api/shifts").json())
        for path in ("/api/predict", "/api/shifts", "/api/interests"):
            for bad in ("middle", "Top", ""):
                answer = api.client.get(path, params={"level": bad})
                assert answer.status_code == 400, (path, bad, answer.text)
                error = answer.json()["error"]
                assert error["type"] == "RequestError" and error["message"].startswith(f"level is {bad!r};")
                assert "top|full" in error["message"]
        assert (api.client.get("/api/predict").json(), api.client.get("/api/shifts").json()) == before
        assert api.client.get("/api/health").json()["events"] == 180
