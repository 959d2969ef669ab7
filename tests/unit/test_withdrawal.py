"""Withdrawing one job (issue 13, item 5): the room's worker goes on; what was sent, even a send
still in flight at the time, is redacted."""

from __future__ import annotations

import asyncio
from typing import Any

from bot.answer.replies import Outbox
from bot.models import IncomingMessage, MessageKind
from bot.router import RoomWorkers

ROOM = "!salon:localhost"


def trigger(event_id: str) -> IncomingMessage:
    return IncomingMessage(
        room_id=ROOM,
        event_id=event_id,
        sender="@alice:localhost",
        sender_name="Alice",
        kind=MessageKind.TEXT,
        body="question",
        timestamp_ms=1,
    )


class SlowSender:
    """Sends land when the test says so; redactions are recorded."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.sent: list[str] = []
        self.redacted: list[tuple[str, str]] = []

    async def send_event(
        self, room_id: str, content: dict[str, Any], txn_id: str, event_type: str = ""
    ) -> str:
        await self.release.wait()
        event_id = f"$sent{len(self.sent)}"
        self.sent.append(event_id)
        return event_id

    async def set_typing(self, room_id: str, typing: bool) -> None:
        return None

    async def redact(self, room_id: str, event_id: str, txn_id: str) -> bool:
        self.redacted.append((room_id, event_id))
        return True


async def test_a_send_in_flight_when_its_job_is_cancelled_is_still_redacted() -> None:
    sender = SlowSender()
    outbox = Outbox(sender)
    question = trigger("$q")
    outbox.track("$q")
    sender.release.set()
    await outbox.reply(question, "Premier morceau")
    sender.release.clear()
    job = asyncio.ensure_future(outbox.edit(question, "$sent0", "Suite", purpose="a", revision=1))
    await asyncio.sleep(0.01)
    job.cancel()
    await asyncio.gather(job, return_exceptions=True)
    assert sender.sent == ["$sent0"], "the edit has not reached the homeserver yet"

    sender.release.set()  # the homeserver answers after the cancellation
    assert await outbox.retract(question) == 2

    assert sender.redacted == [(ROOM, "$sent1"), (ROOM, "$sent0")], "newest first, all of them"
    assert outbox.sent_for("$q") == []


async def test_untracked_sends_are_not_remembered() -> None:
    sender = SlowSender()
    sender.release.set()
    outbox = Outbox(sender)
    await outbox.reply(trigger("$q"), "Réponse")
    assert await outbox.retract(trigger("$q")) == 0 and sender.redacted == []


async def test_cancelling_one_job_lets_the_room_go_on_with_the_next() -> None:
    ready = asyncio.Event()
    ready.set()
    workers = RoomWorkers(ready)
    started = asyncio.Event()
    done: list[str] = []

    async def hangs() -> None:
        started.set()
        await asyncio.Event().wait()

    async def follows() -> None:
        done.append("suivante")

    workers.submit(ROOM, hangs, key="$q1")
    workers.submit(ROOM, follows, key="$q2")
    await started.wait()
    assert workers.cancel("$q1") is True
    assert workers.cancel("$absent") is False
    assert await workers.drain(5)
    assert done == ["suivante"] and workers.pending == 0
