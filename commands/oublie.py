"""`!oublie`: the next question starts fresh; `!oublie tout` also drops what summaries read."""

from __future__ import annotations

from bot import texts
from commands.arguments import parse_keyword
from commands.base import Command, CommandContext, Power

_EVERYTHING = {"tout": "tout", "all": "tout", "tous": "tout", "toute": "tout", "everything": "tout"}


def parse(text: str) -> bool:
    """True for the `tout` variant."""
    return parse_keyword(text, _EVERYTHING, what="argument") is not None


def required_power(everything: bool) -> Power:
    return Power.MODERATOR if everything else Power.EVERYONE


async def run(ctx: CommandContext, everything: bool) -> None:
    room_id = ctx.message.room_id
    await ctx.store.messages.clear_conversation(room_id)
    if not everything:
        await ctx.reply(texts.FORGET_DONE.format(prefix=ctx.prefix))
        return
    deleted = await ctx.store.messages.clear_room(room_id)
    await ctx.reply(texts.FORGET_ALL_DONE.format(messages=deleted))


COMMAND: Command[bool] = Command(
    name="oublie",
    aliases=("reset", "forget"),
    summary="Efface le contexte de la conversation : la prochaine question repart de zéro.",
    usage="oublie [tout]",
    parse=parse,
    run=run,
    power=required_power,
    details=(
        "`oublie` efface ce dont l'assistant se souvient de la conversation dans ce salon (tous "
        "ses fils compris). Tout le monde peut l'utiliser, y compris dans un salon à plusieurs : "
        "cela ne supprime aucun message et ne fait que repartir de zéro. Les messages du salon "
        "restent disponibles pour `resume`.\n"
        "`oublie tout` (réservé aux modérateurs) supprime en plus tous les messages de ce salon "
        "enregistrés par l'assistant pour les résumés."
    ),
)
