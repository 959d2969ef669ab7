"""Giving freed heap memory back to the system after a burst of parsing.

The first sync after a start carries the full state of every room (4 MB of JSON for 1,000
rooms, parsed and validated by nio); what it leaves alive is small, but glibc keeps the freed
heap pages of that parse resident. `malloc_trim(0)` returns them (figure 5: see
docs/benchmarks.md). Elsewhere than glibc this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
from collections.abc import Callable


def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim: Callable[[int], int] = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS)
        return None
    return trim


def give_back_free_memory() -> bool:
    """Collect garbage cycles, then hand the heap's free pages back; False where unsupported."""
    gc.collect()
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
