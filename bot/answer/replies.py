"""Sending the bot's replies: rendering, splitting, relations and idempotent transaction IDs.

The transaction ID of every reply is derived from the triggering event, so a resend after a
crash is deduplicated by the homeserver instead of appearing twice in the room.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from bot.answer.render import render_markdown
from bot.answer.split import split_for_matrix
from bot.models import BOT_MARKER, IncomingMessage
from bot.ops import metrics

log = structlog.get_logger(__name__)


class MatrixSender(Protocol):
    async def send_event(
        self, room_id: str, content: dict[str, Any], txn_id: str, event_type: str = "m.room.message"
    ) -> str: ...

    async def set_typing(self, room_id: str, typing: bool) -> None: ...

    async def redact(self, room_id: str, event_id: str, txn_id: str) -> bool: ...


def transaction_id(trigger_event_id: str, purpose: str, part: int = 0) -> str:
    digest = hashlib.sha256(f"{trigger_event_id}\x00{purpose}\x00{part}".encode()).hexdigest()
    return f"tchapbot-{digest[:40]}"


def reply_content(
    trigger: IncomingMessage,
    body: str,
    html: str,
    *,
    notice: bool = False,
    mention_sender: bool = True,
) -> dict[str, Any]:
    """An `m.room.message` replying to `trigger`, inside its thread when it was in one."""
    relation: dict[str, Any] | None
    if trigger.scheduled:
        relation = None  # nobody asked: a scheduled post stands on its own
    elif trigger.thread_root_id:
        relation = {
            "rel_type": "m.thread",
            "event_id": trigger.thread_root_id,
            "is_falling_back": False,
            "m.in_reply_to": {"event_id": trigger.event_id},
        }
    else:
        relation = {"m.in_reply_to": {"event_id": trigger.event_id}}
    content: dict[str, Any] = {
        "msgtype": "m.notice" if notice else "m.text",
        "body": body,
        "format": "org.matrix.custom.html",
        "formatted_body": html,
        "m.mentions": (
            {"user_ids": [trigger.sender]} if mention_sender and not trigger.scheduled else {}
        ),
        BOT_MARKER: {"generated": True},
    }
    if relation is not None:
        content["m.relates_to"] = relation
    return content


def edit_content(
    original_event_id: str, body: str, html: str, *, notice: bool = False
) -> dict[str, Any]:
    """An `m.replace` edit; clients that ignore edits still see the text in the fallback body."""
    msgtype = "m.notice" if notice else "m.text"
    return {
        "msgtype": msgtype,
        "body": f"* {body}",
        "format": "org.matrix.custom.html",
        "formatted_body": f"* {html}",
        "m.new_content": {
            "msgtype": msgtype,
            "body": body,
            "format": "org.matrix.custom.html",
            "formatted_body": html,
        },
        "m.relates_to": {"rel_type": "m.replace", "event_id": original_event_id},
        BOT_MARKER: {"generated": True},
    }


@dataclass
class _Sent:
    """What was sent for one tracked trigger: (room ID, event ID), and sends not yet answered."""

    events: list[tuple[str, str]] = field(default_factory=list)
    in_flight: set[asyncio.Future[str]] = field(default_factory=set)
    measure_from: float | None = None  # a command's arrival (perf_counter) until its first send


class Outbox:
    """Sends replies to a trigger. `purpose` distinguishes several replies to one trigger.

    While a trigger is tracked (`track` … `untrack`, the router does it around each job),
    every event sent for it is remembered, so that `retract` can redact them all if the
    question is withdrawn (redacted, forgotten) while its answer is being written. A send
    in flight when its job is cancelled still completes and is remembered, so nothing that
    reached the room escapes the retraction."""

    def __init__(self, sender: MatrixSender) -> None:
        self._sender = sender
        self._tracked: dict[str, _Sent] = {}

    def track(self, trigger_event_id: str, *, measure_from: float | None = None) -> None:
        """`measure_from` (perf_counter when the router received a command) records the bot's
        own time from the command's arrival to its first send request (stage `command`)."""
        self._tracked.setdefault(trigger_event_id, _Sent(measure_from=measure_from))

    def untrack(self, trigger_event_id: str) -> None:
        self._tracked.pop(trigger_event_id, None)

    def sent_for(self, trigger_event_id: str) -> list[str]:
        sent = self._tracked.get(trigger_event_id)
        return [event_id for _, event_id in sent.events] if sent else []

    async def _send(
        self,
        trigger: IncomingMessage,
        content: dict[str, Any],
        txn_id: str,
        *,
        room_id: str | None = None,
    ) -> str:
        """Send for `trigger` (in its room unless `room_id` says otherwise), remembered while
        the trigger is tracked."""
        target = room_id or trigger.room_id
        sent = self._tracked.get(trigger.event_id)
        if sent is None:
            return await self._sender.send_event(target, content, txn_id)
        if sent.measure_from is not None:
            metrics.BOT_OVERHEAD.labels("command").observe(time.perf_counter() - sent.measure_from)
            sent.measure_from = None
        future = asyncio.ensure_future(self._sender.send_event(target, content, txn_id))
        sent.in_flight.add(future)

        def landed(done: asyncio.Future[str]) -> None:
            sent.in_flight.discard(done)
            if not done.cancelled() and done.exception() is None:
                sent.events.append((target, done.result()))

        future.add_done_callback(landed)
        return await asyncio.shield(future)

    async def retract(self, trigger: IncomingMessage) -> int:
        """Redact every event sent for `trigger` (letting sends in flight land first), newest
        first; stops tracking it. Returns how many redactions the homeserver accepted."""
        sent = self._tracked.pop(trigger.event_id, None)
        if sent is None:
            return 0
        if sent.in_flight:
            await asyncio.gather(*sent.in_flight, return_exceptions=True)
        redacted = 0
        for index, (room_id, event_id) in reversed(list(enumerate(sent.events))):
            txn_id = transaction_id(trigger.event_id, "retract", index)
            try:
                redacted += await self._sender.redact(room_id, event_id, txn_id)
            except Exception as error:  # one failure must not spare the other events
                log.warning(
                    "outbox.redact_failed", room_id=room_id, error_type=type(error).__name__
                )
        return redacted

    async def reply(
        self,
        trigger: IncomingMessage,
        markdown: str,
        *,
        purpose: str = "answer",
        notice: bool = False,
        measure_from: float | None = None,
    ) -> list[str]:
        """Send `markdown` as one or more replies. `measure_from` (perf_counter) records the
        bot's own time from the LLM's last token to the first send request leaving."""
        event_ids = []
        for index, (body, html) in enumerate(split_for_matrix(markdown)):
            event_ids.append(
                await self.reply_rendered(
                    trigger,
                    body,
                    html,
                    purpose=purpose,
                    part=index,
                    notice=notice,
                    mention_sender=index == 0,
                    measure_from=measure_from if index == 0 else None,
                )
            )
        return event_ids

    async def reply_rendered(
        self,
        trigger: IncomingMessage,
        body: str,
        html: str,
        *,
        purpose: str,
        part: int = 0,
        notice: bool = False,
        mention_sender: bool = True,
        measure_from: float | None = None,
    ) -> str:
        """One reply whose HTML is already rendered (a part of `split_for_matrix`)."""
        content = reply_content(trigger, body, html, notice=notice, mention_sender=mention_sender)
        if measure_from is not None:
            metrics.BOT_OVERHEAD.labels("after_llm").observe(time.perf_counter() - measure_from)
        return await self._send(trigger, content, transaction_id(trigger.event_id, purpose, part))

    async def post(
        self, room_id: str, trigger: IncomingMessage, markdown: str, *, purpose: str
    ) -> list[str]:
        """Messages standing on their own in another room (the asker's DM with the bot), with
        transaction IDs still derived from the trigger."""
        event_ids = []
        for index, (body, html) in enumerate(split_for_matrix(markdown)):
            content = {
                "msgtype": "m.text",
                "body": body,
                "format": "org.matrix.custom.html",
                "formatted_body": html,
                "m.mentions": {},
            }
            event_ids.append(
                await self._send(
                    trigger,
                    content,
                    transaction_id(trigger.event_id, purpose, index),
                    room_id=room_id,
                )
            )
        return event_ids

    async def edit(
        self,
        trigger: IncomingMessage,
        original_event_id: str,
        markdown: str,
        *,
        purpose: str,
        revision: int,
        measure_from: float | None = None,
        html: str | None = None,
        room_id: str | None = None,
    ) -> str:
        """`measure_from` as in `reply` (the final edit of a streamed answer); `html`: the
        Markdown already rendered (else it is rendered here); `room_id` when the edited message
        is not in the trigger's room."""
        content = edit_content(
            original_event_id, markdown, render_markdown(markdown) if html is None else html
        )
        if measure_from is not None:
            metrics.BOT_OVERHEAD.labels("after_llm").observe(time.perf_counter() - measure_from)
        return await self._send(
            trigger,
            content,
            transaction_id(trigger.event_id, f"{purpose}-edit", revision),
            room_id=room_id,
        )

    async def typing(self, room_id: str, typing: bool) -> None:
        await self._sender.set_typing(room_id, typing)
