"""The store's SQLite file: its schema, opening it in WAL mode, checking it, and one opaque error.

Layout::

    meta(name TEXT PRIMARY KEY, value BLOB)     format, store_id, kdf, salt, scrypt n/r/p, key_check, head
    events(seq INTEGER PRIMARY KEY AUTOINCREMENT, sealed BLOB)
    state(slot BLOB PRIMARY KEY, sealed BLOB)   slot = HMAC-SHA256(mac_key, name)

``head`` is the sealed head record (:mod:`vane.client.store_head`). :func:`check_store_path` refuses
a path that cannot be a store (a directory, a FIFO, a missing directory) before anything is created.

Every storage or decoding failure inside :func:`opaque` becomes the one
:class:`~vane.shared.errors.StoreIntegrityError` (a locked database is a :class:`StoreError` that
says so).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
import struct
from collections.abc import Iterator
from pathlib import Path

from cryptography.exceptions import InvalidTag
from vane.shared.errors import StoreError, StoreIntegrityError, VaneError

SCHEMA = """
CREATE TABLE meta (name TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT, sealed BLOB NOT NULL);
CREATE TABLE state (slot BLOB PRIMARY KEY, sealed BLOB NOT NULL);
"""


@contextlib.contextmanager
def opaque() -> Iterator[None]:
    """Turn every storage or decoding failure into the one opaque error."""
    try:
        yield
    except VaneError:  # already says what went wrong (EventValidationError, StoreError, ...)
        raise
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            raise StoreError("the store is locked by another process; close it there and retry") from None
        raise StoreIntegrityError() from None
    except (sqlite3.DatabaseError, InvalidTag, ValueError, KeyError, TypeError, struct.error):
        raise StoreIntegrityError() from None


def check_store_path(path: Path) -> bool:
    """Whether the store ``path`` exists; raise :class:`StoreError` for a path that cannot be a store.

    Refused, naming the path and what was expected, before anything is created: a directory, a FIFO,
    socket or device (opening a FIFO would block forever), a dangling symbolic link, and a new store
    in a directory that does not exist.
    """
    name = str(path)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        if os.path.lexists(path):
            raise StoreError(f"store path {name!r} is a dangling symbolic link; expected a store file "
                             "or a new path") from None
        parent = path.absolute().parent
        if not parent.is_dir():
            raise StoreError(f"cannot create the store {name!r}: its directory {str(parent)!r} does not exist; "
                             "expected an existing directory") from None
        return False
    except OSError as exc:
        raise StoreError(f"cannot use the store path {name!r}: {exc.strerror}; expected a store file") from None
    if stat.S_ISDIR(info.st_mode):
        raise StoreError(f"store path {name!r} is a directory; expected a store file (e.g. {name}/vane.db)")
    if not stat.S_ISREG(info.st_mode):
        raise StoreError(f"store path {name!r} is not a regular file (a FIFO, socket or device); "
                         "expected a store file")
    return True


def remove_new_store(path: Path) -> None:
    """Remove what a failed first open of ``path`` created (the file and its sidecars)."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        with contextlib.suppress(OSError):
            os.unlink(path.with_name(path.name + suffix))


def check_file_length(path: Path) -> None:
    """Refuse a main database file shorter than its header says (a truncated file)."""
    with open(path, "rb") as fh:
        header = fh.read(100)
        size = os.fstat(fh.fileno()).st_size
    if len(header) < 100 or not header.startswith(b"SQLite format 3\x00"):
        raise StoreIntegrityError()
    page_size = struct.unpack(">H", header[16:18])[0]
    page_size = 65536 if page_size == 1 else page_size
    pages = struct.unpack(">I", header[28:32])[0]
    wal = path.with_name(path.name + "-wal")
    if wal.exists() and wal.stat().st_size > 0:
        # A process killed mid-checkpoint leaves the header ahead of the file; SQLite's WAL
        # recovery completes it, and quick_check plus the key check still run after opening.
        return
    if size < page_size * pages or size % page_size:
        raise StoreIntegrityError()


def connect(path: Path, synchronous: str) -> sqlite3.Connection:
    """Open ``path`` in WAL mode with ``secure_delete`` on (deleted rows are zeroed)."""
    with opaque():
        conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=10.0)
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(f"SQLite refused WAL mode for {str(path)!r} (got {mode!r})")
            conn.execute("PRAGMA secure_delete=ON")
            conn.execute(f"PRAGMA synchronous={synchronous}")
            conn.execute("PRAGMA foreign_keys=OFF")
        except BaseException:
            conn.close()
            raise
    return conn


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back on any error."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def create_schema(conn: sqlite3.Connection, meta: dict[str, object]) -> None:
    """Create the tables and write the ``meta`` rows, in one transaction."""
    with transaction(conn):
        for statement in SCHEMA.strip().split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.executemany("INSERT INTO meta(name, value) VALUES (?, ?)", sorted(meta.items()))

