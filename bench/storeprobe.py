"""What recording one answer costs the store: `TriggersRepository.finish`, alone.

Run: `python -m bench.storeprobe` prints one JSON object: wall and CPU time per record (a
question claimed, then finished with its two turns, the answer's text and the usage), on a
fresh database in a temporary folder, after 50 records of warm-up. Each hop to SQLite is a
hand-over to aiosqlite's thread and a wake-up of the event loop, so the number of hops shows
here more than the statements themselves.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from pathlib import Path

from bot.models import IncomingMessage, MessageKind
from bot.store import Store
from bot.store.database import ConversationTurn, StoredMessage, now_ms

WARM_UP = 50
RECORDS = 400
ROOM = "!probe:bench"


def _question(index: int) -> IncomingMessage:
    return IncomingMessage(
        room_id=ROOM,
        event_id=f"$q{index}",
        sender="@agent:bench",
        sender_name="Agent",
        kind=MessageKind.TEXT,
        body="Quel est le délai de recours ?",
        timestamp_ms=now_ms(),
    )


async def _record(store: Store, message: IncomingMessage) -> None:
    answer_id = f"$a{message.event_id}"
    answer = "Le délai est de deux mois à compter de la notification. " * 8
    await store.triggers.finish(
        message,
        "answered",
        answer_event_id=answer_id,
        turns=[
            ConversationTurn("user", message.sender, "Agent", message.body, message.event_id, 1),
            ConversationTurn("assistant", "@bot:bench", "Assistant", answer, answer_id, 2),
        ],
        answer_messages=[
            StoredMessage(
                event_id=answer_id,
                room_id=ROOM,
                sender="@bot:bench",
                sender_name="Assistant",
                body=answer,
                timestamp_ms=2,
            )
        ],
        prompt_tokens=1000,
        completion_tokens=80,
    )


async def _measure() -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        store = await Store.open(Path(folder) / "probe.sqlite3")
        try:
            questions = [_question(index) for index in range(WARM_UP + RECORDS)]
            for message in questions:
                await store.triggers.claim(message)
            for message in questions[:WARM_UP]:
                await _record(store, message)
            wall, cpu = time.perf_counter(), time.process_time()
            for message in questions[WARM_UP:]:
                await _record(store, message)
            return {
                "records": RECORDS,
                "wall_ms_per_record": (time.perf_counter() - wall) / RECORDS * 1000,
                "cpu_ms_per_record": (time.process_time() - cpu) / RECORDS * 1000,
            }
        finally:
            await store.close()


def main() -> None:
    print(json.dumps(asyncio.run(_measure())))


if __name__ == "__main__":
    main()
