"""Looking at a store from outside: its raw state ciphertext, and what any file on disk still holds.

Used by the forget and retention tests: the ciphertext of the saved state is captured before a
deletion and searched for afterwards in every file of the store's directory (the key excluded).
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from vane.client.keys import read_key_file
from vane.client.sealing import Sealer

STATE = "tracker/state"


def state_slot(db: Path, key_file: Path, name: str = STATE) -> bytes:
    """The opaque slot id of the state blob ``name`` (computed with the store's key, as the store does)."""
    return _sealer(db, key_file).slot(name)


def raw_state(db: Path, slot: bytes) -> bytes | None:
    """The sealed bytes in ``slot`` as SQLite returns them now (the store may be open)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        row = conn.execute("SELECT sealed FROM state WHERE slot = ?", (slot,)).fetchone()
    finally:
        conn.close()
    return None if row is None else bytes(row[0])


def open_raw_state(db: Path, key_file: Path, slot: bytes, sealed: bytes) -> bytes:
    """The plaintext blob of a captured sealed state record."""
    return _sealer(db, key_file).open_state_record(slot, sealed)[1]


def fragments(sealed: bytes) -> list[bytes]:
    """Pieces of a sealed record that can only be on disk if the record is: its nonce, tag and a middle slice."""
    middle = len(sealed) // 2
    return [sealed[9:21], sealed[-16:], sealed[middle:middle + 32]]


def disk_files(directory: Path, key_file: Path) -> dict[Path, bytes]:
    """Every file under ``directory`` except the key file, read now."""
    out = {}
    for root, _, names in os.walk(directory):
        for name in names:
            path = Path(root) / name
            if path.resolve() != key_file.resolve() and path.is_file():
                out[path] = path.read_bytes()
    return out


def leftovers(directory: Path, key_file: Path, plaintexts: list[bytes], sealed: list[bytes]) -> list[str]:
    """What is still on disk: each plaintext, and each fragment of each sealed record, with the file holding it."""
    found = []
    for path, data in disk_files(directory, key_file).items():
        found += [f"{text!r} in {path.name}" for text in plaintexts if text in data]
        for i, record in enumerate(sealed):
            found += [f"fragment of old state {i} in {path.name}" for piece in fragments(record) if piece in data]
    return found


def _sealer(db: Path, key_file: Path) -> Sealer:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        store_id = conn.execute("SELECT value FROM meta WHERE name = 'store_id'").fetchone()[0]
    finally:
        conn.close()
    return Sealer(read_key_file(key_file), store_id, os.urandom)
