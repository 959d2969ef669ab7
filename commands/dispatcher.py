"""The router's door to the commands: it builds each command's context from the bot's parts.

The core (`bot/`) never imports `commands/`; `bot.app` hands the router this dispatcher, which
satisfies the router's `CommandPort`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from bot.answer.conversation import ConversationHandler
from bot.answer.llm import LLMClient
from bot.answer.media import MediaService
from bot.answer.replies import Outbox
from bot.answer.summary import Summarizer
from bot.documents.service import DocumentService
from bot.french import command_key
from bot.models import IncomingMessage, Invocation, RoomContext, WithdrawScope
from bot.ops.ratelimit import Cooldown
from bot.pilot.service import Pilot
from bot.room_commands import RoomCommandsRepository
from bot.room_config import RoomConfigRepository
from bot.schedule import Scheduler
from bot.store import Store
from commands.base import CommandContext
from commands.registry import CommandRegistry
from config.settings import Settings

PowerLevelOf = Callable[[str, str], Awaitable[int]]  # (room_id, user_id) -> level


class CommandDispatcher:
    def __init__(
        self,
        registry: CommandRegistry,
        *,
        settings: Settings,
        store: Store,
        llm: LLMClient,
        outbox: Outbox,
        conversation: ConversationHandler,
        room_config: RoomConfigRepository,
        room_commands: RoomCommandsRepository,
        power_level_of: PowerLevelOf,
        summarizer: Summarizer | None = None,
        pilot: Pilot | None = None,
        media: MediaService | None = None,
        direct_room: Callable[[str], Awaitable[str]] | None = None,
    ) -> None:
        self.registry = registry
        self._settings = settings
        self._store = store
        self._llm = llm
        self._outbox = outbox
        self._conversation = conversation
        self._room_config = room_config
        self._room_commands = room_commands
        self._power_level_of = power_level_of
        self._summarizer = summarizer
        self._pilot = pilot
        self._media = media
        self._direct_room = direct_room  # the bot's DM with a user (private summaries)
        self.scheduler: Scheduler | None = None
        self.documents: DocumentService | None = None
        self.large_summary_cooldown = Cooldown(settings.large_summary_cooldown_seconds)
        self.builtin_words = frozenset(
            command_key(word)
            for command in registry.commands
            for word in (command.name, *command.aliases)
        )

    def uses_model(self, room_id: str, word: str) -> bool:
        """Commands that call the model count against the question rate limits."""
        builtin = self.registry.lookup(word)
        if builtin is not None:
            return builtin.uses_llm
        return self._room_commands.custom(room_id, command_key(word)) is not None

    def room_words(self, room_id: str) -> frozenset[str]:
        return frozenset(command.name for command in self._room_commands.customs(room_id))

    def withdraws(self, room_id: str, invocation: Invocation) -> WithdrawScope | None:
        """The asker's questions this command takes back on arrival (None for most)."""
        command = self.registry.lookup(invocation.word)
        if command is None or command.withdraws is None:
            return None
        if self.registry.is_disabled_here(self._room_commands, room_id, command):
            return None
        return command.withdraws

    async def run(
        self, message: IncomingMessage, room: RoomContext, invocation: Invocation
    ) -> None:
        async def power_level_of(user_id: str) -> int:
            return await self._power_level_of(message.room_id, user_id)

        context = CommandContext(
            message=message,
            room=room,
            room_settings=self._room_config.get(message.room_id),
            settings=self._settings,
            store=self._store,
            llm=self._llm,
            outbox=self._outbox,
            registry=self.registry,
            conversation=self._conversation,
            room_config=self._room_config,
            power_level_of=power_level_of,
            prefix=invocation.prefix,
            summarizer=self._summarizer,
            room_commands=self._room_commands,
            scheduler=self.scheduler,
            documents=self.documents,
            pilot=self._pilot,
            media=self._media,
            large_summary_cooldown=self.large_summary_cooldown,
            direct_room=self._direct_room,
        )
        await self.registry.dispatch(context, invocation)
