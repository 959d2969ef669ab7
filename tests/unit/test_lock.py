"""The data folder's lock: one holder, its PID readable without taking the lock."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bot.ops import lock


def test_one_holder_at_a_time_and_its_pid_is_readable(tmp_path: Path) -> None:
    assert lock.holder(tmp_path) is None
    held = lock.acquire(tmp_path)
    try:
        assert lock.holder(tmp_path) == os.getpid()
        with pytest.raises(lock.AlreadyRunning) as refused:
            lock.acquire(tmp_path)  # a second open file: refused even in the same process
        assert refused.value.pid == os.getpid()
        assert lock.holder(tmp_path) == os.getpid(), "probing never takes the lock"
    finally:
        held.release()
    assert lock.holder(tmp_path) is None
    lock.acquire(tmp_path).release()
