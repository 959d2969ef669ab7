"""`!commande`: moderators define the room's own commands from a prompt template."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from bot import texts
from bot.french import fold
from commands.base import Command, CommandContext, Power, UsageError
from commands.custom import describe, template_fields

MAX_CUSTOM_COMMANDS = 30
DESCRIPTION_MAX_CHARS = 120
_NAME = re.compile(r"^[a-z][a-z0-9-]{1,23}$")
_ACTIONS = {
    "ajouter": "add",
    "add": "add",
    "creer": "add",
    "modifier": "add",
    "liste": "list",
    "list": "list",
    "supprimer": "delete",
    "delete": "delete",
    "remove": "delete",
    "voir": "show",
    "show": "show",
}


@dataclass(frozen=True)
class CustomAction:
    action: str
    name: str = ""
    template: str = ""
    description: str = ""


def _split(text: str) -> list[str]:
    try:
        return shlex.split(text)
    except ValueError:
        raise UsageError("guillemets mal fermés autour du modèle") from None


def parse(text: str) -> CustomAction:
    words = _split(text)
    if not words:
        return CustomAction("list")
    action = _ACTIONS.get(fold(words[0]))
    if action is None:
        raise UsageError("action inconnue : ajouter, liste, voir ou supprimer")
    if action == "list":
        return CustomAction("list")
    if len(words) < 2:
        raise UsageError("précisez le nom de la commande")
    name = fold(words[1]).lstrip("!/")
    if not _NAME.match(name):
        raise UsageError(texts.CUSTOM_NAME_INVALID)
    if action != "add":
        return CustomAction(action, name)
    if len(words) < 3:
        raise UsageError("précisez le modèle entre guillemets, avec {texte} pour le texte donné")
    template = words[2]
    template_fields(template)
    description = " ".join(words[3:]).strip()[:DESCRIPTION_MAX_CHARS]
    return CustomAction("add", name, template, description)


def required_power(action: CustomAction) -> Power:
    return Power.EVERYONE if action.action in ("list", "show") else Power.MODERATOR


async def run(ctx: CommandContext, action: CustomAction) -> None:
    room_id = ctx.message.room_id
    repository = ctx.room_commands
    if action.action == "list":
        customs = repository.customs(room_id)
        if not customs:
            await ctx.reply(texts.CUSTOM_LIST_EMPTY.format(prefix=ctx.prefix))
            return
        lines = [texts.CUSTOM_LIST_HEADER] + [
            texts.COMMANDS_CUSTOM_LINE.format(
                prefix=ctx.prefix, name=c.name, description=c.description
            )
            for c in customs
        ]
        await ctx.reply("\n".join(lines))
        return
    existing = repository.custom(room_id, action.name)
    if action.action == "show":
        if existing is None:
            await ctx.reply(texts.CUSTOM_UNKNOWN.format(prefix=ctx.prefix, name=action.name))
            return
        await ctx.reply(describe(existing, ctx.prefix))
        return
    if action.action == "delete":
        if not await repository.delete_custom(room_id, action.name, ctx.message.sender):
            await ctx.reply(texts.CUSTOM_UNKNOWN.format(prefix=ctx.prefix, name=action.name))
            return
        await ctx.reply(texts.CUSTOM_DELETED.format(prefix=ctx.prefix, name=action.name))
        return
    if ctx.registry.is_reserved(action.name):
        raise UsageError(texts.CUSTOM_NAME_RESERVED.format(name=action.name))
    if existing is None and len(repository.customs(room_id)) >= MAX_CUSTOM_COMMANDS:
        raise UsageError(texts.CUSTOM_LIMIT_REACHED.format(limit=MAX_CUSTOM_COMMANDS))
    description = action.description or texts.CUSTOM_DEFAULT_DESCRIPTION
    await repository.save_custom(
        room_id, action.name, action.template, description, ctx.message.sender
    )
    done = texts.CUSTOM_UPDATED if existing else texts.CUSTOM_ADDED
    await ctx.reply(done.format(prefix=ctx.prefix, name=action.name))


COMMAND: Command[CustomAction] = Command(
    name="commande",
    aliases=("custom",),
    summary="Commandes propres au salon, définies par ses modérateurs à partir d'un modèle.",
    usage='commande [liste | voir <nom> | ajouter <nom> "<modèle>" [description] | supprimer <nom>]',
    parse=parse,
    run=run,
    power=required_power,
    details=(
        'Exemple : `commande ajouter cp "Rédige un communiqué de presse à partir de : {texte}" '
        "Communiqué de presse` puis `cp <vos notes>`.\n"
        "Dans le modèle, `{texte}` est le texte tapé après la commande et `{resume}` les "
        "derniers messages du salon (comme pour un résumé). Le nom ne peut pas reprendre celui "
        "d'une commande de l'assistant ; le modèle fait au plus 2000 caractères. Ajouter, "
        "modifier et supprimer sont réservés aux modérateurs et enregistrés dans le journal d'audit."
    ),
)
