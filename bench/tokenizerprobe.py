"""How long the event loop stalls while the tokenizer loads in a worker thread.

Run: `python -m bench.tokenizerprobe` prints one JSON object: the load's wall time and the
event loop's longest delays (a task sleeping 1 ms at a time, `bench/looplag.py`), in a fresh
process. The load runs off the loop (`asyncio.to_thread`), but a thread that holds the GIL
stops the loop all the same: every question of every room waits meanwhile.
"""

from __future__ import annotations

import asyncio
import json
import time

from bench.looplag import LoopLag
from bot.answer import tokens


async def _measure() -> dict[str, object]:
    async with LoopLag(tick=0.001) as lag:
        await asyncio.sleep(0.05)
        started = time.perf_counter()
        await asyncio.to_thread(tokens._load_tekken)
        load_ms = (time.perf_counter() - started) * 1000
        await asyncio.sleep(0.05)
    return {
        "load_ms": round(load_ms, 1),
        "longest_loop_delays_ms": [round(delay * 1000, 1) for delay in lag.longest(5)],
    }


def main() -> None:
    print(json.dumps(asyncio.run(_measure())))


if __name__ == "__main__":
    main()
