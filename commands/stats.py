"""`!stats`: how much this room used the assistant (moderators: it reveals activity)."""

from __future__ import annotations

from datetime import datetime

from bot import texts
from bot.answer.conversation import french_date
from bot.french import PARIS
from commands.base import Command, CommandContext, NoArgs, Power, no_arguments


def french_number(value: int) -> str:
    """`12345` → `12 345` (narrow no-break space, the French typographic rule)."""
    return f"{value:,}".replace(",", "\u202f")


def french_datetime(timestamp_ms: int) -> str:
    moment = datetime.fromtimestamp(timestamp_ms / 1000, PARIS)
    return texts.STATS_DATETIME.format(date=french_date(moment), time=moment.strftime("%H:%M"))


async def run(ctx: CommandContext, _: NoArgs) -> None:
    usage = await ctx.store.usage.of_room(ctx.message.room_id)
    last = (
        french_datetime(usage.last_activity_ms)
        if usage.last_activity_ms is not None
        else texts.STATS_NEVER
    )
    await ctx.reply(
        texts.STATS_TEXT.format(
            questions=french_number(usage.questions),
            answers=french_number(usage.answers),
            tokens=french_number(usage.prompt_tokens + usage.completion_tokens),
            prompt=french_number(usage.prompt_tokens),
            completion=french_number(usage.completion_tokens),
            last=last,
        )
    )


COMMAND: Command[NoArgs] = Command(
    name="stats",
    aliases=("statistiques", "statistics"),
    summary="Statistiques d'utilisation de l'assistant dans ce salon.",
    usage="stats",
    parse=no_arguments,
    run=run,
    power=Power.MODERATOR,
    details=(
        "Nombre de questions reçues et de réponses données, jetons consommés (questions et "
        "résumés) et date de la dernière activité, pour ce salon uniquement."
    ),
)
