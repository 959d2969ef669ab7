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


class Cooldown:
    """At most one costly action per key (a room) every `seconds`: `remaining` says how long."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._seconds = seconds
        self._clock = clock
        self._last: dict[str, float] = {}

    def remaining(self, key: str) -> float:
        last = self._last.get(key)
        return 0.0 if last is None else max(0.0, last + self._seconds - self._clock())

    def start(self, key: str) -> None:
        now = self._clock()
        if len(self._last) >= SWEEP_EVERY:  # memory follows active rooms only
            self._last = {k: t for k, t in self._last.items() if t + self._seconds > now}
        self._last[key] = now


class RecentKeys:
    """A set that forgets its oldest members past `capacity` (once-per-X notices, bounded)."""

    def __init__(self, capacity: int = 10_000) -> None:
        self._capacity = capacity
        self._keys: dict[object, None] = {}

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def add(self, key: object) -> None:
        self._keys.pop(key, None)
        self._keys[key] = None
        while len(self._keys) > self._capacity:
            del self._keys[next(iter(self._keys))]

    def __len__(self) -> int:
        return len(self._keys)
