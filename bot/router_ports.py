"""What the router needs from the Matrix gateway and from the commands, as Protocols:
`bot.app` wires the real ones in (the core never imports `commands/`), tests pass fakes.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from bot.models import IncomingMessage, Invocation, RoomContext, WithdrawScope


class RoomDirectory(Protocol):
    """What the router needs from the Matrix gateway besides events."""

    @property
    def user_id(self) -> str: ...

    @property
    def ready(self) -> asyncio.Event: ...

    def room_context(self, room_id: str) -> RoomContext: ...

    def bot_names(self, room_id: str) -> tuple[str, ...]: ...

    async def join(self, room_id: str, is_direct: bool, inviter: str | None = None) -> bool: ...

    async def reject_invite(self, room_id: str) -> None: ...

    async def power_level(self, room_id: str, user_id: str) -> int: ...

    async def event_sender(self, room_id: str, event_id: str) -> str | None: ...

    async def is_member(self, room_id: str, user_id: str) -> bool: ...


class CommandPort(Protocol):
    """What the router needs from the commands (wired in by `bot.app`; the core never imports
    `commands/`)."""

    builtin_words: frozenset[str]

    def room_words(self, room_id: str) -> frozenset[str]: ...

    def withdraws(self, room_id: str, invocation: Invocation) -> WithdrawScope | None: ...

    def uses_model(self, room_id: str, word: str) -> bool: ...

    async def run(
        self, message: IncomingMessage, room: RoomContext, invocation: Invocation
    ) -> None: ...
