"""`!oublie-moi`: the asker's right to erasure, across every room, without asking an admin."""

from __future__ import annotations

import structlog

from bot import texts
from bot.pilot import usage
from commands.base import Command, CommandContext, NoArgs, no_arguments

log = structlog.get_logger(__name__)


async def run(ctx: CommandContext, _: NoArgs) -> None:
    deleted = await ctx.store.people.purge(ctx.message.sender)
    if ctx.pilot is not None:
        await ctx.pilot.forget_person(ctx.message.sender)
    usage.current().record = False  # not even this command is counted afterwards
    log.info(
        "command.user_purged",
        messages=deleted.messages,
        conversation_turns=deleted.conversation_turns,
        documents=deleted.documents,
    )
    await ctx.reply(
        texts.FORGET_ME_DONE.format(
            messages=deleted.messages, turns=deleted.conversation_turns, documents=deleted.documents
        )
    )


COMMAND: Command[NoArgs] = Command(
    name="oublie-moi",
    aliases=("forget-me", "oubliez-moi"),
    summary="Supprime tout ce que l'assistant a enregistré de vous, dans tous les salons.",
    usage="oublie-moi",
    parse=no_arguments,
    run=run,
    details=(
        "Supprime vos messages enregistrés (utilisés pour les résumés), vos échanges avec "
        "l'assistant et les documents que vous avez partagés (leur texte indexé), dans tous les salons où il se trouve. Vos messages restent visibles dans "
        "Tchap : seule la copie de l'assistant est effacée. Tout le monde peut l'utiliser."
    ),
)
