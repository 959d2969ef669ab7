"""Figure 6: `!resume 5000` over a room's stored history, with an LLM that takes 1 s per call.

The history is seeded into the bot's store (store.messages.save), as if the bot had been in
the room all along; the command then goes through Matrix like any user's. The chunk count
comes from the requests the LLM received (each chunk's prompt starts with the part header).

One message every 20 s: the 5000 messages span 28 hours, so they always cover two calendar
days and the transcript always dates its lines. With one every 10 s, whether they crossed
midnight (Paris) depended on the hour of the run: 22 chunks at 23:00, 25 at 04:00.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from bench.corpus import room_history
from bench.harness import Bench, wait_answering
from bench.results import Figure, Row
from bench.stats import summary
from bot import texts
from bot.store import Store
from bot.store.database import now_ms

LLM_SECONDS = 1.0
SEED_BATCH = 50_000
SEED_STEP_MS = 20_000


async def seed(db_path: Path, room_id: str, count: int, end_ms: int, tag: str) -> float:
    """Insert `count` messages in big batches; returns the seconds it took."""
    started = time.perf_counter()
    store = await Store.open(db_path)
    try:
        batch = []
        for message in room_history(room_id, count, end_ms, step_ms=SEED_STEP_MS, tag=tag):
            batch.append(message)
            if len(batch) >= SEED_BATCH:
                await store.messages.save(batch)
                batch = []
        await store.messages.save(batch)
    finally:
        await store.close()
    return time.perf_counter() - started


async def run(bench: Bench) -> list[Figure]:
    scale = bench.scale
    count = scale.summary_messages
    llm_seconds = LLM_SECONDS * scale.llm_time_scale
    figure = Figure(
        "summary",
        "6. Summaries",
        f"`!resume {count}` over {count} stored messages (one every {SEED_STEP_MS // 1000} s), "
        "LLM answering each call after "
        f"{llm_seconds:g} s; wall time from the command sent to the summary seen.",
    )
    asker = await bench.observer(await bench.register("lecteur"), encryption=False)
    account = await bench.bot_account()
    bot = bench.bot_process(account, "bot-summary")
    await bot.start()
    room_id = (await bench.rooms_with(asker, bot.user_id, 1))[0]
    await wait_answering(asker, room_id)
    part_prefix = texts.SUMMARY_PART_HEADER.split("{", 1)[0]
    progress_prefix = texts.SUMMARY_PROGRESS.split("{", 1)[0]
    summary_prefix = texts.SUMMARY_HEADER_ROOM.split("{", 1)[0]

    walls: list[float] = []
    runs: list[dict[str, float]] = []
    seeded_in = await seed(bot.data_dir / "tchap-bot.sqlite3", room_id, count, now_ms() - 1000, "s")
    try:
        await bench.llm.configure(delay_seconds=llm_seconds)
        for _ in range(scale.summary_runs):
            await bench.llm.reset()
            event_id, sent = await asker.send(room_id, f"!resume {count}")
            reply = await asker.reply_to(event_id, timeout=300)
            if str(reply.content.get("body", "")).startswith(progress_prefix):
                # Long summaries show their progress, then the message becomes the summary.
                reply = await asker.edit_of(
                    reply.event_id,
                    lambda edit: (
                        not str(edit.content.get("m.new_content", {}).get("body", "")).startswith(
                            progress_prefix
                        )
                    ),
                    timeout=300,
                )
            elapsed = reply.at - sent
            body = str(reply.content.get("m.new_content", reply.content).get("body", ""))
            if not body.startswith(summary_prefix):  # a notice (limit, error): not a summary
                raise RuntimeError(f"the bot did not summarise: {body[:120]!r}")
            stats = await bench.llm.stats()
            calls = int(stats["calls"])
            chunks = sum(1 for head in stats["user_heads"] if head.startswith(part_prefix)) or (
                1 if calls else 0
            )
            concurrency = int(stats["max_in_flight"])
            walls.append(elapsed)
            runs.append(
                {
                    "wall_s": elapsed,
                    "chunks": chunks,
                    "calls": calls,
                    "chunk_concurrency": concurrency,
                    "prompt_tokens": stats["prompt_tokens"],
                    "completion_tokens": stats["completion_tokens"],
                    "seed_s": seeded_in,
                    "summary_chars": len(body),
                    # Each LLM call's arrival and response, in seconds after the command was
                    # sent (one monotonic clock): where the time beyond the LLM's goes.
                    "llm_calls": [
                        [round(call["arrived"] - sent, 4), round(call["done"] - sent, 4)]
                        for call in stats["timeline"]
                    ],
                }
            )
            await asyncio.sleep(scale.settle_seconds)
    finally:
        await bench.llm.configure(delay_seconds=0.0)
        await bot.stop()

    wall = summary(walls)
    last = runs[-1]
    concurrency = max(1, int(last["chunk_concurrency"]))
    # The brief's target for 1 s calls, in units of the LLM's latency.
    target = (last["chunks"] / concurrency + 2) * llm_seconds
    figure.rows = [
        Row(
            "wall time, median",
            wall["median"],
            "s",
            target=f"≤ {target:.2f} s",
            passed=wall["median"] <= target,
        ),
        Row("wall time, max", wall["max"], "s"),
        Row("chunks", float(last["chunks"]), ""),
        Row("chunk concurrency (observed at the LLM)", float(concurrency), ""),
        Row("LLM calls (chunks + merges)", float(last["calls"]), ""),
        Row("prompt tokens", float(last["prompt_tokens"]), "tokens"),
        Row("completion tokens", float(last["completion_tokens"]), "tokens"),
        Row(
            "LLM-bound lower bound: (⌈chunks ÷ concurrency⌉ + merge rounds) × LLM latency",
            (-(-last["chunks"] // concurrency) + (last["calls"] > last["chunks"])) * llm_seconds,
            "s",
        ),
    ]
    figure.data = {"messages": count, "runs": runs, "wall_s": wall}
    figure.notes.append(
        f"Target from the brief: (chunks ÷ chunk concurrency + 2) × {llm_seconds:g} s = "
        f"{target:.2f} s. Token counts "
        "are Mistral Tekken tokens counted by the LLM server."
    )
    return [figure]
