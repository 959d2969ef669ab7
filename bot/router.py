"""The message router: decides what each event means and who handles it.

For every message: store it (for summaries), apply edits, then decide — command, question, or
nothing. Questions and commands are recorded as triggers in SQLite before anything else happens
(exactly once across crashes) and run one at a time per room, in arrival order; rooms run
concurrently. Beside it: `router_ports` (what it needs from outside), `router_limits`,
`router_withdrawals` and `media_routing`.
"""

from __future__ import annotations

import asyncio
import time

import structlog

from bot import texts
from bot.answer.conversation import ConversationHandler
from bot.answer.media import MediaService
from bot.answer.replies import Outbox
from bot.answer.untrusted import one_line
from bot.classify import RoomFacts, classify, parse_invocation
from bot.documents.service import DocumentService
from bot.media_routing import MediaRouting, is_media
from bot.models import (
    Action,
    Decision,
    IncomingMessage,
    MessageKind,
    Reaction,
    ReadReceipt,
    RoomContext,
    RoomInvite,
    UndecryptableMessage,
)
from bot.ops import metrics
from bot.ops.ratelimit import RecentKeys
from bot.pilot import usage
from bot.pilot.service import Acknowledgement, Pilot
from bot.room_commands import RoomCommandsRepository
from bot.room_config import RoomConfigRepository
from bot.router_limits import ModelLimits
from bot.router_ports import CommandPort, RoomDirectory
from bot.router_withdrawals import Withdrawals
from bot.store import Store
from bot.store.database import Schedule, StoredMessage
from bot.triggers import BotIdentity
from bot.workers import RoomWorkers
from config.room_settings import AnswerMode
from config.settings import Settings

log = structlog.get_logger(__name__)

# A read receipt this long after the previous one starts a new reading session (see
# ReadReceiptsRepository.save): the previous session's last receipt is kept for `!resume`.
READ_SESSION_GAP_MS = 15 * 60_000


class Router:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        gateway: RoomDirectory,
        conversation: ConversationHandler,
        commands: CommandPort,
        room_config: RoomConfigRepository,
        outbox: Outbox,
        room_commands: RoomCommandsRepository,
        media: MediaService | None = None,
        pilot: Pilot | None = None,
    ) -> None:
        self._settings = settings
        self._store = store
        self._gateway = gateway
        self._conversation = conversation
        self._commands = commands
        self._room_config = room_config
        self._outbox = outbox
        self._room_commands = room_commands
        self.documents: DocumentService | None = None
        self._pilot = pilot if pilot is not None else Pilot(settings, store)
        self.workers = RoomWorkers(gateway.ready)
        self._in_flight: dict[str, IncomingMessage] = {}  # claimed, not finished, by event ID
        self._withdrawals = Withdrawals(store, self.workers, self._in_flight)
        self._limits = ModelLimits(settings, store, outbox, self._pilot)
        self._undecryptable_notified = RecentKeys()
        self._media = (
            None
            if media is None
            else MediaRouting(
                settings,
                store,
                room_config,
                outbox,
                media,
                in_flight=self._in_flight,
                schedule=self._schedule,
                identity=self._identity,
                replied_sender=self._replied_sender,
            )
        )

    # --- Start-up ---------------------------------------------------------------------------
    async def resume_pending(self) -> int:
        """Re-queue questions recorded but not answered before a crash, if still fresh."""
        cutoff = int(time.time() * 1000 - self._settings.catch_up_window_minutes * 60_000)
        resumed = 0
        for job in await self._store.triggers.pending():
            if job.message.timestamp_ms < cutoff:
                await self._store.triggers.finish(job.message, "skipped")
                continue
            decision = job.decision or classify(job.message, self._facts(job.message, None))
            if decision.action not in (Action.QUESTION, Action.COMMAND):
                await self._store.triggers.finish(job.message, "skipped")
                continue
            resumed += 1
            self._schedule(job.message, decision)
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
        withdrawn = self._withdrawals.withdraw(
            lambda m: m.event_id == redacts and m.room_id == room_id, redact=True
        )
        await self._store.messages.delete_event(room_id, redacts)
        await self._pilot.on_redaction(room_id, redacts)
        log.info(
            "router.redaction_applied", room_id=room_id, event_id=redacts, withdrawn=bool(withdrawn)
        )

    async def on_left(self, room_id: str) -> None:
        # Nothing can be redacted in a room the bot is no longer in: just stop.
        self._withdrawals.withdraw(lambda m: m.room_id == room_id, redact=False)
        await self._store.rooms.forget(room_id)
        await self._pilot.forget_room(room_id)
        self._room_config.forget(room_id)
        self._room_commands.forget(room_id)
        log.info("router.room_forgotten", room_id=room_id)

    async def on_receipt(self, receipt: ReadReceipt) -> None:
        await self._store.receipts.save(receipt, READ_SESSION_GAP_MS)

    async def on_reaction(self, reaction: Reaction) -> None:
        """👍/👎 on one of the bot's answers is feedback; anything else is ignored. The first 👎
        on an answer gets one short notice offering `!avis`."""
        if reaction.sender == self._gateway.user_id or not self._settings.is_allowed_user(
            reaction.sender
        ):
            return
        acknowledgement = await self._pilot.on_reaction(reaction)
        if acknowledgement is not None:
            self._acknowledge(acknowledgement)

    def _acknowledge(self, acknowledgement: Acknowledgement) -> None:
        answer = acknowledgement.answer
        trigger = IncomingMessage(
            room_id=answer.room_id,
            event_id=answer.event_id,
            sender=acknowledgement.sender,
            sender_name=acknowledgement.sender,
            kind=MessageKind.TEXT,
            body="",
            timestamp_ms=0,
            thread_root_id=answer.thread_root_id,
        )
        notice = texts.FEEDBACK_DISLIKE_ACK.format(prefix=self._settings.command_prefixes[0])

        async def job() -> None:
            await self._outbox.reply(trigger, notice, purpose="dislike-ack", notice=True)

        self.workers.submit(answer.room_id, job)

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
        if any(key in self._undecryptable_notified for key in keys):
            bound.info("router.undecryptable_already_notified", reason=event.reason)
            return
        for key in keys:
            self._undecryptable_notified.add(key)
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
        if self._media is not None and is_media(message):
            await self._media.on_media(message, room, answerable, received_at)
            return
        if (
            message.kind is MessageKind.ATTACHMENT
            and self.documents is not None
            and self._settings.is_allowed_user(message.sender)
        ):
            # Files are read in the background (documents); the file's name is then stored
            # like any message (summaries), never answered as text.
            await self.documents.on_attachment(message)
        replied_to = None
        if message.reply_to_event_id is not None and answerable and not room.is_direct:
            replied_to = await self._replied_sender(message)
        facts = self._facts(message, room, answerable=answerable, replied_to=replied_to)
        decision = classify(message, facts)
        if decision.action is Action.IGNORE:
            return
        stored = self._stored(message, decision)
        if decision.action is Action.STORE:
            if stored is not None:
                await self._store.messages.save([stored])
            return
        if message.event_id in self._in_flight:
            return
        starts_now = decision.action is Action.QUESTION and self.workers.idle(message.room_id)
        claim = await self._store.triggers.claim_reading(
            message,
            stored,
            decision,
            self._conversation.context_query(message) if starts_now else None,
        )
        if not claim.claimed:
            return  # already answered (a replayed sync)
        if claim.turns is not None:
            self._conversation.keep_context(message.event_id, claim.turns)
        if decision.invocation is not None:
            scope = self._commands.withdraws(message.room_id, decision.invocation)
            if scope is not None:
                await self._withdrawals.withdraw_questions_of(message, scope)
        if decision.action is Action.QUESTION and self._media is not None:
            self._media.take_waiting_image(message)
        self._schedule(message, decision, received_at, just_claimed=True)

    def _facts(
        self,
        message: IncomingMessage,
        room: RoomContext | None,
        *,
        answerable: bool = True,
        replied_to: str | None = None,
    ) -> RoomFacts:
        room = room or self._gateway.room_context(message.room_id)
        return RoomFacts(
            bot=self._identity(message.room_id),
            is_direct=room.is_direct,
            answers_all=self._room_config.get(message.room_id).mode is AnswerMode.ALL,
            answerable=answerable,
            sender_allowed=self._settings.is_allowed_user(message.sender),
            replied_to_sender=replied_to,
            command_prefixes=tuple(self._settings.command_prefixes),
            builtin_commands=self._commands.builtin_words,
            room_commands=self._commands.room_words(message.room_id),
        )

    @staticmethod
    def _stored(message: IncomingMessage, decision: Decision) -> StoredMessage | None:
        """The message as summaries read it (reply fallback removed); None when it has no text."""
        if not message.body:
            return None
        body = decision.text
        if message.kind is MessageKind.ATTACHMENT and message.attachment is not None:
            # Summaries name the files shared in their window, and link to them.
            body = texts.FILE_PLACEHOLDER.format(name=one_line(message.attachment.name))
        return StoredMessage(
            event_id=message.event_id,
            room_id=message.room_id,
            sender=message.sender,
            sender_name=message.sender_name,
            body=body,
            timestamp_ms=message.timestamp_ms,
            thread_root_id=message.thread_root_id,
        )

    def _identity(self, room_id: str) -> BotIdentity:
        return BotIdentity(
            user_id=self._gateway.user_id, display_names=self._gateway.bot_names(room_id)
        )

    async def _replied_sender(self, message: IncomingMessage) -> str | None:
        assert message.reply_to_event_id is not None
        stored = await self._store.messages.get(message.reply_to_event_id)
        if stored is not None:
            return stored.sender if stored.room_id == message.room_id else None
        return await self._gateway.event_sender(message.room_id, message.reply_to_event_id)

    # --- Work -------------------------------------------------------------------------------
    def _schedule(
        self,
        message: IncomingMessage,
        decision: Decision,
        received_at: float | None = None,
        *,
        just_claimed: bool = False,
    ) -> None:
        """`just_claimed`: the claim statement has just returned the trigger's status (pending);
        if the room is idle the job starts now, and re-reading that status would only cost a
        store round trip on the question's path (a withdrawal can land after any check)."""
        self._in_flight[message.event_id] = message
        reread = not (just_claimed and self.workers.idle(message.room_id))

        async def job() -> None:
            started_at = time.perf_counter()  # a question's `queued` stage ends here
            # Every log line of this question (LLM retries included) carries its room and event.
            with structlog.contextvars.bound_contextvars(
                room_id=message.room_id, event_id=message.event_id
            ):
                command = decision.invocation is not None
                self._outbox.track(message.event_id, measure_from=received_at if command else None)
                # A question's wait behind the room's previous jobs, part of its `before_llm`
                # and measured apart (bench figure 1); none for commands, resumed or scheduled.
                queued = None if command or received_at is None else started_at - received_at
                note = usage.UsageNote()
                try:
                    if await self._withdrawals.still_wanted(message, reread=reread):
                        with usage.tracking(note), metrics.question_queued(queued):
                            await self._handle(message, decision, received_at)
                        for acknowledgement in await self._pilot.finish(message, note, received_at):
                            self._acknowledge(acknowledgement)
                finally:
                    self._conversation.drop_context(message.event_id)
                    self._in_flight.pop(message.event_id, None)
                    if self._withdrawals.finished(message.event_id):
                        redacted = await self._outbox.retract(message)
                        log.info("router.answer_retracted", redacted=redacted)
                    else:
                        self._outbox.untrack(message.event_id)

        self.workers.submit(message.room_id, job, key=message.event_id)

    async def _handle(
        self, message: IncomingMessage, decision: Decision, received_at: float | None
    ) -> None:
        bound = log.bind(room_id=message.room_id, event_id=message.event_id)
        room = self._gateway.room_context(message.room_id)
        room_settings = self._room_config.get(message.room_id)
        try:
            if message.scheduled and not await self._author_may_run(message):
                bound.info("router.schedule_author_gone")
                await self._store.triggers.finish(message, "skipped", question=False)
                return
            invocation = decision.invocation
            if invocation is not None:
                usage.current().kind = "command"
            uses_model = invocation is None or self._commands.uses_model(
                message.room_id, invocation.word
            )
            if uses_model and not message.scheduled and not await self._limits.admit(message):
                return
            if invocation is not None:
                await self._commands.run(message, room, invocation)
                await self._store.triggers.finish(message, "answered", question=False)
                return
            metrics.QUESTIONS.inc()
            if self._media is not None and is_media(message):
                await self._media.answer(
                    message, room, room_settings, received_at, message, decision.question
                )
                return
            if self._media is not None and decision.question:
                image = await self._media.image_for(message)
                if image is not None:
                    await self._media.answer(
                        message, room, room_settings, received_at, image, decision.question
                    )
                    return
            if not decision.question:
                await self._outbox.reply(
                    message, texts.EMPTY_QUESTION, purpose="empty", notice=True
                )
                await self._store.triggers.finish(message, "answered")
                return
            await self._conversation.answer(
                message, decision.question, room, room_settings, received_at
            )
        except asyncio.CancelledError:
            raise  # shutdown: the trigger stays pending and is resumed at next start
        except Exception as error:
            bound.exception("router.handling_failed", error_type=type(error).__name__)
            metrics.ERRORS.labels("internal").inc()
            usage.current().failed()
            try:
                await self._outbox.reply(
                    message, texts.COMMAND_FAILED, purpose="internal-error", notice=True
                )
            finally:
                await self._store.triggers.finish(message, "failed")

    async def run_scheduled(self, schedule: Schedule, following_ms: int) -> bool:
        """Advance a due schedule and claim its run in one transaction, then queue the command
        as if its creator had typed it. False when another tick already moved the schedule."""
        run_ms = schedule.next_run_ms
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
        bound = log.bind(room_id=schedule.room_id, schedule_id=schedule.id)
        invocation = parse_invocation(message.body, self._settings.command_prefixes)
        if invocation is None:
            bound.warning("router.schedule_unusable")
            await self._store.schedules.advance(schedule.id, run_ms, None, following_ms)
            return False
        decision = Decision(action=Action.COMMAND, text=message.body, invocation=invocation)
        if not await self._store.schedules.advance(
            schedule.id, run_ms, run_ms, following_ms, claim=(message, decision)
        ):
            return False
        bound.info("router.schedule_queued")
        metrics.SCHEDULED_RUNS.inc()
        self._schedule(message, decision, just_claimed=True)
        return True

    async def _author_may_run(self, message: IncomingMessage) -> bool:
        """A scheduled run speaks for its author: still allowed, and still in the room."""
        if not self._settings.is_allowed_user(message.sender):
            return False
        return await self._gateway.is_member(message.room_id, message.sender)
