"""Streamed answers: one message that grows by edits while the model writes.

The first message shows the first words (two whole words or a line, never a lone token: a
phone's notification shows that first version), as soon as they exist; then at most one edit
per interval, only when the text changed; the final edit carries the complete, rendered answer
in `m.new_content` and in the fallback body. A model that finishes before the first message is
sent gives one message and no edit. Every send uses a transaction ID derived from the trigger,
so a retry after a crash reuses the same message instead of leaving a second partial answer.

The text arrives in batches at about the edit interval (bot/answer/stream_pacing.py reads the model's
stream at that pace), so the publisher wakes a few times per answer, not once per token; each
publish renders the Markdown once (the rendered part is sent as is).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import structlog

from bot import texts
from bot.answer.llm_failures import LLMError
from bot.answer.replies import Outbox
from bot.answer.split import split_for_matrix
from bot.answer.stream_pacing import first_words_ready
from bot.models import IncomingMessage

log = structlog.get_logger(__name__)

# An edit carries the text twice (fallback and m.new_content): keep each part under half the
# 64 KiB event limit.
STREAM_PART_LIMIT_BYTES = 28_000
TYPING_CURSOR = " ▍"


@dataclass
class StreamOutcome:
    text: str
    event_ids: list[str]
    complete: bool


class StreamingReply:
    """Publishes a growing answer to the room, throttled, for one trigger."""

    def __init__(
        self,
        outbox: Outbox,
        trigger: IncomingMessage,
        *,
        edit_interval: float,
        clock: Callable[[], float] = time.monotonic,
        footer: Callable[[str], str] | None = None,
        on_shown: Callable[[], None] | None = None,
    ) -> None:
        self._outbox = outbox
        self._on_shown = on_shown  # once, when the room first sees the answer
        self._trigger = trigger
        self._interval = edit_interval
        # A model writing one word and then nothing for this long still shows that word.
        self._first_wait = edit_interval
        self._clock = clock
        self._footer = footer  # appended to the final text only (e.g. document sources)
        self._text = ""
        self._first_text_at: float | None = None
        self._event_id: str | None = None
        self._shown = ""
        self._published_length = 0
        self._last_publish = 0.0
        self._revision = 0
        self._changed = asyncio.Event()
        self._done = False
        self._model_finished = False

    def feed(self, delta: str) -> None:
        if self._first_text_at is None:
            self._first_text_at = self._clock()
        self._text += delta
        self._changed.set()

    def model_finished(self) -> None:
        """The model said the answer is complete: no more intermediate publishing, the final
        step sends it (as the only message when none was sent yet)."""
        self._model_finished = True

    def _visible(self) -> tuple[str, str]:
        """The text to show now (the first event's worth, with a cursor), rendered once."""
        body, html = split_for_matrix(self._text + TYPING_CURSOR, STREAM_PART_LIMIT_BYTES)[0]
        if not body.endswith(TYPING_CURSOR):  # the first part is full: the cursor goes on it
            body, html = split_for_matrix(body + TYPING_CURSOR, STREAM_PART_LIMIT_BYTES)[0]
        return body, html

    def _ready_for_first(self) -> bool:
        if not self._text.strip() or self._first_text_at is None:
            return False
        return first_words_ready(self._text) or (
            self._clock() - self._first_text_at >= self._first_wait
        )

    async def run(self) -> None:
        """Publisher loop: runs beside the stream consumer until `finish()`."""
        while not self._done:
            timeout = self._next_wake()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._changed.wait()
            self._changed.clear()
            if self._done:
                return
            await self._publish_if_due()

    def _next_wake(self) -> float | None:
        """Seconds until publishing may be due; None: only when new text comes."""
        if self._first_text_at is None:
            return None
        if self._event_id is None:
            return max(0.01, self._first_wait - (self._clock() - self._first_text_at))
        if len(self._text) == self._published_length:
            return None
        return max(0.01, self._interval - (self._clock() - self._last_publish))

    async def _publish_if_due(self) -> None:
        if self._model_finished:
            return
        now = self._clock()
        if self._event_id is None:
            if self._ready_for_first():
                self._published_length = len(self._text)
                body, html = self._visible()
                self._last_publish = now
                self._event_id = await self._outbox.reply_rendered(
                    self._trigger, body, html, purpose="answer"
                )
                self._shown = body
                self._first_shown()
            return
        if now - self._last_publish < self._interval or len(self._text) == self._published_length:
            return
        self._published_length = len(self._text)
        body, html = self._visible()
        if body == self._shown:
            return
        self._revision += 1
        self._last_publish = now
        await self._outbox.edit(
            self._trigger,
            self._event_id,
            body,
            purpose="answer",
            revision=self._revision,
            html=html,
        )
        self._shown = body

    def _first_shown(self) -> None:
        if self._on_shown is not None:
            on_shown, self._on_shown = self._on_shown, None
            on_shown()

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
        parts = split_for_matrix(text, STREAM_PART_LIMIT_BYTES)
        event_ids: list[str] = []
        body, html = parts[0]
        if self._event_id is None:
            event_ids.append(
                await self._outbox.reply_rendered(
                    self._trigger, body, html, purpose="answer", measure_from=last_token_at
                )
            )
            self._first_shown()
        else:
            await self._outbox.edit(
                self._trigger,
                self._event_id,
                body,
                purpose="answer-final",
                revision=0,
                measure_from=last_token_at,
                html=html,
            )
            self._revision += 1
            event_ids.append(self._event_id)
        for index, (body, html) in enumerate(parts[1:], start=1):
            event_ids.append(
                await self._outbox.reply_rendered(
                    self._trigger,
                    body,
                    html,
                    purpose=f"answer-continued-{index}",
                    mention_sender=False,
                )
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
    except BaseException:
        # Cancelled (the question was withdrawn, or shutdown): no edit may follow.
        reply.stop()
        publisher.cancel()
        await asyncio.gather(publisher, return_exceptions=True)
        raise
    # Let an in-flight publish land before the final edit, so edits stay in order.
    reply.stop()
    await asyncio.gather(publisher, return_exceptions=True)
    event_ids = await reply.finish(complete, last_token_at)
    return StreamOutcome(
        text=reply.text if complete else reply.text.rstrip() + texts.ANSWER_INCOMPLETE,
        event_ids=event_ids,
        complete=complete,
    )
