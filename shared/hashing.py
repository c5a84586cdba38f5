"""Stable feature hashing of item ids and title tokens.

Uses BLAKE2b, so a value hashes to the same bucket in every process and on
every platform (Python's ``hash()`` is salted per process). Bucket 0 is kept
for padding; real values land in ``1 .. buckets-1``.
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache

import numpy as np

_TOKEN_RE = re.compile(r"[^\W_]+", re.UNICODE)


@lru_cache(maxsize=65536)
def stable_hash(value: str, buckets: int, salt: bytes = b"") -> int:
    """Hash ``value`` into ``1 .. buckets-1``; 0 is the padding bucket (results are cached)."""
    if buckets < 2:
        raise ValueError(f"buckets is {buckets}; expected at least 2")
    digest = hashlib.blake2b(value.encode("utf-8"), digest_size=8, person=b"vane.hash", salt=salt[:16]).digest()
    return 1 + int.from_bytes(digest, "little") % (buckets - 1)


def item_bucket(item_id: str, buckets: int) -> int:
    """The hashed bucket of an item id."""
    return stable_hash(item_id, buckets, salt=b"item")


def tokenize(title: str | None) -> list[str]:
    """Lower-cased word tokens of a title (Unicode letters and digits)."""
    if not title:
        return []
    return _TOKEN_RE.findall(title.lower())


@lru_cache(maxsize=16384)
def token_ids(title: str | None, buckets: int, length: int) -> tuple[int, ...]:
    """Exactly ``length`` hashed title tokens, zero-padded (cached per title)."""
    ids = [stable_hash(token, buckets, salt=b"token") for token in tokenize(title)[:length]]
    return tuple(ids) + (0,) * (length - len(ids))


def token_buckets(title: str | None, buckets: int, length: int) -> np.ndarray:
    """Up to ``length`` hashed title tokens, zero-padded, as int32."""
    return np.asarray(token_ids(title, buckets, length), dtype=np.int32)
