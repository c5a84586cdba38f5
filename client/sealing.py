"""Sealing a store's records: AES-256-GCM bound to the store, the record kind and its id.

::

    sealed = 0x01 || nonce(12) || ciphertext || tag(16)
    AD     = b"vane-store/1" || store_id(16) || kind(1) || id     kind E: seq (8 bytes BE), S: slot, K: empty

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
from vane.shared.errors import StoreIntegrityError
from vane.shared.events import Event

__all__ = ["FORMAT", "NONCE_LEN", "STORE_ID_LEN", "TAG_LEN", "Sealer", "new_store_meta", "sealer_from_meta"]

#: The store format, also the HKDF info and the prefix of every associated data.
FORMAT = b"vane-store/1"
NONCE_LEN = 12
TAG_LEN = 16
STORE_ID_LEN = 16
_VERSION = b"\x01"
_KEY_CHECK = b"vane-store key check v1"
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

    # ---- the key check: proves the key opens this store

    def key_check(self) -> bytes:
        """A sealed constant kept in the store's meta table."""
        return self._seal(_KEY_CHECK, self._ad(b"K", b""))

    def verify_key(self, sealed: object) -> None:
        """Raise :class:`StoreIntegrityError` unless ``sealed`` is this key's :meth:`key_check`."""
        if self._open(sealed, self._ad(b"K", b"")) != _KEY_CHECK:
            raise StoreIntegrityError()

    # ---- events

    def seal_event(self, seq: int, event: Event) -> bytes:
        """``event`` as compact JSON, sealed under its sequence number."""
        return self._seal(_ENCODER.encode(event.to_dict()).encode("utf-8"), self._ad(b"E", _seq_id(seq)))

    def open_event(self, seq: int, sealed: object) -> Event:
        """The event sealed under ``seq``; a payload that fails authentication raises the opaque error."""
        plain = self._open(sealed, self._ad(b"E", _seq_id(seq)))
        # The payload passed authentication, so it is what seal_event() wrote from a validated Event:
        # rebuild it directly instead of re-validating every field (about 3x faster to read).
        d = json.loads(plain)
        ts = datetime.fromisoformat(d["timestamp"])
        if ts.tzinfo is None or not isinstance(d["item_id"], str) or not isinstance(d["categories"], list):
            raise ValueError("malformed payload")
        dwell = d["dwell_s"]
        return Event(d["item_id"], tuple(d["categories"]), ts, d["kind"], d["title"],
                     None if dwell is None else float(dwell))

    # ---- state blobs

    def seal_state(self, name: str, blob: bytes) -> tuple[bytes, bytes]:
        """``(slot, sealed)`` for the state blob called ``name`` (the name is sealed with it)."""
        raw = name.encode("utf-8")
        slot = self.slot(name)
        return slot, self._seal(struct.pack(">H", len(raw)) + raw + blob, self._ad(b"S", slot))

    def open_state(self, slot: bytes, sealed: object) -> tuple[str, bytes]:
        """``(name, blob)`` of the state sealed in ``slot``; the slot must be the name's own."""
        plain = self._open(sealed, self._ad(b"S", slot))
        (size,) = struct.unpack(">H", plain[:2])
        name = plain[2:2 + size].decode("utf-8")
        if not hmac.compare_digest(self.slot(name), slot):
            raise StoreIntegrityError()
        return name, plain[2 + size:]


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
                     random: Callable[[int], bytes]) -> tuple[bytes, Sealer]:
    """An existing store's id and sealer, once the key given opens its key check.

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
    sealer.verify_key(meta["key_check"])
    return store_id, sealer
