"""The store's sealed head record: what the store holds, authenticated as a whole.

Each row of the store is sealed on its own, so on its own a row proves only that it is genuine; it
cannot prove that no row went missing. The head, one sealed record in the ``meta`` table rewritten
in the same transaction as every change, says what the whole store holds::

    head = last_seq(8) || count(8) || events_digest(32) || state_version(8) || state_count(8)
           || state_digest(32) || generation(8)

``events_digest`` is the XOR of a keyed 256-bit tag of every stored sequence number and
``state_digest`` the XOR of a keyed tag of every state slot at its version
(:meth:`~vane.client.sealing.Sealer.seq_tag`, :meth:`~vane.client.sealing.Sealer.state_tag`);
without the key nobody can compute a tag, so deleting, adding or renumbering an event row, or
putting an older copy of a state blob back, changes a digest or a count. ``generation`` counts
deletions (forget, retention), so the owner of derived state knows when to rebuild it.

What the head cannot detect without state kept outside the file: the whole file (or the whole store
with its head) replaced by an older copy of itself.
"""

from __future__ import annotations

import sqlite3
import struct
from dataclasses import dataclass

from vane.client.sealing import Sealer
from vane.shared.errors import StoreIntegrityError

__all__ = ["Head", "read_head", "scan_head", "verify_head", "write_head"]

_FORMAT = struct.Struct(">QQ32sQQ32sQ")


@dataclass
class Head:
    """What the store holds (see the module docstring); digests are 256-bit ints."""

    last_seq: int = 0
    count: int = 0
    events_digest: int = 0
    state_version: int = 0
    state_count: int = 0
    state_digest: int = 0
    generation: int = 0

    def pack(self) -> bytes:
        """The fixed-size binary form that is sealed."""
        return _FORMAT.pack(self.last_seq, self.count, self.events_digest.to_bytes(32, "big"), self.state_version,
                            self.state_count, self.state_digest.to_bytes(32, "big"), self.generation)

    @classmethod
    def unpack(cls, data: bytes) -> Head:
        """Inverse of :meth:`pack`."""
        last, count, ev, sv, sc, sd, gen = _FORMAT.unpack(data)
        return cls(last, count, int.from_bytes(ev, "big"), sv, sc, int.from_bytes(sd, "big"), gen)

    def add_events(self, sealer: Sealer, seqs: list[int]) -> None:
        """Account for newly stored events ``seqs`` (each above :attr:`last_seq`)."""
        for seq in seqs:
            self.events_digest ^= sealer.seq_tag(seq)
        self.count += len(seqs)
        if seqs:
            self.last_seq = max(self.last_seq, max(seqs))

    def remove_events(self, sealer: Sealer, seqs: list[int]) -> None:
        """Account for deleted events ``seqs``."""
        for seq in seqs:
            self.events_digest ^= sealer.seq_tag(seq)
        self.count -= len(seqs)
        if seqs:
            self.generation += 1

    def next_state_version(self) -> int:
        """A new version for a state being written (never reused)."""
        self.state_version += 1
        return self.state_version

    def swap_state(self, sealer: Sealer, slot: bytes, old: int | None, new: int | None) -> None:
        """Account for the state in ``slot`` going from version ``old`` to ``new`` (None: absent)."""
        if old is not None:
            self.state_digest ^= sealer.state_tag(slot, old)
            self.state_count -= 1
        if new is not None:
            self.state_digest ^= sealer.state_tag(slot, new)
            self.state_count += 1


def read_head(conn: sqlite3.Connection, sealer: Sealer) -> Head:
    """The head stored in ``conn``, authenticated; the opaque error when missing or damaged."""
    row = conn.execute("SELECT value FROM meta WHERE name = 'head'").fetchone()
    if row is None:
        raise StoreIntegrityError()
    packed = sealer.open_head(row[0])
    if len(packed) != _FORMAT.size:
        raise StoreIntegrityError()
    return Head.unpack(packed)


def write_head(conn: sqlite3.Connection, sealer: Sealer, head: Head) -> None:
    """Seal and store ``head`` (inside the caller's transaction)."""
    conn.execute("INSERT OR REPLACE INTO meta(name, value) VALUES ('head', ?)", (sealer.seal_head(head.pack()),))


def scan_head(conn: sqlite3.Connection, sealer: Sealer, last_seq: int, generation: int = 0) -> Head:
    """A head computed from the rows as they are (for migrating a store written before the head).

    Every state record must already be in the versioned format.
    """
    head = Head(last_seq=last_seq, generation=generation)
    head.add_events(sealer, [seq for (seq,) in conn.execute("SELECT seq FROM events")])
    for slot, prefix in conn.execute("SELECT slot, substr(sealed, 1, 9) FROM state"):
        version = Sealer.state_version(prefix)
        head.state_version = max(head.state_version, version)
        head.swap_state(sealer, slot, None, version)
    return head


def verify_head(conn: sqlite3.Connection, sealer: Sealer) -> Head:
    """The stored head, after checking every event and state row against it.

    Raises
    ------
    StoreIntegrityError
        A row missing, added, renumbered (a sequence number below 1 or above the head's), or a state
        blob at another version than the head's.
    """
    head = read_head(conn, sealer)
    count = digest = 0
    for (seq,) in conn.execute("SELECT seq FROM events"):  # streamed: no list of every seq
        if not isinstance(seq, int) or not 1 <= seq <= head.last_seq:
            raise StoreIntegrityError()
        digest ^= sealer.seq_tag(seq)
        count += 1
    if count != head.count or digest != head.events_digest:
        raise StoreIntegrityError()
    states = conn.execute("SELECT slot, substr(sealed, 1, 9) FROM state").fetchall()
    digest = 0
    for slot, prefix in states:
        version = Sealer.state_version(prefix)
        if not isinstance(slot, bytes) or not 1 <= version <= head.state_version:
            raise StoreIntegrityError()
        digest ^= sealer.state_tag(slot, version)
    if len(states) != head.state_count or digest != head.state_digest:
        raise StoreIntegrityError()
    conn.execute("PRAGMA shrink_memory")  # the scan read every page: give the page cache back
    return head
