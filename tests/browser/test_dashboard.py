"""The dashboard in a real Chromium against a real ``vane client serve``: what it shows equals the
tracker's answers, blocking and forgetting through the page change the store, and hostile page titles
and topic names are shown as text with no script run."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from browser_kit import make_store, screenshot, stored_events
from vane.client.tracker import InterestTracker
from vane.simulations.bench.browser import ServeProcess, call_api, free_port, token_of

pytestmark = pytest.mark.slow

HOSTILE_TITLES = (
    "<script>window.__pwned = 'script'; alert(1)</script>",
    "<img src=x onerror=\"window.__pwned = 'img'; alert(2)\">",
    "<b>bold</b> & <i>markup</i> &amp; <a href='javascript:alert(3)'>link</a>",
)
HOSTILE_TOPIC = "<img src=x onerror=\"window.__pwned = 'topic'\">"


def _events(now: float, topics: list[str], n: int, titles: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """``n`` visits over the last 20 days, interests moving from the first topics to the last ones."""
    out = []
    for i in range(n):
        phase = (i * len(topics)) // n
        topic = topics[phase] if i % 3 else topics[(phase + i) % len(topics)]
        title = titles[i % len(titles)] if titles else f"Story {i} about {topic}"
        out.append({"item_id": f"https://example.org/{i % 97}/{topic}", "categories": [topic], "kind": "view",
                    "timestamp": now - 20 * 86400 + i * (20 * 86400 / n), "title": title})
    return out


def _open_dashboard(browser: Any, port: int, token: str) -> tuple[Any, list[str]]:
    """A page on the dashboard, the token typed into its form; and the list of dialogs and page errors."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    incidents: list[str] = []
    page.on("dialog", lambda d: (incidents.append(f"dialog: {d.message}"), d.dismiss()))
    page.on("pageerror", lambda e: incidents.append(f"page error: {e}"))
    page.goto(f"http://127.0.0.1:{port}/")
    page.wait_for_selector("#token-form:not([hidden])")
    page.fill("#token", token)
    page.click("#token-save")
    page.wait_for_selector("body[data-complete='1']", timeout=30_000)
    return page, incidents


def _refreshes(page: Any) -> int:
    return int(page.get_attribute("body", "data-refreshes") or 0)


def _click_and_wait(page: Any, selector: str) -> None:
    """Click, then wait for the page's next full reload of its data (the page's CSP forbids
    wait_for_function's string evaluation, so the wait is on a selector)."""
    before = _refreshes(page)
    page.click(selector)
    page.wait_for_selector(f"body[data-refreshes='{before + 1}']", timeout=30_000)


def test_dashboard_matches_tracker_blocks_and_forgets(browser: Any, tmp_path: Path) -> None:
    topics = ["news", "sports", "tech", "travel", "finance"]
    store = make_store(tmp_path, _events(time.time(), topics, 300))
    with InterestTracker.open(store, key_file=store.with_name(store.name + ".key")) as tracker:
        expected = [(c.category, c.score) for c in tracker.interests(10).top]
    token, port = token_of(store), free_port()
    requests: list[str] = []
    with ServeProcess(store, port).start(token):
        page, incidents = _open_dashboard(browser, port, token)
        page.on("request", lambda r: requests.append(r.url))

        shown = page.eval_on_selector_all(
            "#interests > li.interest", "els => els.map(e => [e.dataset.topic, Number(e.dataset.share)])")
        assert [t for t, _ in shown] == [c for c, _ in expected]
        assert [s for _, s in shown] == pytest.approx([s for _, s in expected], rel=1e-9)
        assert page.locator("#history svg polyline.series").count() >= 3
        screenshot(page, "dashboard")

        # The token is kept: a reload goes straight to the data.
        page.reload()
        page.wait_for_selector("body[data-complete='1']")
        assert page.locator("#token-form").is_hidden()

        # Block the topic predicted first: it leaves the predictions (page and API) and shows as blocked.
        first = page.get_attribute("#predictions > li.prediction >> nth=0", "data-topic")
        assert first in topics
        _click_and_wait(page, f"#interests .block-btn[data-topic='{first}']")
        predicted = page.eval_on_selector_all("#predictions > li.prediction", "els => els.map(e => e.dataset.topic)")
        assert predicted and first not in predicted
        assert first not in [p["topic"] for p in call_api(port, token, "/api/predict?k=10")["predictions"]]
        assert page.eval_on_selector_all("#blocks li.blocked", "els => els.map(e => e.dataset.topic)") == [first]
        screenshot(page, "dashboard-blocked")
        _click_and_wait(page, f"#blocks .unblock-btn[data-topic='{first}']")
        assert page.locator("#blocks li.blocked").count() == 0

        # Forget one event behind an interest through the page.
        topic = shown[1][0]
        page.click(f"#interests .events-btn[data-topic='{topic}']")
        page.wait_for_selector("#events li.event")
        item = page.get_attribute("#events li.event >> nth=0", "data-item-id")
        _click_and_wait(page, f"#events li.event[data-item-id='{item}'] .forget-btn")
        page.wait_for_selector(f"#events li.event[data-item-id='{item}']", state="detached")
        assert incidents == []
        assert all(url.startswith(f"http://127.0.0.1:{port}/") for url in requests), requests
    remaining = stored_events(store)
    assert remaining and item not in {e.item_id for e in remaining}
    assert len(remaining) == 300 - sum(1 for e in _events(0, topics, 300) if e["item_id"] == item)


def test_hostile_titles_and_topics_are_shown_as_text(browser: Any, tmp_path: Path) -> None:
    events = _events(time.time(), [HOSTILE_TOPIC, "news"], 60, HOSTILE_TITLES)
    store = make_store(tmp_path, events)
    token, port = token_of(store), free_port()
    with ServeProcess(store, port).start(token):
        page, incidents = _open_dashboard(browser, port, token)
        names = page.eval_on_selector_all("#interests > li.interest .name", "els => els.map(e => e.textContent)")
        assert HOSTILE_TOPIC in names
        buttons = [b for b in page.locator("#interests .events-btn").all()
                   if b.get_attribute("data-topic") == HOSTILE_TOPIC]
        assert len(buttons) == 1
        buttons[0].click()
        page.wait_for_selector("#events li.event")
        titles = set(page.eval_on_selector_all("#events li.event .title", "els => els.map(e => e.textContent)"))
        assert titles == set(HOSTILE_TITLES)
        screenshot(page, "dashboard-hostile")
        page.wait_for_timeout(500)  # any onerror would have fired by now
        assert page.evaluate("window.__pwned === undefined")
        assert page.evaluate("document.querySelectorAll('img, script:not([src]), b, i, a[href]').length") == 0
        assert incidents == []


def test_topic_tree_export_and_block_with_forget(browser: Any, tmp_path: Path) -> None:
    topics = ["/Sports/Soccer", "/News/World", "/Sports/Tennis", "/News/Politics"]
    events = _events(time.time(), topics, 160)
    store = make_store(tmp_path, events)
    with InterestTracker.open(store, key_file=store.with_name(store.name + ".key")) as tracker:
        scores = {c.category: c.score for c in tracker.interests(10).top}
    token, port = token_of(store), free_port()
    with ServeProcess(store, port).start(token):
        page, incidents = _open_dashboard(browser, port, token)
        tree = page.eval_on_selector_all("#interests > li.interest", """els => els.map(e => [e.dataset.topic,
            Number(e.dataset.share), [...e.querySelectorAll('li.child')].map(c => c.dataset.topic)])""")
        assert {top: sorted(children) for top, _, children in tree} == {
            "/Sports": ["/Sports/Soccer", "/Sports/Tennis"], "/News": ["/News/Politics", "/News/World"]}
        for _, share, children in tree:
            assert share == pytest.approx(sum(scores[c] for c in children), rel=1e-9)

        with page.expect_download() as download:
            page.click("#export")
        exported = Path(download.value.path()).read_text()
        assert exported.strip().startswith("{") and "/Sports/Soccer" in exported

        # One click blocks /News and forgets every event under it.
        _click_and_wait(page, "#interests .block-forget-btn[data-topic='/News']")
        assert page.eval_on_selector_all("#blocks li.blocked", "els => els.map(e => e.dataset.topic)") == ["/News"]
        shown = page.eval_on_selector_all("#interests li.interest", "els => els.map(e => e.dataset.topic)")
        assert shown and not any(t.startswith("/News") for t in shown)
        assert call_api(port, token, "/api/events?topic=/News")["total"] == 0
        assert incidents == []
    remaining = stored_events(store)
    sports = sum(1 for e in events if e["categories"][0].startswith("/Sports/"))
    assert len(remaining) == sports and all(c.startswith("/Sports/") for e in remaining for c in e.categories)
