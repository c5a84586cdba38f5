"""A real browser and a real ``vane client serve``, for the dashboard benchmark and the browser tests.

- :func:`find_chromium`: Debian's ``/usr/bin/chromium`` (``apt-get install chromium chromium-driver``),
  driven by Playwright with ``executable_path`` (Playwright never downloads a browser here);
- :data:`LAUNCH_ARGS`: flags that work headless in a container (no sandbox, no GPU, no background
  traffic); :func:`extension_args` adds an unpacked extension (extensions need a persistent context);
- :class:`ServeProcess`: ``vane client serve`` in a subprocess on a free loopback port, waited for
  until ``/api/health`` answers, stopped by its PID;
- :func:`call_api`: one JSON request with the store's token.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS: tuple[str, ...] = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
)
_CLI = "from vane.client.cli import main; main()"


def find_chromium() -> tuple[Path | None, str]:
    """The Chromium binary and ``""``, or None and why it cannot be used."""
    path = CHROMIUM if CHROMIUM.exists() else None
    if path is None:
        found = shutil.which("chromium")
        path = Path(found) if found else None
    if path is None:
        return None, "chromium is not installed (apt-get install -y chromium chromium-driver; make test does it)"
    try:
        import playwright  # noqa: F401
    except ImportError:
        return None, "playwright is not installed (pip install -c constraints.txt -e '.[dev]')"
    return path, ""


def extension_args(extension_dir: Path) -> list[str]:
    """Launch flags that load one unpacked extension (with ``ignore_default_args=["--disable-extensions"]``)."""
    return [*LAUNCH_ARGS, f"--disable-extensions-except={extension_dir}", f"--load-extension={extension_dir}"]


def free_port() -> int:
    """A loopback TCP port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def token_of(store: Path) -> str:
    """The store's API token (``vane client token --store S``, which creates it on first use)."""
    done = subprocess.run([sys.executable, "-c", _CLI, "client", "token", "--store", str(store)],
                          capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"vane client token failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout.strip().splitlines()[-1].strip()


def call_api(port: int, token: str, path: str, body: Any = None, method: str | None = None,
             timeout: float = 30.0) -> Any:
    """``path`` on ``127.0.0.1:port`` with the Bearer token; the JSON answer (HTTPError on 4xx/5xx)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method or (
        "GET" if body is None else "POST"), headers={"Authorization": f"Bearer {token}",
                                                      "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


class ServeProcess:
    """``vane client serve --store STORE --port PORT`` in a subprocess; :meth:`stop` ends it by PID."""

    def __init__(self, store: Path, port: int, key_file: Path | None = None, extra: tuple[str, ...] = ()) -> None:
        self.store, self.port = store, port
        self.args = [sys.executable, "-c", _CLI, "client", "serve", "--store", str(store), "--port", str(port),
                     *(["--key-file", str(key_file)] if key_file is not None else []), *extra]
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = store.with_name(store.name + f".serve-{port}.log")

    def start(self, token: str, timeout: float = 60.0) -> ServeProcess:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"vane client serve exited with {self.proc.returncode}: "
                                   f"{self.log.read_text(errors='replace')[-2000:]}")
            try:
                call_api(self.port, token, "/api/health", timeout=2.0)
                return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"vane client serve did not answer on port {self.port} within {timeout:.0f} s")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)

    def __enter__(self) -> ServeProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
