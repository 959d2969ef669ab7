"""A realistic model, streamed and not: shared by figure 3 (cost) and figure 7 (what users see).

The model takes 0.5 s to its first token, then writes 300 tokens at 60 tokens/s (as a Mistral
model served for many users does). The same questions go alternately to two bot processes,
one with streaming on (the production default) and one with it off, in one clear DM each, so
the machine's load hits both alike. CPU is each process's own utime+stime over its answers.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.harness import Bench, BotProcess, question_text, wait_answering
from bench.llm_server import bench_answer
from bench.observer import Arrival, Observer
from bench.stats import summary
from sandbox.mistral_wire import split_tokens

FIRST_TOKEN_SECONDS = 0.5
TOKENS_PER_SECOND = 60.0
ANSWER_TOKENS = 300
CURSOR = "▍"
MODES = ("on", "off")


def is_final(body: str) -> bool:
    return not body.rstrip().endswith(CURSOR)


def answer_words() -> int:
    """Words of bench_answer() giving about ANSWER_TOKENS tokens as the fake streams them."""
    words = ANSWER_TOKENS
    while len(split_tokens(bench_answer(words))) > ANSWER_TOKENS and words > 10:
        words -= 5
    return words


async def start_pair(bench: Bench, name: str) -> dict[str, BotProcess]:
    """Two bots of the same build: streaming on and off."""
    bots = {}
    for mode in MODES:
        bot = bench.bot_process(await bench.bot_account(), f"bot-{name}-streaming-{mode}")
        await bot.start(streaming=mode == "on")
        bots[mode] = bot
    return bots


async def final_version(
    asker: Observer,
    answer: Arrival,
    timeout: float,  # noqa: ASYNC109
) -> Arrival | None:
    """The answer's version without the typing cursor: the message itself or its last edit."""
    if is_final(str(answer.content.get("body", ""))):
        return answer
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for edit in asker.edits.get(answer.event_id, []):
            new = edit.content.get("m.new_content") or {}
            if is_final(str(new.get("body", ""))):
                return edit
        await asyncio.sleep(0.02)
    return None


async def run(
    bench: Bench, asker: Observer, bots: dict[str, BotProcess], samples: int
) -> dict[str, Any]:
    """`samples` answers from each bot; their timings, edits and CPU."""
    words = answer_words()
    tokens = len(split_tokens(bench_answer(words)))
    stream_seconds = FIRST_TOKEN_SECONDS + tokens / TOKENS_PER_SECOND
    rooms = {}
    for mode, bot in bots.items():
        rooms[mode] = (await bench.rooms_with(asker, bot.user_id, 1))[0]
        await wait_answering(asker, rooms[mode])
    per_mode: dict[str, dict[str, list[float]]] = {
        mode: {
            "first_s": [],
            "complete_s": [],
            "edits": [],
            "first_words": [],
            "llm_first_s": [],
            "cpu_s": [],
        }
        for mode in MODES
    }
    await bench.llm.configure(
        # The fake paces every token, the first included: start it that much earlier.
        delay_seconds=FIRST_TOKEN_SECONDS - 1 / TOKENS_PER_SECOND,
        stream_tokens_per_second=TOKENS_PER_SECOND,
        answer_words=words,
    )
    try:
        await asyncio.sleep(bench.scale.settle_seconds)
        for index in range(samples):
            for mode in MODES:
                data = per_mode[mode]
                bot = bots[mode]
                await bench.llm.reset()
                cpu = bot.cpu_seconds()
                event_id, sent = await asker.send(rooms[mode], question_text(index))
                answer = await asker.reply_to(event_id, timeout=60)
                final = await final_version(asker, answer, stream_seconds + 10)
                data["first_s"].append(answer.at - sent)
                data["complete_s"].append((final.at if final else float("nan")) - sent)
                data["edits"].append(float(len(asker.edits.get(answer.event_id, []))))
                body = str(answer.content.get("body", ""))
                data["first_words"].append(float(len(body.replace(CURSOR, "").split())))
                stats = await bench.llm.stats()
                if stats["arrivals"] and len(stats["sleeps_done"]) > 1:
                    # Paced streams: the second sleep's end is the first token leaving.
                    data["llm_first_s"].append(stats["sleeps_done"][1] - stats["arrivals"][0])
                await asyncio.sleep(bench.scale.settle_seconds)  # bookkeeping, sync of edits
                data["cpu_s"].append(bot.cpu_seconds() - cpu)
    finally:
        await bench.llm.configure()
    result: dict[str, Any] = {
        "samples": samples,
        "answer_tokens": tokens,
        "stream_seconds": stream_seconds,
    }
    for mode in MODES:
        data = per_mode[mode]
        result[mode] = {
            "first_s": summary(data["first_s"]),
            "complete_s": summary(data["complete_s"]),
            "edits": summary(data["edits"]),
            "first_message_words": summary(data["first_words"]),
            "llm_first_token_s": summary(data["llm_first_s"]),
            "cpu_ms_per_answer": sum(data["cpu_s"]) / max(1, len(data["cpu_s"])) * 1000,
            "memory": bots[mode].memory(),
        }
    return result


async def ensure(bench: Bench, samples: int) -> dict[str, Any]:
    """The realistic run, done now unless figure 3 already did it (with its bots)."""
    if bench.realistic:
        return bench.realistic
    asker = await bench.observer(await bench.register("lectrice"), encryption=False)
    bots = await start_pair(bench, "realistic")
    try:
        bench.realistic = await run(bench, asker, bots, samples)
    finally:
        for bot in bots.values():
            await bot.stop()
    return bench.realistic
