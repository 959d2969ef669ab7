"""TypingNotice: never an end without its start, never a start after its end, one end."""

from __future__ import annotations

import asyncio

from bot.answer.typing_notice import TypingNotice


class Sender:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bool]] = []
        self.landed = asyncio.Event()
        self.in_flight = asyncio.Event()

    async def typing(self, room_id: str, typing: bool) -> None:
        self.in_flight.set()
        await asyncio.sleep(0.01)  # a request's round trip: the end must wait for the start
        self.sent.append((room_id, typing))
        self.landed.set()


async def test_ended_before_its_delay_sends_nothing() -> None:
    sender = Sender()
    notice = TypingNotice(sender, "!salon", delay_seconds=0.05)
    assert notice.end() is None
    # The start could only come after the delay: wait for a later notice to land first.
    other = TypingNotice(sender, "!autre", delay_seconds=0.1)
    await sender.landed.wait()
    assert sender.sent == [("!autre", True)]
    other.end()


async def test_ended_after_its_start_sends_the_end_after_the_start() -> None:
    sender = Sender()
    notice = TypingNotice(sender, "!salon", delay_seconds=0)
    await sender.in_flight.wait()  # the start's request is on its way, not landed
    ending = notice.end()
    assert ending is not None
    await ending
    assert sender.sent == [("!salon", True), ("!salon", False)]
    assert notice.end() is None, "ended once"
    assert sender.sent == [("!salon", True), ("!salon", False)]
