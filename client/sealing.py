"""Sealing a store's records: AES-256-GCM bound to the store, the record kind and its id.

::

    sealed = 0x01 || nonce(12) || ciphertext || tag(16)
    AD     = b"vane-store/1" || store_id(16) || kind(1) || id     kind E: seq (8 bytes BE), K: empty, H: empty

    state  = 0x02 || version(8) || nonce(12) || ciphertext || tag(16)
    AD     = ... || b"V" || slot(32) || version(8)       plaintext = flags(1) || len(2) || name || blob

A state blob carries a version number (in the clear, authenticated) that the store's sealed head
record (:mod:`vane.client.store_head`) accounts for, so an older copy of a blob put back in its slot
is detected. Stores written before the head used ``0x01`` state records (kind ``S``): they are read
only to migrate them.

HKDF-SHA256 (salt = store_id, info = the format) splits the 32-byte master key into the AES key and
the HMAC key that names state slots, so only sequence numbers and opaque slot ids are stored in the
clear. A fresh 96-bit nonce seals every payload; a row moved, swapped or replayed under another id
fails authentication. Opening checks the tag before any plaintext is released and every failure is
the one opaque :class:`~vane.shared.errors.StoreIntegrityError`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import struct
from collections.abc import Callable
from datetime import datetime
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from vane.client.keys import KEY_LEN, key_meta, scrypt, scrypt_meta
from vane.shared.errors import EventValidationError, StoreIntegrityError
from vane.shared.events import Event

__all__ = ["FORMAT", "NONCE_LEN", "STORE_ID_LEN", "TAG_LEN", "Sealer", "new_store_meta", "sealer_from_meta"]

#: The store format, also the HKDF info and the prefix of every associated data.
FORMAT = b"vane-store/1"
NONCE_LEN = 12
TAG_LEN = 16
STORE_ID_LEN = 16
_VERSION = b"\x01"
_STATE_VERSION = b"\x02"
_KEY_CHECK = b"vane-store key check v1"
#: The key check of a store that has a head record: a head can then never silently go missing.
_KEY_CHECK_HEAD = b"vane-store key check v2 head"
#: State flag: the blob is derived from the events (deleted with them by forget and retention).
DERIVED = 0x01
#: State flag (with DERIVED): a JSON object keyed by item key; forget and retention keep the entries of
#: items that still have an event and delete the rest (:func:`vane.client.store_rows.delete_events`).
PER_ITEM = 0x02
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


class Sealer:
    """Seals and opens one store's records under keys derived from its master key and store id.

    Parameters
    ----------
    master : bytes
        The 32-byte master key (:mod:`vane.client.keys`).
    store_id : bytes
        The store's random 16-byte id.
    random : callable
        ``random(n) -> n bytes``, for nonces.
    """

    def __init__(self, master: bytes, store_id: bytes, random: Callable[[int], bytes]) -> None:
        okm = HKDF(algorithm=hashes.SHA256(), length=2 * KEY_LEN, salt=store_id, info=FORMAT).derive(master)
        self._aead = AESGCM(okm[:KEY_LEN])
        self._mac_key = okm[KEY_LEN:]
        self._tag_key = hmac.new(self._mac_key, b"vane-store head tags", hashlib.sha256).digest()
        self._prefix = FORMAT + store_id
        self._random = random

    def _ad(self, kind: bytes, ident: bytes) -> bytes:
        return self._prefix + kind + ident

    def slot(self, name: str) -> bytes:
        """The opaque id of the state slot called ``name`` (HMAC-SHA256)."""
        return hmac.new(self._mac_key, name.encode("utf-8"), hashlib.sha256).digest()

    def _seal(self, plaintext: bytes, ad: bytes) -> bytes:
        nonce = self._random(NONCE_LEN)
        if len(nonce) != NONCE_LEN:
            raise ValueError(f"random source returned {len(nonce)} bytes, expected {NONCE_LEN}")
        return _VERSION + nonce + self._aead.encrypt(nonce, plaintext, _VERSION + ad)

    def _open(self, sealed: object, ad: bytes) -> bytes:
        # AESGCM.decrypt checks the tag before it releases any plaintext.
        if not isinstance(sealed, bytes) or len(sealed) < 1 + NONCE_LEN + TAG_LEN or sealed[:1] != _VERSION:
            raise StoreIntegrityError()
        try:
            return self._aead.decrypt(sealed[1:1 + NONCE_LEN], sealed[1 + NONCE_LEN:], _VERSION + ad)
        except InvalidTag:
            raise StoreIntegrityError() from None

    # ---- the key check: proves the key opens this store (and says whether it has a head)

    def key_check(self, head: bool = True) -> bytes:
        """A sealed constant kept in the store's meta table; ``head``: the store keeps a head record."""
        return self._seal(_KEY_CHECK_HEAD if head else _KEY_CHECK, self._ad(b"K", b""))

    def verify_key(self, sealed: object) -> bool:
        """Whether the store has a head record; raises :class:`StoreIntegrityError` for another key."""
        plain = self._open(sealed, self._ad(b"K", b""))
        if plain not in (_KEY_CHECK, _KEY_CHECK_HEAD):
            raise StoreIntegrityError()
        return plain == _KEY_CHECK_HEAD

    # ---- the head record (see vane.client.store_head)

    def seal_head(self, packed: bytes) -> bytes:
        """The packed head record, sealed."""
        return self._seal(packed, self._ad(b"H", b""))

    def open_head(self, sealed: object) -> bytes:
        """The packed head record; the opaque error if it fails authentication."""
        return self._open(sealed, self._ad(b"H", b""))

    def seq_tag(self, seq: int) -> int:
        """A keyed 256-bit tag of an event's sequence number (the head XORs them into a set digest)."""
        return _tag(self._tag_key, b"E" + _seq_id(seq))

    def state_tag(self, slot: bytes, version: int) -> int:
        """A keyed 256-bit tag of a state slot at one version."""
        return _tag(self._tag_key, b"S" + slot + _seq_id(version))

    # ---- events

    @staticmethod
    def encode_event(event: Event) -> bytes:
        """``event`` as the compact JSON that is sealed, checked to read back as an equal, valid event.

        Raises
        ------
        EventValidationError
            Naming the first field that would not read back unchanged (a record that cannot be
            read back is never written).
        """
        plain = _ENCODER.encode(event.to_dict()).encode("utf-8")
        payload = json.loads(plain)  # parsed once for both readers (neither changes it)
        back = Event.from_dict(payload)  # a field that fails validation is named here
        for name in ("item_id", "categories", "timestamp", "kind", "title", "dwell_s"):
            value, read = getattr(event, name), getattr(back, name)
            if read != value or type(value) is not type(read):
                raise EventValidationError(name, value, "a value that reads back unchanged; build events "
                                           "with Event.create(...) or Event.from_dict(...)")
        try:
            fast = _event_from_payload(payload)
        except (ValueError, TypeError, KeyError) as exc:
            raise EventValidationError("event", event, f"an event that reads back unchanged ({exc})") from None
        if fast != event:
            raise EventValidationError("event", event, "an event that reads back unchanged")
        return plain

    def seal_encoded(self, seq: int, plain: bytes) -> bytes:
        """An event encoded by :meth:`encode_event`, sealed under its sequence number."""
        return self._seal(plain, self._ad(b"E", _seq_id(seq)))

    def seal_event(self, seq: int, event: Event) -> bytes:
        """``event`` as compact JSON (checked by :meth:`encode_event`), sealed under its sequence number."""
        return self.seal_encoded(seq, self.encode_event(event))

    def open_event(self, seq: int, sealed: object) -> Event:
        """The event sealed under ``seq``; a payload that fails authentication raises the opaque error."""
        return _decode_event(self._open(sealed, self._ad(b"E", _seq_id(seq))))

    # ---- state blobs

    def seal_state(self, name: str, blob: bytes, version: int = 1, flags: int = 0) -> tuple[bytes, bytes]:
        """``(slot, sealed)`` for the state blob called ``name`` at ``version`` (the name is sealed with it)."""
        raw = name.encode("utf-8")
        slot = self.slot(name)
        ver = _seq_id(version)
        nonce = self._random(NONCE_LEN)
        if len(nonce) != NONCE_LEN:
            raise ValueError(f"random source returned {len(nonce)} bytes, expected {NONCE_LEN}")
        plain = bytes([flags]) + struct.pack(">H", len(raw)) + raw + blob
        ad = _STATE_VERSION + self._ad(b"V", slot + ver)
        return slot, _STATE_VERSION + ver + nonce + self._aead.encrypt(nonce, plain, ad)

    @staticmethod
    def state_version(sealed: object) -> int:
        """The version a sealed state record claims (checked when it is opened and against the head)."""
        if not isinstance(sealed, bytes) or len(sealed) < 9 or sealed[:1] != _STATE_VERSION:
            raise StoreIntegrityError()
        return int.from_bytes(sealed[1:9], "big")

    def open_state_record(self, slot: bytes, sealed: object) -> tuple[str, bytes, int, int]:
        """``(name, blob, version, flags)`` of the state sealed in ``slot``; the slot must be the name's own."""
        version = self.state_version(sealed)
        if not isinstance(sealed, bytes):
            raise StoreIntegrityError()
        body = memoryview(sealed)[9:]  # a view: a model blob is not copied twice on its way to the cipher
        if len(body) < NONCE_LEN + TAG_LEN:
            raise StoreIntegrityError()
        try:
            plain = self._aead.decrypt(bytes(body[:NONCE_LEN]), body[NONCE_LEN:],
                                       _STATE_VERSION + self._ad(b"V", slot + sealed[1:9]))
        except InvalidTag:
            raise StoreIntegrityError() from None
        (size,) = struct.unpack(">H", plain[1:3])
        name = plain[3:3 + size].decode("utf-8")
        if not hmac.compare_digest(self.slot(name), slot):
            raise StoreIntegrityError()
        return name, plain[3 + size:], version, plain[0]

    def open_state(self, slot: bytes, sealed: object) -> tuple[str, bytes]:
        """``(name, blob)`` of the state sealed in ``slot``."""
        name, blob, _, _ = self.open_state_record(slot, sealed)
        return name, blob

    def open_legacy_state(self, slot: bytes, sealed: object) -> tuple[str, bytes]:
        """``(name, blob)`` of a state record written before the head (``0x01``, kind ``S``); for migration."""
        plain = self._open(sealed, self._ad(b"S", slot))
        (size,) = struct.unpack(">H", plain[:2])
        name = plain[2:2 + size].decode("utf-8")
        if not hmac.compare_digest(self.slot(name), slot):
            raise StoreIntegrityError()
        return name, plain[2 + size:]


def _decode_event(plain: bytes) -> Event:
    # The payload passed authentication, so it is what seal_event() wrote from a checked Event:
    # rebuild it directly instead of re-validating every field (about 3x faster to read).
    return _event_from_payload(json.loads(plain))


def _event_from_payload(d: Any) -> Event:
    ts = datetime.fromisoformat(d["timestamp"])
    if ts.tzinfo is None or not isinstance(d["item_id"], str) or not isinstance(d["categories"], list):
        raise ValueError("malformed payload")
    dwell = d["dwell_s"]
    return Event(d["item_id"], tuple(d["categories"]), ts, d["kind"], d["title"],
                 None if dwell is None else float(dwell))


def _tag(key: bytes, message: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(message, key=key, digest_size=32).digest(), "big")


def _seq_id(seq: int) -> bytes:
    return struct.pack(">Q", seq)


def new_store_meta(master: bytes | None, passphrase: str | bytes | None, random: Callable[[int], bytes],
                   scrypt_params: tuple[int, int, int],
                   store_id: bytes | None = None) -> tuple[dict[str, Any], bytes, Sealer]:
    """A store's ``meta`` rows (format, id, key source, key check), its id and its sealer.

    A new store gets a random id; a key rotation passes the store's own ``store_id``.
    """
    store_id = random(STORE_ID_LEN) if store_id is None else store_id
    meta, master = key_meta(master, passphrase, random, scrypt_params)
    sealer = Sealer(master, store_id, random)
    meta.update(format=FORMAT, store_id=store_id, key_check=sealer.key_check())
    return meta, store_id, sealer


def sealer_from_meta(meta: dict[str, Any], master: bytes | None, passphrase: str | bytes | None,
                     random: Callable[[int], bytes]) -> tuple[bytes, Sealer, bool]:
    """An existing store's id and sealer, once the key given opens its key check, and whether it has a head.

    Raises
    ------
    StoreIntegrityError
        A foreign format, a malformed id, a key source that is not the store's, or the wrong key.
        (Missing rows raise KeyError; the store turns every failure into the opaque error.)
    """
    if meta.get("format") != FORMAT:
        raise StoreIntegrityError()
    store_id = meta["store_id"]
    if not isinstance(store_id, bytes) or len(store_id) != STORE_ID_LEN:
        raise StoreIntegrityError()
    kdf = meta.get("kdf")
    if passphrase is not None:
        if kdf != b"scrypt":
            raise StoreIntegrityError()
        master = scrypt(passphrase, meta["salt"], scrypt_meta(meta))
    elif kdf != b"raw" or master is None:
        raise StoreIntegrityError()
    sealer = Sealer(master, store_id, random)
    return store_id, sealer, sealer.verify_key(meta["key_check"])
