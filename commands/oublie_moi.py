"""`!oublie-moi`: the asker's right to erasure, across every room, without asking an admin.

As soon as it arrives (before waiting its turn in the room) the asker's questions still
waiting or being answered are taken back: the model is not called for them, an answer being
written stops and is redacted. Then everything stored of the asker goes: their messages, their
exchanges with the bot, the text of their questions, the custom commands and schedules they
created, the texts of the room changes they made (who and when stay). Moderators cannot turn
it off.
"""

from __future__ import annotations

import structlog

from bot import texts
from bot.models import WithdrawScope
from bot.pilot import usage
from commands.base import Command, CommandContext, NoArgs, no_arguments

log = structlog.get_logger(__name__)


async def run(ctx: CommandContext, _: NoArgs) -> None:
    deleted = await ctx.store.people.purge(
        ctx.message.sender, keep_event_id=ctx.message.event_id, until_ms=ctx.message.timestamp_ms
    )
    if deleted.custom_commands:
        await ctx.room_commands.load_all()
    if deleted.schedules and ctx.scheduler is not None:
        ctx.scheduler.changed()
    if ctx.pilot is not None:
        await ctx.pilot.forget_person(ctx.message.sender)
    usage.current().record = False  # not even this command is counted afterwards
    log.info(
        "command.user_purged",
        messages=deleted.messages,
        conversation_turns=deleted.conversation_turns,
        questions_withdrawn=deleted.questions_withdrawn,
        custom_commands=deleted.custom_commands,
        schedules=deleted.schedules,
        audit_texts=deleted.audit_texts,
        documents=deleted.documents,
    )
    await ctx.reply(
        texts.FORGET_ME_DONE.format(
            messages=deleted.messages,
            turns=deleted.conversation_turns,
            commands=deleted.custom_commands,
            schedules=deleted.schedules,
            documents=deleted.documents,
        )
    )


COMMAND: Command[NoArgs] = Command(
    name="oublie-moi",
    aliases=("forget-me", "oubliez-moi"),
    summary="Supprime tout ce que l'assistant a enregistré de vous, dans tous les salons.",
    usage="oublie-moi",
    parse=no_arguments,
    run=run,
    withdraws=WithdrawScope.EVERYWHERE,
    can_disable=False,
    details=(
        "Supprime vos messages enregistrés (utilisés pour les résumés), vos échanges avec "
        "l'assistant, le texte de vos questions, les documents que vous avez partagés, les "
        "commandes du salon et les planifications "
        "que vous avez créées, dans tous les salons où il se trouve ; le journal des réglages "
        "garde qui a changé quoi et quand, sans les textes. Une question que vous aviez posée "
        "et qui attendait encore sa réponse est abandonnée, et une réponse en cours d'écriture "
        "est effacée. Vos messages restent visibles dans Tchap : seule la copie de "
        "l'assistant est effacée. Tout le monde peut l'utiliser ; elle ne peut pas être "
        "désactivée."
    ),
)
