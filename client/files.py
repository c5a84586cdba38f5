"""Writing files the person asked for (exports) without ever destroying the store or its key.

:func:`write_export` is the one way the client writes a file to a path that came from a person or
an app. It refuses, with a :class:`~vane.shared.errors.ConfigError` naming the path:

- the store itself, its SQLite sidecars (``-wal``, ``-shm``, ``-journal``) and lock file
  (``.lock``), the API's token and server files (``.token``, ``.server.json``), and its key file
  (by default ``STORE.key``), however the path is spelled: paths are
  compared after resolving symbolic links and ``..``/``.``, and an existing destination is also
  compared by device and inode, so a hard link to the key is refused too;
- any existing file that holds a SQLite database or a Vane key file, whatever its name (a key file
  kept elsewhere under another name is still the only copy of the key);
- a destination that is a symbolic link (it is never followed), a directory or another non-regular
  file, and a destination whose parent directory does not exist.

The data goes to a temporary file in the destination's directory (mode 0600), is flushed and
fsynced, and then renamed over the destination, so a reader sees the old file or the new one, never
a half-written one, and a replaced file ends up 0600 too.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import tempfile
from collections.abc import Iterable
from pathlib import Path

from vane.shared.errors import ConfigError

#: Files that belong to a store ``S``: ``S`` itself and ``S`` + each of these.
STORE_SUFFIXES: tuple[str, ...] = ("", "-wal", "-shm", "-journal", ".lock", ".key", ".token", ".server.json")

_SQLITE_MAGIC = b"SQLite format 3\x00"
_KEY_FILE = re.compile(rb"\A[0-9a-fA-F]{64}\s*\Z")


def store_files(store_path: str | os.PathLike[str], key_file: str | os.PathLike[str] | None = None) -> list[Path]:
    """The paths an export must never replace: the store, its sidecars, its lock and its key file(s)."""
    store = Path(store_path)
    paths = [store.with_name(store.name + suffix) for suffix in STORE_SUFFIXES]
    if key_file is not None:
        paths.append(Path(key_file))
    return paths


def _canonical(path: Path) -> Path:
    """``path`` with its directory resolved (links, ``.``, ``..``) and, if it is a link, the link too."""
    try:
        return path.resolve(strict=False)
    except (OSError, RuntimeError):
        return path.absolute()


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _looks_precious(path: Path) -> bool:
    """An existing file holding a SQLite database or a Vane key file."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(256)
    except OSError:
        return False
    return head.startswith(_SQLITE_MAGIC) or _KEY_FILE.match(head) is not None


def check_destination(path: Path, protected: Iterable[Path]) -> None:
    """Raise :class:`ConfigError` unless writing ``path`` is safe (see the module docstring)."""
    shown = str(path)
    if path.is_symlink():
        raise ConfigError(f"output path {shown!r} is a symbolic link; refusing to follow it, give a plain file path")
    parent = path.absolute().parent
    if not parent.is_dir():
        raise ConfigError(f"output directory {str(parent)!r} does not exist; create it first or pick another path")
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise ConfigError(f"cannot use output path {shown!r}: {exc.strerror or exc}") from None
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"output path {shown!r} is a directory; expected a file path such as {shown}/export.json")
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"output path {shown!r} is not a regular file; refusing to write to it")
    target = _canonical(path)
    identity = None if st is None else (st.st_dev, st.st_ino)
    for other in protected:
        if target == _canonical(other) or (identity is not None and identity == _identity(other)):
            raise ConfigError(f"output path {shown!r} is the store's own file {str(other)!r}; "
                              "refusing to overwrite it, pick another path")
    if st is not None and _looks_precious(path):
        raise ConfigError(f"output path {shown!r} holds a SQLite database or a Vane key file; "
                          "refusing to overwrite it, pick another path")


def write_atomic_private(path: Path, data: bytes) -> None:
    """Write ``data`` to a 0600 temporary file beside ``path``, fsync it and rename it over ``path``."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.absolute().parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):
        dir_fd = os.open(path.absolute().parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def write_export(path: str | os.PathLike[str], data: bytes, store_path: str | os.PathLike[str],
                 key_file: str | os.PathLike[str] | None = None) -> Path:
    """Write an export of the store at ``store_path`` to ``path``, safely (see the module docstring).

    Parameters
    ----------
    path : path-like
        Where the person asked the export to go.
    data : bytes
        The file's contents.
    store_path : path-like
        The store being exported; it, its sidecars and its default key file are protected.
    key_file : path-like, optional
        The store's key file when it is not the default ``STORE.key``.

    Returns
    -------
    Path
        The path written.

    Raises
    ------
    ConfigError
        The path is unsafe or unusable; nothing was written and the store and key are untouched.
    """
    target = Path(os.fspath(path))
    check_destination(target, store_files(store_path, key_file))
    try:
        write_atomic_private(target, data)
    except OSError as exc:
        raise ConfigError(f"cannot write {str(target)!r}: {exc.strerror or exc}") from None
    return target
