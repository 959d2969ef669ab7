"""Helpers for tests that talk to the bot through real Matrix clients."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable
from typing import Any

import nio

from tests.support.matrix_client import create_room, events_in, send_text, wait_for_event


async def eventually(check: Callable[[], Any], timeout: float = 30) -> None:  # noqa: ASYNC109
    """Poll `check` (a plain or async predicate) until it holds: the bot applies what its sync
    delivers, and records what it sent, a moment after a test client sees it."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if await result if inspect.isawaitable(result) else result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.05)


def replies_to(event_id: str) -> Any:
    def predicate(event: dict[str, Any]) -> bool:
        relates = event["content"].get("m.relates_to", {})
        return bool(relates.get("m.in_reply_to", {}).get("event_id") == event_id)

    return predicate


def bot_replies(client: nio.AsyncClient, room_id: str, bot_id: str) -> list[dict[str, Any]]:
    return [
        e
        for e in events_in(client, room_id)
        if e["sender"] == bot_id
        and e["type"] == "m.room.message"
        and "m.new_content" not in e["content"]
    ]


async def room_with_bot(client: nio.AsyncClient, bot_id: str, **kwargs: Any) -> str:
    room_id = await create_room(client, invite=[bot_id], **kwargs)
    await wait_for_event(
        client,
        room_id,
        lambda e: (
            e["type"] == "m.room.member"
            and e["state_key"] == bot_id
            and e["content"]["membership"] == "join"
        ),
    )
    return room_id


async def ask(
    client: nio.AsyncClient, room_id: str, bot_id: str, body: str, **kwargs: Any
) -> dict[str, Any]:
    event_id = await send_text(client, room_id, body, **kwargs)
    return await wait_for_event(client, room_id, replies_to(event_id))
