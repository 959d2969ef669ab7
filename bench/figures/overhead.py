"""Figure 1: the bot's own time per question, from raw samples, under a steady 20 questions/s.

The bot runs in-process (bot.app.BotApp, as in the integration tests) so the raw samples of
`tchapbot_overhead_seconds` can be read (bot.metrics.RAW_OVERHEAD_SAMPLES). The questions
come from a plain nio client that does not sync, and the LLM is in its own process, so the
event loop holds the bot's work and almost nothing else.

Stages, as instrumented in the bot: `before_llm` runs from the router receiving the event
(after nio parsed and, in encrypted rooms, decrypted the sync) to the call into the LLM
client; `queued`, a part of it, to the room's job starting on the question (the router's
claim, then any wait behind the room's previous answer: a room's questions run in order);
`after_llm` from the LLM client returning the completion to the first send request being
handed to nio.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sys
import time
from pathlib import Path
from typing import Any

import nio

from bench.harness import Bench, question_text, wait_answering
from bench.results import Figure, Row
from bench.stats import summary
from bot.app import BotApp
from bot.ops import metrics
from bot.ops.logs import configure_logging
from config.settings import load_settings

TARGET_P50_MS = 2.0
TARGET_P99_MS = 10.0
TARGET_INSTRUMENTED_MS = 1.5  # the bot's own path (issue 17)


def log_to_file(path: Path) -> None:
    """The in-process bot logs like production (JSON, info) but into a file, not the console."""
    path.parent.mkdir(parents=True, exist_ok=True)
    stream = path.open("a", encoding="utf-8")  # lives as long as the process
    saved = sys.stderr
    sys.stderr = stream
    try:
        configure_logging("info", "json")
    finally:
        sys.stderr = saved


class InProcessBot:
    def __init__(self, settings: Any) -> None:
        self.app = BotApp(settings)
        self.task: asyncio.Task[int] | None = None

    async def start(self) -> None:
        self.task = asyncio.create_task(self.app.run())
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            gateway = self.app.gateway
            if gateway is not None and gateway.ready.is_set():
                return
            if self.task.done():
                raise RuntimeError(f"bot stopped during start-up: {self.task.result()}")
            await asyncio.sleep(0.02)
        raise TimeoutError("in-process bot not ready after 60 s")

    async def stop(self) -> None:
        if self.task is not None:
            self.app.request_stop()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.task, 40)


async def run(bench: Bench) -> list[Figure]:
    scale = bench.scale
    rate = scale.overhead_rate
    count = max(1, int(rate * scale.overhead_seconds))
    await bench.llm.configure(delay_seconds=0.0)
    log_to_file(bench.work_dir / "bot-overhead.log")

    account = await bench.bot_account()
    data_dir = bench.work_dir / "bot-overhead"
    # Streaming off: the stages are defined on a whole answer (completion → first send).
    settings = load_settings(None, **bench.bot_settings(account, data_dir, streaming=False))
    bot = InProcessBot(settings)
    await bot.start()
    sender_user = await bench.register("sender")
    setup = await bench.observer(sender_user, encryption=False)
    rooms = await bench.rooms_with(setup, account.user_id, scale.overhead_rooms)
    for room_id in rooms:
        await wait_answering(setup, room_id)
    await setup.close()

    sender = nio.AsyncClient(bench.synapse.base_url, sender_user.user_id)
    sender.restore_login(sender_user.user_id, sender_user.device_id, sender_user.access_token)
    try:
        gentle = await load(bench, sender, rooms, LOW_RATE, max(2, count // 10), profile=False)
        await asyncio.sleep(scale.settle_seconds)
        loaded = await load(bench, sender, rooms, rate, count, profile=True)
    finally:
        await sender.close()
        await bot.stop()
    failures, sending, busy, elapsed = (
        loaded["failures"],
        loaded["sending"],
        loaded["busy"],
        loaded["elapsed"],
    )
    questions = loaded["questions"]
    calm = {key: summary([q[key] for q in gentle["questions"]], 1000) for key in STAGES}
    figure = Figure(
        "overhead",
        "1. Bot overhead per question",
        f"Time inside the bot per question at {rate:g} questions/s over {len(rooms)} rooms "
        "(clear DMs, instant LLM, answers of ~60 words), exact percentiles over raw samples. "
        "The bot runs in-process here; the LLM server's clock (the same monotonic clock) "
        "says when each request arrived and when its response left.",
    )
    stats = {key: summary([q[key] for q in questions], 1000) for key in STAGES}
    total = stats["total"]
    figure.rows = [
        Row(
            "instrumented `before_llm` (event → LLM client called), median",
            stats["before_llm"]["median"],
            "ms",
        ),
        Row("instrumented `before_llm`, p99", stats["before_llm"]["p99"], "ms"),
        Row(
            "instrumented `queued` (event → the room's job starts on it, the wait behind the "
            "room's previous answer included), median",
            stats["queued"]["median"],
            "ms",
        ),
        Row("instrumented `queued`, p99", stats["queued"]["p99"], "ms"),
        Row(
            "`before_llm` − `queued`: the bot's own steps before the model once its job "
            "started, median",
            stats["own_before_llm"]["median"],
            "ms",
        ),
        Row(
            "LLM client + SDK until the request reaches the LLM, median",
            stats["request_side"]["median"],
            "ms",
        ),
        Row(
            "LLM response sent → completion back in the bot (SDK parsing), median",
            stats["response_side"]["median"],
            "ms",
        ),
        Row(
            "instrumented `after_llm` (completion → first send request), median",
            stats["after_llm"]["median"],
            "ms",
        ),
        Row("instrumented `after_llm`, p99", stats["after_llm"]["p99"], "ms"),
        Row(
            "instrumented before + after, median",
            stats["instrumented"]["median"],
            "ms",
            target=f"≤ {TARGET_INSTRUMENTED_MS:g} ms",
            passed=stats["instrumented"]["median"] <= TARGET_INSTRUMENTED_MS,
        ),
        Row("instrumented before + after, p99", stats["instrumented"]["p99"], "ms"),
        Row(
            "bot overhead: event → request at the LLM + response → first send, median",
            total["median"],
            "ms",
            target=f"≤ {TARGET_P50_MS:g} ms",
            passed=total["median"] <= TARGET_P50_MS,
        ),
        Row(
            "bot overhead, p99",
            total["p99"],
            "ms",
            target=f"≤ {TARGET_P99_MS:g} ms",
            passed=total["p99"] <= TARGET_P99_MS,
        ),
        Row("questions sent per second (achieved)", count / sending if sending else 0, "q/s"),
        Row("questions answered and matched", float(len(questions)), ""),
        Row(
            "process CPU during the load (in-process bot, idle sender), per second",
            busy / elapsed * 100,
            "%",
        ),
        Row(
            f"for comparison at {LOW_RATE:g} questions/s: bot overhead, median",
            calm["total"]["median"],
            "ms",
        ),
        Row(
            f"for comparison at {LOW_RATE:g} questions/s: bot overhead, p99",
            calm["total"]["p99"],
            "ms",
        ),
        Row(
            f"for comparison at {LOW_RATE:g} questions/s: instrumented before + after, median",
            calm["instrumented"]["median"],
            "ms",
        ),
    ]
    figure.data = {
        "rate_target": rate,
        "questions": count,
        "send_failures": failures,
        "rooms": len(rooms),
        "stages_ms": stats,
        f"stages_ms_at_{LOW_RATE:g}_per_s": calm,
    }
    figure.notes.append(
        "Stages per question: `before_llm`, `queued` and `after_llm` are the bot's histogram "
        "(tchapbot_overhead_seconds) read raw; the LLM client + SDK parts lie between the "
        "bot's measuring points and the wire, and are the bot's time too (the LLM answers "
        "instantly). A room's questions run in order in one task, which pairs the samples. "
        "`queued` is the part of `before_llm` before the room's job starts on the question: "
        "the router's claim, then the wait behind the room's previous answer, which grows "
        "with the load; `before_llm` − `queued` is the question's own path to the model."
    )
    return [figure]


LOW_RATE = 2.0  # questions/s: the bot's own cost with no queueing anywhere


async def load(
    bench: Bench,
    sender: nio.AsyncClient,
    rooms: list[str],
    rate: float,
    count: int,
    *,
    profile: bool,
) -> dict[str, Any]:
    """Send `count` questions at `rate`, round robin over `rooms`; wait for every answer."""
    metrics.RAW_OVERHEAD_SAMPLES = []
    await bench.llm.reset()
    sends: list[asyncio.Task[Any]] = []
    profiler = start_profiler() if profile and bench.profile_dir is not None else None
    cpu_before = time.process_time()
    try:
        started = time.perf_counter()
        for index in range(count):
            delay = started + index / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            content = {"msgtype": "m.text", "body": question_text(index)}
            sends.append(
                asyncio.create_task(
                    sender.room_send(rooms[index % len(rooms)], "m.room.message", content)
                )
            )
        responses = await asyncio.gather(*sends)
        sending = time.perf_counter() - started
        failures = sum(not isinstance(r, nio.RoomSendResponse) for r in responses)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            observed = metrics.RAW_OVERHEAD_SAMPLES or []
            if sum(sample[0] == "after_llm" for sample in observed) >= count - failures:
                break
            await asyncio.sleep(0.05)
        samples = list(metrics.RAW_OVERHEAD_SAMPLES or [])
        busy = time.process_time() - cpu_before
        elapsed = time.perf_counter() - started
    finally:
        metrics.RAW_OVERHEAD_SAMPLES = None
        if profiler is not None and bench.profile_dir is not None:
            save_profile(profiler, bench.profile_dir / "overhead")
    timeline = (await bench.llm.stats())["timeline"]
    return {
        "samples": samples,
        "timeline": timeline,
        "failures": failures,
        "sending": sending,
        "busy": busy,
        "elapsed": elapsed,
        "questions": per_question(samples, timeline, rooms),
    }


STAGES = (
    "before_llm",
    "queued",
    "own_before_llm",
    "request_side",
    "response_side",
    "after_llm",
    "instrumented",
    "total",
)
_QUESTION_NUMBER = re.compile(r"\(question (\d+)\)\s*$")


def per_question(
    samples: list[tuple[str, float, str, float]],
    timeline: list[dict[str, Any]],
    rooms: list[str],
) -> list[dict[str, float]]:
    """Each question's stages: the bot's raw samples joined with the LLM server's timeline.

    A room's samples come in its questions' order (one task per room): the n-th `queued`,
    `before_llm` and `after_llm` of a room, and its n-th request at the LLM, are one question's
    (the bot observes a `queued` with each `before_llm`)."""
    by_room: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for stage, seconds, task, at in samples:
        room_id = task.removeprefix("room-")
        by_room.setdefault(room_id, {}).setdefault(stage, []).append((seconds, at))
    requests: dict[str, list[dict[str, Any]]] = {}
    for entry in sorted(timeline, key=lambda item: float(item["arrived"])):
        match = _QUESTION_NUMBER.search(str(entry["key"]))
        if match:
            requests.setdefault(rooms[int(match.group(1)) % len(rooms)], []).append(entry)
    questions = []
    for room_id, stages in by_room.items():
        for (before, before_at), (queued, _), (after, after_at), request in zip(
            stages.get("before_llm", []),
            stages.get("queued", []),
            stages.get("after_llm", []),
            requests.get(room_id, []),
            strict=False,
        ):
            request_side = float(request["arrived"]) - before_at
            response_side = (after_at - after) - float(request["done"])
            questions.append(
                {
                    "before_llm": before,
                    "queued": queued,
                    "own_before_llm": before - queued,
                    "request_side": request_side,
                    "response_side": response_side,
                    "after_llm": after,
                    "instrumented": before + after,
                    "total": before + request_side + response_side + after,
                }
            )
    return questions


def start_profiler() -> Any:
    """pyinstrument over the whole event loop thread (every task), during the load only."""
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.0005, async_mode="disabled")
    profiler.start()
    return profiler


def save_profile(profiler: Any, stem: Path) -> None:
    profiler.stop()
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".txt").write_text(profiler.output_text(unicode=True, show_all=False))
    stem.with_suffix(".html").write_text(profiler.output_html())
