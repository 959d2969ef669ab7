"""One process per data folder: an exclusive lock held for the bot's lifetime.

Two processes on one data folder would run two Olm machines on one Matrix device and corrupt
its keys. `acquire()` takes `fcntl.flock` on `data_dir/tchap-bot.lock` (released by the kernel
when the process dies, even on SIGKILL: no stale lock) and writes the holder's PID inside;
`holder()` says who holds it without taking it (for the `ops` helper's `doctor`).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

LOCK_FILE_NAME = "tchap-bot.lock"


class AlreadyRunning(Exception):
    """Another process holds the data folder's lock."""

    def __init__(self, pid: int | None, path: Path) -> None:
        super().__init__(f"{path} is locked by PID {pid}")
        self.pid = pid
        self.path = path


def lock_path(data_dir: Path) -> Path:
    return data_dir / LOCK_FILE_NAME


def _read_pid(fd: int) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        return int(text) if text else None
    return None


class DataDirLock:
    """The held lock; `release()` (or process exit) frees it."""

    def __init__(self, fd: int, path: Path) -> None:
        self._fd: int | None = fd
        self.path = path

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, 0)
        with contextlib.suppress(OSError):
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None


def acquire(data_dir: Path) -> DataDirLock:
    """Take the folder's lock at once or raise `AlreadyRunning` with the holder's PID."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = lock_path(data_dir)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pid = _read_pid(fd)
        os.close(fd)
        raise AlreadyRunning(pid, path) from None
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
    os.fsync(fd)
    return DataDirLock(fd, path)


def holder(data_dir: Path) -> int | None:
    """The PID of the process holding the folder's lock, or None when nobody holds it.

    Never keeps the lock: a probe that finds it free releases it at once.
    """
    path = lock_path(data_dir)
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_pid(fd) or -1
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
