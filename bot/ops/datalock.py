"""The data folder's single-process lock: `data_dir/tchap-bot.lock`, holding the PID.

Two processes on one data folder would share one device and one crypto store and corrupt
both. The lock is an exclusive `fcntl.flock` on that file (released by the kernel when the
process dies, so a stale file never blocks). Here: reading who holds it (`tchap-bot doctor`)
and taking it for a short administrative command (`tchap-bot reset-session`).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

LOCK_FILE_NAME = "tchap-bot.lock"


class LockHeld(Exception):
    def __init__(self, pid: int | None) -> None:
        super().__init__(f"held by {pid}")
        self.pid = pid


def lock_path(data_dir: Path) -> Path:
    return data_dir / LOCK_FILE_NAME


def holder(data_dir: Path) -> int | None:
    """The PID holding the lock (0 if unreadable), None when nobody holds it.

    Raises OSError when the lock file cannot be opened (permissions)."""
    path = lock_path(data_dir)
    if not path.exists():
        return None
    with path.open("r") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _pid_in(handle.read())
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    return None


@contextlib.contextmanager
def held(data_dir: Path) -> Iterator[None]:
    """Hold the lock for a block; raise LockHeld when another process has it."""
    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path(data_dir), os.O_RDWR | os.O_CREAT, 0o600)
    with os.fdopen(fd, "r+") as handle:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockHeld(_pid_in(handle.read())) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)


def _pid_in(text: str) -> int:
    text = text.strip()
    return int(text) if text.isdigit() else 0
