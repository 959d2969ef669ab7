"""Figure 5: the bot in 1,000 rooms with 1,000,000 stored messages.

Rooms are created through Synapse by one user inviting the bot, which joins on its own (the
real invitation path). The history is then seeded into the bot's store in big batches
(store.messages.save), with a conversation memory per room (store.triggers.finish), as if the
bot had lived there for days. Then: restart to ready, memory, and the cost of loading a
room's context for a question (ConversationHandler.build_request on that store).
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path
from typing import Any

from bench.corpus import PEOPLE, room_history
from bench.harness import Bench, question_text
from bench.observer import Observer
from bench.results import Figure, Row
from bench.stats import summary
from bot.answer.conversation import ConversationHandler
from bot.answer.tokens import MistralTokenCounter
from bot.models import IncomingMessage, MessageKind, RoomContext
from bot.store import Store
from bot.store.database import ConversationTurn, now_ms
from config.room_settings import RoomSettings
from config.settings import load_settings

TARGET_RSS_MB = 200.0
TARGET_CONTEXT_P99_MS = 5.0
TARGET_READY_S = 10.0
SEED_BATCH = 50_000
QUESTIONS_AFTER_START = 20


async def seed_store(db_path: Path, rooms: list[str], messages: int, turns: int) -> float:
    """`messages` spread over `rooms` (recent: within retention) and `turns` of memory each."""
    started = time.perf_counter()
    per_room = max(1, messages // len(rooms))
    end = now_ms() - 60_000
    store = await Store.open(db_path)
    try:
        batch = []
        for room_id in rooms:
            for message in room_history(room_id, per_room, end, step_ms=400_000):
                batch.append(message)
                if len(batch) >= SEED_BATCH:
                    await store.messages.save(batch)
                    batch = []
        await store.messages.save(batch)
        for room_id in rooms:
            sender, name = PEOPLE[len(room_id) % len(PEOPLE)]
            history = [
                ConversationTurn(
                    role="user" if index % 2 == 0 else "assistant",
                    sender=sender,
                    sender_name=name,
                    content=question_text(index) if index % 2 == 0 else _ANSWER,
                    event_id=f"$bench-turn-{room_id}-{index}",
                    timestamp_ms=end - (turns - index) * 60_000,
                )
                for index in range(turns)
            ]
            seed_trigger = IncomingMessage(
                room_id=room_id,
                event_id=f"$bench-seed-{room_id}",
                sender=sender,
                sender_name=name,
                kind=MessageKind.TEXT,
                body="",
                timestamp_ms=end,
            )
            await store.triggers.finish(seed_trigger, "answered", turns=history)
    finally:
        await store.close()
    return time.perf_counter() - started


_ANSWER = (
    "Voici les points essentiels : la demande se fait en ligne, le service RH la valide sous "
    "quinze jours, puis vous recevez une notification. Les délais courent à réception du "
    "dossier complet."
)


async def restart_to_ready(
    bench: Bench, bot: Any, asker: Observer, room_id: str
) -> dict[str, float]:
    """Start the bot with a question already waiting: spawn → /readyz, spawn → its answer."""
    event_id, _ = await asker.send(room_id, question_text(7))
    spawned = bot.spawn()
    ready = await bot.wait_ready()
    reply = await asker.reply_to(event_id, timeout=300)
    return {"ready_s": ready - spawned, "first_answer_s": reply.at - spawned}


async def context_timings(bot: Any, rooms: list[str], samples: int) -> dict[str, Any]:
    """build_request (the store queries + token budget) on random rooms of the seeded store."""
    settings = load_settings(None, **bot.settings)
    store = await Store.open(bot.data_dir / "tchap-bot.sqlite3")
    tokens = MistralTokenCounter()
    await tokens.warm_up()
    handler = ConversationHandler(settings, store, None, tokens, None)  # type: ignore[arg-type]
    chooser = random.Random(7)
    builds: list[float] = []
    queries: list[float] = []
    try:
        for index in range(samples):
            room_id = chooser.choice(rooms)
            message = IncomingMessage(
                room_id=room_id,
                event_id=f"$bench-question-{index}",
                sender=PEOPLE[0][0],
                sender_name=PEOPLE[0][1],
                kind=MessageKind.TEXT,
                body=question_text(index),
                timestamp_ms=now_ms(),
            )
            room = RoomContext(room_id=room_id, name="Salon", is_direct=True, encrypted=False)
            started = time.perf_counter()
            await handler.build_request(message, message.body, room, RoomSettings())
            builds.append(time.perf_counter() - started)
            started = time.perf_counter()
            await store.messages.recent_turns(room_id, None, 400)
            queries.append(time.perf_counter() - started)
            await asyncio.sleep(0)
    finally:
        await store.close()
    return {"build_request_ms": summary(builds, 1000), "recent_turns_ms": summary(queries, 1000)}


async def run(bench: Bench) -> list[Figure]:
    scale = bench.scale
    count = scale.scale_rooms
    crowd = await bench.observer(await bench.register("agents"), encryption=False, quiet=True)
    account = await bench.bot_account()
    bot = bench.bot_process(account, "bot-scale")
    await bot.start()
    started = time.perf_counter()
    rooms = await bench.rooms_with(crowd, bot.user_id, count, wait_join=False)
    created_s = time.perf_counter() - started
    await crowd.wait_joined(rooms, bot.user_id, timeout=max(120.0, count * 0.5))
    joined_s = time.perf_counter() - started
    await bot.stop()

    seed_s = await seed_store(
        bot.data_dir / "tchap-bot.sqlite3", rooms, scale.scale_messages, scale.scale_turns_per_room
    )
    restarts = []
    memory: dict[str, float] = {}
    context: dict[str, Any] = {}
    chooser = random.Random(3)
    try:
        for attempt in range(scale.restarts):
            restarts.append(await restart_to_ready(bench, bot, crowd, chooser.choice(rooms)))
            if attempt == 0:
                for index in range(QUESTIONS_AFTER_START):
                    event_id, _ = await crowd.send(chooser.choice(rooms), question_text(index))
                    await crowd.reply_to(event_id, timeout=60)
                await asyncio.sleep(scale.settle_seconds)
                memory = bot.memory()
                context = await context_timings(bot, rooms, scale.context_samples)
            await bot.stop()
    finally:
        await bot.stop()

    ready = summary([r["ready_s"] for r in restarts])
    first = summary([r["first_answer_s"] for r in restarts])
    build = context["build_request_ms"]
    figure = Figure(
        "scale",
        "5. Scale",
        f"The bot joined to {count} rooms with {scale.scale_messages:,} stored messages "
        f"({scale.scale_messages // count:,} per room) and {scale.scale_turns_per_room} turns of "
        "conversation memory per room.".replace(",", " "),
    )
    figure.rows = [
        Row(
            "resident memory (VmRSS) after start + 20 answers",
            memory["rss_mb"],
            "MB",
            target=f"≤ {TARGET_RSS_MB:g} MB",
            passed=memory["rss_mb"] <= TARGET_RSS_MB,
        ),
        Row("peak resident memory (VmHWM)", memory["peak_rss_mb"], "MB"),
        Row("loading a room's context (build_request), median", build["median"], "ms"),
        Row(
            "loading a room's context (build_request), p99",
            build["p99"],
            "ms",
            target=f"≤ {TARGET_CONTEXT_P99_MS:g} ms",
            passed=build["p99"] <= TARGET_CONTEXT_P99_MS,
        ),
        Row(
            "of which the store query (recent_turns), p99", context["recent_turns_ms"]["p99"], "ms"
        ),
        Row(
            "restart → first answer (question waiting), median",
            first["median"],
            "s",
            target=f"≤ {TARGET_READY_S:g} s",
            passed=first["median"] <= TARGET_READY_S,
        ),
        Row("restart → ready (/readyz: first sync done), median", ready["median"], "s"),
        Row(f"setup: creating {count} rooms (one user, 8 at a time)", created_s, "s"),
        Row("setup: until the bot had joined them all", joined_s, "s"),
        Row(f"setup: seeding {scale.scale_messages:,} messages".replace(",", " "), seed_s, "s"),
    ]
    figure.data = {
        "rooms": count,
        "messages": scale.scale_messages,
        "turns_per_room": scale.scale_turns_per_room,
        "restarts": restarts,
        "memory": memory,
        "context": context,
        "rooms_created_per_s": count / created_s if created_s else None,
        "db_size_mb": (bot.data_dir / "tchap-bot.sqlite3").stat().st_size / 1e6,
    }
    return [figure]
