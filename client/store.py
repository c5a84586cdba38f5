"""The encrypted on-device event store.

One SQLite file in WAL mode holds a person's events and the client's state
blobs. Every payload is sealed with AES-256-GCM under a fresh 96-bit nonce;
the associated data binds it to this store, to its record kind and to its
sequence number (or state slot), so a row moved, swapped or replayed under
another id fails authentication. Only sequence numbers and opaque slot ids
are stored in the clear.

Layout::

    meta(name TEXT PRIMARY KEY, value BLOB)     format, store_id, kdf, salt, scrypt n/r/p, key_check
    events(seq INTEGER PRIMARY KEY AUTOINCREMENT, sealed BLOB)
    state(slot BLOB PRIMARY KEY, sealed BLOB)   slot = HMAC-SHA256(mac_key, name)

    sealed = 0x01 || nonce(12) || ciphertext || tag(16)
    AD     = b"vane-store/1" || store_id(16) || kind(1) || id     kind E: seq (8 bytes BE), S: slot, K: empty

The 32-byte master key comes from a key file, a passphrase (scrypt) or the
caller; HKDF-SHA256 (salt = store_id) splits it into the AES key and the
slot-naming HMAC key.

Key file format: 64 lowercase hex characters and a newline (32 random bytes),
created with mode 0600. Reading also accepts exactly 32 raw bytes. A key file
readable by group or others is refused.

Every authentication failure -- wrong key, a flipped byte, a moved row, a
truncated or corrupt file -- raises one :class:`StoreIntegrityError` with one
fixed message, and never returns partial data.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import logging
import os
import sqlite3
import stat
import struct
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from vane.shared.errors import KeyFileError, StoreError, StoreIntegrityError
from vane.shared.events import Event

__all__ = ["DEFAULT_SCRYPT_PARAMS", "EventStore", "read_key_file", "write_key_file"]

logger = logging.getLogger("vane.client")

FORMAT = b"vane-store/1"
KEY_LEN = 32
NONCE_LEN = 12
TAG_LEN = 16
STORE_ID_LEN = 16
SALT_LEN = 16
_VERSION = b"\x01"
_KEY_CHECK = b"vane-store key check v1"
#: scrypt cost (n, r, p) for new passphrase stores: about 32 MiB and 0.1 s.
DEFAULT_SCRYPT_PARAMS: tuple[int, int, int] = (2**15, 8, 1)
# Upper bounds for parameters read back from a (possibly tampered) file.
_MAX_SCRYPT = (2**20, 32, 16)

_SCHEMA = """
CREATE TABLE meta (name TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT, sealed BLOB NOT NULL);
CREATE TABLE state (slot BLOB PRIMARY KEY, sealed BLOB NOT NULL);
"""

Clock = Callable[[], float]
RandomBytes = Callable[[int], bytes]


# --------------------------------------------------------------------------- key files


def write_key_file(path: str | os.PathLike[str], key: bytes) -> None:
    """Create a new key file holding ``key`` as hex, with mode 0600.

    Raises
    ------
    KeyFileError
        If the file already exists or cannot be created.
    """
    if len(key) != KEY_LEN:
        raise ValueError(f"key must be {KEY_LEN} bytes, got {len(key)}")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise KeyFileError(f"cannot create key file {os.fspath(path)!r}: {exc.strerror}") from None
    with os.fdopen(fd, "wb") as fh:
        fh.write(key.hex().encode("ascii") + b"\n")
        fh.flush()
        os.fsync(fh.fileno())


def read_key_file(path: str | os.PathLike[str]) -> bytes:
    """Read a 32-byte key from a key file that only its owner can read.

    Raises
    ------
    KeyFileError
        If the file is missing, is not a regular file, is readable by group or
        others, or does not hold 64 hex characters (or 32 raw bytes).
    """
    name = os.fspath(path)
    try:
        fd = os.open(name, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError as exc:
        raise KeyFileError(f"cannot open key file {name!r}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fh.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise KeyFileError(f"key file {name!r} is not a regular file")
        mode = stat.S_IMODE(info.st_mode)
        if os.name == "posix" and mode & 0o077:
            raise KeyFileError(
                f"key file {name!r} has mode {mode:#o}, so other users can read it; "
                f"restrict it with `chmod 600 {name}`"
            )
        data = fh.read(4096)
    if len(data) == KEY_LEN:
        return data
    text = data.strip()
    if len(text) == 2 * KEY_LEN:
        try:
            return bytes.fromhex(text.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            pass
    raise KeyFileError(f"key file {name!r} must hold {2 * KEY_LEN} hex characters or {KEY_LEN} raw bytes")


def _key_from_file(path: str | os.PathLike[str], random: RandomBytes, create: bool) -> bytes:
    if create and not os.path.lexists(path):
        key = random(KEY_LEN)
        write_key_file(path, key)
        logger.info("created key file %s", os.fspath(path))
        return key
    return read_key_file(path)


def _scrypt(passphrase: str | bytes, salt: bytes, params: tuple[int, int, int]) -> bytes:
    secret = passphrase.encode("utf-8") if isinstance(passphrase, str) else passphrase
    n, r, p = params
    return Scrypt(salt=salt, length=KEY_LEN, n=n, r=r, p=p).derive(secret)


def _check_one_source(key_file: object, passphrase: object, key: object, prefix: str = "") -> None:
    given = [name for name, value in ((f"{prefix}key_file", key_file), (f"{prefix}passphrase", passphrase),
                                      (f"{prefix}key", key)) if value is not None]
    if len(given) != 1:
        raise ValueError(
            f"give exactly one of {prefix}key_file, {prefix}passphrase or {prefix}key; got "
            f"{', '.join(given) or 'none'}"
        )
    if passphrase is not None and (not isinstance(passphrase, (str, bytes)) or not passphrase):
        raise ValueError(f"{prefix}passphrase must be a non-empty str or bytes")
    if key is not None and (not isinstance(key, bytes) or len(key) != KEY_LEN):
        raise ValueError(f"{prefix}key must be {KEY_LEN} bytes, got {type(key).__name__} "
                         f"of length {len(key) if isinstance(key, bytes) else 'n/a'}")


# --------------------------------------------------------------------------- sealing


class _Sealer:
    """AES-256-GCM under keys derived from one master key and the store id."""

    def __init__(self, master: bytes, store_id: bytes, random: RandomBytes) -> None:
        okm = HKDF(algorithm=hashes.SHA256(), length=2 * KEY_LEN, salt=store_id, info=FORMAT).derive(master)
        self._aead = AESGCM(okm[:KEY_LEN])
        self._mac_key = okm[KEY_LEN:]
        self._prefix = FORMAT + store_id
        self._random = random

    def ad(self, kind: bytes, ident: bytes) -> bytes:
        return self._prefix + kind + ident

    def slot(self, name: str) -> bytes:
        return hmac.new(self._mac_key, name.encode("utf-8"), hashlib.sha256).digest()

    def seal(self, plaintext: bytes, ad: bytes) -> bytes:
        nonce = self._random(NONCE_LEN)
        if len(nonce) != NONCE_LEN:
            raise ValueError(f"random source returned {len(nonce)} bytes, expected {NONCE_LEN}")
        return _VERSION + nonce + self._aead.encrypt(nonce, plaintext, _VERSION + ad)

    def open(self, sealed: object, ad: bytes) -> bytes:
        # AESGCM.decrypt checks the tag before it releases any plaintext.
        if not isinstance(sealed, bytes) or len(sealed) < 1 + NONCE_LEN + TAG_LEN or sealed[:1] != _VERSION:
            raise StoreIntegrityError()
        try:
            return self._aead.decrypt(sealed[1:1 + NONCE_LEN], sealed[1 + NONCE_LEN:], _VERSION + ad)
        except InvalidTag:
            raise StoreIntegrityError() from None


def _seq_id(seq: int) -> bytes:
    return struct.pack(">Q", seq)


def _pack_state(name: str, blob: bytes) -> bytes:
    raw = name.encode("utf-8")
    return struct.pack(">H", len(raw)) + raw + blob


def _unpack_state(plain: bytes) -> tuple[str, bytes]:
    (size,) = struct.unpack(">H", plain[:2])
    return plain[2:2 + size].decode("utf-8"), plain[2 + size:]


@contextlib.contextmanager
def _opaque() -> Iterator[None]:
    """Turn every storage or decoding failure into the one opaque error."""
    try:
        yield
    except StoreIntegrityError:
        raise
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            raise StoreError("the store is locked by another process; close it there and retry") from None
        raise StoreIntegrityError() from None
    except (sqlite3.DatabaseError, InvalidTag, ValueError, KeyError, TypeError, struct.error):
        raise StoreIntegrityError() from None


def _check_file_length(path: Path) -> None:
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


def _to_unix(value: datetime | float | int, field: str) -> float:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(f"{field} must be timezone-aware, got naive datetime {value!r}")
        return value.timestamp()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise TypeError(f"{field} must be an aware datetime or Unix seconds, got {type(value).__name__}")


# --------------------------------------------------------------------------- the store


class EventStore:
    """An encrypted, append-only log of :class:`Event` plus a few state blobs.

    Build one with :meth:`open`. All methods are thread-safe.
    """

    def __init__(self, conn: sqlite3.Connection, path: Path, store_id: bytes, sealer: _Sealer,
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
        _check_one_source(key_file, passphrase, key)
        if synchronous.upper() not in ("FULL", "NORMAL"):
            raise ValueError(f"synchronous must be 'FULL' or 'NORMAL', got {synchronous!r}")
        db_path = Path(path)
        exists = db_path.exists()
        master = key
        if key_file is not None:
            master = _key_from_file(key_file, random, create=not exists)
        if exists:
            _check_file_length(db_path)
        conn = cls._connect(db_path, synchronous.upper())
        try:
            with _opaque():
                if exists:
                    if check_file and conn.execute("PRAGMA quick_check").fetchall() != [("ok",)]:
                        raise StoreIntegrityError()
                    store_id, sealer = cls._load(conn, master, passphrase, random)
                else:
                    store_id, sealer = cls._create(conn, master, passphrase, random, scrypt_params)
        except BaseException:
            conn.close()
            raise
        return cls(conn, db_path, store_id, sealer, clock, random, scrypt_params)

    @staticmethod
    def _connect(path: Path, synchronous: str) -> sqlite3.Connection:
        with _opaque():
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

    @staticmethod
    def _create(conn: sqlite3.Connection, master: bytes | None, passphrase: str | bytes | None,
                random: RandomBytes, scrypt_params: tuple[int, int, int]) -> tuple[bytes, _Sealer]:
        store_id = random(STORE_ID_LEN)
        meta, master = _key_meta(master, passphrase, random, scrypt_params)
        sealer = _Sealer(master, store_id, random)
        meta.update(format=FORMAT, store_id=store_id, key_check=sealer.seal(_KEY_CHECK, sealer.ad(b"K", b"")))
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _SCHEMA.strip().split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.executemany("INSERT INTO meta(name, value) VALUES (?, ?)", sorted(meta.items()))
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
        return store_id, sealer

    @staticmethod
    def _load(conn: sqlite3.Connection, master: bytes | None, passphrase: str | bytes | None,
              random: RandomBytes) -> tuple[bytes, _Sealer]:
        meta = dict(conn.execute("SELECT name, value FROM meta").fetchall())
        if meta.get("format") != FORMAT:
            raise StoreIntegrityError()
        store_id = meta["store_id"]
        if not isinstance(store_id, bytes) or len(store_id) != STORE_ID_LEN:
            raise StoreIntegrityError()
        kdf = meta.get("kdf")
        if passphrase is not None:
            if kdf != b"scrypt":
                raise StoreIntegrityError()
            master = _scrypt(passphrase, meta["salt"], _scrypt_meta(meta))
        elif kdf != b"raw" or master is None:
            raise StoreIntegrityError()
        sealer = _Sealer(master, store_id, random)
        if sealer.open(meta["key_check"], sealer.ad(b"K", b"")) != _KEY_CHECK:
            raise StoreIntegrityError()
        return store_id, sealer

    # ---- plumbing

    @property
    def path(self) -> Path:
        """The SQLite file."""
        return self._path

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"the store {str(self._path)!r} is closed; open it again with EventStore.open")
        return self._conn

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        conn = self._db()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _seal_event(self, seq: int, event: Event) -> bytes:
        return self._sealer.seal(_event_payload(event), self._sealer.ad(b"E", _seq_id(seq)))

    def _open_event(self, seq: int, sealed: object) -> Event:
        plain = self._sealer.open(sealed, self._sealer.ad(b"E", _seq_id(seq)))
        return _event_from_payload(plain)

    def _read_events(self, since_seq: int = 0, limit: int | None = None) -> list[tuple[int, Event]]:
        # Fetch every row first and decrypt all of them: any failure raises before anything is returned.
        with _opaque():
            rows = self._db().execute(
                "SELECT seq, sealed FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
                (since_seq, -1 if limit is None else limit),
            ).fetchall()
            return [(seq, self._open_event(seq, sealed)) for seq, sealed in rows]

    def _read_states(self) -> dict[str, bytes]:
        with _opaque():
            out: dict[str, bytes] = {}
            for slot, sealed in self._db().execute("SELECT slot, sealed FROM state").fetchall():
                name, blob = _unpack_state(self._sealer.open(sealed, self._sealer.ad(b"S", slot)))
                if not hmac.compare_digest(self._sealer.slot(name), slot):
                    raise StoreIntegrityError()
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
        with self._lock, _opaque():
            with self._transaction() as conn:
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
        with self._lock, _opaque():
            with self._transaction() as conn:
                seq = self._next_seq(conn)
                conn.execute("INSERT INTO events(seq, sealed) VALUES (?, ?)", (seq, self._seal_event(seq, event)))
        return seq

    def append_many(self, events: Iterable[Event]) -> list[int]:
        """Store several events in one transaction: all of them or, on any error, none."""
        batch = [self._check_event(e, f"append_many() item {i}") for i, e in enumerate(events)]
        if not batch:
            return []
        with self._lock, _opaque():
            with self._transaction() as conn:
                first = self._next_seq(conn)
                seqs = list(range(first, first + len(batch)))
                conn.executemany(
                    "INSERT INTO events(seq, sealed) VALUES (?, ?)",
                    [(seq, self._seal_event(seq, e)) for seq, e in zip(seqs, batch, strict=True)],
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
        with self._lock, _opaque():
            return int(self._db().execute("SELECT count(*) FROM events").fetchone()[0])

    def last_seq(self) -> int:
        """The highest stored sequence number, 0 when empty."""
        with self._lock, _opaque():
            return int(self._db().execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0])

    # ---- state blobs

    def put_state(self, name: str, blob: bytes) -> None:
        """Store (or replace) the state blob called ``name``, e.g. ``"lstm_state"``."""
        if not isinstance(name, str) or not name or len(name.encode("utf-8")) > 1024:
            raise ValueError(f"state name must be a non-empty str of at most 1024 bytes, got {name!r}")
        if not isinstance(blob, (bytes, bytearray, memoryview)):
            raise TypeError(f"state blob must be bytes, got {type(blob).__name__}")
        with self._lock, _opaque():
            slot = self._sealer.slot(name)
            sealed = self._sealer.seal(_pack_state(name, bytes(blob)), self._sealer.ad(b"S", slot))
            with self._transaction() as conn:
                conn.execute("INSERT OR REPLACE INTO state(slot, sealed) VALUES (?, ?)", (slot, sealed))

    def get_state(self, name: str) -> bytes | None:
        """The state blob called ``name``, or None if there is none."""
        with self._lock, _opaque():
            slot = self._sealer.slot(name)
            row = self._db().execute("SELECT sealed FROM state WHERE slot = ?", (slot,)).fetchone()
            if row is None:
                return None
            stored, blob = _unpack_state(self._sealer.open(row[0], self._sealer.ad(b"S", slot)))
            if stored != name:
                raise StoreIntegrityError()
            return blob

    def delete_state(self, name: str) -> bool:
        """Delete the state blob called ``name`` for good; True if there was one."""
        with self._lock, _opaque():
            with self._transaction() as conn:
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
        cutoff = None if before is None else _to_unix(before, "before")
        with self._lock:
            if everything:
                with _opaque():
                    with self._transaction() as conn:
                        gone = conn.execute("DELETE FROM events").rowcount
                    self._scrub_wal()
                return int(gone)
            doomed = [seq for seq, e in self._read_events()
                      if e.item_id == item_id or (cutoff is not None and e.unix_time < cutoff)]
            return self._delete(doomed)

    def apply_retention(self, max_age_days: float | None = None, max_events: int | None = None,
                        now: datetime | float | None = None) -> int:
        """Delete events older than ``max_age_days`` and all but the newest ``max_events``.

        ``now`` defaults to the store's clock. Returns how many events were deleted.
        """
        if max_age_days is not None and (not isinstance(max_age_days, (int, float)) or max_age_days < 0):
            raise ValueError(f"max_age_days must be None or a number >= 0, got {max_age_days!r}")
        if max_events is not None and (isinstance(max_events, bool) or not isinstance(max_events, int)
                                       or max_events < 0):
            raise ValueError(f"max_events must be None or an int >= 0, got {max_events!r}")
        current = self._clock() if now is None else _to_unix(now, "now")
        with self._lock:
            stored = self._read_events()
            doomed: set[int] = set()
            if max_age_days is not None:
                cutoff = current - max_age_days * 86400.0
                doomed.update(seq for seq, e in stored if e.unix_time < cutoff)
            if max_events is not None and len(stored) > max_events:
                doomed.update(seq for seq, _ in stored[: len(stored) - max_events])
            return self._delete(sorted(doomed))

    # ---- export

    def export(self, path: str | os.PathLike[str] | None = None, include_states: bool = False) -> dict[str, Any]:
        """The person's own data, decrypted, as a JSON-ready dict; also written to ``path`` (mode 0600).

        ``states`` maps each state blob's name to its size in bytes, or, with
        ``include_states=True``, to its contents in base64.
        """
        with self._lock:
            stored = self._read_events()
            states = self._read_states()
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
            _write_private(Path(path), json.dumps(data, ensure_ascii=False, indent=2).encode("utf-8"))
        return data

    # ---- keys

    def rotate_key(self, *, new_key_file: str | os.PathLike[str] | None = None,
                   new_passphrase: str | bytes | None = None, new_key: bytes | None = None) -> None:
        """Re-encrypt every event and state blob under a new key, in one transaction.

        ``new_key_file`` is created (mode 0600) if it does not exist. On any
        error nothing changes and the old key stays valid.
        """
        _check_one_source(new_key_file, new_passphrase, new_key, prefix="new_")
        master = new_key
        if new_key_file is not None:
            master = _key_from_file(new_key_file, self._random, create=True)
        meta, master = _key_meta(master, new_passphrase, self._random, self._scrypt_params)
        new = _Sealer(master, self._store_id, self._random)
        meta["key_check"] = new.seal(_KEY_CHECK, new.ad(b"K", b""))
        with self._lock:
            stored = self._read_events()
            states = self._read_states()
            with _opaque():
                with self._transaction() as conn:
                    conn.execute("DELETE FROM meta WHERE name IN ('kdf', 'salt', 'scrypt_n', 'scrypt_r', 'scrypt_p')")
                    conn.executemany("INSERT OR REPLACE INTO meta(name, value) VALUES (?, ?)", sorted(meta.items()))
                    conn.executemany(
                        "UPDATE events SET sealed = ? WHERE seq = ?",
                        [(new.seal(_event_payload(e), new.ad(b"E", _seq_id(seq))), seq) for seq, e in stored],
                    )
                    conn.execute("DELETE FROM state")
                    for name, blob in states.items():
                        slot = new.slot(name)
                        conn.execute("INSERT INTO state(slot, sealed) VALUES (?, ?)",
                                     (slot, new.seal(_pack_state(name, blob), new.ad(b"S", slot))))
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


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def _event_payload(event: Event) -> bytes:
    return _ENCODER.encode(event.to_dict()).encode("utf-8")


def _event_from_payload(plain: bytes) -> Event:
    # The payload passed authentication, so it is what append() wrote from a validated Event:
    # rebuild it directly instead of re-validating every field (about 3x faster to read).
    d = json.loads(plain)
    ts = datetime.fromisoformat(d["timestamp"])
    if ts.tzinfo is None or not isinstance(d["item_id"], str) or not isinstance(d["categories"], list):
        raise ValueError("malformed payload")
    dwell = d["dwell_s"]
    return Event(d["item_id"], tuple(d["categories"]), ts, d["kind"], d["title"],
                 None if dwell is None else float(dwell))


def _key_meta(master: bytes | None, passphrase: str | bytes | None, random: RandomBytes,
              scrypt_params: tuple[int, int, int]) -> tuple[dict[str, Any], bytes]:
    """The meta rows describing a key source, and the master key itself."""
    if passphrase is None:
        if master is None:
            raise ValueError("no key given")
        return {"kdf": b"raw"}, master
    _validate_scrypt(scrypt_params)
    salt = random(SALT_LEN)
    n, r, p = scrypt_params
    meta = {"kdf": b"scrypt", "salt": salt, "scrypt_n": n, "scrypt_r": r, "scrypt_p": p}
    return meta, _scrypt(passphrase, salt, scrypt_params)


def _validate_scrypt(params: tuple[int, int, int]) -> None:
    n, r, p = params
    ok = (all(isinstance(v, int) and not isinstance(v, bool) for v in params) and n >= 2 and n & (n - 1) == 0
          and 1 <= r and 1 <= p and n <= _MAX_SCRYPT[0] and r <= _MAX_SCRYPT[1] and p <= _MAX_SCRYPT[2])
    if not ok:
        raise ValueError(f"scrypt_params must be (n, r, p) with n a power of two <= {_MAX_SCRYPT[0]}, "
                         f"1 <= r <= {_MAX_SCRYPT[1]}, 1 <= p <= {_MAX_SCRYPT[2]}; got {params!r}")


def _scrypt_meta(meta: dict[str, Any]) -> tuple[int, int, int]:
    params = (meta["scrypt_n"], meta["scrypt_r"], meta["scrypt_p"])
    _validate_scrypt(params)  # a tampered value becomes the opaque error via _opaque()
    return params


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, readable only by the owner."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
