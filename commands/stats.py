"""`!stats`: how much this room used the assistant (moderators: it reveals activity)."""

from __future__ import annotations

from datetime import datetime

from bot import texts
from bot.answer.conversation import french_date
from bot.french import PARIS, french_number
from bot.pilot.service import FEW_PEOPLE
from commands.base import Command, CommandContext, NoArgs, Power, no_arguments


def french_datetime(timestamp_ms: int) -> str:
    moment = datetime.fromtimestamp(timestamp_ms / 1000, PARIS)
    return texts.STATS_DATETIME.format(date=french_date(moment), time=moment.strftime("%H:%M"))


STATS_DAYS = 30


def _seconds(ms: float | None) -> str:
    return "—" if ms is None else f"{ms / 1000:.1f} s".replace(".", ",")


async def pilot_text(ctx: CommandContext) -> str:
    """The room's pilot figures (last 30 days); counts of people under 5 are shown as "< 5"."""
    figures = (
        None if ctx.pilot is None else await ctx.pilot.room_figures(ctx.message.room_id, STATS_DAYS)
    )
    if figures is None:
        return texts.STATS_PILOT_OFF
    if figures.reactions == 0:
        satisfaction = texts.STATS_PILOT_NONE
    elif figures.reacting_people < FEW_PEOPLE:
        satisfaction = texts.STATS_PILOT_FEW
    else:
        satisfaction = texts.STATS_PILOT_SATISFACTION.format(
            percent=round(100 * figures.positive / figures.reactions),
            reactions=french_number(figures.reactions),
        )
    return texts.STATS_PILOT.format(
        days=figures.days,
        questions=french_number(figures.questions),
        summaries=french_number(figures.summaries),
        commands=french_number(figures.commands),
        people=texts.STATS_PILOT_FEW
        if figures.people < FEW_PEOPLE
        else french_number(figures.people),
        median=_seconds(figures.median_ms),
        p95=_seconds(figures.p95_ms),
        errors=french_number(figures.errors),
        refusals=french_number(figures.refusals),
        satisfaction=satisfaction,
    )


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
        + await pilot_text(ctx)
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
        "résumés) et date de la dernière activité, pour ce salon uniquement ; sur les 30 "
        "derniers jours : questions, résumés, commandes, personnes actives, temps de réponse, "
        "erreurs, refus et satisfaction (👍/👎). Moins de 5 personnes s'affiche « < 5 »."
    ),
)
