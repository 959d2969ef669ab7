"""Figure 7: streamed answers — time to the first visible text, and edits per answer.

The LLM sends its first token after 500 ms, then 30 tokens/s. "Visible" is when the asker's
client receives the bot's first message (the start of the answer, growing by edits).
"""

from __future__ import annotations

import asyncio
import time

from bench.figures.e2e import ensure_floor
from bench.harness import Bench, question_text, wait_answering
from bench.llm_server import bench_answer
from bench.results import Figure, Row
from bench.stats import summary
from sandbox.fake_mistral import split_tokens

FIRST_TOKEN_SECONDS = 0.5
TOKENS_PER_SECOND = 30.0
ANSWER_WORDS = 60
CURSOR = "▍"


def _is_final(body: str) -> bool:
    return not body.rstrip().endswith(CURSOR)


async def run(bench: Bench) -> list[Figure]:
    floor = await ensure_floor(bench)
    figure = Figure(
        "streaming",
        "7. Streaming",
        f"LLM at {FIRST_TOKEN_SECONDS * 1000:.0f} ms to the first token then "
        f"{TOKENS_PER_SECOND:g} tokens/s (~{ANSWER_WORDS} words); clear DM; time from the "
        "question sent to the first text of the answer seen by the asker.",
    )
    asker = await bench.observer(await bench.register("lectrice"), encryption=False)
    account = await bench.bot_account()
    bot = bench.bot_process(account, "bot-streaming")
    await bot.start(streaming=True)
    room_id = (await bench.rooms_with(asker, bot.user_id, 1))[0]
    await wait_answering(asker, room_id)
    first: list[float] = []
    complete: list[float] = []
    edits: list[float] = []
    llm_first: list[float] = []  # the LLM server's own time, request in → first token out
    streamed = 0
    tokens = len(split_tokens(bench_answer(ANSWER_WORDS)))
    stream_seconds = FIRST_TOKEN_SECONDS + tokens / TOKENS_PER_SECOND
    try:
        await bench.llm.configure(
            # The fake paces every token, the first included: start it that much earlier.
            delay_seconds=FIRST_TOKEN_SECONDS - 1 / TOKENS_PER_SECOND,
            stream_tokens_per_second=TOKENS_PER_SECOND,
            answer_words=ANSWER_WORDS,
        )
        for index in range(bench.scale.streaming_samples):
            await bench.llm.reset()
            event_id, sent = await asker.send(room_id, question_text(index))
            answer = await asker.reply_to(event_id, timeout=60)
            first.append(answer.at - sent)
            deadline = time.monotonic() + stream_seconds + 10
            final_at = answer.at if _is_final(str(answer.content.get("body", ""))) else None
            while final_at is None and time.monotonic() < deadline:
                for edit in asker.edits.get(answer.event_id, []):
                    new = edit.content.get("m.new_content") or {}
                    if _is_final(str(new.get("body", ""))):
                        final_at = edit.at
                        break
                await asyncio.sleep(0.05)
            complete.append((final_at or float("nan")) - sent)
            edits.append(float(len(asker.edits.get(answer.event_id, []))))
            stats = await bench.llm.stats()
            streamed += int(stats["streamed"])
            if stats["arrivals"] and len(stats["sleeps_done"]) > 1:
                llm_first.append(stats["sleeps_done"][1] - stats["arrivals"][0])
            await asyncio.sleep(bench.scale.settle_seconds)
    finally:
        await bench.llm.configure()
        await bot.stop()

    if streamed == 0:
        figure.available = False
        figure.notes.append(
            "The bot made no streamed LLM request with TCHAP_BOT_STREAMING=true: streaming is "
            "not implemented in this build."
        )
        return [figure]
    first_s = summary(first)
    llm_s = summary(llm_first)["median"]
    target = llm_s + floor
    figure.rows = [
        Row(
            "first visible text, median",
            first_s["median"] * 1000,
            "ms",
            target=f"≤ {target * 1000:.0f} ms (the LLM's {llm_s * 1000:.0f} ms + echo round "
            f"trip {floor * 1000:.0f} ms)",
            passed=first_s["median"] <= target,
        ),
        Row(
            "LLM server's own time to the first token (request in → token out)", llm_s * 1000, "ms"
        ),
        Row(
            "first visible text − the LLM's own time: bot + homeserver, median",
            summary([f - g for f, g in zip(first, llm_first, strict=False)])["median"] * 1000,
            "ms",
        ),
        Row("floor: echo round trip (clear), median", floor * 1000, "ms"),
        Row("first visible text, p99", first_s["p99"] * 1000, "ms"),
        Row("complete answer seen, median", summary(complete)["median"] * 1000, "ms"),
        Row("LLM stream duration (first token + tokens ÷ pace)", stream_seconds * 1000, "ms"),
        Row("edits per answer, median", summary(edits)["median"], ""),
        Row("edits per answer, max", summary(edits)["max"], ""),
    ]
    figure.data = {
        "samples": len(first),
        "first_visible_s": first_s,
        "complete_s": summary(complete),
        "edits": summary(edits),
        "floor_clear_median_s": floor,
        "llm_first_token_s": summary(llm_first),
    }
    figure.notes.append(
        "The target is the brief's 0.5 s + one homeserver round trip, with the 0.5 s as the LLM "
        "server actually delivered it (its timer adds a few ms)."
    )
    return [figure]
