"""The encrypted on-device event store: :class:`EventStore`.

One SQLite file in WAL mode (:mod:`vane.client.store_file`) holds a person's events and the client's state
blobs. Every payload is sealed with AES-256-GCM bound to this store, to its record kind and to its sequence
number or state slot (:mod:`vane.client.sealing`), under a master key from a key file, a passphrase or the
caller (:mod:`vane.client.keys`). Only sequence numbers and opaque slot ids are stored in the clear.

Every authentication failure -- wrong key, a flipped byte, a moved, deleted or renumbered row, an
older state blob put back, a truncated or corrupt file -- raises one :class:`StoreIntegrityError`
with one fixed message, and never returns partial data. Rows are checked against the sealed head
record (:mod:`vane.client.store_head`); only the whole file replaced by an older copy of itself goes
undetected. One open store owns the file (:mod:`vane.client.store_lock`): a second open raises
:class:`~vane.shared.errors.StoreInUseError` naming the owner's PID.
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

from vane.client.files import write_export
from vane.client.keys import (
    DEFAULT_SCRYPT_PARAMS,
    RandomBytes,
    check_one_source,
    key_from_file,
    read_key_file,
    write_key_file,
)
from vane.client.retention import beyond_retention, check_retention, forgotten, to_unix
from vane.client.sealing import FORMAT, Sealer, new_store_meta
from vane.client.store_file import opaque, transaction
from vane.client.store_head import Head, read_head
from vane.client.store_lock import StoreLock
from vane.client.store_open import open_store_file
from vane.client.store_rows import (
    check_event,
    check_event_rows,
    delete_events,
    delete_state_row,
    insert_events,
    put_state_row,
    read_state_records,
    reseal,
)
from vane.shared.errors import StoreError
from vane.shared.events import Event

__all__ = ["DEFAULT_SCRYPT_PARAMS", "EventStore", "read_key_file", "write_key_file"]

logger = logging.getLogger("vane.client")

Clock = Callable[[], float]


class EventStore:
    """An encrypted, append-only log of :class:`Event` plus a few state blobs.

    Build one with :meth:`open`. All methods are thread-safe.
    """

    def __init__(self, conn: sqlite3.Connection, path: Path, store_id: bytes, sealer: Sealer,
                 clock: Clock, random: RandomBytes, scrypt_params: tuple[int, int, int],
                 owner: StoreLock | None = None, head: Head | None = None) -> None:
        self._conn: sqlite3.Connection | None = conn
        self._path = path
        self._store_id = store_id
        self._sealer = sealer
        self._clock = clock
        self._random = random
        self._scrypt_params = scrypt_params
        self._lock = threading.RLock()
        self._owner = owner
        self._generation = 0 if head is None else head.generation

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
            SQLite sync level. With WAL, NORMAL makes every commit survive a crashed or killed process
            (append ~0.08 ms) but an OS crash or power loss may undo the last commits; FULL also fsyncs
            each commit, which survives power loss and costs one fsync (~4 ms here) per append.
        check_file : bool, default True
            Run SQLite's ``quick_check`` over an existing file at open, so a corrupt page anywhere fails
            now rather than on a later read (about 0.7 s per million events).

        The open owns the file until :meth:`close` (lock ``STORE.lock``, :mod:`vane.client.store_lock`) and
        checks the head against every row (a store written before the head gets one now).

        Raises
        ------
        StoreIntegrityError
            Wrong key; a damaged, truncated or foreign file; a row missing or added; an older state blob;
            a scrypt cost above :data:`~vane.client.keys.MAX_SCRYPT_PARAMS`.
        StoreInUseError
            Another open store (in this or another process) owns the file.
        StoreError, KeyFileError
            A store or key path that is a directory, a FIFO or in a missing directory; an unsafe,
            malformed or (for an existing store) missing key file.
        ValueError
            Not exactly one key source, or a bad argument.
        """
        check_one_source(key_file, passphrase, key)
        if synchronous.upper() not in ("FULL", "NORMAL"):
            raise ValueError(f"synchronous must be 'FULL' or 'NORMAL', got {synchronous!r}")
        db_path = Path(path)
        conn, store_id, sealer, owner, head = open_store_file(
            db_path, key_file, passphrase, key, random, scrypt_params, synchronous.upper(), check_file)
        return cls(conn, db_path, store_id, sealer, clock, random, scrypt_params, owner, head)

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
        # The rows are checked against the head, so events() never hides a row count() counts.
        with opaque():
            conn = self._db()
            head = read_head(conn, self._sealer)
            rows = conn.execute(
                "SELECT seq, sealed FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
                (since_seq, -1 if limit is None else limit),
            ).fetchall()
            check_event_rows(head, self._sealer, rows, whole=since_seq < 1 and limit is None)
            return [(seq, self._sealer.open_event(seq, sealed)) for seq, sealed in rows]

    def _read_states(self) -> dict[str, bytes]:
        return {name: blob for name, (blob, _) in self._read_state_records().items()}

    def _read_state_records(self) -> dict[str, tuple[bytes, int]]:
        with opaque():
            return read_state_records(self._db(), self._sealer)

    def _delete(self, seqs: list[int]) -> int:
        # One transaction: the events, the state derived from them, and the head; then scrub the file.
        if not seqs:
            return 0
        with self._lock, opaque():
            with transaction(self._db()) as conn:
                head = delete_events(conn, self._sealer, seqs)
            self._generation = head.generation
            self._scrub_wal()
        return len(seqs)

    def _scrub_wal(self) -> None:
        busy, _, _ = self._db().execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if busy:
            logger.warning("WAL checkpoint of %s was blocked by a reader; deleted rows may linger", self._path)

    def scrub(self) -> None:
        """Truncate the WAL now: no older copy of a replaced or deleted record stays in any file."""
        with self._lock, opaque():
            self._scrub_wal()

    @property
    def generation(self) -> int:
        """How many deletions (forget, retention) the store has seen: derived state must follow it."""
        return self._generation

    # ---- events

    def append(self, event: Event) -> int:
        """Store one event durably and return its sequence number.

        Raises
        ------
        EventValidationError
            The event would not read back as an equal, valid event (then nothing is stored).
        """
        return self.append_many([check_event(event, "append()")])[0]

    def append_many(self, events: Iterable[Event]) -> list[int]:
        """Store several events in one transaction: all of them or, on any error, none.

        Each is checked to read back unchanged first (:meth:`Sealer.encode_event`), so a record that
        could not be read back is never written.
        """
        batch = [check_event(e, f"append_many() item {i}") for i, e in enumerate(events)]
        if not batch:
            return []
        encoded = [self._sealer.encode_event(e) for e in batch]
        with self._lock, opaque():
            with transaction(self._db()) as conn:
                return insert_events(conn, self._sealer, encoded)

    def events(self, since_seq: int = 0, limit: int | None = None) -> list[tuple[int, Event]]:
        """Events with ``seq > since_seq`` in order, at most ``limit`` of them, as ``(seq, event)``."""
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
            raise ValueError(f"limit must be None or an int >= 0, got {limit!r}")
        with self._lock:
            return self._read_events(since_seq, limit)

    def count(self) -> int:
        """How many events are stored: the head's count, which :meth:`events` checks it returns."""
        with self._lock, opaque():
            return read_head(self._db(), self._sealer).count

    def last_seq(self) -> int:
        """The highest stored sequence number, 0 when empty."""
        with self._lock, opaque():
            return int(self._db().execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0])

    # ---- state blobs

    def put_state(self, name: str, blob: bytes, *, derived: bool = False, per_item: bool = False) -> None:
        """Store (or replace) the state blob called ``name``, e.g. ``"lstm_state"``.

        ``derived=True`` marks a blob computed from the events (a profile, an LSTM state): forget and
        retention delete it with the events, in the same transaction, for its owner to rebuild.
        ``per_item=True``: a derived JSON object keyed by item; forget keeps the entries of items still stored.
        """
        if not isinstance(name, str) or not name or len(name.encode("utf-8")) > 1024:
            raise ValueError(f"state name must be a non-empty str of at most 1024 bytes, got {name!r}")
        if not isinstance(blob, (bytes, bytearray, memoryview)):
            raise TypeError(f"state blob must be bytes, got {type(blob).__name__}")
        with self._lock, opaque():
            with transaction(self._db()) as conn:
                put_state_row(conn, self._sealer, name, bytes(blob), derived or per_item, per_item)

    def get_state(self, name: str) -> bytes | None:
        """The state blob called ``name``, or None if there is none."""
        with self._lock, opaque():
            slot = self._sealer.slot(name)
            row = self._db().execute("SELECT sealed FROM state WHERE slot = ?", (slot,)).fetchone()
            return None if row is None else self._sealer.open_state_record(slot, row[0])[1]

    def delete_state(self, name: str) -> bool:
        """Delete the state blob called ``name`` for good; True if there was one."""
        with self._lock, opaque():
            with transaction(self._db()) as conn:
                gone = delete_state_row(conn, self._sealer, name)
            self._scrub_wal()
        return gone

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
        stored with ``derived=True`` go in the same transaction (their owner rebuilds
        them; :attr:`generation` tells it to); other blobs stay.
        """
        if item_id is None and before is None and not everything:
            raise ValueError("forget() needs item_id=, before= or everything=True; refusing to guess")
        cutoff = None if before is None else to_unix(before, "before")
        with self._lock:
            stored = self._read_events()
            if everything:
                return self._delete([seq for seq, _ in stored])
            return self._delete(forgotten(stored, item_id, cutoff))

    def apply_retention(self, max_age_days: float | None = None, max_events: int | None = None,
                        now: datetime | float | None = None) -> int:
        """Delete events older than ``max_age_days`` and all but the newest ``max_events`` (by event time).

        ``now`` defaults to the store's clock. Returns how many events were deleted; they go for good,
        with the derived state blobs, as in :meth:`forget`.
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
            write_export(path, json.dumps(data, ensure_ascii=False, indent=2).encode("utf-8"), self._path)
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
            stored, states = self._read_events(), self._read_state_records()
            with opaque():
                with transaction(self._db()) as conn:
                    conn.execute("DELETE FROM meta WHERE name IN ('kdf', 'salt', 'scrypt_n', 'scrypt_r', 'scrypt_p')")
                    conn.executemany("INSERT OR REPLACE INTO meta(name, value) VALUES (?, ?)", sorted(meta.items()))
                    reseal(conn, self._sealer, new, stored, states)
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
                if self._owner is not None:
                    self._owner.release()

    def __enter__(self) -> EventStore:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._conn is None else "open"
        return f"EventStore({str(self._path)!r}, {state})"
