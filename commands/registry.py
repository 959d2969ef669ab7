"""The command registry: recognises an invocation, parses it, checks power, runs the command.

An unknown command or bad arguments get the usage line: never a stack trace, never an LLM call.
"""

from __future__ import annotations

from typing import Any

import structlog

from bot import texts
from bot.french import command_key
from bot.models import Invocation
from bot.ops import metrics
from commands.base import Command, CommandContext, Power, UsageError

log = structlog.get_logger(__name__)


class CommandRegistry:
    def __init__(self) -> None:
        self._commands: list[Command[Any]] = []
        self._by_word: dict[str, Command[Any]] = {}

    def register(self, command: Command[Any]) -> None:
        for word in (command.name, *command.aliases):
            key = command_key(word)
            if key in self._by_word:
                raise ValueError(f"command word {word!r} registered twice")
            self._by_word[key] = command
        self._commands.append(command)

    def lookup(self, word: str) -> Command[Any] | None:
        return self._by_word.get(command_key(word))

    def is_reserved(self, word: str) -> bool:
        return command_key(word) in self._by_word

    @property
    def commands(self) -> list[Command[Any]]:
        return list(self._commands)

    async def visible_to(self, ctx: CommandContext) -> list[Command[Any]]:
        """The commands the asking user may run here (for help)."""
        moderator: bool | None = None
        visible = []
        disabled = ctx.room_commands.disabled(ctx.message.room_id)
        for command in self._commands:
            if command.name in disabled:
                continue
            if command.listed_power is Power.MODERATOR:
                if moderator is None:
                    moderator = await ctx.sender_is_moderator()
                if not moderator:
                    continue
            visible.append(command)
        return visible

    async def dispatch(self, ctx: CommandContext, invocation: Invocation) -> None:
        command = self.lookup(invocation.word)
        bound = log.bind(
            room_id=ctx.message.room_id, event_id=ctx.message.event_id, command=invocation.word
        )
        if command is None:
            custom = ctx.room_commands.custom(ctx.message.room_id, command_key(invocation.word))
            if custom is not None:
                from commands.custom import run_custom

                metrics.COMMANDS.labels("custom").inc()
                await run_custom(ctx, custom, invocation.arguments)
                bound.info("command.custom_done")
                return
            metrics.COMMANDS.labels("unknown").inc()
            await ctx.reply(texts.UNKNOWN_COMMAND.format(word=invocation.word, prefix=ctx.prefix))
            return
        bound = bound.bind(command=command.name)
        if ctx.room_commands.is_disabled(ctx.message.room_id, command.name):
            await ctx.reply(
                texts.COMMAND_DISABLED_HERE.format(prefix=ctx.prefix, name=command.name)
            )
            return
        metrics.COMMANDS.labels(command.name).inc()
        try:
            args = command.parse(invocation.arguments)
        except UsageError as error:
            await ctx.reply(
                texts.BAD_ARGUMENTS.format(reason=error, usage=command.usage_line(ctx.prefix))
            )
            return
        if command.required_power(args) is Power.MODERATOR and not await ctx.sender_is_moderator():
            bound.info("command.refused", level=ctx._sender_level)
            await ctx.reply(texts.MODERATOR_ONLY.format(level=ctx.moderator_level))
            return
        try:
            await command.run(ctx, args)
        except UsageError as error:
            await ctx.reply(
                texts.BAD_ARGUMENTS.format(reason=error, usage=command.usage_line(ctx.prefix))
            )
        else:
            bound.info("command.done")
