"""Attachments on the real Synapse: what a user uploads is what the bot downloads.

A real nio user uploads a file (clear, or encrypted with nio's AES-CTR as Element does in
encrypted rooms) and sends the `m.file` event; the bot's gateway parses it at the edge into a
typed `Attachment`, and its `download_attachment` returns the very same bytes (decrypted, hash
checked). Tampered hashes, missing media and size caps give typed errors.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
from typing import Any

import nio
import pytest

from bot.attachments import AttachmentError, AttachmentErrorReason, AttachmentKind
from bot.models import IncomingMessage, MessageKind
from tests.integration.conftest import StartBot
from tests.support.bot_helpers import ask, bot_replies, room_with_bot
from tests.support.matrix_client import send_file

pytestmark = pytest.mark.integration


class RecordingSink:
    """Wraps the bot's router: every message still goes to it, attachments are also kept."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.messages: dict[str, IncomingMessage] = {}
        self._arrived = asyncio.Condition()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def on_message(self, message: IncomingMessage, room: Any, answerable: bool) -> None:
        async with self._arrived:
            self.messages[message.event_id] = message
            self._arrived.notify_all()
        await self._inner.on_message(message, room, answerable)

    async def wait_for(self, event_id: str, timeout: float = 15) -> IncomingMessage:  # noqa: ASYNC109
        async with self._arrived:
            await asyncio.wait_for(
                self._arrived.wait_for(lambda: event_id in self.messages), timeout
            )
        return self.messages[event_id]


async def recording_bot(start_bot: StartBot) -> tuple[Any, RecordingSink]:
    bot = await start_bot()
    recorder = RecordingSink(bot.app.router)
    bot.app.gateway.attach(recorder)
    return bot, recorder


@pytest.mark.parametrize("encrypted", [False, True], ids=["clear", "encrypted"])
async def test_bot_downloads_the_bytes_a_user_uploaded(
    start_bot: StartBot, user_client: Any, encrypted: bool
) -> None:
    bot, recorder = await recording_bot(start_bot)
    alice: nio.AsyncClient = await user_client("alice", encryption=encrypted)
    room_id = await room_with_bot(alice, bot.user_id, encrypted=encrypted)
    data = os.urandom(200_000) + b"fin du rapport"

    event_id = await send_file(alice, room_id, data, "Rapport annuel.pdf", "application/pdf")
    message = await recorder.wait_for(event_id)

    assert message.kind is MessageKind.ATTACHMENT
    attachment = message.attachment
    assert attachment is not None
    assert attachment.kind is AttachmentKind.FILE
    assert attachment.name == "Rapport annuel.pdf"
    assert attachment.mimetype == "application/pdf"
    assert attachment.size == len(data)
    assert message.encrypted is encrypted
    assert (attachment.encrypted_file is not None) is encrypted
    assert (attachment.url is None) is encrypted
    if encrypted:  # what the homeserver holds is ciphertext
        stored = await alice.download(mxc=attachment.mxc_url)
        assert isinstance(stored, nio.MemoryDownloadResponse)
        assert len(stored.body) == len(data) and stored.body != data

    assert await bot.app.gateway.download_attachment(attachment) == data


async def test_tampered_hash_and_missing_media_are_typed_errors(
    start_bot: StartBot, user_client: Any
) -> None:
    bot, recorder = await recording_bot(start_bot)
    alice: nio.AsyncClient = await user_client("alice", encryption=True)
    room_id = await room_with_bot(alice, bot.user_id, encrypted=True)
    data = b"contenu confidentiel " * 100
    event_id = await send_file(alice, room_id, data, "note.txt", "text/plain")
    attachment = (await recorder.wait_for(event_id)).attachment
    assert attachment is not None and attachment.encrypted_file is not None
    gateway = bot.app.gateway

    other_hash = base64.b64encode(hashlib.sha256(b"autre chose").digest()).decode().rstrip("=")
    tampered = attachment.model_copy(
        update={
            "encrypted_file": attachment.encrypted_file.model_copy(update={"sha256": other_hash})
        }
    )
    with pytest.raises(AttachmentError) as integrity:
        await gateway.download_attachment(tampered)
    assert integrity.value.reason is AttachmentErrorReason.INTEGRITY

    missing = attachment.model_copy(
        update={
            "encrypted_file": attachment.encrypted_file.model_copy(
                update={"url": "mxc://localhost/nAbsentMediaId0123456789"}
            )
        }
    )
    with pytest.raises(AttachmentError) as unavailable:
        await gateway.download_attachment(missing)
    assert unavailable.value.reason is AttachmentErrorReason.UNAVAILABLE

    # The real bytes decrypt fine: the failures above came from the tampering only.
    assert await gateway.download_attachment(attachment) == data


async def test_size_cap_applies_to_declared_and_real_size(
    start_bot: StartBot, user_client: Any
) -> None:
    bot, recorder = await recording_bot(start_bot)
    alice: nio.AsyncClient = await user_client("alice")
    room_id = await room_with_bot(alice, bot.user_id)
    data = os.urandom(50_000)
    honest = await send_file(alice, room_id, data, "gros.bin", "application/octet-stream")
    # A hostile client declares a tiny size for the same large file.
    lying = await send_file(
        alice, room_id, data, "petit.bin", "application/octet-stream", info={"size": 10}
    )
    gateway = bot.app.gateway
    for event_id, where in ((honest, "declared size"), (lying, "downloaded size")):
        attachment = (await recorder.wait_for(event_id)).attachment
        assert attachment is not None
        with pytest.raises(AttachmentError) as too_large:
            await gateway.download_attachment(attachment, max_bytes=10_000)
        assert too_large.value.reason is AttachmentErrorReason.TOO_LARGE
        assert too_large.value.detail == where
        assert await gateway.download_attachment(attachment, max_bytes=50_000) == data

    # Files nobody asked about get no reply; the next question is answered as usual.
    answer = await ask(alice, room_id, bot.user_id, "Bonjour ?", mentions=[bot.user_id])
    assert answer["sender"] == bot.user_id
    replied = {
        e["content"].get("m.relates_to", {}).get("m.in_reply_to", {}).get("event_id")
        for e in bot_replies(alice, room_id, bot.user_id)
    }
    assert not replied & {honest, lying}
