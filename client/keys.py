"""Where a store's 32-byte master key comes from: a key file, a passphrase (scrypt) or the caller.

Key file format: 64 lowercase hex characters and a newline (32 random bytes), created with mode
0600. Reading also accepts exactly 32 raw bytes. A key file readable by group or others is refused.

A passphrase store keeps its scrypt salt and cost in its ``meta`` table (:func:`key_meta`). The
cost read back from a file is capped at what Vane itself writes, :data:`DEFAULT_SCRYPT_PARAMS`, with
a margin of 4x on ``n`` and 2x on ``p`` (:data:`MAX_SCRYPT_PARAMS`: at most 128 MiB and about half a
second); anything above is refused before deriving (:func:`scrypt_meta`), so a tampered header
cannot make an open spend seconds and gigabytes. New stores are held to the same cap.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from vane.shared.errors import ConfigError, KeyFileError, StoreIntegrityError

__all__ = [
    "DEFAULT_SCRYPT_PARAMS",
    "KEY_LEN",
    "MAX_SCRYPT_PARAMS",
    "check_key_path",
    "check_one_source",
    "key_from_file",
    "key_meta",
    "read_key_file",
    "scrypt",
    "scrypt_meta",
    "write_key_file",
]

logger = logging.getLogger("vane.client")

#: Bytes of a master key.
KEY_LEN = 32
SALT_LEN = 16
#: scrypt cost (n, r, p) for new passphrase stores: about 32 MiB and 0.1 s.
DEFAULT_SCRYPT_PARAMS: tuple[int, int, int] = (2**15, 8, 1)
#: The highest cost accepted, written or read back (memory 128 * n * r * p bytes at most 256 MiB).
MAX_SCRYPT_PARAMS: tuple[int, int, int] = (2**17, 8, 2)
_MAX_SCRYPT = MAX_SCRYPT_PARAMS

RandomBytes = Callable[[int], bytes]


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
        # O_NONBLOCK: a FIFO put where the key file should be must not block the open forever.
        fd = os.open(name, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except IsADirectoryError:
        raise KeyFileError(f"key file {name!r} is a directory; expected a key file") from None
    except OSError as exc:
        raise KeyFileError(f"cannot open key file {name!r}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fh.fileno())
        if stat.S_ISDIR(info.st_mode):
            raise KeyFileError(f"key file {name!r} is a directory; expected a key file")
        if not stat.S_ISREG(info.st_mode):
            raise KeyFileError(f"key file {name!r} is not a regular file (a FIFO, socket or device); "
                               "expected a key file")
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



def check_key_path(path: str | os.PathLike[str], create: bool) -> None:
    """Raise :class:`KeyFileError` unless ``path`` can be read as a key file, or created (``create``).

    Run before anything is created, so a bad key path leaves no store behind.
    """
    name = os.fspath(path)
    if os.path.isdir(name):
        raise KeyFileError(f"key file {name!r} is a directory; expected a key file")
    if os.path.lexists(name):
        return  # read_key_file checks the rest
    if not create:
        raise KeyFileError(f"cannot open key file {name!r}: it does not exist; expected the key file of this "
                           "existing store")
    parent = os.path.dirname(os.path.abspath(name))
    if not os.path.isdir(parent):
        raise KeyFileError(f"cannot create key file {name!r}: its directory {parent!r} does not exist; "
                           "expected an existing directory")


def key_from_file(path: str | os.PathLike[str], random: RandomBytes, create: bool) -> bytes:
    """The key in ``path``; with ``create``, a new random key written there first if the file does not exist."""
    check_key_path(path, create)
    if create and not os.path.lexists(path):
        key = random(KEY_LEN)
        write_key_file(path, key)
        logger.info("created key file %s", os.fspath(path))
        return key
    return read_key_file(path)


def scrypt(passphrase: str | bytes, salt: bytes, params: tuple[int, int, int]) -> bytes:
    """The master key derived from ``passphrase`` with scrypt cost ``params`` = (n, r, p)."""
    secret = passphrase.encode("utf-8") if isinstance(passphrase, str) else passphrase
    n, r, p = params
    return Scrypt(salt=salt, length=KEY_LEN, n=n, r=r, p=p).derive(secret)


def check_one_source(key_file: object, passphrase: object, key: object, prefix: str = "") -> None:
    """Raise ValueError unless exactly one well-formed key source is given (``prefix`` names them, e.g. ``new_``)."""
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




def key_meta(master: bytes | None, passphrase: str | bytes | None, random: RandomBytes,
             scrypt_params: tuple[int, int, int]) -> tuple[dict[str, Any], bytes]:
    """The meta rows describing a key source, and the master key itself."""
    if passphrase is None:
        if master is None:
            raise ValueError("no key given")
        return {"kdf": b"raw"}, master
    validate_scrypt(scrypt_params)
    salt = random(SALT_LEN)
    n, r, p = scrypt_params
    meta = {"kdf": b"scrypt", "salt": salt, "scrypt_n": n, "scrypt_r": r, "scrypt_p": p}
    return meta, scrypt(passphrase, salt, scrypt_params)


def validate_scrypt(params: tuple[int, int, int]) -> None:
    """Raise :class:`ConfigError` (a ValueError) unless ``params`` is a scrypt cost within :data:`MAX_SCRYPT_PARAMS`."""
    n, r, p = params
    ok = (all(isinstance(v, int) and not isinstance(v, bool) for v in params) and n >= 2 and n & (n - 1) == 0
          and 1 <= r and 1 <= p and n <= _MAX_SCRYPT[0] and r <= _MAX_SCRYPT[1] and p <= _MAX_SCRYPT[2])
    if not ok:
        raise ConfigError(f"scrypt_params must be (n, r, p) with n a power of two <= {_MAX_SCRYPT[0]}, "
                         f"1 <= r <= {_MAX_SCRYPT[1]}, 1 <= p <= {_MAX_SCRYPT[2]}; got {params!r}")


def scrypt_meta(meta: dict[str, Any]) -> tuple[int, int, int]:
    """The scrypt cost a store's meta rows hold, validated."""
    params = (meta["scrypt_n"], meta["scrypt_r"], meta["scrypt_p"])
    try:
        validate_scrypt(params)
    except ConfigError:  # a tampered cost is refused before deriving, with the store's opaque error
        raise StoreIntegrityError() from None
    return params
