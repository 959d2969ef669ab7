"""The floor: a zero-work Matrix peer that replies the moment its sync delivers a message.

It runs in its own process, like the bot, with the same library (matrix-nio) and the same
homeserver. The round trip asker → echo → asker is the least any bot can do: the bot's
figures are reported as ratios to it. With `delay_seconds` it waits before replying (without
blocking its sync loop), which gives the floor of the concurrency figure (an LLM-free
stand-in that takes as long as the LLM).

With `like_bot` it asks of the homeserver what the bot asks for each question, still doing
no work of its own: the typing notice after the bot's delay, a reply of the bot's shape (the
benchmark's answer as body and HTML, `m.mentions`, the bot's marker; built once by the bot's
own `reply_content`), then the end of the typing notice (as the bot does with streaming on,
its default: an answer coming whole after the notice's delay). The concurrency figure compares the
bot with both peers: what the bot's own work costs, apart from what it asks of the homeserver.

Run: `python -m bench.echo '<json config>'`; prints `READY` once synced with keys uploaded;
exits when its stdin closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from typing import Any

import nio

from bench.llm_server import bench_answer
from bot.answer.render import render_markdown
from bot.answer.replies import reply_content
from bot.answer.typing_notice import TYPING_DELAY_STREAMED_SECONDS, TypingNotice
from bot.models import IncomingMessage, MessageKind

ECHO_BODY = "écho"


class _BotShapedAnswer:
    """The bot's reply to a question, with the benchmark model's answer, rendered once."""

    def __init__(self, words: int) -> None:
        self.body = bench_answer(words)
        self.html = render_markdown(self.body)

    def content(self, room_id: str, event_id: str, sender: str) -> dict[str, Any]:
        trigger = IncomingMessage(
            room_id=room_id,
            event_id=event_id,
            sender=sender,
            sender_name=sender,
            kind=MessageKind.TEXT,
            body="",
            timestamp_ms=0,
        )
        return reply_content(trigger, self.body, self.html)


async def crypto_housekeeping(client: nio.AsyncClient) -> None:
    """What nio's sync_forever does between syncs for encryption (keys, to-device)."""
    if client.olm is None:
        return
    await client.send_to_device_messages()
    if client.should_upload_keys:
        await client.keys_upload()
    if client.should_query_keys:
        await client.keys_query()
    if client.should_claim_keys:
        await client.keys_claim(client.get_users_for_key_claiming())


class EchoPeer:
    def __init__(self, config: dict[str, Any]) -> None:
        self.encryption = bool(config.get("encryption", False))
        self.delay = float(config.get("delay_seconds", 0.0))
        self.like_bot = bool(config.get("like_bot", False))
        self.answer = (
            _BotShapedAnswer(int(config.get("answer_words", 60))) if self.like_bot else None
        )
        self.client = nio.AsyncClient(
            config["homeserver"],
            config["user_id"],
            device_id=config["device_id"],
            store_path=config["store_path"],
            config=nio.AsyncClientConfig(
                encryption_enabled=self.encryption, store_sync_tokens=False
            ),
        )
        self.client.restore_login(config["user_id"], config["device_id"], config["access_token"])
        self.started = False
        self.tasks: set[asyncio.Task[None]] = set()

    async def _reply(self, room_id: str, event_id: str, received: float, sender: str = "") -> None:
        content: dict[str, Any]
        if self.answer is not None:
            content = self.answer.content(room_id, event_id, sender)
        else:
            content = {
                "msgtype": "m.text",
                "body": ECHO_BODY,
                "m.relates_to": {"m.in_reply_to": {"event_id": event_id}},
            }
        # Canonical JSON has no floats: nanoseconds of the shared monotonic clock.
        content["bench.received_at_ns"] = int(received * 1e9)
        response = await self.client.room_send(
            room_id, "m.room.message", content, ignore_unverified_devices=True
        )
        if not isinstance(response, nio.RoomSendResponse):
            print(f"echo: send failed: {response}", file=sys.stderr, flush=True)

    async def _delayed_reply(
        self, room_id: str, event_id: str, received: float, sender: str
    ) -> None:
        if not self.like_bot:
            await asyncio.sleep(self.delay)
            await self._reply(room_id, event_id, received)
            return
        # The bot's own notice, with the delay of a streamed answer (the default).
        typing = TypingNotice(self, room_id, TYPING_DELAY_STREAMED_SECONDS)
        await asyncio.sleep(self.delay)
        await self._reply(room_id, event_id, received, sender)
        ending = typing.end()
        if ending is not None:
            await ending

    async def typing(self, room_id: str, typing: bool) -> None:
        await self.client.room_typing(room_id, typing_state=typing, timeout=60_000)

    async def on_message(self, room: nio.MatrixRoom, event: nio.RoomMessageText) -> None:
        received = time.perf_counter()
        if not self.started or event.sender == self.client.user_id:
            return
        if self.delay > 0 or self.like_bot:
            task = asyncio.create_task(
                self._delayed_reply(room.room_id, event.event_id, received, event.sender)
            )
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        else:
            await self._reply(room.room_id, event.event_id, received)

    async def on_invite(self, room: nio.MatrixRoom, event: nio.InviteMemberEvent) -> None:
        if event.state_key == self.client.user_id and event.membership == "invite":
            await self.client.join(room.room_id)

    async def housekeeping(self) -> None:
        await crypto_housekeeping(self.client)

    async def run(self, stop: asyncio.Event) -> None:
        self.client.add_event_callback(self.on_message, nio.RoomMessageText)
        self.client.add_event_callback(self.on_invite, nio.InviteMemberEvent)
        await self.client.sync(timeout=0, full_state=True)
        await self.housekeeping()
        self.started = True
        print("READY", flush=True)
        while not stop.is_set():
            sync = asyncio.ensure_future(self.client.sync(timeout=30_000))
            stopping = asyncio.ensure_future(stop.wait())
            await asyncio.wait({sync, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if not sync.done():
                sync.cancel()
                break
            stopping.cancel()
            await self.housekeeping()
        await self.client.close()


async def _main(config: dict[str, Any]) -> None:
    peer = EchoPeer(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    async def watch_stdin() -> None:
        await loop.run_in_executor(None, sys.stdin.read)
        stop.set()

    watcher = asyncio.create_task(watch_stdin())
    await peer.run(stop)
    watcher.cancel()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(json.loads(sys.argv[1])))
