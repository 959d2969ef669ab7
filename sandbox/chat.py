"""The sandbox user's side: a real matrix-nio client chatting with the bot in a private room.

It is an ordinary Matrix client (the same kind of client as Element, end-to-end encryption
included when asked), so what the terminal shows is what a person would see. Streamed answers
grow by edits; the terminal prints a message once its text is final, i.e. no longer ends with
the streaming cursor.
"""

from __future__ import annotations

import asyncio
import io
import mimetypes
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nio
import structlog
from PIL import Image

from bot.answer.streaming import TYPING_CURSOR
from bot.attachments.voice import AudioLimits, AudioRejected, inspect_audio, sniff_container
from sandbox.synapse import RegisteredUser

log = structlog.get_logger(__name__)

SYNC_TIMEOUT_MS = 30_000
_NO_LIMITS = AudioLimits(max_bytes=2**40, max_seconds=10**9)  # the bot applies its own


class ChatError(Exception):
    """The homeserver refused something the sandbox user needs."""


@dataclass
class ShownMessage:
    """A message to print: the bot's final text (or a message from the user's other client)."""

    event_id: str
    sender: str
    text: str
    reply_to: str | None
    edited: bool = False


@dataclass
class _BotMessage:
    reply_to: str | None
    text: str
    printed: str | None = None


def _ok(response: Any, what: str) -> Any:
    if isinstance(response, nio.ErrorResponse):
        raise ChatError(f"{what} : {response}")
    return response


def describe_file(name: str, data: bytes) -> tuple[str, str, dict[str, Any], dict[str, Any]]:
    """msgtype, mimetype, extra `info` and extra content for a file, from its bytes (what a
    client would send; the bot checks the bytes itself anyway)."""
    if sniff_container(data) is not None:
        try:
            duration_ms = int(inspect_audio(data, _NO_LIMITS).duration_seconds * 1000)
        except AudioRejected:
            duration_ms = 0
        mimetype = mimetypes.guess_type(name)[0] or "audio/ogg"
        extra = {
            "org.matrix.msc1767.audio": {"duration": duration_ms, "waveform": []},
            "org.matrix.msc3245.voice": {},
        }
        return "m.audio", mimetype, {"duration": duration_ms}, extra
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            mimetype = Image.MIME.get(str(image.format), "image/png")
        return "m.image", mimetype, {"w": width, "h": height}, {}
    except Exception:  # not an image Pillow knows: an ordinary file
        pass
    return "m.file", mimetypes.guess_type(name)[0] or "application/octet-stream", {}, {}


def _relation(content: dict[str, Any]) -> dict[str, Any]:
    relation = content.get("m.relates_to")
    return relation if isinstance(relation, dict) else {}


class ChatClient:
    """Logged in as the sandbox user; syncs in the background and reports the bot's messages."""

    def __init__(
        self,
        homeserver: str,
        account: RegisteredUser,
        bot_id: str,
        store_dir: Path,
        encrypted: bool,
        on_message: Callable[[ShownMessage], None],
    ) -> None:
        store_dir.mkdir(parents=True, exist_ok=True)
        self.bot_id = bot_id
        self.encrypted = encrypted
        self.room_id: str | None = None
        self.client = nio.AsyncClient(
            homeserver,
            account.user_id,
            device_id=account.device_id,
            store_path=str(store_dir),
            config=nio.AsyncClientConfig(encryption_enabled=encrypted, store_sync_tokens=encrypted),
        )
        self.client.restore_login(account.user_id, account.device_id, account.access_token)
        self._on_message = on_message
        self._bot_messages: dict[str, _BotMessage] = {}
        self._sent: set[str] = set()
        self._answered: dict[str, asyncio.Event] = {}
        self._lock = asyncio.Lock()
        self._sync_task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self.client.add_event_callback(self._on_event, nio.Event)

    # --- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        """First sync (raises ChatError if the token is refused), then sync in the background."""
        await self._sync(0)
        if self.encrypted and self.client.should_upload_keys:
            _ok(await self.client.keys_upload(), "envoi des clés")
        self._sync_task = asyncio.create_task(self._sync_forever())

    async def close(self) -> None:
        if self._sync_task is not None:
            self._sync_task.cancel()
            await asyncio.gather(self._sync_task, return_exceptions=True)
            self._sync_task = None
        await self.client.close()

    async def _sync(self, timeout_ms: int) -> None:
        _ok(await self.client.sync(timeout=timeout_ms), "synchronisation")
        async with self._lock:
            await self._housekeeping()
        self._changed.set()

    async def _housekeeping(self) -> None:
        """What `sync_forever` would do for end-to-end encryption (keys, to-device messages)."""
        client = self.client
        if client.olm is None:
            return
        if client.should_upload_keys:
            _ok(await client.keys_upload(), "envoi des clés")
        if client.should_query_keys:
            _ok(await client.keys_query(), "lecture des clés")
        if client.should_claim_keys:
            _ok(await client.keys_claim(client.get_users_for_key_claiming()), "clés à usage unique")
        await client.send_to_device_messages()

    async def _sync_forever(self) -> None:
        backoff = 0.5
        while True:
            try:
                await self._sync(SYNC_TIMEOUT_MS)
                backoff = 0.5
            except asyncio.CancelledError:
                raise
            except Exception as error:  # homeserver restarting, transport error: try again
                log.warning("sandbox.chat_sync_failed", error_type=type(error).__name__)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def _wait(self, predicate: Callable[[], bool], timeout: float) -> None:  # noqa: ASYNC109
        """Wait, sync after sync, until `predicate()` holds (TimeoutError otherwise)."""
        async with asyncio.timeout(timeout):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

    # --- the room with the bot ----------------------------------------------------------------
    def bot_joined(self, room_id: str) -> bool:
        """From nio's room state: `users` holds joined and invited members."""
        room = self.client.rooms.get(room_id)
        return (
            room is not None and self.bot_id in room.users and self.bot_id not in room.invited_users
        )

    async def open_room(self, saved_room_id: str | None, timeout: float = 30) -> str:  # noqa: ASYNC109
        """Reuse the saved private room when the bot is still in it, else create a new one."""
        if saved_room_id and saved_room_id in self.client.rooms and self.bot_joined(saved_room_id):
            self.room_id = saved_room_id
            return saved_room_id
        initial_state: list[dict[str, Any]] = []
        if self.encrypted:
            initial_state.append(
                {
                    "type": "m.room.encryption",
                    "state_key": "",
                    "content": {"algorithm": "m.megolm.v1.aes-sha2"},
                }
            )
        response = _ok(
            await self.client.room_create(
                name="Bac à sable",
                invite=[self.bot_id],
                is_direct=True,
                preset=nio.RoomPreset.trusted_private_chat,
                initial_state=initial_state,
            ),
            "création du salon",
        )
        room_id = str(response.room_id)
        await self._mark_direct(room_id)
        try:
            await self._wait(lambda: self.bot_joined(room_id), timeout)
        except TimeoutError:
            raise ChatError(
                f"le bot n'a pas rejoint le salon {room_id} en {timeout:.0f} s"
            ) from None
        self.room_id = room_id
        return room_id

    async def _mark_direct(self, room_id: str) -> None:
        """Record the room as a DM in the user's `m.direct` account data, as Element does."""
        client = self.client
        assert client.client_session is not None
        url = f"{client.homeserver}/_matrix/client/v3/user/{client.user_id}/account_data/m.direct"
        headers = {"Authorization": f"Bearer {client.access_token}"}
        async with client.client_session.put(
            url, json={self.bot_id: [room_id]}, headers=headers
        ) as response:
            if response.status != 200:
                raise ChatError(f"m.direct : HTTP {response.status}")

    # --- messages -----------------------------------------------------------------------------
    async def send(self, text: str) -> str:
        """Send a plain text message to the bot's room; return its event id."""
        assert self.room_id is not None
        async with self._lock:
            if self.client.olm is not None:
                await self._housekeeping()
            response = _ok(
                await self.client.room_send(
                    self.room_id,
                    "m.room.message",
                    {"msgtype": "m.text", "body": text},
                    ignore_unverified_devices=True,
                ),
                "envoi du message",
            )
        event_id = str(response.event_id)
        self._sent.add(event_id)
        self._answered.setdefault(event_id, asyncio.Event())
        return event_id

    async def send_file(self, path: Path) -> tuple[str, str]:
        """Upload a file and send it as Element does (encrypted in an encrypted room): images
        as `m.image`, audio as a voice message (`m.audio` with the MSC3245 marker), anything
        else as `m.file`. Returns the event id and the msgtype."""
        assert self.room_id is not None
        data = await asyncio.to_thread(path.read_bytes)
        msgtype, mimetype, info, extra = await asyncio.to_thread(describe_file, path.name, data)
        async with self._lock:
            if self.client.olm is not None:
                await self._housekeeping()
            encrypt = self.client.olm is not None and self.encrypted
            upload, keys = await self.client.upload(
                io.BytesIO(data),
                content_type=mimetype,
                filename=path.name,
                encrypt=encrypt,
                filesize=len(data),
            )
            _ok(upload, "envoi du fichier")
            location: dict[str, Any] = (
                {"file": {"url": upload.content_uri, **(keys or {})}}
                if encrypt
                else {"url": upload.content_uri}
            )
            content = {
                "msgtype": msgtype,
                "body": path.name,
                "filename": path.name,
                "info": {"mimetype": mimetype, "size": len(data), **info},
                **location,
                **extra,
            }
            response = _ok(
                await self.client.room_send(
                    self.room_id, "m.room.message", content, ignore_unverified_devices=True
                ),
                "envoi du fichier",
            )
        event_id = str(response.event_id)
        self._sent.add(event_id)
        self._answered.setdefault(event_id, asyncio.Event())
        return event_id, msgtype

    async def wait_for_answer(self, event_id: str, timeout: float) -> bool:  # noqa: ASYNC109
        """True once a final message of the bot replying to `event_id` was reported."""
        answered = self._answered.setdefault(event_id, asyncio.Event())
        try:
            async with asyncio.timeout(timeout):
                await answered.wait()
        except TimeoutError:
            return False
        return True

    def _on_event(self, room: nio.MatrixRoom, event: nio.Event) -> None:
        source = getattr(event, "source", None)
        if not isinstance(source, dict):
            return
        if isinstance(event, nio.MegolmEvent):
            return  # not decryptable (yet): nio retries when the key arrives
        kind = source.get("type")
        content = source.get("content")
        if not isinstance(content, dict):
            return
        if kind != "m.room.message" or room.room_id != self.room_id:
            return
        event_id = str(source.get("event_id", ""))
        sender = str(source.get("sender", ""))
        relation = _relation(content)
        if sender == self.bot_id:
            self._on_bot_message(event_id, content, relation)
        elif event_id not in self._sent:
            # The same account typing from Element (or another member): show it too.
            body = str(content.get("body", ""))
            self._on_message(ShownMessage(event_id, sender, body, None))

    def _on_bot_message(
        self, event_id: str, content: dict[str, Any], relation: dict[str, Any]
    ) -> None:
        new_content = content.get("m.new_content")
        if relation.get("rel_type") == "m.replace" and isinstance(new_content, dict):
            target = self._bot_messages.get(str(relation.get("event_id")))
            if target is None:
                return  # an edit of a message from before this session
            target.text = str(new_content.get("body", ""))
            original_id = str(relation.get("event_id"))
        else:
            reply = relation.get("m.in_reply_to")
            reply_to = str(reply.get("event_id")) if isinstance(reply, dict) else None
            target = _BotMessage(reply_to=reply_to, text=str(content.get("body", "")))
            self._bot_messages[event_id] = target
            original_id = event_id
        if target.text.endswith(TYPING_CURSOR) or target.text == target.printed:
            return
        edited = target.printed is not None
        target.printed = target.text
        self._on_message(
            ShownMessage(original_id, self.bot_id, target.text, target.reply_to, edited=edited)
        )
        if target.reply_to is not None:
            self._answered.setdefault(target.reply_to, asyncio.Event()).set()
