"""Row changes of a store that keep its sealed head record in step, each inside the caller's transaction.

Every function reads the head, changes rows, accounts for them in the head
(:mod:`vane.client.store_head`) and writes the head back, so the head always says exactly what the
rows are. :class:`~vane.client.store.EventStore` holds the lock and the transaction.
"""

from __future__ import annotations

import sqlite3

from vane.client.sealing import DERIVED, Sealer
from vane.client.store_head import Head, read_head, write_head
from vane.shared.errors import StoreIntegrityError
from vane.shared.events import Event

__all__ = ["check_event", "check_event_rows", "delete_events", "delete_state_row", "insert_events", "put_state_row",
           "read_state_records", "reseal"]


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


def delete_events(conn: sqlite3.Connection, sealer: Sealer, seqs: list[int]) -> Head:
    """Delete the events ``seqs`` and every state blob derived from the events; return the new head."""
    head = read_head(conn, sealer)
    conn.executemany("DELETE FROM events WHERE seq = ?", [(s,) for s in seqs])
    head.remove_events(sealer, seqs)
    for slot, sealed in conn.execute("SELECT slot, sealed FROM state").fetchall():
        if sealer.open_state_record(slot, sealed)[3] & DERIVED:
            conn.execute("DELETE FROM state WHERE slot = ?", (slot,))
            head.swap_state(sealer, slot, sealer.state_version(sealed), None)
    write_head(conn, sealer, head)
    return head


def put_state_row(conn: sqlite3.Connection, sealer: Sealer, name: str, blob: bytes, derived: bool) -> None:
    """Store (or replace) the state blob ``name`` at a new version."""
    slot = sealer.slot(name)
    head = read_head(conn, sealer)
    old = conn.execute("SELECT substr(sealed, 1, 9) FROM state WHERE slot = ?", (slot,)).fetchone()
    version = head.next_state_version()
    _, sealed = sealer.seal_state(name, blob, version, DERIVED if derived else 0)
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
