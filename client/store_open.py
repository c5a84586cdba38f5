"""Opening a store's file: the path checks, the owner lock, the key, and the head check or migration.

:func:`open_store_file` is what :meth:`vane.client.store.EventStore.open` runs. In order, so that a
refused open leaves nothing behind:

1. the store path and the key path are checked (:func:`~vane.client.store_file.check_store_path`,
   :func:`~vane.client.keys.check_key_path`): a directory, a FIFO or a missing directory is a clear
   :class:`~vane.shared.errors.StoreError` or :class:`~vane.shared.errors.KeyFileError`;
2. the owner lock is taken (:mod:`vane.client.store_lock`);
3. the key is read, or a new key file written for a new store;
4. an existing file is checked (length, ``quick_check``, the key check) and its head record verified
   against every row (:func:`~vane.client.store_head.verify_head`); a store written before the head
   gets one now (:func:`migrate`). A new file gets its schema and an empty head.

If any step fails for a store that did not exist, the key file this open created and the new store
file are removed again.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vane.client.keys import check_key_path, key_from_file, validate_scrypt
from vane.client.sealing import Sealer, new_store_meta, sealer_from_meta
from vane.client.store_file import (
    check_file_length,
    check_store_path,
    connect,
    create_schema,
    opaque,
    remove_new_store,
    transaction,
)
from vane.client.store_head import Head, scan_head, verify_head, write_head
from vane.client.store_lock import StoreLock
from vane.shared.errors import StoreIntegrityError

__all__ = ["OpenedFile", "migrate", "open_store_file"]

OpenedFile = tuple[sqlite3.Connection, bytes, Sealer, StoreLock, Head]


def open_store_file(db_path: Path, key_file: str | os.PathLike[str] | None, passphrase: str | bytes | None,
                    key: bytes | None, random: Callable[[int], bytes], scrypt_params: tuple[int, int, int],
                    synchronous: str, check_file: bool) -> OpenedFile:
    """``(connection, store id, sealer, lock, head)`` of the store at ``db_path`` (see the module docstring)."""
    if passphrase is not None:
        validate_scrypt(scrypt_params)
    exists = check_store_path(db_path)
    if key_file is not None:
        check_key_path(key_file, create=not exists)
    lock = StoreLock.acquire(db_path)
    created_key = key_file is not None and not exists and not os.path.lexists(key_file)
    try:
        master = key if key_file is None else key_from_file(key_file, random, create=not exists)
        if exists:
            check_file_length(db_path)
        conn = connect(db_path, synchronous)
        try:
            with opaque():
                if exists:
                    store_id, sealer, head = _open_existing(conn, master, passphrase, random, check_file)
                else:
                    meta, store_id, sealer = new_store_meta(master, passphrase, random, scrypt_params)
                    create_schema(conn, meta)
                    head = Head()
                    with transaction(conn):
                        write_head(conn, sealer, head)
        except BaseException:
            conn.close()
            raise
    except BaseException:
        if not exists:
            remove_new_store(db_path)
            if created_key and key_file is not None:
                with contextlib.suppress(OSError):
                    os.unlink(key_file)
        lock.release()
        raise
    return conn, store_id, sealer, lock, head


def _open_existing(conn: sqlite3.Connection, master: bytes | None, passphrase: str | bytes | None,
                   random: Callable[[int], bytes], check_file: bool) -> tuple[bytes, Sealer, Head]:
    if check_file and conn.execute("PRAGMA quick_check").fetchall() != [("ok",)]:
        raise StoreIntegrityError()
    meta: dict[str, Any] = dict(conn.execute("SELECT name, value FROM meta").fetchall())
    store_id, sealer, has_head = sealer_from_meta(meta, master, passphrase, random)
    if has_head:
        return store_id, sealer, verify_head(conn, sealer)
    if "head" in meta:
        raise StoreIntegrityError()
    return store_id, sealer, migrate(conn, sealer)


def migrate(conn: sqlite3.Connection, sealer: Sealer) -> Head:
    """Give a store written before the head record one, in one transaction.

    Every state blob is re-sealed in the versioned format, the head is computed from the rows as they
    are, and the key check is rewritten to say the store has a head (so the head can never silently
    go missing later). Damage done before the migration is not detectable by it.
    """
    with transaction(conn):
        rows = conn.execute("SELECT slot, sealed FROM state").fetchall()
        for version, (slot, sealed) in enumerate(rows, start=1):
            name, blob = sealer.open_legacy_state(slot, sealed)
            conn.execute("UPDATE state SET sealed = ? WHERE slot = ?",
                         (sealer.seal_state(name, blob, version)[1], slot))
        row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
        top = conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0]
        head = scan_head(conn, sealer, max(row[0] if row else 0, top))
        if conn.execute("SELECT count(*) FROM events WHERE seq < 1").fetchone()[0]:
            raise StoreIntegrityError()
        write_head(conn, sealer, head)
        conn.execute("UPDATE meta SET value = ? WHERE name = 'key_check'", (sealer.key_check(head=True),))
    return head
