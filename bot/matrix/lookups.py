"""What the bot reads from the homeserver on demand, outside the sync loop.

A mixin of `MatrixGateway` (bot/matrix/gateway.py), kept apart because none of it follows from
sync: a command or an answer asks, and one request answers: a user's real power in a room, their
membership now, who sent an event the bot never stored, an earlier message, an attachment.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import structlog
from nio import (
    AsyncClient,
    EncryptionError,
    MegolmEvent,
    MemoryDownloadResponse,
    RoomGetStateEventError,
)
from nio.crypto.attachments import decrypt_attachment

from bot.attachments import Attachment, AttachmentError, AttachmentErrorReason
from bot.matrix.events import parse_message
from bot.matrix.power import RoomPower
from bot.matrix.session import http_json
from bot.models import IncomingMessage
from bot.ops.transient import TransientError

if TYPE_CHECKING:
    from bot.matrix.power import PowerLevelCache
    from config.settings import Settings

log = structlog.get_logger(__name__)


class RoomLookups:
    """The gateway's reads on demand (see the module docstring); `MatrixGateway` sets these."""

    client: AsyncClient
    _settings: Settings
    power: PowerLevelCache

    def member_name(self, room_id: str, user_id: str) -> str:
        raise NotImplementedError

    async def power_level(self, room_id: str, user_id: str) -> int:
        """The user's real power in the room: `m.room.power_levels` and `m.room.create` only,
        cached per room and dropped as soon as sync shows the room's state changed."""
        return await self.power.level(room_id, user_id)

    async def _fetch_room_power(self, room_id: str) -> RoomPower | None:
        # The create event's sender is a room-v12 creator; the content endpoint hides it.
        path = f"/_matrix/client/v3/rooms/{quote(room_id)}/state/m.room.create/?format=event"
        levels, (status, create) = await asyncio.gather(
            self.client.room_get_state_event(room_id, "m.room.power_levels"),
            http_json(self.client, "GET", path, None),
        )
        if isinstance(levels, RoomGetStateEventError):
            if levels.status_code != "M_NOT_FOUND":
                log.warning("matrix.state_unavailable", room_id=room_id, status=levels.status_code)
                return None
            power_levels: Mapping[str, Any] | None = None  # no event: creator 100, others 0
        else:
            power_levels = levels.content if isinstance(levels.content, dict) else None
        if status != 200:
            log.warning("matrix.state_unavailable", room_id=room_id, status=status)
            return None
        content = create.get("content") if isinstance(create.get("content"), dict) else create
        sender = create.get("sender")
        if not isinstance(sender, str):  # a server without format=event: pre-v11 `creator`
            creator = content.get("creator") if isinstance(content, dict) else None
            sender = creator if isinstance(creator, str) else None
        return RoomPower(power_levels, sender, content if isinstance(content, dict) else None)

    async def is_member(self, room_id: str, user_id: str) -> bool:
        """Whether the user is joined to the room now (one small state event, read live)."""
        response = await self.client.room_get_state_event(room_id, "m.room.member", user_id)
        if isinstance(response, RoomGetStateEventError):
            if response.status_code in ("M_NOT_FOUND", "M_FORBIDDEN"):
                return False
            raise TransientError(f"membership unreadable: {response.status_code}")
        return isinstance(response.content, dict) and response.content.get("membership") == "join"

    async def download_attachment(
        self, attachment: Attachment, max_bytes: int | None = None
    ) -> bytes:
        """The attachment's bytes, decrypted (hash checked) when it came from an encrypted room.

        Downloads through the authenticated media API (nio's `download`). Refuses what is
        declared or turns out larger than `max_bytes` (default: `attachment_max_mb`). Raises
        AttachmentError; never returns partial or unchecked bytes.
        """
        cap = max_bytes if max_bytes is not None else self._settings.attachment_max_bytes
        if attachment.size is not None and attachment.size > cap:
            raise AttachmentError(AttachmentErrorReason.TOO_LARGE, "declared size")
        try:
            response = await asyncio.wait_for(
                self.client.download(mxc=attachment.mxc_url),
                timeout=self._settings.attachment_download_timeout_seconds,
            )
        except TimeoutError:
            raise AttachmentError(AttachmentErrorReason.TIMEOUT) from None
        except Exception as error:  # transport errors nio did not absorb
            raise AttachmentError(AttachmentErrorReason.UNAVAILABLE, type(error).__name__) from None
        if not isinstance(response, MemoryDownloadResponse) or not isinstance(response.body, bytes):
            status = getattr(response, "status_code", None)
            log.warning("matrix.download_failed", status=status)
            raise AttachmentError(AttachmentErrorReason.UNAVAILABLE, str(status))
        data = response.body
        if len(data) > cap:
            raise AttachmentError(AttachmentErrorReason.TOO_LARGE, "downloaded size")
        encrypted = attachment.encrypted_file
        if encrypted is None:
            return data
        try:
            plain = await asyncio.to_thread(
                decrypt_attachment, data, encrypted.key, encrypted.sha256, encrypted.iv
            )
        except (EncryptionError, ValueError, TypeError):  # bad hash, key or iv
            raise AttachmentError(AttachmentErrorReason.INTEGRITY) from None
        return bytes(plain)

    async def event_sender(self, room_id: str, event_id: str) -> str | None:
        """Who sent an event we did not store (e.g. a reply to a message older than the bot)."""
        response = await self.client.room_get_event(room_id, event_id)
        event = getattr(response, "event", None)
        sender = getattr(event, "sender", None)
        return sender if isinstance(sender, str) else None

    async def fetch_message(self, room_id: str, event_id: str) -> IncomingMessage | None:
        """An earlier message of the room as the edge parses it (decrypted when it was
        encrypted), e.g. the voice message or image a question replies to; None when the
        homeserver refuses it or it cannot be decrypted."""
        try:
            response = await self.client.room_get_event(room_id, event_id)
        except Exception as error:  # transport errors nio did not absorb
            log.info("matrix.fetch_event_failed", error_type=type(error).__name__)
            return None
        event = getattr(response, "event", None)
        if isinstance(event, MegolmEvent):
            event.room_id = room_id
            try:
                event = self.client.decrypt_event(event)
            except Exception as error:  # no key (yet): nothing to read
                log.info("matrix.fetch_event_undecryptable", error_type=type(error).__name__)
                return None
        source = getattr(event, "source", None)
        sender = getattr(event, "sender", None)
        if not isinstance(source, dict) or not isinstance(sender, str):
            return None
        encrypted = bool(getattr(event, "decrypted", False))
        return parse_message(room_id, source, self.member_name(room_id, sender), encrypted)
