"""The room's "typing" notice while the bot prepares an answer.

Why it is shown only while nothing of the answer is visible: each notice and its end are two
requests to the homeserver, and each wakes the sync of every member of the room (all their
devices). An answer sent whole shows the notice for the whole wait, its only sign of life. A
streamed answer shows its first words within about a second, and its cursor (▍) then says it
is still being written: the notice starts only if those words take longer than
`TYPING_DELAY_STREAMED_SECONDS`, and ends as soon as they are shown.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

# Answers sent whole: imperceptible, yet the notice's request leaves after the LLM request
# (off the question's path, bench/ figure 1), and an answer faster than it needs no notice.
TYPING_DELAY_SECONDS = 0.05
# Streamed answers: the first words usually come sooner (the model's first token plus a few).
TYPING_DELAY_STREAMED_SECONDS = 1.0


class TypingSender(Protocol):
    async def typing(self, room_id: str, typing: bool) -> None: ...


class TypingNotice:
    """One answer's notice: started after a delay, ended once (never before it started)."""

    def __init__(self, sender: TypingSender, room_id: str, delay_seconds: float) -> None:
        self._sender = sender
        self._room_id = room_id
        self._started = False
        self._ended = False
        self._start = asyncio.ensure_future(self._start_after(delay_seconds))

    async def _start_after(self, delay_seconds: float) -> None:
        await asyncio.sleep(delay_seconds)
        self._started = True
        await self._sender.typing(self._room_id, True)

    def end(self) -> asyncio.Future[None] | None:
        """Ends the notice: nothing is sent if it had not started; otherwise the end is sent
        after the start itself (the two cannot reach the server out of order). Returns that
        sending, for the caller to keep until it lands; None when there is nothing to send.
        Later calls do nothing."""
        if self._ended:
            return None
        self._ended = True
        if not self._started:
            self._start.cancel()
            return None
        return asyncio.ensure_future(self._stop_after_start())

    async def _stop_after_start(self) -> None:
        await asyncio.gather(self._start, return_exceptions=True)
        await self._sender.typing(self._room_id, False)
