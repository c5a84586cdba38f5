"""The files beside a served store, and the loopback rule.

- ``STORE.token``: a random 32-byte url-safe token, mode 0600, created on the first ``vane client serve``
  or ``vane client token``. A token file that is a symbolic link, not a regular file, readable or
  writable by others, or not a token is refused with a :class:`~vane.shared.errors.KeyFileError`
  naming the path and the fix; it is never followed, rewritten or "repaired".
- ``STORE.server.json``: ``{"pid", "host", "port", "url"}`` of the running server, written (0600,
  atomically) once it owns the store and removed when it stops, so that another command refused with
  "in use by PID N" can say where the API is (:func:`server_hint`).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import secrets
import stat
from pathlib import Path
from typing import Any

from vane.shared.errors import ConfigError, KeyFileError, StoreInUseError

__all__ = [
    "SERVER_SUFFIX",
    "TOKEN_SUFFIX",
    "check_bind",
    "ensure_token",
    "is_loopback",
    "read_token",
    "remove_server_info",
    "server_hint",
    "server_info",
    "server_info_path",
    "token_path",
    "with_server_hint",
    "write_server_info",
]

TOKEN_SUFFIX = ".token"
SERVER_SUFFIX = ".server.json"
_TOKEN = re.compile(r"\A[A-Za-z0-9_-]{32,128}\Z")
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def token_path(store: str | os.PathLike[str]) -> Path:
    """The token file of ``store``: ``STORE.token``."""
    path = Path(store)
    return path.with_name(path.name + TOKEN_SUFFIX)


def server_info_path(store: str | os.PathLike[str]) -> Path:
    """The running server's sidecar of ``store``: ``STORE.server.json``."""
    path = Path(store)
    return path.with_name(path.name + SERVER_SUFFIX)


def read_token(path: Path) -> str:
    """The token kept in ``path``; :class:`KeyFileError` unless it is a private regular file holding one."""
    shown = str(path)
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        raise KeyFileError(f"token file {shown!r} does not exist; create it with `vane client token --store ...`") \
            from None
    except OSError as exc:
        if path.is_symlink():
            raise KeyFileError(f"token file {shown!r} is a symbolic link; refusing to follow it (remove the link, "
                               "a new token file is then created)") from None
        raise KeyFileError(f"token file {shown!r} cannot be read: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise KeyFileError(f"token file {shown!r} is not a regular file")
        if st.st_mode & 0o077:
            raise KeyFileError(f"token file {shown!r} has mode {stat.S_IMODE(st.st_mode):04o}; it must be readable "
                               f"by you only: chmod 600 {shown} (or delete it for a new token)")
        raw = os.read(fd, 512)
    finally:
        os.close(fd)
    text = raw.decode("ascii", errors="replace").strip()
    if not _TOKEN.match(text):
        raise KeyFileError(f"token file {shown!r} does not hold a token (32-128 url-safe characters); delete it "
                           "for a new one")
    return text


def ensure_token(store: str | os.PathLike[str]) -> tuple[str, Path, bool]:
    """``(token, its file, created)``: the token of ``store``, created (0600, never over anything) if missing."""
    path = token_path(store)
    if not os.path.lexists(path):
        if not path.parent.is_dir():
            raise KeyFileError(f"cannot create the token file {str(path)!r}: its directory does not exist")
        token = secrets.token_urlsafe(32)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | os.O_CLOEXEC, 0o600)
        except FileExistsError:
            return read_token(path), path, False  # another process created it first
        except OSError as exc:
            raise KeyFileError(f"cannot create the token file {str(path)!r}: {exc.strerror}") from None
        try:
            os.fchmod(fd, 0o600)  # whatever the umask
            os.write(fd, (token + "\n").encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        return token, path, True
    return read_token(path), path, False


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address) means this machine only: ``localhost``, 127.0.0.0/8, ``::1``."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_bind(host: str, unsafe_bind: bool) -> None:
    """:class:`ConfigError` unless ``host`` is a loopback address or ``unsafe_bind`` was given."""
    if not is_loopback(host) and not unsafe_bind:
        raise ConfigError(f"--host {host!r} is not a loopback address (127.0.0.1, ::1 or localhost): the API would "
                          "be reachable from other machines. Bind to 127.0.0.1, or pass --unsafe-bind if you really "
                          "mean it")


def write_server_info(store: str | os.PathLike[str], host: str, port: int, url: str) -> Path:
    """Write ``STORE.server.json`` (0600, atomically) for the server running in this process."""
    path = server_info_path(store)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    data = json.dumps({"pid": os.getpid(), "host": host, "port": port, "url": url}).encode()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return path


def remove_server_info(store: str | os.PathLike[str]) -> None:
    """Remove ``STORE.server.json`` if it names this process."""
    info = server_info(store)
    if info is not None and info.get("pid") == os.getpid():
        with contextlib.suppress(OSError):
            os.unlink(server_info_path(store))


def server_info(store: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The sidecar's content, None when absent, unreadable or malformed (it is only a hint)."""
    path = server_info_path(store)
    try:
        if path.is_symlink():
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def server_hint(store: str | os.PathLike[str], pid: int | None) -> str | None:
    """"a Vane server is running at URL" when the sidecar names the process ``pid`` holding the store."""
    info = server_info(store)
    if info is None or not isinstance(info.get("url"), str) or (pid is not None and info.get("pid") != pid):
        return None
    return (f"a Vane server (vane client serve, PID {info.get('pid')}) is running at {info['url']}: use its API "
            "(POST /api/forget, /api/events, ...) or stop it (Ctrl-C) and retry")


def with_server_hint(exc: StoreInUseError, store: str | os.PathLike[str]) -> StoreInUseError:
    """``exc`` with :func:`server_hint` appended to its message when a server of this store is running."""
    hint = server_hint(store, exc.pid)
    if hint is None:
        return exc
    better = StoreInUseError(exc.path, exc.pid)
    better.args = (f"{exc}; {hint}",)
    return better
