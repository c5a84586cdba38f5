"""Run ``vane client serve`` for a test: a real uvicorn process on 127.0.0.1 and a free port, stopped by its PID.

:func:`running` starts it with ``--port 0 --json`` (the kernel picks a free port; the server prints the
URL once it owns the store), yields a :class:`Served` with an ``httpx`` client carrying the token, and
stops it with SIGTERM (SIGKILL after 15 s), so no test leaves a server behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

VANE = str(Path(sys.executable).with_name("vane"))
START_TIMEOUT_S = 60.0


@dataclass
class Served:
    proc: subprocess.Popen[bytes]
    url: str
    token: str
    info: dict[str, object]
    client: httpx.Client

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        """Stop the server with ``sig``; its exit code (SIGKILL after ``timeout``)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode


def _read_announcement(proc: subprocess.Popen[bytes]) -> dict[str, object]:
    """The JSON object the server prints once it listens (raw reads: select never waits on a buffered line)."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    deadline = time.monotonic() + START_TIMEOUT_S
    data = b""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            data += chunk
            if b"\n}" in data:
                return json.loads(data[: data.index(b"\n}") + 2])
        elif proc.poll() is not None:
            break
    err = proc.stderr.read() if proc.stderr is not None and proc.poll() is not None else b""
    raise RuntimeError(f"vane client serve did not start: {data!r} {err!r}")


@contextlib.contextmanager
def running(store: Path, *args: str) -> Iterator[Served]:
    """``vane client serve --store STORE --port 0 --json ARGS`` until the block ends."""
    proc = subprocess.Popen([VANE, "client", "serve", "--store", str(store), "--port", "0", "--json", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    served = None
    try:
        info = _read_announcement(proc)
        token = Path(str(info["token_file"])).read_text().strip()
        client = httpx.Client(base_url=str(info["url"]), headers={"Authorization": f"Bearer {token}"}, timeout=30)
        served = Served(proc, str(info["url"]), token, info, client)
        yield served
    finally:
        if served is not None:
            served.client.close()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
