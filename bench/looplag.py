"""How late the event loop wakes a sleeping task while other work runs: its stalls.

A task sleeps `tick` seconds over and over and notes how late each wake came. Work that
holds the loop (or the GIL, from another thread) shows as a long delay.
"""

from __future__ import annotations

import asyncio
import time
from types import TracebackType


class LoopLag:
    """`async with LoopLag() as lag: ...`, then `lag.delays` (seconds late per wake)."""

    def __init__(self, tick: float = 0.001) -> None:
        self.tick = tick
        self.delays: list[float] = []
        self._running = False
        self._task: asyncio.Task[None] | None = None

    async def _watch(self) -> None:
        while self._running:
            before = time.perf_counter()
            await asyncio.sleep(self.tick)
            self.delays.append(time.perf_counter() - before - self.tick)

    async def __aenter__(self) -> LoopLag:
        self._running = True
        self._task = asyncio.create_task(self._watch())
        await asyncio.sleep(0)
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._running = False
        if self._task is not None:
            await self._task

    def longest(self, count: int) -> list[float]:
        return sorted(self.delays, reverse=True)[:count]
