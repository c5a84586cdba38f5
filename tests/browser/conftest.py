"""Fixtures of the real-browser tests: Debian's Chromium through Playwright (never a downloaded browser).

A test here is skipped, with the reason printed, only when Chromium or Playwright cannot be had
(``make test`` installs chromium and chromium-driver when they are missing).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from vane.simulations.bench.browser import LAUNCH_ARGS, extension_args, find_chromium


@pytest.fixture(scope="session")
def chromium() -> Path:
    path, why = find_chromium()
    if path is None:
        print(f"SKIP real-browser tests: {why}")
        pytest.skip(why)
    return path


@pytest.fixture(scope="session")
def playwright(chromium: Path) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        yield p


@pytest.fixture
def browser(playwright: Any, chromium: Path) -> Iterator[Any]:
    """A headless Chromium (no extension), closed after the test."""
    b = playwright.chromium.launch(executable_path=str(chromium), headless=True, args=list(LAUNCH_ARGS))
    try:
        yield b
    finally:
        b.close()


@pytest.fixture
def with_extension(playwright: Any, chromium: Path) -> Iterator[Any]:
    """``open(extension_dir)`` → a persistent Chromium context with that unpacked extension, closed after."""
    contexts: list[Any] = []

    def open_context(extension_dir: Path) -> Any:
        profile = tempfile.mkdtemp(prefix="vane-chromium-")
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path=str(chromium), headless=False, args=extension_args(extension_dir),
            ignore_default_args=["--disable-extensions"], viewport={"width": 1100, "height": 800})
        contexts.append(context)
        return context

    yield open_context
    for context in contexts:
        context.close()
