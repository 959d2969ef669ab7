"""`!commandes`: which commands are on in this room; moderators turn built-ins off and on."""

from __future__ import annotations

from dataclasses import dataclass

from bot import texts
from bot.french import fold
from commands.base import Command, CommandContext, Power, UsageError

ALWAYS_ON = {"aide", "commandes"}
_ACTIONS = {
    "desactiver": False,
    "desactive": False,
    "disable": False,
    "off": False,
    "activer": True,
    "active": True,
    "enable": True,
    "on": True,
}


@dataclass(frozen=True)
class Toggle:
    name: str
    enabled: bool


def parse(text: str) -> Toggle | None:
    words = text.split()
    if not words:
        return None
    action = _ACTIONS.get(fold(words[0]))
    if action is None or len(words) != 2:
        raise UsageError("précisez `activer <nom>` ou `désactiver <nom>`")
    return Toggle(name=words[1].lstrip("!/"), enabled=action)


def required_power(toggle: Toggle | None) -> Power:
    return Power.EVERYONE if toggle is None else Power.MODERATOR


async def run(ctx: CommandContext, toggle: Toggle | None) -> None:
    room_id = ctx.message.room_id
    if toggle is None:
        lines = [texts.COMMANDS_HEADER]
        for command in ctx.registry.commands:
            line = (
                texts.COMMANDS_LINE_OFF
                if ctx.room_commands.is_disabled(room_id, command.name)
                else texts.COMMANDS_LINE_ON
            )
            lines.append(line.format(prefix=ctx.prefix, name=command.name))
        for custom in ctx.room_commands.customs(room_id):
            lines.append(
                texts.COMMANDS_CUSTOM_LINE.format(
                    prefix=ctx.prefix, name=custom.name, description=custom.description
                )
            )
        lines += ["", texts.COMMANDS_FOOTER.format(prefix=ctx.prefix)]
        await ctx.reply("\n".join(lines))
        return
    target = ctx.registry.lookup(toggle.name)
    if target is None:
        raise UsageError(texts.COMMAND_NOT_BUILTIN.format(name=toggle.name))
    if target.name in ALWAYS_ON:
        await ctx.reply(texts.COMMAND_CANNOT_DISABLE.format(prefix=ctx.prefix, name=target.name))
        return
    await ctx.room_commands.set_enabled(room_id, target.name, ctx.message.sender, toggle.enabled)
    done = texts.COMMAND_NOW_ENABLED if toggle.enabled else texts.COMMAND_NOW_DISABLED
    await ctx.reply(done.format(prefix=ctx.prefix, name=target.name))


COMMAND: Command[Toggle | None] = Command(
    name="commandes",
    aliases=("commands",),
    summary="Montre les commandes actives ici ; les modérateurs en activent ou désactivent.",
    usage="commandes [activer|désactiver <nom>]",
    parse=parse,
    run=run,
    power=required_power,
    details=(
        "Sans argument : la liste des commandes et leur état dans ce salon.\n"
        "`commandes désactiver resume` : la commande répond qu'elle est désactivée ici et "
        "disparaît de l'aide. `commandes activer resume` la rétablit. `aide` et `commandes` "
        "restent toujours actives. Chaque changement est enregistré dans le journal d'audit."
    ),
)
