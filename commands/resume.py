"""`!resume`: summarise what was said in this room (or one thread) with the LLM.

This module picks the window (since the asker last read, a count, a duration, a French date
form, a thread), posts the summary here or in the asker's DM, and shows progress on long
summaries; `bot.answer.summary` does the chunking and the LLM calls, `bot.answer.citations` the sections and
the links to the source messages, `commands.resume_args` the arguments.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog

from bot import texts
from bot.answer.citations import Speaker, render, server_of, urls_in
from bot.answer.conversation import error_text
from bot.answer.llm_failures import LLMError
from bot.answer.split import split_for_matrix
from bot.answer.summary import Summarizer
from bot.answer.tokens import MistralTokenCounter
from bot.answer.typing_notice import TypingNotice
from bot.answer.untrusted import ROOM_NAME_MAX_CHARS, as_code
from bot.classify import parse_invocation
from bot.french import PARIS
from bot.pilot import usage as pilot_usage
from bot.store.database import StoredMessage
from commands.arguments import MAX_SUMMARY_MESSAGES
from commands.base import Command, CommandContext, UsageError
from commands.resume_args import ResumeArgs, describe, parse_resume, resolve_dates

log = structlog.get_logger(__name__)

DEFAULT_HOURS = 24
# Commands are dropped from the window after reading it: read more, so `!resume 200` still
# gets 200 messages of conversation.
FETCH_FACTOR = 2
# A summary of at least this many chunks shows its progress by edits of one message.
PROGRESS_MIN_CHUNKS = 3
PROGRESS_EDIT_EVERY = 1.0  # seconds between two progress edits at most


@dataclass(frozen=True)
class Window:
    messages: list[StoredMessage]
    label: str  # "depuis votre dernière lecture, 14:02", "hier, dimanche 29/11"…
    capped: bool = False  # a default window had more messages than a summary takes
    show_count: bool = True  # "— 87 messages" after the label
    empty_text: str = ""  # what to say when there is nothing; default: SUMMARY_EMPTY


def summarizer_for(ctx: CommandContext) -> Summarizer:
    """The router shares one Summarizer (and its loaded tokenizer) with every command."""
    if ctx.summarizer is not None:
        return ctx.summarizer
    return Summarizer(ctx.llm, MistralTokenCounter(), ctx.settings)


def is_command(body: str, prefixes: list[str]) -> bool:
    return parse_invocation(body, prefixes) is not None


def since_text(first_ms: int, now_ms: int) -> str:
    """`14:02` today, `le 27 novembre à 14:02` another day (Paris time)."""
    first = datetime.fromtimestamp(first_ms / 1000, PARIS)
    now = datetime.fromtimestamp(now_ms / 1000, PARIS)
    clock = first.strftime("%H:%M")
    if first.date() == now.date():
        return texts.SUMMARY_SINCE_SAME_DAY.format(time=clock)
    day = f"{first.day} {texts.MONTHS[first.month - 1]}"
    if first.year != now.year:
        day += f" {first.year}"
    return texts.SUMMARY_SINCE_OTHER_DAY.format(date=day, time=clock)


async def thread_root(ctx: CommandContext, args: ResumeArgs) -> str | None:
    """The thread to summarise: the one the command is in, or (`fil`) the one whose root (or
    any message) the command replies to."""
    message = ctx.message
    if message.thread_root_id:
        return message.thread_root_id
    if not args.thread:
        return None
    if message.reply_to_event_id is None:
        raise UsageError(texts.SUMMARY_NO_THREAD)
    replied = await ctx.store.messages.get(message.reply_to_event_id)
    if replied is not None and replied.room_id == message.room_id and replied.thread_root_id:
        return replied.thread_root_id
    return message.reply_to_event_id


async def _fetch(
    ctx: CommandContext,
    *,
    since_ms: int | None,
    until_ms: int,
    limit: int,
    thread: str | None,
) -> tuple[list[StoredMessage], bool]:
    """Conversation messages of the window (commands left out), at most `limit`, and whether
    there were more."""
    message = ctx.message
    found = await ctx.store.messages.in_window(
        message.room_id,
        since_ms=since_ms,
        limit=(limit + 1) * FETCH_FACTOR,
        thread_root_id=thread,
        before_ms=until_ms,
    )
    prefixes = ctx.settings.command_prefixes
    kept = [
        stored
        for stored in found
        if stored.event_id != message.event_id
        and stored.room_id == message.room_id
        and not is_command(stored.body, prefixes)
    ]
    return kept[-limit:], len(kept) > limit


async def select_window(ctx: CommandContext, args: ResumeArgs, thread: str | None) -> Window:
    """The messages to summarise, oldest first: this room (or thread), before the command."""
    message = ctx.message
    now_ms = message.timestamp_ms
    cap = MAX_SUMMARY_MESSAGES
    too_many = UsageError(texts.SUMMARY_TOO_MANY.format(limit=cap))
    if args.count is not None:
        found, _ = await _fetch(
            ctx, since_ms=None, until_ms=now_ms, limit=args.count, thread=thread
        )
        label = (
            texts.SUMMARY_WINDOW_LAST_ONE
            if len(found) == 1
            else texts.SUMMARY_WINDOW_COUNT.format(count=len(found))
        )
        return Window(found, label, show_count=False)
    if args.duration is not None:
        since = now_ms - int(args.duration.total_seconds() * 1000)
        found, more = await _fetch(ctx, since_ms=since, until_ms=now_ms, limit=cap, thread=thread)
        if more:
            raise too_many
        return Window(found, texts.SUMMARY_WINDOW_SINCE.format(since=since_text(since, now_ms)))
    if args.dates is not None:
        now = datetime.fromtimestamp(now_ms / 1000, PARIS)
        interval = resolve_dates(args.dates, now)
        until = now_ms if interval.end is None else min(now_ms, _ms(interval.end))
        found, more = await _fetch(
            ctx, since_ms=_ms(interval.start), until_ms=until, limit=cap, thread=thread
        )
        if more:
            raise too_many
        return Window(found, describe(args.dates, interval, now))
    if thread is not None:
        found, more = await _fetch(ctx, since_ms=None, until_ms=now_ms, limit=cap, thread=thread)
        return Window(found, texts.SUMMARY_WINDOW_THREAD, capped=more)
    return await _since_last_read(ctx)


async def _since_last_read(ctx: CommandContext) -> Window:
    """Since the asker's latest public read receipt (or, when that one marks everything read —
    clients send one as soon as the room is opened — the last one of their previous reading
    session), else since their last message, else the last 24 hours."""
    message = ctx.message
    now_ms = message.timestamp_ms
    cap = MAX_SUMMARY_MESSAGES
    positions = await ctx.store.receipts.positions(message.room_id, message.sender)
    for position in positions:
        found, more = await _fetch(
            ctx, since_ms=position.since_ms, until_ms=now_ms, limit=cap, thread=None
        )
        if found:
            since = since_text(position.since_ms - 1, now_ms)
            return Window(found, texts.SUMMARY_WINDOW_READ.format(since=since), capped=more)
    if positions:
        since = since_text(positions[0].since_ms - 1, now_ms)
        empty = texts.SUMMARY_EMPTY_SINCE_READ.format(since=since, prefix=ctx.prefix)
        return Window([], "", empty_text=empty)
    last = await ctx.store.messages.last_time(message.room_id, message.sender, before_ms=now_ms)
    if last is not None:
        found, more = await _fetch(ctx, since_ms=last + 1, until_ms=now_ms, limit=cap, thread=None)
        label = texts.SUMMARY_WINDOW_LAST_MESSAGE.format(since=since_text(last, now_ms))
        empty = texts.SUMMARY_EMPTY_SINCE_LAST.format(prefix=ctx.prefix)
        return Window(found, label, capped=more, empty_text=empty)
    day_ago = now_ms - int(timedelta(hours=DEFAULT_HOURS).total_seconds() * 1000)
    found, more = await _fetch(ctx, since_ms=day_ago, until_ms=now_ms, limit=cap, thread=None)
    return Window(found, texts.SUMMARY_WINDOW_DEFAULT, capped=more)


async def _large_summary_allowed(ctx: CommandContext, count: int) -> bool:
    """A map-reduce over hundreds of messages is many model calls: one per room per cooldown."""
    cooldown = ctx.large_summary_cooldown
    if cooldown is None or count <= ctx.settings.large_summary_messages:
        return True
    remaining = cooldown.remaining(ctx.message.room_id)
    if remaining > 0:
        await ctx.reply(
            texts.LARGE_SUMMARY_COOLDOWN.format(
                limit=ctx.settings.large_summary_messages,
                minutes=max(1, round(remaining / 60)),
                prefix=ctx.prefix,
            )
        )
        return False
    cooldown.start(ctx.message.room_id)
    return True


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def header(ctx: CommandContext, window: Window, *, thread: bool, private: bool) -> str:
    count = len(window.messages)
    what = texts.SUMMARY_COUNT_ONE if count == 1 else texts.SUMMARY_COUNT_MANY.format(count=count)
    if private:
        pattern = texts.SUMMARY_HEADER_PRIVATE_THREAD if thread else texts.SUMMARY_HEADER_PRIVATE
    else:
        pattern = texts.SUMMARY_HEADER_THREAD if thread else texts.SUMMARY_HEADER_ROOM
    text = pattern.format(window=window.label, room=as_code(ctx.room.name, ROOM_NAME_MAX_CHARS))
    return f"{text} — {what}" if window.show_count else text


def speakers(messages: list[StoredMessage]) -> list[Speaker]:
    seen: dict[str, Speaker] = {}
    for message in messages:
        seen.setdefault(message.sender, Speaker(message.sender, message.sender_name))
    return list(seen.values())


class _Target:
    """Where the summary goes (this room as a reply, or the asker's DM) and its progress
    message, edited in place until it becomes the summary."""

    def __init__(self, ctx: CommandContext, dm_room_id: str | None) -> None:
        self._ctx = ctx
        self._dm = dm_room_id
        self._progress_id: str | None = None
        self._revision = 0
        self._last_edit = 0.0
        self._lock = asyncio.Lock()  # chunks finish concurrently: edits go out in order

    async def _send(self, markdown: str, purpose: str) -> list[str]:
        if self._dm is not None:
            return await self._ctx.outbox.post(
                self._dm, self._ctx.message, markdown, purpose=purpose
            )
        return await self._ctx.outbox.reply(
            self._ctx.message, markdown, purpose=purpose, notice=False
        )

    async def _edit(self, markdown: str) -> None:
        assert self._progress_id is not None
        self._revision += 1
        await self._ctx.outbox.edit(
            self._ctx.message,
            self._progress_id,
            markdown,
            purpose="summary-progress",
            revision=self._revision,
            room_id=self._dm,
        )

    async def progress(self, done: int, total: int) -> None:
        """Cosmetic: a failed progress edit never fails the summary."""
        if total < PROGRESS_MIN_CHUNKS:
            return
        text = texts.SUMMARY_PROGRESS.format(done=done, total=total)
        async with self._lock:
            await self._show(text, final=done == total)

    async def _show(self, text: str, *, final: bool) -> None:
        with contextlib.suppress(Exception):
            if self._progress_id is None:
                self._progress_id = (await self._send(text, "summary-progress"))[0]
                self._last_edit = time.monotonic()
            elif final or time.monotonic() - self._last_edit >= PROGRESS_EDIT_EVERY:
                await self._edit(text)
                self._last_edit = time.monotonic()

    async def finish(self, markdown: str) -> list[str]:
        """The summary: the progress message becomes it (its first part when it is long).
        Returns the events that hold the summary (they may receive 👍/👎)."""
        async with self._lock:
            if self._progress_id is None:
                return await self._send(markdown, "summary")
            head = _first_part(markdown)
            if len(split_for_matrix(head)) > 1:  # one giant paragraph: a message of its own
                await self._edit(texts.SUMMARY_PROGRESS_DONE)
                return await self._send(markdown, "summary")
            await self._edit(head)
            event_ids = [self._progress_id]
            rest = markdown[len(head) :].strip()
            if rest:
                event_ids += await self._send(rest, "summary-rest")
            return event_ids

    async def fail(self, text: str) -> None:
        if self._progress_id is not None:
            with contextlib.suppress(Exception):
                await self._edit(text)
                return
        await self._send(text, "summary-failed")


def _first_part(markdown: str) -> str:
    """The longest head of `markdown`, cut at a paragraph, that fits one message."""
    paragraphs = markdown.split("\n\n")
    head = paragraphs[0]
    for paragraph in paragraphs[1:]:
        candidate = f"{head}\n\n{paragraph}"
        if len(split_for_matrix(candidate)) > 1:
            break
        head = candidate
    return head


async def run(ctx: CommandContext, args: ResumeArgs) -> None:
    if ctx.message.reply_to_event_id is not None and ctx.documents is not None:
        from commands.documents import summarize_document

        if await summarize_document(ctx, ctx.message.reply_to_event_id):
            return  # `!resume` replying to a shared file summarises that document
    if not ctx.room_settings.resumes:
        await ctx.reply(texts.SUMMARY_DISABLED.format(prefix=ctx.prefix))
        return
    thread = await thread_root(ctx, args)
    window = await select_window(ctx, args, thread)
    if not window.messages:
        if ctx.message.scheduled:
            return  # a scheduled digest of an empty window posts nothing
        usage = COMMAND.usage_line(ctx.prefix)
        await ctx.reply(window.empty_text or texts.SUMMARY_EMPTY.format(usage=usage))
        return
    if not await _large_summary_allowed(ctx, len(window.messages)):
        return
    dm_room_id: str | None = None
    if args.private and not ctx.room.is_direct:
        try:
            if ctx.direct_room is None:
                raise RuntimeError("no DM support in this context")
            dm_room_id = await ctx.direct_room(ctx.message.sender)
        except Exception as error:
            log.warning(
                "summary.dm_unavailable",
                room_id=ctx.message.room_id,
                error_type=type(error).__name__,
            )
            await ctx.reply(texts.SUMMARY_PRIVATE_FAILED)
            return
    target = _Target(ctx, dm_room_id)
    room_name = "conversation privée" if ctx.room.is_direct else ctx.room.name
    # Typing notices go out beside the work, never before it: each is a round trip.
    typing = TypingNotice(ctx.outbox, ctx.message.room_id, delay_seconds=0)
    try:
        result = await summarizer_for(ctx).summarize(
            window.messages,
            room_name=room_name,
            language=ctx.room_settings.langue,
            instructions=ctx.conversation.system_prompt(ctx.room, ctx.room_settings),
            model=ctx.room_settings.model_or(ctx.settings.model),
            temperature=ctx.room_settings.temperature_or(ctx.settings.temperature),
            progress=target.progress,
        )
    except LLMError as error:
        log.warning("summary.failed", room_id=ctx.message.room_id, kind=error.kind.value)
        pilot_usage.current().kind = "summary"
        pilot_usage.current().failed()
        await asyncio.gather(target.fail(error_text(error)), _ended(typing))
        return
    body = render(
        result.text,
        event_ids={n: m.event_id for n, m in enumerate(window.messages, start=1)},
        room_id=ctx.message.room_id,
        server=server_of(ctx.settings.user_id),
        speakers=speakers(window.messages),
        allowed_urls=urls_in([m.body for m in window.messages]),
    )
    text = f"{header(ctx, window, thread=thread is not None, private=dm_room_id is not None)}"
    text += f"\n\n{body}"
    if window.capped:
        text += texts.SUMMARY_CAPPED.format(count=len(window.messages))
    event_ids, _ = await asyncio.gather(target.finish(text), _ended(typing))
    pilot_usage.current().answered(
        "summary",
        event_ids,
        ctx.room_settings.model_or(ctx.settings.model),
        result.prompt_tokens,
        result.completion_tokens,
        room_id=dm_room_id,
    )
    if dm_room_id is not None and not ctx.message.scheduled:
        await ctx.reply(texts.SUMMARY_SENT_PRIVATELY)
    await ctx.store.usage.record(
        ctx.message.room_id, result.prompt_tokens, result.completion_tokens
    )
    log.info(
        "summary.done",
        room_id=ctx.message.room_id,
        messages=len(window.messages),
        chunks=result.chunks,
        calls=result.calls,
        private=dm_room_id is not None,
    )


async def _ended(typing: TypingNotice) -> None:
    """A summary can take a while: the notice shows it, and ends beside the summary's send."""
    ending = typing.end()
    if ending is not None:
        await asyncio.gather(ending, return_exceptions=True)  # cosmetic, never fatal


COMMAND: Command[ResumeArgs] = Command(
    name="resume",
    aliases=("summary", "resumer"),
    summary=(
        "Résume la conversation du salon depuis votre dernière lecture : points clés, "
        "décisions, actions, questions ouvertes, chacun relié à ses messages."
    ),
    usage="resume [N | durée | date] [fil] [en privé]",
    parse=parse_resume,
    run=run,
    uses_llm=True,
    details=(
        "Sans argument : les messages depuis votre dernière lecture (accusé de lecture public), "
        "sinon depuis votre dernier message, sinon les dernières 24 heures.\n"
        f"`resume 200` : les 200 derniers messages (1 à {MAX_SUMMARY_MESSAGES}).\n"
        "`resume 2h`, `resume 30min`, `resume 2 jours` : une période (30 jours au plus).\n"
        "`resume hier`, `resume depuis lundi`, `resume depuis 9h`, `resume 12/11`, "
        "`resume 12/11-15/11` : des dates, à l'heure de Paris.\n"
        "`resume fil` : dans un fil, ou en réponse à son premier message, résume ce fil.\n"
        "`resume … en privé` (ou `privé`) : le résumé arrive dans votre conversation privée "
        "avec l'assistant ; une planification peut l'utiliser aussi.\n"
        "Chaque point renvoie aux messages dont il vient. Les commandes ne sont pas résumées. "
        "Seuls les messages de ce salon reçus par l'assistant sont lus."
    ),
)
