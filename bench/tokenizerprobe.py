"""How long the event loop stalls while the tokenizer loads in a worker thread.

Run: `python -m bench.tokenizerprobe` prints one JSON object: the load's wall time and the
event loop's longest gaps (a task that sleeps 1 ms and notes how late it wakes), in a fresh
process. The load runs off the loop (`asyncio.to_thread`), but a thread that holds the GIL
stops the loop all the same: every question of every room waits meanwhile.
"""

from __future__ import annotations

import asyncio
import json
import time

from bot.answer import tokens


async def _measure() -> dict[str, object]:
    gaps: list[float] = []
    running = True

    async def ticker() -> None:
        last = time.perf_counter()
        while running:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    watcher = asyncio.create_task(ticker())
    await asyncio.sleep(0.05)
    started = time.perf_counter()
    await asyncio.to_thread(tokens._load_tekken)
    load_ms = (time.perf_counter() - started) * 1000
    await asyncio.sleep(0.05)
    running = False
    await watcher
    longest = sorted(gaps, reverse=True)[:5]
    return {
        "load_ms": round(load_ms, 1),
        "longest_loop_gaps_ms": [round(gap * 1000, 1) for gap in longest],
    }


def main() -> None:
    print(json.dumps(asyncio.run(_measure())))


if __name__ == "__main__":
    main()
