"""Which rooms are direct messages: the bot and exactly one person.

A DM changes everything (every message is answered, its one person rules its settings), so a room
counts as one only when it was flagged as a DM (the invite's `is_direct`, `m.direct` account data,
or Tchap's `access_rules` rule `direct`) AND, at the time of each message, holds the bot and exactly
one other member, joined or invited. A flag chosen by whoever invited the bot never makes a larger
room a DM, and a DM that gains a third member becomes a group room.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

import structlog
from nio import AsyncClient, MatrixRoom, UnknownAccountDataEvent, UnknownEvent

from bot.matrix.session import http_json
from bot.store import Store

log = structlog.get_logger(__name__)

ACCESS_RULES_EVENT = "im.vector.room.access_rules"


def is_direct_room(flagged: bool, members: Iterable[str], bot_user_id: str) -> bool:
    """A flagged room whose members (joined or invited) are the bot and exactly one person."""
    return flagged and len(set(members) - {bot_user_id}) == 1


class DirectRooms:
    def __init__(self, client: AsyncClient, store: Store, user_id: str) -> None:
        self.client = client
        self._store = store
        self._user_id = user_id
        self._flagged: set[str] = set()

    async def load(self) -> None:
        for room_id in await self._store.rooms.known_ids():
            if await self._store.rooms.is_direct(room_id):
                self._flagged.add(room_id)

    def is_direct(self, room_id: str, members: Iterable[str]) -> bool:
        return is_direct_room(room_id in self._flagged, members, self._user_id)

    def flagged_rooms(self) -> list[str]:
        return sorted(self._flagged)

    def forget(self, room_id: str) -> None:
        self._flagged.discard(room_id)

    async def joined(self, room_id: str, is_direct: bool, inviter: str | None) -> None:
        await self._store.rooms.remember(room_id, is_direct)
        if is_direct:
            self._flagged.add(room_id)
            if inviter is not None:
                await self._list_in_m_direct(inviter, room_id)

    async def on_state_event(self, room: MatrixRoom, event: UnknownEvent) -> None:
        """Tchap marks DMs with the `im.vector.room.access_rules` rule `direct`."""
        content = event.source.get("content")
        is_direct_rule = (
            event.type == ACCESS_RULES_EVENT
            and isinstance(content, dict)
            and content.get("rule") == "direct"
        )
        if is_direct_rule and room.room_id not in self._flagged:
            self._flagged.add(room.room_id)
            await self._store.rooms.remember(room.room_id, is_direct=True)

    async def _list_in_m_direct(self, user_id: str, room_id: str) -> None:
        """Record the DM in the bot's own `m.direct`, as clients do for theirs."""
        path = f"/_matrix/client/v3/user/{quote(self._user_id)}/account_data/m.direct"
        try:
            status, direct = await http_json(self.client, "GET", path, None)
            rooms = direct.get(user_id) if status == 200 else None
            listed = [r for r in rooms if isinstance(r, str)] if isinstance(rooms, list) else []
            if room_id in listed:
                return
            updated = {**(direct if status == 200 else {}), user_id: [*listed, room_id]}
            status, _ = await http_json(self.client, "PUT", path, updated)
            if status != 200:
                log.warning("matrix.m_direct_not_saved", room_id=room_id, status=status)
        except Exception as error:  # the store already knows it is a DM: this is a courtesy
            log.warning(
                "matrix.m_direct_not_saved", room_id=room_id, error_type=type(error).__name__
            )

    async def note_account_data(self, events: Iterable[Any]) -> None:
        """Rooms listed in the bot's `m.direct` account data are DMs."""
        for event in events:
            if not isinstance(event, UnknownAccountDataEvent) or event.type != "m.direct":
                continue
            content = event.content if isinstance(event.content, dict) else {}
            for rooms in content.values():
                for room_id in rooms if isinstance(rooms, list) else []:
                    if isinstance(room_id, str) and room_id not in self._flagged:
                        self._flagged.add(room_id)
                        await self._store.rooms.remember(room_id, is_direct=True)
