"""The message router: decides what each event means and who handles it.

For every message: store it (for summaries), apply edits, then decide — command, question, or
nothing. Questions and commands are recorded as triggers in SQLite before anything else happens
(exactly once across crashes) and run one at a time per room, in arrival order; rooms run
concurrently.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

import structlog

from bot import texts
from bot.answer.conversation import ConversationHandler
from bot.answer.inbound import strip_reply_fallback
from bot.answer.llm import LLMClient
from bot.answer.replies import Outbox
from bot.answer.summary import Summarizer
from bot.documents.service import DocumentService
from bot.models import IncomingMessage, MessageKind, RoomContext, RoomInvite, UndecryptableMessage
from bot.ops import metrics
from bot.ops.ratelimit import SlidingWindowLimiter
from bot.room_commands import RoomCommandsRepository
from bot.room_config import RoomConfigRepository
from bot.schedule import Scheduler
from bot.store import Store
from bot.store.database import Schedule, StoredMessage
from bot.triggers import BotIdentity, is_addressed_to_bot, mentions_bot, strip_bot_mention
from commands.base import CommandContext
from commands.registry import CommandRegistry, Invocation, normalise, parse_invocation
from config.room_settings import AnswerMode
from config.settings import Settings

log = structlog.get_logger(__name__)

Job = Callable[[], Awaitable[None]]
RATE_NOTICE_EVERY = 60.0


class RoomDirectory(Protocol):
    """What the router needs from the Matrix gateway besides events."""

    @property
    def user_id(self) -> str: ...

    @property
    def ready(self) -> asyncio.Event: ...

    def room_context(self, room_id: str) -> RoomContext: ...

    def bot_names(self, room_id: str) -> tuple[str, ...]: ...

    async def join(self, room_id: str, is_direct: bool, inviter: str | None = None) -> bool: ...

    async def reject_invite(self, room_id: str) -> None: ...

    async def power_level(self, room_id: str, user_id: str) -> int: ...

    async def event_sender(self, room_id: str, event_id: str) -> str | None: ...


class RoomWorkers:
    """One queue per room: a room's questions are answered in order, rooms concurrently."""

    def __init__(self, ready: asyncio.Event) -> None:
        self._ready = ready
        self._queues: dict[str, asyncio.Queue[Job]] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._pending = 0

    def submit(self, room_id: str, job: Job) -> None:
        queue = self._queues.setdefault(room_id, asyncio.Queue())
        queue.put_nowait(job)
        self._pending += 1
        metrics.QUEUE_DEPTH.set(self._pending)
        if room_id not in self._tasks or self._tasks[room_id].done():
            self._tasks[room_id] = asyncio.create_task(
                self._work(room_id, queue), name=f"room-{room_id}"
            )

    async def _work(self, room_id: str, queue: asyncio.Queue[Job]) -> None:
        await self._ready.wait()  # nothing is sent before the first sync told us about the rooms
        while not queue.empty():
            job = queue.get_nowait()
            try:
                await job()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("router.job_crashed", room_id=room_id)
            finally:
                self._pending -= 1
                metrics.QUEUE_DEPTH.set(self._pending)
        self._queues.pop(room_id, None)
        self._tasks.pop(room_id, None)

    @property
    def pending(self) -> int:
        return self._pending

    async def drain(self, grace_seconds: float) -> bool:
        """Let in-flight work finish for up to `grace_seconds`, then cancel the rest."""
        tasks = [task for task in self._tasks.values() if not task.done()]
        if not tasks:
            return True
        _, still_running = await asyncio.wait(tasks, timeout=grace_seconds)
        for task in still_running:
            task.cancel()
        await asyncio.gather(*still_running, return_exceptions=True)
        return not still_running


class Router:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        gateway: RoomDirectory,
        conversation: ConversationHandler,
        registry: CommandRegistry,
        room_config: RoomConfigRepository,
        llm: LLMClient,
        outbox: Outbox,
        room_commands: RoomCommandsRepository,
        summarizer: Summarizer | None = None,
    ) -> None:
        self._settings = settings
        self._store = store
        self._gateway = gateway
        self._conversation = conversation
        self._registry = registry
        self._room_config = room_config
        self._llm = llm
        self._outbox = outbox
        self._room_commands = room_commands
        self._summarizer = summarizer
        self.scheduler: Scheduler | None = None
        self.documents: DocumentService | None = None
        self.workers = RoomWorkers(gateway.ready)
        self._in_flight: set[str] = set()
        self._rate_notice_at: dict[tuple[str, str], float] = {}
        self._undecryptable_notified: set[tuple[str, str, str]] = set()
        self._user_limiter = SlidingWindowLimiter(settings.user_rate_limit_per_minute)
        self._room_limiter = SlidingWindowLimiter(settings.room_rate_limit_per_minute)

    # --- Start-up ---------------------------------------------------------------------------
    async def resume_pending(self) -> int:
        """Re-queue questions recorded but not answered before a crash, if still fresh."""
        cutoff = int(time.time() * 1000 - self._settings.catch_up_window_minutes * 60_000)
        resumed = 0
        for message in await self._store.triggers.pending():
            if message.timestamp_ms < cutoff:
                await self._store.triggers.finish(message, "skipped")
                continue
            resumed += 1
            self._schedule(message)
        if resumed:
            log.info("router.resumed_pending", count=resumed)
        return resumed

    # --- Events from the gateway ------------------------------------------------------------
    async def on_invite(self, invite: RoomInvite) -> None:
        bound = log.bind(room_id=invite.room_id)
        if not self._settings.is_allowed_user(invite.inviter):
            bound.info("router.invite_rejected", inviter_allowed=False)
            await self._gateway.reject_invite(invite.room_id)
            return
        joined = await self._gateway.join(invite.room_id, invite.is_direct, invite.inviter)
        bound.info("router.invite_accepted", joined=joined, is_direct=invite.is_direct)

    async def on_redaction(self, room_id: str, redacts: str) -> None:
        await self._store.messages.delete_event(room_id, redacts)
        log.info("router.redaction_applied", room_id=room_id, event_id=redacts)

    async def on_left(self, room_id: str) -> None:
        await self._store.rooms.forget(room_id)
        self._room_config.forget(room_id)
        self._room_commands.forget(room_id)
        log.info("router.room_forgotten", room_id=room_id)

    async def on_undecryptable(self, event: UndecryptableMessage) -> None:
        """The key of a message never came: tell its sender once, in a short notice.

        Once per sender and Megolm session in DMs and "answer all" rooms; in rooms where the bot
        only answers mentions (it cannot know whether the unreadable message was for it) once
        per sender and room for the process' lifetime. Nothing is persisted. If the key comes
        later, the message is still answered.
        """
        bound = log.bind(room_id=event.room_id, event_id=event.event_id)
        if event.sender == self._gateway.user_id or not self._settings.is_allowed_user(
            event.sender
        ):
            return
        room = self._gateway.room_context(event.room_id)
        quiet_room = not room.is_direct and (
            self._room_config.get(event.room_id).mode is not AnswerMode.ALL
        )
        keys = {(event.room_id, event.sender, event.session_id)}
        if quiet_room:
            keys.add((event.room_id, event.sender, "*"))
        if keys & self._undecryptable_notified:
            bound.info("router.undecryptable_already_notified", reason=event.reason)
            return
        self._undecryptable_notified.update(keys)
        bound.info("router.undecryptable_notice", reason=event.reason)
        trigger = IncomingMessage(
            room_id=event.room_id,
            event_id=event.event_id,
            sender=event.sender,
            sender_name=event.sender,
            kind=MessageKind.TEXT,
            body="",
            timestamp_ms=event.timestamp_ms,
            thread_root_id=event.thread_root_id,
            encrypted=True,
        )

        async def job() -> None:
            await self._outbox.reply(
                trigger, texts.UNDECRYPTABLE, purpose="undecryptable", notice=True
            )

        self.workers.submit(event.room_id, job)

    async def on_message(
        self, message: IncomingMessage, room: RoomContext, answerable: bool
    ) -> None:
        received_at = time.perf_counter()
        if message.sender == self._gateway.user_id:
            return
        if message.replaces_event_id is not None:
            await self._store.messages.apply_edit(
                message.room_id, message.replaces_event_id, message.sender, message.body
            )
            return
        if message.kind is MessageKind.ATTACHMENT:
            # Files are read in the background (documents), never answered as text.
            if self.documents is not None and self._settings.is_allowed_user(message.sender):
                await self.documents.on_attachment(message)
            return
        if message.kind is MessageKind.OTHER:
            return
        if (
            not answerable
            or message.kind is MessageKind.NOTICE
            or not self._settings.is_allowed_user(message.sender)
        ):
            await self._store_message(message)
            return
        if message.event_id in self._in_flight:
            return
        if not await self._is_for_bot(message, room):
            await self._store_message(message)
            return
        if not await self._store.triggers.claim(message, self._stored(message)):
            return  # already answered (a replayed sync)
        self._schedule(message, received_at)

    @staticmethod
    def _stored(message: IncomingMessage) -> StoredMessage | None:
        """The message as summaries read it (reply fallback removed); None when it has no text."""
        if not message.body:
            return None
        body, _ = strip_reply_fallback(message.body, message.formatted_body)
        return StoredMessage(
            event_id=message.event_id,
            room_id=message.room_id,
            sender=message.sender,
            sender_name=message.sender_name,
            body=body,
            timestamp_ms=message.timestamp_ms,
            thread_root_id=message.thread_root_id,
        )

    async def _store_message(self, message: IncomingMessage) -> None:
        stored = self._stored(message)
        if stored is not None:
            await self._store.messages.save([stored])

    def _identity(self, room_id: str) -> BotIdentity:
        return BotIdentity(
            user_id=self._gateway.user_id, display_names=self._gateway.bot_names(room_id)
        )

    async def _is_for_bot(self, message: IncomingMessage, room: RoomContext) -> bool:
        identity = self._identity(message.room_id)
        if room.is_direct or self._room_config.get(message.room_id).mode is AnswerMode.ALL:
            return is_addressed_to_bot(
                message, identity, is_direct_room=True, replied_to_sender=None
            )
        mentioned = mentions_bot(message, identity)
        invocation = self._command_in(message, identity)
        if invocation is not None and (
            mentioned or self._is_known_command(message.room_id, invocation.word)
        ):
            return True  # unknown `!words` without a mention may belong to another bot
        if mentioned:
            return is_addressed_to_bot(
                message, identity, is_direct_room=False, replied_to_sender=None
            )
        if message.reply_to_event_id is None:
            return False
        replied_sender = await self._replied_sender(message)
        return is_addressed_to_bot(
            message, identity, is_direct_room=False, replied_to_sender=replied_sender
        )

    async def _replied_sender(self, message: IncomingMessage) -> str | None:
        assert message.reply_to_event_id is not None
        stored = await self._store.messages.get(message.reply_to_event_id)
        if stored is not None:
            return stored.sender if stored.room_id == message.room_id else None
        return await self._gateway.event_sender(message.room_id, message.reply_to_event_id)

    def _question_text(self, message: IncomingMessage, identity: BotIdentity) -> tuple[str, bool]:
        body, _ = strip_reply_fallback(message.body, message.formatted_body)
        question = strip_bot_mention(body, identity).strip()
        return question, question != body.strip()

    def _command_in(self, message: IncomingMessage, identity: BotIdentity) -> Invocation | None:
        if message.kind is not MessageKind.TEXT:
            return None
        question, had_mention = self._question_text(message, identity)
        invocation = parse_invocation(question, self._settings.command_prefixes)
        if invocation is None and had_mention:
            candidate = parse_invocation(
                question, self._settings.command_prefixes, prefix_optional=True
            )
            if candidate is not None and self._registry.lookup(candidate.word) is not None:
                invocation = candidate
        return invocation

    # --- Work -------------------------------------------------------------------------------
    def _schedule(self, message: IncomingMessage, received_at: float | None = None) -> None:
        self._in_flight.add(message.event_id)
        metrics.QUESTIONS.inc()

        async def job() -> None:
            # Every log line of this question (LLM retries included) carries its room and event.
            with structlog.contextvars.bound_contextvars(
                room_id=message.room_id, event_id=message.event_id
            ):
                try:
                    await self._handle(message, received_at)
                finally:
                    self._in_flight.discard(message.event_id)

        self.workers.submit(message.room_id, job)

    async def _handle(self, message: IncomingMessage, received_at: float | None) -> None:
        bound = log.bind(room_id=message.room_id, event_id=message.event_id)
        room = self._gateway.room_context(message.room_id)
        identity = self._identity(message.room_id)
        room_settings = self._room_config.get(message.room_id)
        try:
            invocation = self._command_in(message, identity)
            if invocation is not None:
                await self._registry.dispatch(
                    self._command_context(message, room, invocation.prefix), invocation
                )
                await self._store.triggers.finish(message, "answered", question=False)
                return
            if not self._user_limiter.allow(message.sender):
                await self._refuse_rate_limited(
                    message, "user", message.sender, texts.USER_RATE_LIMITED
                )
                return
            if not self._room_limiter.allow(message.room_id):
                await self._refuse_rate_limited(
                    message, "room", message.room_id, texts.ROOM_RATE_LIMITED
                )
                return
            question, _ = self._question_text(message, identity)
            if not question:
                await self._outbox.reply(
                    message, texts.EMPTY_QUESTION, purpose="empty", notice=True
                )
                await self._store.triggers.finish(message, "answered")
                return
            await self._conversation.answer(message, question, room, room_settings, received_at)
        except asyncio.CancelledError:
            raise  # shutdown: the trigger stays pending and is resumed at next start
        except Exception as error:
            bound.exception("router.handling_failed", error_type=type(error).__name__)
            metrics.ERRORS.labels("internal").inc()
            try:
                await self._outbox.reply(
                    message, texts.COMMAND_FAILED, purpose="internal-error", notice=True
                )
            finally:
                await self._store.triggers.finish(message, "failed")

    async def _refuse_rate_limited(
        self, message: IncomingMessage, scope: str, key: str, notice: str
    ) -> None:
        """One polite notice per minute and per user (or room): a flood gets no flood back."""
        metrics.RATE_LIMITED.labels(scope).inc()
        now = time.monotonic()
        if now - self._rate_notice_at.get((scope, key), -RATE_NOTICE_EVERY) >= RATE_NOTICE_EVERY:
            self._rate_notice_at[(scope, key)] = now
            await self._outbox.reply(message, notice, purpose="ratelimit", notice=True)
        await self._store.triggers.finish(message, "skipped")

    def _is_known_command(self, room_id: str, word: str) -> bool:
        return (
            self._registry.lookup(word) is not None
            or self._room_commands.custom(room_id, normalise(word)) is not None
        )

    async def run_scheduled(self, schedule: Schedule, run_ms: int) -> None:
        """Queue a schedule's command as if its creator had typed it, once (trigger table)."""
        message = IncomingMessage(
            room_id=schedule.room_id,
            event_id=f"$schedule-{schedule.id}-{run_ms}",
            sender=schedule.created_by,
            sender_name=schedule.created_by,
            kind=MessageKind.TEXT,
            body=f"{self._settings.command_prefixes[0]}{schedule.command_line}",
            timestamp_ms=run_ms,
            scheduled=True,
        )
        if await self._store.triggers.claim(message):
            log.info("router.schedule_queued", room_id=schedule.room_id, schedule_id=schedule.id)
            self._schedule(message)

    def _command_context(
        self, message: IncomingMessage, room: RoomContext, prefix: str
    ) -> CommandContext:
        async def power_level_of(user_id: str) -> int:
            return await self._gateway.power_level(message.room_id, user_id)

        return CommandContext(
            message=message,
            room=room,
            room_settings=self._room_config.get(message.room_id),
            settings=self._settings,
            store=self._store,
            llm=self._llm,
            outbox=self._outbox,
            registry=self._registry,
            conversation=self._conversation,
            room_config=self._room_config,
            power_level_of=power_level_of,
            prefix=prefix,
            summarizer=self._summarizer,
            room_commands=self._room_commands,
            scheduler=self.scheduler,
            documents=self.documents,
        )
