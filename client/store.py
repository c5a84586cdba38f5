"""The encrypted on-device event store: :class:`EventStore`.

One SQLite file in WAL mode (:mod:`vane.client.store_file`) holds a person's events and the
client's state blobs. Every payload is sealed with AES-256-GCM bound to this store, to its record
kind and to its sequence number or state slot (:mod:`vane.client.sealing`), under a master key from
a key file, a passphrase or the caller (:mod:`vane.client.keys`). Only sequence numbers and opaque
slot ids are stored in the clear.

Every authentication failure -- wrong key, a flipped byte, a moved row, a
truncated or corrupt file -- raises one :class:`StoreIntegrityError` with one
fixed message, and never returns partial data.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from vane.client.keys import (
    DEFAULT_SCRYPT_PARAMS,
    RandomBytes,
    check_one_source,
    key_from_file,
    read_key_file,
    write_key_file,
)
from vane.client.retention import beyond_retention, check_retention, forgotten, to_unix
from vane.client.sealing import FORMAT, Sealer, new_store_meta, sealer_from_meta
from vane.client.store_file import check_file_length, connect, create_schema, opaque, transaction, write_private
from vane.shared.errors import StoreError, StoreIntegrityError
from vane.shared.events import Event

__all__ = ["DEFAULT_SCRYPT_PARAMS", "EventStore", "read_key_file", "write_key_file"]

logger = logging.getLogger("vane.client")

Clock = Callable[[], float]


class EventStore:
    """An encrypted, append-only log of :class:`Event` plus a few state blobs.

    Build one with :meth:`open`. All methods are thread-safe.
    """

    def __init__(self, conn: sqlite3.Connection, path: Path, store_id: bytes, sealer: Sealer,
                 clock: Clock, random: RandomBytes, scrypt_params: tuple[int, int, int]) -> None:
        self._conn: sqlite3.Connection | None = conn
        self._path = path
        self._store_id = store_id
        self._sealer = sealer
        self._clock = clock
        self._random = random
        self._scrypt_params = scrypt_params
        self._lock = threading.RLock()

    # ---- opening

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        key_file: str | os.PathLike[str] | None = None,
        passphrase: str | bytes | None = None,
        key: bytes | None = None,
        clock: Clock = time.time,
        random: RandomBytes = os.urandom,
        scrypt_params: tuple[int, int, int] = DEFAULT_SCRYPT_PARAMS,
        synchronous: str = "NORMAL",
        check_file: bool = True,
    ) -> EventStore:
        """Open the store at ``path``, creating it if the file does not exist.

        Parameters
        ----------
        path : path-like
            The SQLite file; ``-wal`` and ``-shm`` files sit beside it.
        key_file : path-like, optional
            A key file (see the module docstring). Created with mode 0600 when
            neither it nor the store exists yet.
        passphrase : str or bytes, optional
            Derive the key with scrypt; the salt and cost live in the store.
        key : bytes, optional
            The 32-byte key itself.
        clock : callable, default time.time
            Unix seconds; used by retention and export.
        random : callable, default os.urandom
            ``random(n) -> n bytes`` for nonces, salts, store ids and new keys.
        scrypt_params : (n, r, p), default (2**15, 8, 1)
            scrypt cost for a new passphrase store (an existing store keeps its own).
        synchronous : {"NORMAL", "FULL"}, default "NORMAL"
            SQLite sync level. With WAL, NORMAL makes every commit survive a
            crashed or killed process (append ~0.07 ms) but an OS crash or power
            loss may undo the last commits; FULL also fsyncs each commit, which
            survives power loss and costs one fsync (~4 ms here) per append.
        check_file : bool, default True
            Run SQLite's ``quick_check`` over an existing file at open, so a
            corrupt page anywhere fails now rather than on a later read
            (about 0.7 s per million events).

        Raises
        ------
        StoreIntegrityError
            Wrong key, or a damaged, truncated or foreign file.
        KeyFileError
            The key file is unsafe, malformed, or missing for an existing store.
        ValueError
            Not exactly one key source, or a bad argument.
        """
        check_one_source(key_file, passphrase, key)
        if synchronous.upper() not in ("FULL", "NORMAL"):
            raise ValueError(f"synchronous must be 'FULL' or 'NORMAL', got {synchronous!r}")
        db_path = Path(path)
        exists = db_path.exists()
        master = key
        if key_file is not None:
            master = key_from_file(key_file, random, create=not exists)
        if exists:
            check_file_length(db_path)
        conn = connect(db_path, synchronous.upper())
        try:
            with opaque():
                if exists:
                    if check_file and conn.execute("PRAGMA quick_check").fetchall() != [("ok",)]:
                        raise StoreIntegrityError()
                    meta = dict(conn.execute("SELECT name, value FROM meta").fetchall())
                    store_id, sealer = sealer_from_meta(meta, master, passphrase, random)
                else:
                    meta, store_id, sealer = new_store_meta(master, passphrase, random, scrypt_params)
                    create_schema(conn, meta)
        except BaseException:
            conn.close()
            raise
        return cls(conn, db_path, store_id, sealer, clock, random, scrypt_params)

    # ---- plumbing

    @property
    def path(self) -> Path:
        """The SQLite file."""
        return self._path

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"the store {str(self._path)!r} is closed; open it again with EventStore.open")
        return self._conn

    def _read_events(self, since_seq: int = 0, limit: int | None = None) -> list[tuple[int, Event]]:
        # Fetch every row first and decrypt all of them: any failure raises before anything is returned.
        with opaque():
            rows = self._db().execute(
                "SELECT seq, sealed FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
                (since_seq, -1 if limit is None else limit),
            ).fetchall()
            return [(seq, self._sealer.open_event(seq, sealed)) for seq, sealed in rows]

    def _read_states(self) -> dict[str, bytes]:
        with opaque():
            out: dict[str, bytes] = {}
            for slot, sealed in self._db().execute("SELECT slot, sealed FROM state").fetchall():
                name, blob = self._sealer.open_state(slot, sealed)
                out[name] = blob
            return out

    @staticmethod
    def _check_event(event: object, where: str) -> Event:
        if not isinstance(event, Event):
            raise TypeError(
                f"{where} expects a vane.shared.events.Event, got {type(event).__name__}; "
                "build one with Event.create(...) or Event.from_dict(...)"
            )
        return event

    def _next_seq(self, conn: sqlite3.Connection) -> int:
        # sqlite_sequence remembers the highest seq ever used, so a forgotten seq is never reused.
        row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
        return (row[0] if row else 0) + 1

    def _delete(self, seqs: list[int]) -> int:
        if not seqs:
            return 0
        with self._lock, opaque():
            with transaction(self._db()) as conn:
                conn.executemany("DELETE FROM events WHERE seq = ?", [(s,) for s in seqs])
            self._scrub_wal()
        return len(seqs)

    def _scrub_wal(self) -> None:
        busy, _, _ = self._db().execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if busy:
            logger.warning("WAL checkpoint of %s was blocked by a reader; deleted rows may linger", self._path)

    # ---- events

    def append(self, event: Event) -> int:
        """Store one event durably and return its sequence number."""
        event = self._check_event(event, "append()")
        with self._lock, opaque():
            with transaction(self._db()) as conn:
                seq = self._next_seq(conn)
                sealed = self._sealer.seal_event(seq, event)
                conn.execute("INSERT INTO events(seq, sealed) VALUES (?, ?)", (seq, sealed))
        return seq

    def append_many(self, events: Iterable[Event]) -> list[int]:
        """Store several events in one transaction: all of them or, on any error, none."""
        batch = [self._check_event(e, f"append_many() item {i}") for i, e in enumerate(events)]
        if not batch:
            return []
        with self._lock, opaque():
            with transaction(self._db()) as conn:
                first = self._next_seq(conn)
                seqs = list(range(first, first + len(batch)))
                conn.executemany(
                    "INSERT INTO events(seq, sealed) VALUES (?, ?)",
                    [(seq, self._sealer.seal_event(seq, e)) for seq, e in zip(seqs, batch, strict=True)],
                )
        return seqs

    def events(self, since_seq: int = 0, limit: int | None = None) -> list[tuple[int, Event]]:
        """Events with ``seq > since_seq`` in order, at most ``limit`` of them, as ``(seq, event)``."""
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
            raise ValueError(f"limit must be None or an int >= 0, got {limit!r}")
        with self._lock:
            return self._read_events(since_seq, limit)

    def count(self) -> int:
        """How many events are stored."""
        with self._lock, opaque():
            return int(self._db().execute("SELECT count(*) FROM events").fetchone()[0])

    def last_seq(self) -> int:
        """The highest stored sequence number, 0 when empty."""
        with self._lock, opaque():
            return int(self._db().execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0])

    # ---- state blobs

    def put_state(self, name: str, blob: bytes) -> None:
        """Store (or replace) the state blob called ``name``, e.g. ``"lstm_state"``."""
        if not isinstance(name, str) or not name or len(name.encode("utf-8")) > 1024:
            raise ValueError(f"state name must be a non-empty str of at most 1024 bytes, got {name!r}")
        if not isinstance(blob, (bytes, bytearray, memoryview)):
            raise TypeError(f"state blob must be bytes, got {type(blob).__name__}")
        with self._lock, opaque():
            slot, sealed = self._sealer.seal_state(name, bytes(blob))
            with transaction(self._db()) as conn:
                conn.execute("INSERT OR REPLACE INTO state(slot, sealed) VALUES (?, ?)", (slot, sealed))

    def get_state(self, name: str) -> bytes | None:
        """The state blob called ``name``, or None if there is none."""
        with self._lock, opaque():
            slot = self._sealer.slot(name)
            row = self._db().execute("SELECT sealed FROM state WHERE slot = ?", (slot,)).fetchone()
            if row is None:
                return None
            _, blob = self._sealer.open_state(slot, row[0])
            return blob

    def delete_state(self, name: str) -> bool:
        """Delete the state blob called ``name`` for good; True if there was one."""
        with self._lock, opaque():
            with transaction(self._db()) as conn:
                gone = conn.execute("DELETE FROM state WHERE slot = ?", (self._sealer.slot(name),)).rowcount
            self._scrub_wal()
        return bool(gone)

    # ---- forgetting and retention

    def forget(self, item_id: str | None = None, before: datetime | float | None = None,
               everything: bool = False) -> int:
        """Delete events for good and return how many went.

        Parameters
        ----------
        item_id : str, optional
            Delete every event of this item.
        before : datetime or float, optional
            Delete every event whose timestamp is earlier (aware datetime or Unix seconds).
        everything : bool, default False
            Delete every event.

        Criteria combine with OR. Deleted rows are zeroed (``secure_delete``) and the
        WAL is checkpointed and truncated so they leave no copy on disk. State blobs
        are left to their owner, who rebuilds them (see :meth:`delete_state`).
        """
        if item_id is None and before is None and not everything:
            raise ValueError("forget() needs item_id=, before= or everything=True; refusing to guess")
        cutoff = None if before is None else to_unix(before, "before")
        with self._lock:
            if everything:
                with opaque():
                    with transaction(self._db()) as conn:
                        gone = conn.execute("DELETE FROM events").rowcount
                    self._scrub_wal()
                return int(gone)
            return self._delete(forgotten(self._read_events(), item_id, cutoff))

    def apply_retention(self, max_age_days: float | None = None, max_events: int | None = None,
                        now: datetime | float | None = None) -> int:
        """Delete events older than ``max_age_days`` and all but the newest ``max_events``.

        ``now`` defaults to the store's clock. Returns how many events were deleted.
        """
        check_retention(max_age_days, max_events)
        current = self._clock() if now is None else to_unix(now, "now")
        with self._lock:
            return self._delete(beyond_retention(self._read_events(), max_age_days, max_events, current))

    # ---- export

    def export(self, path: str | os.PathLike[str] | None = None, include_states: bool = False) -> dict[str, Any]:
        """The person's own data, decrypted, as a JSON-ready dict; also written to ``path`` (mode 0600).

        ``states`` maps each state blob's name to its size in bytes, or, with
        ``include_states=True``, to its contents in base64.
        """
        with self._lock:
            stored, states = self._read_events(), self._read_states()
        data: dict[str, Any] = {
            "format": FORMAT.decode("ascii"),
            "store_id": self._store_id.hex(),
            "exported_at": datetime.fromtimestamp(self._clock(), tz=UTC).isoformat(),
            "count": len(stored),
            "events": [{"seq": seq, **e.to_dict()} for seq, e in stored],
            "states": {name: base64.b64encode(blob).decode("ascii") if include_states else len(blob)
                       for name, blob in sorted(states.items())},
        }
        if path is not None:
            write_private(Path(path), json.dumps(data, ensure_ascii=False, indent=2).encode("utf-8"))
        return data

    # ---- keys

    def rotate_key(self, *, new_key_file: str | os.PathLike[str] | None = None,
                   new_passphrase: str | bytes | None = None, new_key: bytes | None = None) -> None:
        """Re-encrypt every event and state blob under a new key, in one transaction.

        ``new_key_file`` is created (mode 0600) if it does not exist. On any
        error nothing changes and the old key stays valid.
        """
        check_one_source(new_key_file, new_passphrase, new_key, prefix="new_")
        master = new_key
        if new_key_file is not None:
            master = key_from_file(new_key_file, self._random, create=True)
        meta, _, new = new_store_meta(master, new_passphrase, self._random, self._scrypt_params, self._store_id)
        with self._lock:
            stored, states = self._read_events(), self._read_states()
            with opaque():
                with transaction(self._db()) as conn:
                    conn.execute("DELETE FROM meta WHERE name IN ('kdf', 'salt', 'scrypt_n', 'scrypt_r', 'scrypt_p')")
                    conn.executemany("INSERT OR REPLACE INTO meta(name, value) VALUES (?, ?)", sorted(meta.items()))
                    conn.executemany(
                        "UPDATE events SET sealed = ? WHERE seq = ?",
                        [(new.seal_event(seq, e), seq) for seq, e in stored],
                    )
                    conn.execute("DELETE FROM state")
                    for name, blob in states.items():
                        conn.execute("INSERT INTO state(slot, sealed) VALUES (?, ?)", new.seal_state(name, blob))
                self._sealer = new
                self._scrub_wal()

    # ---- lifetime

    def close(self) -> None:
        """Checkpoint the WAL and close; safe to call twice."""
        with self._lock:
            if self._conn is None:
                return
            conn, self._conn = self._conn, None
            try:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error:
                logger.warning("final WAL checkpoint of %s failed", self._path)
            finally:
                conn.close()

    def __enter__(self) -> EventStore:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._conn is None else "open"
        return f"EventStore({str(self._path)!r}, {state})"
