"""The unpacked extension in a real Chromium: visits to pages on 127.0.0.1 reach ``vane client serve``
with their titles and topics, excluded sites never do, the popup shows the top interests, and while
the server is down the visits wait in the extension's queue and arrive, in order, once it is up."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from browser_kit import make_store, page_server, screenshot, wait_for
from vane.client.extension import EXTENSION_ID, write_extension
from vane.shared.events import KINDS
from vane.simulations.bench.browser import ServeProcess, call_api, free_port, token_of

pytestmark = pytest.mark.slow

# Each page: its title, and words one of its topics must hold (the coarse rules say "sports", the
# Topics taxonomy "/Sports"; "tech" or "/Computers & Electronics").
PAGES = {
    "/sport/match-report": ("Match report: United 2-1 City", ("sport",)),
    "/tech/laptop-review": ("A new laptop, reviewed", ("tech", "comput")),
    "/travel/lisbon": ("Three days in Lisbon", ("travel",)),
    "/news/world-today": ("<script>alert('news')</script><img src=x onerror=alert(1)> The world today", ("news",)),
}
EXCLUDED = {"/culture/opera-night": "Opera night (an excluded site)"}


def _extension_page(context: Any, name: str) -> Any:
    page = context.new_page()
    page.goto(f"chrome-extension://{EXTENSION_ID}/{name}")
    return page


def _configure(context: Any, token: str, excluded: str = "") -> None:
    """Set the token (and excluded sites) through the options page, as a person would."""
    page = _extension_page(context, "options.html")
    page.wait_for_selector("#port")
    page.fill("#token", token)
    page.fill("#excluded", excluded)
    page.click("#save")
    page.wait_for_selector("#saved:text('Saved.')")
    # the background worker reads the settings from storage: browse only once they are there
    wait_for(lambda: page.evaluate("chrome.storage.local.get('token').then(r => r.token)") == token, 10,
             "the saved token in the extension's storage")
    page.close()


def _worker(context: Any) -> Any:
    """The extension's service worker, once it runs."""
    worker = context.service_workers[0] if context.service_workers else context.wait_for_event("serviceworker")
    assert worker.url == f"chrome-extension://{EXTENSION_ID}/background.js"
    return worker


def _browse(page: Any, urls: list[str]) -> None:
    """Visit ``urls`` one after another at a person's pace (each page loaded, then a short pause)."""
    for url in urls:
        page.goto(url)
        page.wait_for_load_state("load")
        time.sleep(0.5)


def _stored(port: int, token: str) -> dict[str, dict[str, Any]]:
    return {e["item_id"]: e for e in call_api(port, token, "/api/events?limit=1000")["events"]}


def _arrived(port: int, token: str, urls: list[str]) -> dict[str, dict[str, Any]] | None:
    stored = _stored(port, token)
    return stored if set(urls) <= set(stored) else None


def _storage(context: Any) -> dict[str, Any]:
    page = _extension_page(context, "options.html")
    try:
        state: dict[str, Any] = page.evaluate("chrome.storage.local.get(['queue', 'delivery'])")
        return state
    finally:
        page.close()


def _queue(context: Any) -> list[dict[str, Any]]:
    page = _extension_page(context, "options.html")
    try:
        queue: list[dict[str, Any]] = page.evaluate("chrome.storage.local.get('queue').then(r => r.queue || [])")
        return queue
    finally:
        page.close()


def test_extension_sends_visits_with_titles_and_topics(with_extension: Any, tmp_path: Path) -> None:
    store = make_store(tmp_path, [])
    token, port = token_of(store), free_port()
    extension = write_extension(tmp_path / "extension", port=port)
    with ServeProcess(store, port).start(token), page_server({**{p: t for p, (t, _) in PAGES.items()},
                                                              **EXCLUDED}) as site:
        context = with_extension(extension)
        _worker(context)
        _configure(context, token, excluded="localhost\n")

        page = context.new_page()
        excluded_url = site.replace("127.0.0.1", "localhost") + next(iter(EXCLUDED))
        urls = [site + path for path in PAGES]
        _browse(page, [excluded_url, *urls])

        try:
            stored = wait_for(lambda: _arrived(port, token, urls), 60, "the visits in the store")
        except AssertionError as exc:  # say what the extension holds
            raise AssertionError(f"{exc}; stored {sorted(_stored(port, token))}; extension storage "
                                 f"{_storage(context)}") from None
        for path, (title, words) in PAGES.items():
            event = stored[site + path]
            assert event["title"] == title
            # the topics the server's categoriser gives the URL, and meaningful ones
            topics = [t["topic"] for t in call_api(port, token, "/api/categorize", {"url": site + path})["topics"]]
            assert event["categories"] == topics
            assert any(w in c.lower() for c in topics for w in words), (path, topics)
            assert event["kind"] in KINDS
        assert excluded_url not in stored and len(stored) == len(PAGES)

        popup = _extension_page(context, "popup.html")
        popup.wait_for_selector("#interests li")
        shown = popup.eval_on_selector_all("#interests li", "els => els.map(e => e.dataset.topic)")
        assert shown == [i["topic"] for i in call_api(port, token, "/api/interests?k=5")["interests"]]
        screenshot(popup, "extension-popup")


def test_extension_queues_while_server_is_down(with_extension: Any, tmp_path: Path) -> None:
    store = make_store(tmp_path, [])
    token, port = token_of(store), free_port()  # nothing listens on the port yet
    extension = write_extension(tmp_path / "extension", port=port)
    paths = list(PAGES)[:3]
    with page_server({p: PAGES[p][0] for p in paths}) as site:
        context = with_extension(extension)
        _worker(context)
        _configure(context, token)
        page = context.new_page()
        urls = [site + path for path in paths]
        _browse(page, urls)
        queued = wait_for(lambda: (lambda q: q if len(q) == 3 else None)(_queue(context)), 30, "three queued visits")
        assert [e["item_id"] for e in queued] == urls

        popup = _extension_page(context, "popup.html")
        popup.wait_for_selector("#message:has-text('server not running')")
        assert "3 visit(s) waiting" in (popup.text_content("#queue") or "")
        screenshot(popup, "extension-popup-server-down")
        popup.close()

        # Start the server: the retry alarm (30 s, then 60 s, ...) sends the queue, oldest first.
        with ServeProcess(store, port).start(token):
            stored = wait_for(lambda: _arrived(port, token, urls), 150, "the queued visits to arrive")
            assert [e["item_id"] for e in sorted(stored.values(), key=lambda e: e["seq"])] == urls
            assert [stored[u]["title"] for u in urls] == [PAGES[p][0] for p in paths]
            wait_for(lambda: _queue(context) == [], 30, "the queue to empty")
