"""`!aide`: the commands the asker may run here, or one command in detail."""

from __future__ import annotations

from typing import Any

from bot import texts
from bot.french import command_key
from commands.base import Command, CommandContext, Power, UsageError
from commands.custom import describe


def parse(text: str) -> str | None:
    """The command asked about, with or without its prefix (`!aide !resume` works too)."""
    words = text.split()
    if not words:
        return None
    if len(words) > 1:
        raise UsageError("une seule commande à la fois")
    return words[0].lstrip("!/") or None


def _power_text(command: Command[Any], level: int) -> str:
    if not isinstance(command.power, Power):
        return texts.HELP_POWER_MIXED.format(level=level)
    if command.power is Power.MODERATOR:
        return texts.HELP_POWER_MODERATOR.format(level=level)
    return texts.HELP_POWER_EVERYONE


def detail(command: Command[Any], prefix: str, level: int) -> str:
    lines = [
        texts.HELP_DETAIL_TITLE.format(usage=command.usage_line(prefix), summary=command.summary)
    ]
    if command.aliases:
        aliases = ", ".join(f"`{prefix}{alias}`" for alias in command.aliases)
        lines.append(texts.HELP_DETAIL_ALIASES.format(aliases=aliases))
    if command.details:
        lines.append("")
        lines.append(command.details)
    lines.append("")
    lines.append(texts.HELP_DETAIL_POWER.format(power=_power_text(command, level)))
    return "\n".join(lines)


async def run(ctx: CommandContext, topic: str | None) -> None:
    if topic is not None:
        command = ctx.registry.lookup(topic)
        custom = ctx.room_commands.custom(ctx.message.room_id, command_key(topic))
        if command is None and custom is not None:
            await ctx.reply(describe(custom, ctx.prefix))
            return
        if command is None:
            await ctx.reply(texts.HELP_UNKNOWN.format(name=topic, prefix=ctx.prefix))
            return
        await ctx.reply(detail(command, ctx.prefix, ctx.moderator_level))
        return
    lines = [texts.HELP_HEADER]
    for command in await ctx.registry.visible_to(ctx):
        lines.append(
            texts.HELP_LINE.format(usage=command.usage_line(ctx.prefix), summary=command.summary)
        )
    for custom in ctx.room_commands.customs(ctx.message.room_id):
        lines.append(
            texts.HELP_LINE.format(
                usage=f"{ctx.prefix}{custom.name} <texte>", summary=custom.description
            )
        )
    lines.append("")
    lines.append(texts.HELP_FOOTER.format(prefix=ctx.prefix))
    await ctx.reply("\n".join(lines))


COMMAND: Command[str | None] = Command(
    name="aide",
    aliases=("help",),
    summary="Liste les commandes disponibles, ou détaille l'une d'elles.",
    usage="aide [commande]",
    parse=parse,
    run=run,
    details=(
        "Sans argument : les commandes que vous pouvez utiliser dans ce salon (celles réservées "
        "aux modérateurs n'apparaissent que pour eux).\n"
        "`aide resume` : l'usage, les autres noms et le détail de la commande `resume`."
    ),
)
