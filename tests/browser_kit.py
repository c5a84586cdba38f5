"""Helpers of the real-browser tests (tests/browser/): web pages to visit, stores, screenshots.

The browser and the server come from :mod:`vane.simulations.bench.browser` (shared with
``vane sim bench dashboard``): Debian's Chromium driven by Playwright, ``vane client serve`` in a
subprocess stopped by its PID.
"""

from __future__ import annotations

import html
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from vane.client.tracker import InterestTracker

SCREENSHOTS = Path(__file__).resolve().parent.parent / ".pytest_cache" / "vane-screenshots"


@contextmanager
def page_server(titles: Mapping[str, str]) -> Iterator[str]:
    """An HTTP server on 127.0.0.1 serving one HTML page per path of ``titles`` (its title escaped as
    HTML, so the browser's ``document.title`` is the text itself); yields ``http://127.0.0.1:PORT``."""

    class Pages(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            title = titles.get(self.path.split("?", 1)[0])
            if title is None:
                self.send_error(404)
                return
            body = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
                    f"</head><body><h1>{html.escape(title)}</h1></body></html>").encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Pages)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def make_store(folder: Path, events: list[dict[str, Any]]) -> Path:
    """A new store (key file ``STORE.key``, the CLI's default) holding ``events``; closed again."""
    store = folder / "vane.store"
    with InterestTracker.open(store, key_file=folder / "vane.store.key") as tracker:
        if events:
            tracker.record_many(events)
    return store


def stored_events(store: Path) -> list[Any]:
    """Every event of a store that no server holds open, in sequence order."""
    with InterestTracker.open(store, key_file=store.with_name(store.name + ".key")) as tracker:
        return [event for _, event in tracker.store.events()]


def wait_for(check: Callable[[], Any], timeout: float, what: str, every: float = 0.5) -> Any:
    """``check()``'s first truthy answer within ``timeout`` seconds, else AssertionError naming ``what``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last answer: {last!r})")


def screenshot(page: Any, name: str) -> Path:
    """A full-page screenshot under .pytest_cache/vane-screenshots/ (printed, kept as a test artefact)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    return path
