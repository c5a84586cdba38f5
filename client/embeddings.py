"""Every event's text embedding, computed once when it is stored and sealed beside it.

:class:`EmbeddingEventStore` is the tracker's :class:`~vane.client.store.EventStore`. With a text
encoder installed (:meth:`EmbeddingEventStore.install_encoder`, an artifact from ``vane server
export-encoder``), every event with a title that is appended (``record``, ``record_many``, a history
import: they all store through :meth:`append_many`) is embedded first, batched, as
:func:`~vane.client.encoder.event_text` (the title and its URL's words), and stored in the same
transaction as the event. Without an encoder nothing changes (the light mode).

Storage, in the store's SQLite file::

    embeddings(seq INTEGER PRIMARY KEY, sealed BLOB)   seq = the event's sequence number
    sealed = AES-256-GCM (the store's key), AD bound to the store, kind "M" and seq (8 bytes BE)
    plaintext = 0x01 || len(version)(1) || encoder version (ASCII) || dims (2, BE) || float16[dims] (LE)

Two triggers keep the table in step with ``events`` inside the same transactions: deleting an event
(forget, retention) deletes its embedding (zeroed: ``secure_delete``), and re-sealing an event (a
key rotation) drops its embedding, which :meth:`EmbeddingEventStore.embed_missing` can compute
again. Embeddings are never recomputed on open. The installed encoder's artifact is kept sealed in the
state slot ``tracker/encoder`` (its version in ``tracker/encoder-version``), so a store reopens with it.
"""

from __future__ import annotations

import os
import sqlite3
import struct
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TypeAlias

import numpy as np
from vane.client.encoder import TextEncoder, event_text
from vane.client.sealing import Sealer
from vane.client.store import EventStore
from vane.client.store_file import opaque, transaction
from vane.client.store_rows import check_event, insert_events
from vane.shared.errors import ModelError, StoreIntegrityError
from vane.shared.events import Event

__all__ = ["ENCODER_SLOT", "ENCODER_VERSION_SLOT", "EmbeddingEventStore", "EncoderSource", "embedding_store"]

#: The state slots holding the installed encoder artifact and its version (UTF-8).
ENCODER_SLOT = "tracker/encoder"
ENCODER_VERSION_SLOT = "tracker/encoder-version"
EncoderSource: TypeAlias = "bytes | str | os.PathLike[str] | TextEncoder"
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS embeddings (seq INTEGER PRIMARY KEY, sealed BLOB NOT NULL)",
    "CREATE TRIGGER IF NOT EXISTS embeddings_follow_delete AFTER DELETE ON events "
    "BEGIN DELETE FROM embeddings WHERE seq = OLD.seq; END",
    "CREATE TRIGGER IF NOT EXISTS embeddings_follow_reseal AFTER UPDATE OF sealed ON events "
    "BEGIN DELETE FROM embeddings WHERE seq = NEW.seq; END",
)
_KIND = b"M"
_FORMAT = b"\x01"


def seal_embedding(sealer: Sealer, seq: int, version: str, vector: np.ndarray) -> bytes:
    """One event's embedding, sealed and bound to its sequence number."""
    tag = version.encode("ascii")
    if len(tag) > 255:
        raise ModelError(f"encoder version {version!r} is longer than 255 bytes")
    values = np.asarray(vector, dtype="<f2").reshape(-1)
    plain = _FORMAT + bytes([len(tag)]) + tag + struct.pack(">H", values.size) + values.tobytes()
    # the store's own AEAD under a kind of its own: a row moved to another seq fails authentication
    return sealer._seal(plain, sealer._ad(_KIND, struct.pack(">Q", seq)))


def open_embedding(sealer: Sealer, seq: int, sealed: bytes) -> tuple[str, np.ndarray]:
    """``(encoder version, float32 vector)``; the opaque integrity error for a damaged or moved row."""
    plain = sealer._open(sealed, sealer._ad(_KIND, struct.pack(">Q", seq)))
    if plain[:1] != _FORMAT:
        raise StoreIntegrityError()
    n = plain[1]
    version = plain[2 : 2 + n].decode("ascii")
    (dims,) = struct.unpack_from(">H", plain, 2 + n)
    values = np.frombuffer(plain, dtype="<f2", count=dims, offset=4 + n)
    return version, values.astype(np.float32)


class EmbeddingEventStore(EventStore):
    """An :class:`EventStore` that embeds and seals each titled event as it is stored (with an encoder)."""

    _encoder: TextEncoder | None = None

    # ---- the encoder

    @property
    def encoder(self) -> TextEncoder | None:
        return self._encoder

    @property
    def encoder_version(self) -> str | None:
        return None if self._encoder is None else self._encoder.version

    def load_encoder(self, source: EncoderSource | None = None) -> str | None:
        """Install ``source`` if given, else the encoder this store keeps (if any); its version or None."""
        if source is not None:
            return self.install_encoder(source)
        blob = self.get_state(ENCODER_SLOT)
        if blob is not None:
            self._encoder = TextEncoder.from_bytes(blob)
        return self.encoder_version

    def install_encoder(self, source: EncoderSource) -> str:
        """Use (and keep in the store) the encoder ``source``: an artifact's bytes or path, or a TextEncoder.

        Events stored from now on are embedded with it; those stored before keep their embeddings (of
        the version they were embedded with) and :meth:`embed_missing` embeds those that have none.
        """
        if isinstance(source, TextEncoder):
            encoder, blob = source, source.artifact.to_bytes()
        else:
            if isinstance(source, (str, os.PathLike)):
                try:
                    blob = Path(source).read_bytes()
                except OSError as exc:
                    raise ModelError(f"encoder file {str(source)!r} cannot be read: {exc.strerror or exc}") from None
            elif isinstance(source, (bytes, bytearray, memoryview)):
                blob = bytes(source)
            else:
                raise ModelError(f"encoder must be an encoder artifact's bytes or path, got {type(source).__name__}")
            encoder = TextEncoder.from_bytes(blob)
        if self.get_state(ENCODER_VERSION_SLOT) != encoder.version.encode("utf-8"):
            self.put_state(ENCODER_SLOT, blob)
            self.put_state(ENCODER_VERSION_SLOT, encoder.version.encode("utf-8"))
        self._encoder = encoder
        return encoder.version

    def close(self) -> None:
        """Close the store and free the encoder's interpreter."""
        try:
            super().close()
        finally:
            self._encoder = None

    # ---- storing

    def append_many(self, events: Iterable[Event]) -> list[int]:
        """Store events (as :meth:`EventStore.append_many`) with the embeddings of the titled ones, atomically."""
        encoder = self._encoder
        if encoder is None:
            return super().append_many(events)
        batch = [check_event(e, f"append_many() item {i}") for i, e in enumerate(events)]
        if not batch:
            return []
        encoded = [self._sealer.encode_event(e) for e in batch]
        titled = [i for i, e in enumerate(batch) if e.title]
        vectors = encoder.embed([event_text(batch[i].title, batch[i].item_id) for i in titled])
        with self._lock, opaque():
            with transaction(self._db()) as conn:
                seqs = insert_events(conn, self._sealer, encoded)
                self._put(conn, [(seqs[i], v) for i, v in zip(titled, vectors, strict=True)], encoder.version)
        return seqs

    def _put(self, conn: sqlite3.Connection, items: Sequence[tuple[int, np.ndarray]], version: str) -> None:
        if not items:
            return
        for statement in _SCHEMA:
            conn.execute(statement)
        conn.executemany("INSERT OR REPLACE INTO embeddings(seq, sealed) VALUES (?, ?)",
                         ((seq, seal_embedding(self._sealer, seq, version, v)) for seq, v in items))

    # ---- reading

    def embeddings(self, seqs: Iterable[int] | None = None, version: str | None = None) -> dict[int, np.ndarray]:
        """``seq -> float32[dims]`` for the events that have an embedding (all of them when ``seqs`` is None),
        only those of encoder ``version`` when given. Every row read is authenticated first."""
        wanted = None if seqs is None else sorted({int(s) for s in seqs})
        with self._lock, opaque():
            conn = self._db()
            if not _has_table(conn):
                return {}
            if wanted is None:
                rows = conn.execute("SELECT seq, sealed FROM embeddings ORDER BY seq").fetchall()
            else:
                rows = []
                for start in range(0, len(wanted), 500):
                    chunk = wanted[start : start + 500]
                    marks = ",".join("?" * len(chunk))
                    rows += conn.execute(f"SELECT seq, sealed FROM embeddings WHERE seq IN ({marks})",
                                         chunk).fetchall()
            out: dict[int, np.ndarray] = {}
            for seq, sealed in rows:
                found, vector = open_embedding(self._sealer, seq, sealed)
                if version is None or found == version:
                    out[int(seq)] = vector
            return out

    def embedding_versions(self) -> dict[str, int]:
        """How many stored embeddings each encoder version made."""
        counts: dict[str, int] = {}
        with self._lock, opaque():
            conn = self._db()
            if _has_table(conn):
                for seq, sealed in conn.execute("SELECT seq, sealed FROM embeddings").fetchall():
                    found = open_embedding(self._sealer, seq, sealed)[0]
                    counts[found] = counts.get(found, 0) + 1
        return counts

    def embed_missing(self, batch: int = 256, progress: Callable[[int, int], None] | None = None) -> int:
        """Embed the titled events that have no embedding of the installed encoder's version; how many.

        For after a new encoder version or a key rotation; never run implicitly.
        """
        encoder = self._encoder
        if encoder is None:
            raise ModelError("no text encoder is installed: install one first (install_encoder)")
        have = set(self.embeddings(version=encoder.version))
        todo = [(seq, e) for seq, e in self.events() if e.title and seq not in have]
        for start in range(0, len(todo), max(1, int(batch))):
            chunk = todo[start : start + batch]
            vectors = encoder.embed([event_text(e.title, e.item_id) for _, e in chunk])
            with self._lock, opaque():
                with transaction(self._db()) as conn:
                    # an event forgotten meanwhile has no row any more: keep only the seqs still stored
                    alive = {s for (s,) in conn.execute(
                        f"SELECT seq FROM events WHERE seq IN ({','.join('?' * len(chunk))})", [s for s, _ in chunk])}
                    self._put(conn, [(s, v) for (s, _), v in zip(chunk, vectors, strict=True) if s in alive],
                              encoder.version)
            if progress is not None:
                progress(min(start + len(chunk), len(todo)), len(todo))
        return len(todo)


def _has_table(conn: sqlite3.Connection) -> bool:
    row = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'embeddings'").fetchone()
    return row is not None


def embedding_store(store: EventStore) -> EmbeddingEventStore:
    """``store`` as the embedding store it must be (a tracker opened with :meth:`InterestTracker.open`)."""
    if not isinstance(store, EmbeddingEventStore):
        raise ModelError("this tracker's store keeps no embeddings: open the tracker with InterestTracker.open")
    return store
