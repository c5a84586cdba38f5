"""One owner per store: an advisory lock on the ``STORE.lock`` sidecar, holding the owner's PID.

Every :meth:`~vane.client.store.EventStore.open` is a writer open (a tracker saves its state even
when it only answers), so every open takes the lock with ``fcntl.flock``; a second open of the same
store, from another process or the same one, fails at once with
:class:`~vane.shared.errors.StoreInUseError` naming the PID that holds it. The kernel drops the lock
when its holder exits, even on SIGKILL, so a crashed app never leaves the store locked; the stale
sidecar file is reused. A clean close unlinks the sidecar while still holding the lock, and an
opener checks that the file it locked is still the one at the path, so two processes can never
both hold it.

Platforms without ``fcntl`` (Windows) run without the lock.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from vane.shared.errors import StoreError, StoreInUseError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["StoreLock", "lock_path"]


def lock_path(db_path: Path) -> Path:
    """The lock sidecar of the store ``db_path``."""
    return db_path.with_name(db_path.name + ".lock")


class StoreLock:
    """The held lock of one open store; :meth:`release` it on close."""

    def __init__(self, path: Path, fd: int | None) -> None:
        self.path = path
        self._fd = fd

    @classmethod
    def acquire(cls, db_path: Path) -> StoreLock:
        """Take the lock of the store ``db_path`` or raise :class:`StoreInUseError`.

        Raises
        ------
        StoreInUseError
            Another open store (in any process) holds it.
        StoreError
            The sidecar cannot be created (say, a read-only directory).
        """
        path = lock_path(db_path)
        if fcntl is None:  # pragma: no cover - Windows
            return cls(path, None)
        for _ in range(5):
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0), 0o600)
            except OSError as exc:
                raise StoreError(f"cannot create the lock file {str(path)!r} of the store: {exc.strerror}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pid = _read_pid(fd)
                os.close(fd)
                raise StoreInUseError(str(db_path), pid) from None
            except BaseException:
                os.close(fd)
                raise
            try:
                same = os.fstat(fd).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
                return cls(path, fd)
            os.close(fd)  # the holder unlinked it as we locked it: lock the new file
        raise StoreError(f"could not take the lock file {str(path)!r} of the store; retry")

    def release(self) -> None:
        """Unlink the sidecar and drop the lock; safe to call twice."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        os.close(fd)


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None
