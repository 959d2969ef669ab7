"""What every command gets: its context, the error types, and the command description."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from bot.models import IncomingMessage, RoomContext, WithdrawScope
from config.room_settings import RoomSettings
from config.settings import Settings

if TYPE_CHECKING:
    from bot.answer.conversation import ConversationHandler
    from bot.answer.llm import LLMClient
    from bot.answer.media import MediaService
    from bot.answer.replies import Outbox
    from bot.answer.summary import Summarizer
    from bot.documents.service import DocumentService
    from bot.ops.ratelimit import Cooldown
    from bot.pilot.service import Pilot
    from bot.room_commands import RoomCommandsRepository
    from bot.room_config import RoomConfigRepository
    from bot.schedule import Scheduler
    from bot.store import Store

Args = TypeVar("Args")


class Power(StrEnum):
    EVERYONE = "everyone"
    MODERATOR = "moderator"


class UsageError(Exception):
    """Arguments the command cannot use; the user gets this reason and the usage line."""


class NoArgs:
    """Parsed arguments of a command that takes none."""


def no_arguments(text: str) -> NoArgs:
    if text.strip():
        raise UsageError("cette commande ne prend pas d'argument")
    return NoArgs()


class CommandCatalog(Protocol):
    """What commands may ask of the registry (help, toggles, reserved names)."""

    @property
    def commands(self) -> list[Command[Any]]: ...

    def lookup(self, word: str) -> Command[Any] | None: ...

    def is_reserved(self, word: str) -> bool: ...

    async def visible_to(self, ctx: CommandContext) -> list[Command[Any]]: ...


@dataclass
class CommandContext:
    """Everything a command may use. Built by the dispatcher for one invocation."""

    message: IncomingMessage
    room: RoomContext
    room_settings: RoomSettings
    settings: Settings
    store: Store
    llm: LLMClient
    outbox: Outbox
    registry: CommandCatalog
    conversation: ConversationHandler
    room_config: RoomConfigRepository
    power_level_of: Callable[[str], Awaitable[int]]
    room_commands: RoomCommandsRepository
    prefix: str = "!"
    summarizer: Summarizer | None = None
    scheduler: Scheduler | None = None
    documents: DocumentService | None = None
    pilot: Pilot | None = None
    media: MediaService | None = None
    large_summary_cooldown: Cooldown | None = None
    direct_room: Callable[[str], Awaitable[str]] | None = None  # the bot's DM with a user
    _sender_level: int | None = None
    _replies: int = 0

    @property
    def moderator_level(self) -> int:
        return self.settings.moderator_power_level

    async def sender_power_level(self) -> int:
        """Read from the room's real power levels at the time of the command (once per command)."""
        if self._sender_level is None:
            self._sender_level = await self.power_level_of(self.message.sender)
        return self._sender_level

    async def sender_is_moderator(self) -> bool:
        if self.room.is_direct:
            return True  # a DM's only other member is the asker: its settings are theirs
        return await self.sender_power_level() >= self.moderator_level

    async def reply(self, markdown: str, *, notice: bool = True) -> list[str]:
        """Reply to the command; several replies to one command get distinct transaction IDs."""
        self._replies += 1
        return await self.outbox.reply(
            self.message, markdown, purpose=f"command-{self._replies}", notice=notice
        )


@dataclass(frozen=True)
class Command(Generic[Args]):
    """One command as the registry knows it."""

    name: str
    aliases: tuple[str, ...]
    summary: str
    usage: str
    parse: Callable[[str], Args]
    run: Callable[[CommandContext, Args], Awaitable[None]]
    power: Power | Callable[[Args], Power] = Power.EVERYONE
    uses_llm: bool = False
    details: str = ""
    # Questions of the asker still waiting or being answered are taken back on arrival.
    withdraws: WithdrawScope | None = None
    # False for commands a room's moderators cannot turn off.
    can_disable: bool = True

    def required_power(self, args: Args) -> Power:
        return self.power if isinstance(self.power, Power) else self.power(args)

    @property
    def listed_power(self) -> Power:
        """The power shown in help: commands with moderator-only variants are listed for all."""
        return self.power if isinstance(self.power, Power) else Power.EVERYONE

    def usage_line(self, prefix: str) -> str:
        return f"{prefix}{self.usage}"
