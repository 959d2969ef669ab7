"""Streamed answers: one message that grows by edits while the model writes.

The first text appears as soon as the model writes (waiting for a whole sentence cost ~0.3 s
of visible latency, bench/ figure 7); then at most one edit per interval, only when the text
changed; the final edit carries the complete, rendered answer in `m.new_content` and in the
fallback body. Every send uses a transaction ID derived from the trigger, so a retry after a
crash reuses the same message instead of leaving a second partial answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import structlog

from bot import texts
from bot.answer.llm import LLMError
from bot.answer.replies import Outbox
from bot.answer.split import split_for_matrix
from bot.models import IncomingMessage

log = structlog.get_logger(__name__)

# An edit carries the text twice (fallback and m.new_content): keep each part under half the
# 64 KiB event limit.
STREAM_PART_LIMIT_BYTES = 28_000
TYPING_CURSOR = " ▍"
_SENTENCE_END = re.compile(r"[.!?…:;]\s|\n")


@dataclass
class StreamOutcome:
    text: str
    event_ids: list[str]
    complete: bool
    edits: int
    first_visible_at: float | None


class StreamingReply:
    """Publishes a growing answer to the room, throttled, for one trigger."""

    def __init__(
        self,
        outbox: Outbox,
        trigger: IncomingMessage,
        *,
        edit_interval: float,
        first_text_wait: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        footer: Callable[[str], str] | None = None,
    ) -> None:
        self._outbox = outbox
        self._trigger = trigger
        self._interval = edit_interval
        self._first_wait = first_text_wait
        self._clock = clock
        self._footer = footer  # appended to the final text only (e.g. document sources)
        self._text = ""
        self._first_text_at: float | None = None
        self._event_id: str | None = None
        self._shown = ""
        self._last_publish = 0.0
        self._revision = 0
        self._changed = asyncio.Event()
        self._done = False
        self.first_visible_at: float | None = None

    @property
    def edits(self) -> int:
        return self._revision

    def feed(self, delta: str) -> None:
        if self._first_text_at is None:
            self._first_text_at = self._clock()
        self._text += delta
        self._changed.set()

    def _visible(self) -> str:
        """The text to show now: the first event's worth, with a cursor while it grows."""
        parts = split_for_matrix(self._text, STREAM_PART_LIMIT_BYTES) if self._text.strip() else []
        shown = parts[0][0] if parts else ""
        return shown + TYPING_CURSOR

    def _ready_for_first(self) -> bool:
        if not self._text.strip() or self._first_text_at is None:
            return False
        return bool(_SENTENCE_END.search(self._text)) or (
            self._clock() - self._first_text_at >= self._first_wait
        )

    async def run(self) -> None:
        """Publisher loop: runs beside the stream consumer until `finish()`."""
        while not self._done:
            timeout = self._next_wake()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=timeout)
            self._changed.clear()
            if self._done:
                return
            await self._publish_if_due()

    def _next_wake(self) -> float | None:
        if self._event_id is None:
            if self._first_text_at is None:
                return None
            return max(0.01, self._first_wait - (self._clock() - self._first_text_at))
        return max(0.01, self._interval - (self._clock() - self._last_publish))

    async def _publish_if_due(self) -> None:
        now = self._clock()
        if self._event_id is None:
            if self._ready_for_first():
                text = self._visible()
                ids = await self._outbox.reply(self._trigger, text, purpose="answer")
                self._event_id = ids[0]
                self._shown = text
                self._last_publish = self._clock()
                self.first_visible_at = self._last_publish
            return
        if now - self._last_publish < self._interval:
            return
        text = self._visible()
        if text == self._shown:
            return
        self._revision += 1
        await self._outbox.edit(
            self._trigger, self._event_id, text, purpose="answer", revision=self._revision
        )
        self._shown = text
        self._last_publish = self._clock()

    def stop(self) -> None:
        """No more intermediate edits: the publisher loop ends after any in-flight send."""
        self._done = True
        self._changed.set()

    async def finish(self, complete: bool, last_token_at: float | None = None) -> list[str]:
        """Final edit with the whole rendered answer; overflow continues in follow-up messages."""
        self.stop()
        text = self._text if complete else self._text.rstrip() + texts.ANSWER_INCOMPLETE
        if self._footer is not None:
            text += self._footer(self._text)
        parts = [body for body, _ in split_for_matrix(text, STREAM_PART_LIMIT_BYTES)]
        event_ids: list[str] = []
        if self._event_id is None:
            event_ids += await self._outbox.reply(
                self._trigger, parts[0], purpose="answer", measure_from=last_token_at
            )
            self.first_visible_at = self._clock()
        else:
            await self._outbox.edit(
                self._trigger,
                self._event_id,
                parts[0],
                purpose="answer-final",
                revision=0,
                measure_from=last_token_at,
            )
            self._revision += 1
            event_ids.append(self._event_id)
        for index, part in enumerate(parts[1:], start=1):
            event_ids += await self._outbox.reply(
                self._trigger, part, purpose=f"answer-continued-{index}"
            )
        return event_ids

    @property
    def has_text(self) -> bool:
        return bool(self._text.strip())

    @property
    def text(self) -> str:
        return self._text


async def stream_answer(
    deltas: AsyncIterator[str],
    reply: StreamingReply,
) -> StreamOutcome:
    """Consume the model's stream into `reply`. A break after some text ends the answer with a
    note; a failure before any text is re-raised for the caller's error message."""
    publisher = asyncio.create_task(reply.run())
    complete = True
    last_token_at: float | None = None
    try:
        async for delta in deltas:
            reply.feed(delta)
            last_token_at = time.perf_counter()
    except LLMError:
        if not reply.has_text:
            publisher.cancel()
            await asyncio.gather(publisher, return_exceptions=True)
            raise
        complete = False
        log.warning("streaming.broken")
    # Let an in-flight publish land before the final edit, so edits stay in order.
    reply.stop()
    await asyncio.gather(publisher, return_exceptions=True)
    event_ids = await reply.finish(complete, last_token_at)
    return StreamOutcome(
        text=reply.text if complete else reply.text.rstrip() + texts.ANSWER_INCOMPLETE,
        event_ids=event_ids,
        complete=complete,
        edits=reply.edits,
        first_visible_at=reply.first_visible_at,
    )
