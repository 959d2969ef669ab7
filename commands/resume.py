"""`!resume`: summarise what was said in this room (or this thread) with the LLM.

This module picks the window (arguments, the asker's last message, the thread) and replies;
`bot.summary` does the chunking and the LLM calls.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import datetime

import structlog

from bot import texts
from bot.answer.conversation import error_text
from bot.answer.llm import LLMError
from bot.answer.summary import Summarizer
from bot.answer.tokens import MistralTokenCounter
from bot.classify import parse_invocation
from bot.french import PARIS
from bot.store.database import StoredMessage
from commands.arguments import MAX_SUMMARY_MESSAGES, CountOrDuration, parse_count_or_duration
from commands.base import Command, CommandContext

log = structlog.get_logger(__name__)

DEFAULT_COUNT = 50
# Commands are dropped from the window after reading it: read more, so `!resume 200` still
# gets 200 messages of conversation.
FETCH_FACTOR = 2


@dataclass(frozen=True)
class Window:
    messages: list[StoredMessage]
    capped: bool  # a time window had more messages than the summary accepts
    since_last_message: bool  # default window that started at the asker's previous message


def summarizer_for(ctx: CommandContext) -> Summarizer:
    """The router shares one Summarizer (and its loaded tokenizer) with every command."""
    if ctx.summarizer is not None:
        return ctx.summarizer
    return Summarizer(ctx.llm, MistralTokenCounter(), ctx.settings)


def is_command(body: str, prefixes: list[str]) -> bool:
    return parse_invocation(body, prefixes) is not None


async def select_window(ctx: CommandContext, args: CountOrDuration) -> Window:
    """The messages to summarise, oldest first: this room only, before the command itself."""
    message = ctx.message
    since_ms: int | None = None
    limit = DEFAULT_COUNT
    since_last = False
    if args.count is not None:
        limit = args.count
    elif args.duration is not None:
        since_ms = message.timestamp_ms - int(args.duration.total_seconds() * 1000)
        limit = MAX_SUMMARY_MESSAGES
    else:
        last = await ctx.store.messages.last_time(
            message.room_id, message.sender, before_ms=message.timestamp_ms
        )
        # What was said after the asker last spoke: their own message is not news to them.
        since_ms = last + 1 if last is not None else None
        since_last = last is not None
    found = await ctx.store.messages.in_window(
        message.room_id,
        since_ms=since_ms,
        limit=limit * FETCH_FACTOR,
        thread_root_id=message.thread_root_id,
        before_ms=message.timestamp_ms,
    )
    prefixes = ctx.settings.command_prefixes
    kept = [
        stored
        for stored in found
        if stored.event_id != message.event_id
        and stored.room_id == message.room_id
        and not is_command(stored.body, prefixes)
    ]
    capped = args.duration is not None and len(kept) > limit
    return Window(messages=kept[-limit:], capped=capped, since_last_message=since_last)


def _since_text(first_ms: int, now_ms: int) -> str:
    first = datetime.fromtimestamp(first_ms / 1000, PARIS)
    now = datetime.fromtimestamp(now_ms / 1000, PARIS)
    time = first.strftime("%H:%M")
    if first.date() == now.date():
        return texts.SUMMARY_SINCE_SAME_DAY.format(time=time)
    date = f"{first.day} {texts.MONTHS[first.month - 1]}"
    if first.year != now.year:
        date += f" {first.year}"
    return texts.SUMMARY_SINCE_OTHER_DAY.format(date=date, time=time)


def header(ctx: CommandContext, messages: list[StoredMessage]) -> str:
    count = len(messages)
    since = _since_text(messages[0].timestamp_ms, ctx.message.timestamp_ms)
    if ctx.message.thread_root_id:
        what = (
            texts.SUMMARY_WHAT_THREAD_ONE
            if count == 1
            else texts.SUMMARY_WHAT_THREAD_MANY.format(count=count)
        )
        return texts.SUMMARY_HEADER_THREAD.format(what=what, since=since)
    what = texts.SUMMARY_WHAT_ONE if count == 1 else texts.SUMMARY_WHAT_MANY.format(count=count)
    return texts.SUMMARY_HEADER_ROOM.format(what=what, since=since)


async def _typing(ctx: CommandContext, typing: bool) -> None:
    """A summary can take a while: show it. The indicator is cosmetic, never fatal."""
    with contextlib.suppress(Exception):
        await ctx.outbox.typing(ctx.message.room_id, typing)


async def run(ctx: CommandContext, args: CountOrDuration) -> None:
    if ctx.message.reply_to_event_id is not None and ctx.documents is not None:
        from commands.documents import summarize_document

        if await summarize_document(ctx, ctx.message.reply_to_event_id):
            return  # `!resume` replying to a shared file summarises that document
    if not ctx.room_settings.resumes:
        await ctx.reply(texts.SUMMARY_DISABLED.format(prefix=ctx.prefix))
        return
    window = await select_window(ctx, args)
    if not window.messages:
        if ctx.message.scheduled:
            return  # a scheduled digest of an empty window posts nothing
        empty = texts.SUMMARY_EMPTY_SINCE_LAST if window.since_last_message else texts.SUMMARY_EMPTY
        await ctx.reply(empty.format(prefix=ctx.prefix))
        return
    room_name = "conversation privée" if ctx.room.is_direct else ctx.room.name
    await _typing(ctx, True)
    try:
        result = await summarizer_for(ctx).summarize(
            window.messages,
            room_name=room_name,
            language=ctx.room_settings.langue,
            instructions=ctx.conversation.system_prompt(ctx.room, ctx.room_settings),
            model=ctx.room_settings.model_or(ctx.settings.model),
            temperature=ctx.room_settings.temperature_or(ctx.settings.temperature),
        )
    except LLMError as error:
        log.warning("summary.failed", room_id=ctx.message.room_id, kind=error.kind.value)
        await _typing(ctx, False)
        await ctx.reply(error_text(error))
        return
    await _typing(ctx, False)
    text = f"{header(ctx, window.messages)}\n\n{result.text}"
    if window.capped:
        text += texts.SUMMARY_CAPPED.format(count=len(window.messages))
    await ctx.reply(text, notice=False)
    await ctx.store.usage.record(
        ctx.message.room_id, result.prompt_tokens, result.completion_tokens
    )
    log.info(
        "summary.done",
        room_id=ctx.message.room_id,
        messages=len(window.messages),
        chunks=result.chunks,
        calls=result.calls,
    )


COMMAND: Command[CountOrDuration] = Command(
    name="resume",
    aliases=("summary", "resumer"),
    summary="Résume la conversation du salon : qui a dit quoi, décisions, actions à suivre.",
    usage="resume [N | durée]",
    parse=parse_count_or_duration,
    run=run,
    uses_llm=True,
    details=(
        "Sans argument : les messages depuis votre dernier message, au plus les 50 derniers.\n"
        f"`resume 200` : les 200 derniers messages (1 à {MAX_SUMMARY_MESSAGES}).\n"
        "`resume 2h`, `resume 30min`, `resume 1j`, `resume 2 jours`, `resume 1 semaine` : "
        "une période (30 jours au plus).\n"
        "Dans un fil de discussion, seul ce fil est résumé. Les commandes ne sont pas résumées. "
        "Seuls les messages de ce salon reçus par l'assistant sont lus."
    ),
)
