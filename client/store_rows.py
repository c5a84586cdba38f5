"""Row changes of a store that keep its sealed head record in step, each inside the caller's transaction.

Every function reads the head, changes rows, accounts for them in the head
(:mod:`vane.client.store_head`) and writes the head back, so the head always says exactly what the
rows are. :class:`~vane.client.store.EventStore` holds the lock and the transaction.
"""

from __future__ import annotations

import json
import sqlite3

from vane.client.history.urls import normalize_url
from vane.client.sealing import DERIVED, PER_ITEM, Sealer
from vane.client.store_head import Head, read_head, write_head
from vane.shared.errors import ConfigError, StoreIntegrityError
from vane.shared.events import Event

__all__ = ["check_event", "check_event_rows", "check_per_item", "delete_events", "delete_state_row", "insert_events",
           "item_key", "put_state_row", "read_state_records", "reseal"]


def check_event(event: object, where: str) -> Event:
    """``event`` itself; TypeError unless it is an :class:`Event` (``where`` names the call)."""
    if not isinstance(event, Event):
        raise TypeError(f"{where} expects a vane.shared.events.Event, got {type(event).__name__}; "
                        "build one with Event.create(...) or Event.from_dict(...)")
    return event


def read_state_records(conn: sqlite3.Connection, sealer: Sealer) -> dict[str, tuple[bytes, int]]:
    """Every state blob as ``name -> (blob, flags)``."""
    out: dict[str, tuple[bytes, int]] = {}
    for slot, sealed in conn.execute("SELECT slot, sealed FROM state").fetchall():
        name, blob, _, flags = sealer.open_state_record(slot, sealed)
        out[name] = (blob, flags)
    return out


def insert_events(conn: sqlite3.Connection, sealer: Sealer, encoded: list[bytes]) -> list[int]:
    """Store events encoded by :meth:`Sealer.encode_event` under the next sequence numbers; return them."""
    head = read_head(conn, sealer)
    seqs = list(range(head.last_seq + 1, head.last_seq + 1 + len(encoded)))
    conn.executemany("INSERT INTO events(seq, sealed) VALUES (?, ?)",  # sealed one row at a time, not all held
                     ((seq, sealer.seal_encoded(seq, e)) for seq, e in zip(seqs, encoded, strict=True)))
    head.add_events(sealer, seqs)
    write_head(conn, sealer, head)
    return seqs


def item_key(item_id: str) -> str:
    """How a :data:`~vane.client.sealing.PER_ITEM` blob names an item: its normalised URL, else the id stripped."""
    return normalize_url(item_id) or item_id.strip()


def check_per_item(name: str, blob: bytes) -> None:
    """:class:`ConfigError` (a ValueError) unless ``blob`` is a UTF-8 JSON object, as PER_ITEM blobs are."""
    try:
        entries = json.loads(blob)
    except ValueError:
        entries = None
    if not isinstance(entries, dict):
        raise ConfigError(f"per_item state {name!r} must be a UTF-8 JSON object keyed by item key, "
                         f"got {bytes(blob[:40])!r}")


def _surviving_entries(blob: bytes, alive: set[str]) -> bytes | None:
    """The PER_ITEM ``blob`` without the entries of items in no stored event; None if none is left."""
    try:
        entries = json.loads(blob)
    except ValueError:
        return None  # unreadable: dropped whole, like any derived blob
    if not isinstance(entries, dict):
        return None
    kept = {key: value for key, value in entries.items() if key in alive}
    if len(kept) == len(entries):
        return blob
    return json.dumps(kept, ensure_ascii=False).encode("utf-8") if kept else None


def delete_events(conn: sqlite3.Connection, sealer: Sealer, seqs: list[int]) -> Head:
    """Delete the events ``seqs`` and every state blob derived from the events; return the new head.

    A :data:`~vane.client.sealing.PER_ITEM` blob keeps the entries of items that still have a stored
    event (re-sealed at a new version in the same transaction) and goes when none is left.
    """
    head = read_head(conn, sealer)
    conn.executemany("DELETE FROM events WHERE seq = ?", [(s,) for s in seqs])
    head.remove_events(sealer, seqs)
    alive: set[str] | None = None
    for slot, sealed in conn.execute("SELECT slot, sealed FROM state").fetchall():
        name, blob, _, flags = sealer.open_state_record(slot, sealed)
        if not flags & DERIVED:
            continue
        kept = None
        if flags & PER_ITEM:
            if alive is None:  # the surviving events' items, read (and checked) once
                alive = {item_key(sealer.open_event(seq, row).item_id)
                         for seq, row in conn.execute("SELECT seq, sealed FROM events ORDER BY seq")}
            kept = _surviving_entries(blob, alive)
        if kept is blob:
            continue
        old = sealer.state_version(sealed)
        if kept is None:
            conn.execute("DELETE FROM state WHERE slot = ?", (slot,))
            head.swap_state(sealer, slot, old, None)
        else:
            version = head.next_state_version()
            _, resealed = sealer.seal_state(name, kept, version, flags)
            conn.execute("UPDATE state SET sealed = ? WHERE slot = ?", (resealed, slot))
            head.swap_state(sealer, slot, old, version)
    write_head(conn, sealer, head)
    return head


def put_state_row(conn: sqlite3.Connection, sealer: Sealer, name: str, blob: bytes, derived: bool,
                  per_item: bool = False) -> None:
    """Store (or replace) the state blob ``name`` at a new version (``per_item``: flagged PER_ITEM too)."""
    if per_item:
        check_per_item(name, blob)
    slot = sealer.slot(name)
    head = read_head(conn, sealer)
    old = conn.execute("SELECT substr(sealed, 1, 9) FROM state WHERE slot = ?", (slot,)).fetchone()
    version = head.next_state_version()
    _, sealed = sealer.seal_state(name, blob, version, (DERIVED if derived else 0) | (PER_ITEM if per_item else 0))
    conn.execute("INSERT OR REPLACE INTO state(slot, sealed) VALUES (?, ?)", (slot, sealed))
    head.swap_state(sealer, slot, None if old is None else sealer.state_version(old[0]), version)
    write_head(conn, sealer, head)


def delete_state_row(conn: sqlite3.Connection, sealer: Sealer, name: str) -> bool:
    """Delete the state blob ``name``; True if there was one."""
    slot = sealer.slot(name)
    old = conn.execute("SELECT substr(sealed, 1, 9) FROM state WHERE slot = ?", (slot,)).fetchone()
    if old is None:
        return False
    head = read_head(conn, sealer)
    conn.execute("DELETE FROM state WHERE slot = ?", (slot,))
    head.swap_state(sealer, slot, sealer.state_version(old[0]), None)
    write_head(conn, sealer, head)
    return True


def check_event_rows(head: Head, sealer: Sealer, rows: list[tuple[int, bytes]], whole: bool) -> None:
    """Raise the opaque error unless ``rows`` (ascending seq) fit ``head``; ``whole``: they are every row."""
    if rows and not 1 <= rows[0][0] <= rows[-1][0] <= head.last_seq:
        raise StoreIntegrityError()
    if whole:
        digest = 0
        for seq, _ in rows:
            digest ^= sealer.seq_tag(seq)
        if len(rows) != head.count or digest != head.events_digest:
            raise StoreIntegrityError()


def reseal(conn: sqlite3.Connection, old: Sealer, new: Sealer, stored: list[tuple[int, Event]],
           states: dict[str, tuple[bytes, int]]) -> None:
    """Re-seal every event and state blob (and the head) under ``new`` (a key rotation)."""
    old_head = read_head(conn, old)
    conn.executemany("UPDATE events SET sealed = ? WHERE seq = ?", [(new.seal_event(seq, e), seq) for seq, e in stored])
    conn.execute("DELETE FROM state")
    head = Head(last_seq=old_head.last_seq, generation=old_head.generation)
    head.add_events(new, [seq for seq, _ in stored])
    for name, (blob, flags) in states.items():
        version = head.next_state_version()
        slot, sealed = new.seal_state(name, blob, version, flags)
        conn.execute("INSERT INTO state(slot, sealed) VALUES (?, ?)", (slot, sealed))
        head.swap_state(new, slot, None, version)
    write_head(conn, new, head)
