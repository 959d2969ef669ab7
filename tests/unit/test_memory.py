"""bot.ops.memory: freed heap pages really go back to the system (glibc)."""

from __future__ import annotations

import os
from pathlib import Path

from bot.ops import memory


def resident_mb() -> float:
    for line in Path(f"/proc/{os.getpid()}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_freed_heap_pages_are_given_back_after_a_burst_of_allocations() -> None:
    # 1 KB buffers live on glibc's heap (pymalloc takes only ≤ 512 bytes); one in 64 kept
    # alive pins the heap's top, so glibc alone would keep the freed pages resident.
    buffers = [bytes(1024) + bytes([index % 256]) for index in range(80_000)]
    kept = buffers[::64]
    del buffers
    before = resident_mb()

    assert memory.give_back_free_memory()

    assert resident_mb() < before - 30, "the ~75 MB freed should mostly leave the process"
    assert len(kept) == 1250
