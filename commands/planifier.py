"""`!planifier`: moderators have a command posted in the room at set times (Paris time)."""

from __future__ import annotations

import shlex
import time
from dataclasses import dataclass
from datetime import datetime

from bot import texts
from bot.classify import parse_invocation
from bot.french import PARIS, fold
from bot.schedule import ScheduleError, looks_like_time, parse_spec
from commands.base import Command, CommandContext, Power, UsageError

MAX_SCHEDULES = 20
NOT_SCHEDULABLE = {"planifier", "oublie-moi", "commande", "commandes", "config", "modele"}


@dataclass(frozen=True)
class ScheduleAction:
    action: str
    spec: str = ""
    command_line: str = ""
    schedule_id: int = 0


def parse(text: str) -> ScheduleAction:
    try:
        words = shlex.split(text)
    except ValueError:
        raise UsageError("guillemets mal fermés autour des jours et de l'heure") from None
    if not words or fold(words[0]) in ("liste", "list"):
        return ScheduleAction("list")
    if fold(words[0]) in ("supprimer", "delete", "remove"):
        if len(words) != 2 or not words[1].lstrip("n°#").isdigit():
            raise UsageError("précisez le numéro de la planification à supprimer")
        return ScheduleAction("delete", schedule_id=int(words[1].lstrip("n°#")))
    if " " in words[0].strip():
        spec, rest = words[0], words[1:]
    elif len(words) > 1 and looks_like_time(words[1]):
        spec, rest = f"{words[0]} {words[1]}", words[2:]
    elif looks_like_time(words[0]):
        spec, rest = words[0], words[1:]
    else:
        raise UsageError('indiquez les jours et l\'heure, par exemple "lun-ven 18:00"')
    try:
        parse_spec(spec)
    except ScheduleError as error:
        raise UsageError(str(error)) from None
    if not rest:
        raise UsageError("précisez la commande à exécuter, par exemple `resume 1j`")
    command_line = " ".join(rest).lstrip("!/")
    return ScheduleAction("add", spec=spec, command_line=command_line)


def required_power(action: ScheduleAction) -> Power:
    return Power.EVERYONE if action.action == "list" else Power.MODERATOR


def _when(timestamp_ms: int) -> str:
    moment = datetime.fromtimestamp(timestamp_ms / 1000, PARIS)
    weekday = texts.WEEKDAYS[moment.weekday()]
    return f"{weekday} {moment.day} {texts.MONTHS[moment.month - 1]} à {moment:%H:%M}"


async def run(ctx: CommandContext, action: ScheduleAction) -> None:
    room_id = ctx.message.room_id
    if action.action == "list":
        schedules = await ctx.store.schedules.list(room_id)
        if not schedules:
            await ctx.reply(texts.SCHEDULE_LIST_EMPTY.format(prefix=ctx.prefix))
            return
        lines = [texts.SCHEDULE_LIST_HEADER] + [
            texts.SCHEDULE_LIST_LINE.format(
                id=s.id,
                prefix=ctx.prefix,
                command=s.command_line,
                spec=s.spec,
                next_run=_when(s.next_run_ms),
            )
            for s in schedules
        ]
        await ctx.reply("\n".join(lines))
        return
    if action.action == "delete":
        if not await ctx.store.schedules.delete(room_id, action.schedule_id, ctx.message.sender):
            await ctx.reply(texts.SCHEDULE_UNKNOWN.format(id=action.schedule_id))
            return
        if ctx.scheduler is not None:
            ctx.scheduler.changed()
        await ctx.reply(texts.SCHEDULE_DELETED.format(id=action.schedule_id))
        return
    invocation = parse_invocation(action.command_line, [""], prefix_optional=True)
    name = invocation.word if invocation else action.command_line.split()[0]
    builtin = ctx.registry.lookup(name)
    if builtin is None and ctx.room_commands.custom(room_id, fold(name)) is None:
        raise UsageError(texts.SCHEDULE_UNKNOWN_COMMAND.format(name=name))
    if builtin is not None and builtin.name in NOT_SCHEDULABLE:
        raise UsageError(texts.SCHEDULE_FORBIDDEN_COMMAND.format(name=builtin.name))
    if len(await ctx.store.schedules.list(room_id)) >= MAX_SCHEDULES:
        raise UsageError(texts.SCHEDULE_LIMIT_REACHED.format(limit=MAX_SCHEDULES))
    now_ms = ctx.scheduler.now_ms() if ctx.scheduler is not None else int(time.time() * 1000)
    next_run = parse_spec(action.spec).next_run_after(now_ms)
    schedule_id = await ctx.store.schedules.add(
        room_id, action.spec, action.command_line, ctx.message.sender, next_run
    )
    if ctx.scheduler is not None:
        ctx.scheduler.changed()
    await ctx.reply(
        texts.SCHEDULE_ADDED.format(
            id=schedule_id,
            prefix=ctx.prefix,
            command=action.command_line,
            spec=action.spec,
            next_run=_when(next_run),
        )
    )


COMMAND: Command[ScheduleAction] = Command(
    name="planifier",
    aliases=("schedule",),
    summary="Publie une commande dans le salon à heures fixes (heure de Paris).",
    usage='planifier ["<jours> <heure>" <commande> | liste | supprimer <n°>]',
    parse=parse,
    run=run,
    power=required_power,
    details=(
        'Exemple : `planifier "lun-ven 18:00" resume 1j` publie chaque soir de semaine le résumé '
        "de la journée. Jours : lun, mar, mer, jeu, ven, sam, dim, des plages (`lun-ven`), des "
        "listes (`lun,mer`) ou `tous-les-jours` ; heure : `18:00` ou `18h30`. Un résumé sans "
        "message à résumer ne publie rien. Une exécution manquée pendant un arrêt de l'assistant "
        "est rattrapée au redémarrage si elle a moins d'une heure de retard, jamais deux fois. "
        "Ajouter et supprimer sont réservés aux modérateurs."
    ),
)
