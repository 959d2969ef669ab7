"""Sliding-window rate limits per user and per room: a polite refusal beats an LLM bill."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

WINDOW_SECONDS = 60.0
SWEEP_EVERY = 1000  # calls between sweeps of idle keys, so memory follows active users only


class SlidingWindowLimiter:
    def __init__(self, limit_per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._limit = limit_per_minute
        self._clock = clock
        self._hits: dict[str, deque[float]] = {}
        self._calls = 0

    def allow(self, key: str) -> bool:
        """Count one hit for `key` unless it already used its budget in the last minute."""
        if self._limit <= 0:
            return True
        now = self._clock()
        self._calls += 1
        if self._calls % SWEEP_EVERY == 0:
            self._sweep(now)
        hits = self._hits.setdefault(key, deque())
        while hits and hits[0] <= now - WINDOW_SECONDS:
            hits.popleft()
        if len(hits) >= self._limit:
            return False
        hits.append(now)
        return True

    def _sweep(self, now: float) -> None:
        idle = [
            key for key, hits in self._hits.items() if not hits or hits[-1] <= now - WINDOW_SECONDS
        ]
        for key in idle:
            del self._hits[key]

    @property
    def tracked_keys(self) -> int:
        return len(self._hits)
