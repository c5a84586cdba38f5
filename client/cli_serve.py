"""``vane client serve`` (the local HTTP API of one store) and ``vane client token`` (its token).

The server opens the store (so it is its single owner while it runs: another ``vane client …`` that
changes the store is refused with "in use by PID N" and the server's URL), binds loopback only unless
``--unsafe-bind``, prints the URL and where the token file is, and on Ctrl-C (or SIGTERM) stops
accepting requests, finishes the ones in flight, saves the state and closes the store.
"""

from __future__ import annotations

import contextlib
import signal
import socket
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer
from rich.console import Console
from vane.client.api import DEFAULT_PORT
from vane.client.api.tokens import (
    check_bind,
    ensure_token,
    is_loopback,
    remove_server_info,
    write_server_info,
)
from vane.client.cli_options import JsonOpt, KeyOpt, PassOpt, StoreOpt
from vane.client.cli_views import json_text, literal
from vane.shared.errors import ConfigError

out = Console()
API_HINT = "pip install 'vane[api]'"


class _StopError(Exception):
    """Raised by the signal handlers once uvicorn has shut down gracefully."""


@contextlib.contextmanager
def _stopping_on_signals() -> Iterator[None]:
    """SIGINT and SIGTERM raise :class:`_StopError` (uvicorn re-raises them after its graceful shutdown)."""
    def stop(signum: int, frame: FrameType | None) -> None:
        raise _StopError(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def own_origins(host: str, port: int) -> list[str]:
    """The origins of the server's own pages: its loopback names at ``port``, or ``host`` itself when not loopback."""
    if is_loopback(host):
        return [f"http://127.0.0.1:{port}", f"http://localhost:{port}", f"http://[::1]:{port}"]
    name = host.strip("[]")
    return [f"http://[{name}]:{port}" if ":" in name else f"http://{name}:{port}"]


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}"
                          + (" (another server uses that port? try --port)" if port else "")) from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def serve_command(
    store: StoreOpt,
    key_file: KeyOpt = None,
    passphrase_env: PassOpt = None,
    host: Annotated[str, typer.Option(help="Address to listen on; loopback only unless --unsafe-bind.")]
    = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on (0: any free port, printed).")]
    = DEFAULT_PORT,
    extension_origin: Annotated[list[str] | None, typer.Option(
        "--extension-origin", help="An origin allowed to call the API, e.g. chrome-extension://ID (repeatable; "
        "default: the shipped extension's).")] = None,
    unsafe_bind: Annotated[bool, typer.Option("--unsafe-bind", help="Allow a non-loopback --host: the API is then "
                                              "reachable from other machines (the token still guards it).")] = False,
    max_body_bytes: Annotated[int, typer.Option(min=1024, max=1 << 30, help="Largest request body accepted "
                                                "(bigger: 413).")] = 1 << 20,
    log_level: Annotated[str, typer.Option(help="uvicorn's log level: critical, error, warning, info, debug.")]
    = "warning",
    as_json: JsonOpt = False,
) -> None:
    """Serve the local HTTP API (and the dashboard) of a store, for apps in any language.

    Every /api/ request needs 'Authorization: Bearer TOKEN' (the token is in STORE.token, see
    `vane client token`); requests from browser origins other than this server's pages and the extension
    are refused. Stop with Ctrl-C.
    """
    check_bind(host, unsafe_bind)
    if log_level not in ("critical", "error", "warning", "info", "debug"):
        raise typer.BadParameter(f"{log_level!r}; expected critical, error, warning, info or debug",
                                 param_hint="--log-level")
    try:
        import uvicorn
        from vane.client.api.app import create_app
    except ImportError as exc:
        raise ConfigError(f"vane client serve needs the api extra ({exc}): {API_HINT}") from None
    from vane.client.cli import installed_version
    from vane.client.cli_client import _open

    origins = list(extension_origin or [])
    if not extension_origin:
        from vane.client.extension import EXTENSION_ORIGIN

        origins.append(EXTENSION_ORIGIN)
    sock = _bind(host, port)
    try:
        tracker = _open(store, key_file, passphrase_env, must_exist=False)
    except BaseException:
        sock.close()
        raise
    try:
        token, token_file, created = ensure_token(store)
        port = sock.getsockname()[1]
        mine = own_origins(host, port)
        url = mine[2] if is_loopback(host) and ":" in host else mine[0]
        hosts = None if not is_loopback(host) else [o.removeprefix("http://") for o in mine]
        app = create_app(tracker, token, mine + origins, max_body_bytes=max_body_bytes, hosts=hosts,
                         vane_version=installed_version())
        server = uvicorn.Server(uvicorn.Config(app, log_level=log_level, access_log=False, lifespan="off",
                                               server_header=False))
        write_server_info(store, host, port, url)
        _announce(url, token_file, created, origins, as_json)
        with contextlib.suppress(_StopError), _stopping_on_signals():
            server.run(sockets=[sock])
    finally:
        sock.close()
        remove_server_info(store)
        tracker.close()
    if not as_json:
        out.print("Stopped; the store is saved and closed.")


def _announce(url: str, token_file: Path, created: bool, origins: list[str], as_json: bool) -> None:
    if as_json:
        print(json_text({"url": url, "token_file": str(token_file), "token_created": created,
                         "extension_origins": origins}), flush=True)
        return
    out.print(f"Vane API and dashboard at {literal(url)}/  (Ctrl-C stops)")
    out.print(f"Token file: {literal(str(token_file))}" + (" (new)" if created else "")
              + "  (print it with: vane client token --store ...)")
    out.print(f"Extension origins allowed: {literal(', '.join(origins))}")
    out.file.flush()


def token_command(store: StoreOpt, as_json: JsonOpt = False) -> None:
    """Print the API token of a store (created, mode 0600, in STORE.token if there is none yet)."""
    token, path, created = ensure_token(store)
    data: dict[str, Any] = {"token": token, "token_file": str(path), "created": created}
    if as_json:
        print(json_text(data))
    else:
        print(token)
