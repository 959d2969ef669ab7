"""Sending: encrypted when the room is, never in clear in an encrypted room, retried safely.

A mixin of `MatrixGateway` (bot/matrix/gateway.py), kept apart because every outgoing event
takes the same guarded path: the room's encryption is checked before each attempt
(`_guard_encryption`), and a retry reuses the transaction ID, so a homeserver that received
the first attempt returns the same event instead of posting it twice.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import aiohttp
import structlog
from nio import AsyncClient, RoomRedactResponse, RoomSendResponse

from bot.matrix.session import raise_if_auth_error

if TYPE_CHECKING:
    from config.settings import Settings

log = structlog.get_logger(__name__)

SEND_ATTEMPTS = 6


class SendFailed(Exception):
    pass


class ClearSendRefused(SendFailed):
    """The room is encrypted but the message would have left in clear: never send it."""


class Sender:
    """The gateway's sending (see the module docstring); `MatrixGateway` sets these."""

    client: AsyncClient
    _settings: Settings
    _keys_lock: asyncio.Lock

    async def send_event(
        self, room_id: str, content: dict[str, Any], txn_id: str, event_type: str = "m.room.message"
    ) -> str:
        """Send (encrypted when the room is); the same txn_id returns the same event after a crash.

        Raises ClearSendRefused rather than let anything leave in clear in an encrypted room.
        """
        delay = 1.0
        for attempt in range(SEND_ATTEMPTS):
            await self._guard_encryption(room_id, event_type)
            try:
                response = await self.client.room_send(
                    room_id,
                    event_type,
                    content,
                    tx_id=txn_id,
                    ignore_unverified_devices=self._settings.encrypt_for_unverified_devices,
                )
            except (aiohttp.ClientError, TimeoutError) as error:  # nio no longer retries
                if attempt == SEND_ATTEMPTS - 1:
                    raise SendFailed(type(error).__name__) from error
                log.warning("matrix.send_retry", room_id=room_id, error_type=type(error).__name__)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._settings.homeserver_retry_max_seconds)
                continue
            if isinstance(response, RoomSendResponse):
                return str(response.event_id)
            raise_if_auth_error(response)
            http_status = getattr(getattr(response, "transport_response", None), "status", None)
            if (
                not (isinstance(http_status, int) and http_status >= 500)
                or attempt == SEND_ATTEMPTS - 1
            ):
                break
            # A proxy in front of a restarting homeserver answers 502/503: the same
            # transaction ID makes the retry safe.
            log.warning("matrix.send_retry", room_id=room_id, status=http_status, retry_in=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._settings.homeserver_retry_max_seconds)
        raise SendFailed(f"{getattr(response, 'status_code', 'unknown')}")

    async def redact(self, room_id: str, event_id: str, txn_id: str) -> bool:
        """Redact one of the bot's own events; the same txn_id is the same redaction after a
        retry. False (logged) when the homeserver refused it (e.g. the bot left the room)."""
        response = await self.client.room_redact(room_id, event_id, tx_id=txn_id)
        if isinstance(response, RoomRedactResponse):
            return True
        log.warning(
            "matrix.redact_failed",
            room_id=room_id,
            event_id=event_id,
            status=getattr(response, "status_code", None),
        )
        return False

    def is_encrypted(self, room_id: str) -> bool:
        """Encrypted per nio's live room state or per its persisted list of encrypted rooms."""
        room = self.client.rooms.get(room_id)
        return bool(room is not None and room.encrypted) or room_id in self.client.encrypted_rooms

    async def _guard_encryption(self, room_id: str, event_type: str) -> None:
        if not self.is_encrypted(room_id):
            return
        room = self.client.rooms.get(room_id)
        # nio encrypts only when it has an Olm machine, knows the room as encrypted, and the
        # event is not a reaction; anything else would go out in clear.
        if (
            self.client.olm is None
            or room is None
            or not room.encrypted
            or event_type == "m.reaction"
        ):
            log.error("matrix.clear_send_refused", room_id=room_id, event_type=event_type)
            raise ClearSendRefused(f"refus d'envoyer en clair dans un salon chiffré ({event_type})")
        # New devices (a member's new session, a new member) must be known before nio picks
        # who receives the room key, else they could not read this answer.
        async with self._keys_lock:
            if self.client.should_query_keys:
                await self.client.keys_query()

    async def set_typing(self, room_id: str, typing: bool) -> None:
        try:
            await self.client.room_typing(room_id, typing_state=typing, timeout=60_000)
        except Exception as error:  # typing is cosmetic; never let it fail an answer
            log.debug("matrix.typing_failed", room_id=room_id, error_type=type(error).__name__)
