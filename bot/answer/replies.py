"""Sending the bot's replies: rendering, splitting, relations and idempotent transaction IDs.

The transaction ID of every reply is derived from the triggering event, so a resend after a
crash is deduplicated by the homeserver instead of appearing twice in the room.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any, Protocol

from bot.answer.render import render_markdown
from bot.answer.split import split_for_matrix
from bot.models import BOT_MARKER, IncomingMessage
from bot.ops import metrics


class MatrixSender(Protocol):
    async def send_event(
        self, room_id: str, content: dict[str, Any], txn_id: str, event_type: str = "m.room.message"
    ) -> str: ...

    async def set_typing(self, room_id: str, typing: bool) -> None: ...


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


class Outbox:
    """Sends replies to a trigger. `purpose` distinguishes several replies to one trigger."""

    def __init__(self, sender: MatrixSender) -> None:
        self._sender = sender

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
            content = reply_content(trigger, body, html, notice=notice, mention_sender=index == 0)
            if index == 0 and measure_from is not None:
                metrics.BOT_OVERHEAD.labels("after_llm").observe(time.perf_counter() - measure_from)
            event_ids.append(
                await self._sender.send_event(
                    trigger.room_id, content, transaction_id(trigger.event_id, purpose, index)
                )
            )
        return event_ids

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
                await self._sender.send_event(
                    room_id, content, transaction_id(trigger.event_id, purpose, index)
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
        room_id: str | None = None,
    ) -> str:
        """`measure_from` as in `reply` (the final edit of a streamed answer); `room_id` when
        the edited message is not in the trigger's room."""
        content = edit_content(original_event_id, markdown, render_markdown(markdown))
        if measure_from is not None:
            metrics.BOT_OVERHEAD.labels("after_llm").observe(time.perf_counter() - measure_from)
        return await self._sender.send_event(
            room_id or trigger.room_id,
            content,
            transaction_id(trigger.event_id, f"{purpose}-edit", revision),
        )

    async def typing(self, room_id: str, typing: bool) -> None:
        await self._sender.set_typing(room_id, typing)
