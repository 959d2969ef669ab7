"""The pilot's runtime side: record usage, take reactions and comments, apply daily quotas.

The router and the commands call this with a few lines; it never sees raw Matrix events
(reactions arrive as typed `Reaction`s from the Matrix edge) and never stores a user ID.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

import structlog

from bot import texts
from bot.models import IncomingMessage, Reaction
from bot.pilot import metrics
from bot.pilot.pseudonym import Pseudonymizer, homeserver_of, paris_day, paris_today
from bot.pilot.usage import UsageNote
from bot.store import Store
from bot.store.pilot import (
    AnswerRecord,
    Comment,
    Feedback,
    PilotRepository,
    UsageEvent,
)
from config.settings import Settings

log = structlog.get_logger(__name__)
COMMENT_MAX_CHARS = 2_000
FEW_PEOPLE = 5
"""Any figure about fewer people than this is shown as "< 5" (report and `!stats`)."""
EARLY_REACTIONS_KEPT = 500
"""Reactions to events not (yet) known as answers, kept in memory: a streamed answer is
recorded when its last edit is sent, and a 👍 may come before that."""


@dataclass(frozen=True)
class Acknowledgement:
    """The first 👎 on an answer: reply to `answer`, mentioning `sender`."""

    answer: AnswerRecord
    sender: str


@dataclass(frozen=True)
class QuotaRefusal:
    quota: str  # "questions" or "tokens"
    notice: str | None  # None: already told today, refuse silently


@dataclass(frozen=True)
class RoomFigures:
    days: int
    questions: int
    summaries: int
    commands: int
    people: int
    errors: int
    refusals: int
    median_ms: float | None
    p95_ms: float | None
    positive: int
    reactions: int
    reacting_people: int


class Pilot:
    def __init__(
        self, settings: Settings, store: Store, clock: Callable[[], float] = time.time
    ) -> None:
        self._settings = settings
        self._repo = store.pilot
        self._clock = clock
        secret = settings.pilot_secret
        self._names = Pseudonymizer(secret.get_secret_value()) if secret is not None else None
        self._quota_told: set[tuple[str, str, str]] = set()
        self._early: OrderedDict[str, list[Reaction]] = OrderedDict()
        metrics.QUOTA_TOKEN_BUDGET.set(settings.homeserver_daily_token_budget)

    @property
    def repository(self) -> PilotRepository:
        return self._repo

    @property
    def recording(self) -> bool:
        return self._names is not None

    @property
    def feedback_on(self) -> bool:
        return self._names is not None and self._settings.feedback_enabled

    def _today(self) -> str:
        return paris_today(self._clock()).isoformat()

    # --- Usage ----------------------------------------------------------------------------------
    async def finish(
        self, message: IncomingMessage, note: UsageNote, received_at: float | None
    ) -> list[Acknowledgement]:
        """Record what one trigger produced (and which events are answers). Reactions that came
        before the answer was recorded count now; the 👎 acknowledgements to post are returned."""
        if self._names is None or not note.record:
            return []
        at_ms = int(self._clock() * 1000)
        homeserver = homeserver_of(message.sender)
        duration = (
            int((time.perf_counter() - received_at) * 1000) if received_at is not None else None
        )
        event = UsageEvent(
            at_ms=at_ms,
            day=paris_day(at_ms),
            kind=note.kind,
            outcome=note.outcome,
            homeserver=homeserver,
            user_hash=self._names.user(message.sender),
            room_hash=self._names.room(message.room_id),
            model=note.model,
            prompt_tokens=note.prompt_tokens,
            completion_tokens=note.completion_tokens,
            duration_ms=duration,
        )
        answers = (
            [
                AnswerRecord(
                    event_id=event_id,
                    room_id=note.answer_room_id or message.room_id,
                    thread_root_id=None if note.answer_room_id else message.thread_root_id,
                    kind=note.answer_kind,
                    model=note.model or self._settings.model,
                    created_at_ms=at_ms,
                )
                for event_id in note.answer_event_ids
            ]
            if note.answer_kind is not None
            else []
        )
        await self._repo.record(event, answers)
        if self._settings.homeserver_daily_token_budget and (
            note.prompt_tokens or note.completion_tokens
        ):
            used = await self._repo.tokens_on(homeserver, event.day)
            metrics.QUOTA_TOKENS_TODAY.labels(metrics.homeserver_label(homeserver)).set(used)
        acknowledgements = []
        for answer in answers:
            for reaction in self._early.pop(answer.event_id, []):
                acknowledgement = await self._record_feedback(reaction, answer)
                if acknowledgement is not None:
                    acknowledgements.append(acknowledgement)
        return acknowledgements

    # --- Quotas ---------------------------------------------------------------------------------
    async def quota_refusal(self, message: IncomingMessage) -> QuotaRefusal | None:
        """None if the sender may use the model now; else which quota, and the notice to send
        (only the first refusal of the day per person and quota gets one)."""
        if self._names is None:
            return None
        day = self._today()
        homeserver = homeserver_of(message.sender)
        user_hash = self._names.user(message.sender)
        cap = self._settings.user_daily_question_cap
        budget = self._settings.homeserver_daily_token_budget
        refusal: tuple[str, str] | None = None
        if cap and await self._repo.questions_on(user_hash, day) >= cap:
            refusal = ("questions", texts.QUOTA_USER_REACHED.format(limit=cap, reset=_reset()))
        elif budget and await self._repo.tokens_on(homeserver, day) >= budget:
            refusal = (
                "tokens",
                texts.QUOTA_HOMESERVER_REACHED.format(homeserver=homeserver, reset=_reset()),
            )
        if refusal is None:
            return None
        quota, notice = refusal
        metrics.QUOTA_REFUSALS.labels(metrics.homeserver_label(homeserver), quota).inc()
        key = (quota, user_hash, day)
        if key in self._quota_told:
            return QuotaRefusal(quota, None)
        self._quota_told = {told for told in self._quota_told if told[2] == day}
        self._quota_told.add(key)
        log.info("pilot.quota_reached", quota=quota, homeserver=homeserver)
        return QuotaRefusal(quota, notice)

    # --- Feedback -------------------------------------------------------------------------------
    async def on_reaction(self, reaction: Reaction) -> Acknowledgement | None:
        """Record a 👍/👎 on one of the bot's answers. Returns what to acknowledge when this 👎
        is the first on its answer (the caller posts the one notice); None otherwise."""
        if not self.feedback_on or reaction.rating not in (1, -1):
            return None
        answer = await self._repo.answer(reaction.reacts_to)
        if answer is None:
            self._early.setdefault(reaction.reacts_to, []).append(reaction)
            self._early.move_to_end(reaction.reacts_to)
            while len(self._early) > EARLY_REACTIONS_KEPT:
                self._early.popitem(last=False)
            return None
        return await self._record_feedback(reaction, answer)

    async def _record_feedback(
        self, reaction: Reaction, answer: AnswerRecord
    ) -> Acknowledgement | None:
        assert self._names is not None
        bound = log.bind(room_id=reaction.room_id, event_id=reaction.event_id)
        if answer.room_id != reaction.room_id:
            bound.debug("pilot.reaction_from_another_room")
            return None
        at_ms = int(self._clock() * 1000)
        homeserver = homeserver_of(reaction.sender)
        inserted = await self._repo.add_feedback(
            Feedback(
                reaction_event_id=reaction.event_id,
                answer_event_id=answer.event_id,
                room_hash=self._names.room(reaction.room_id),
                user_hash=self._names.user(reaction.sender),
                homeserver=homeserver,
                rating=1 if reaction.rating == 1 else -1,
                kind=answer.kind,
                model=answer.model,
                day=paris_day(at_ms),
                at_ms=at_ms,
            )
        )
        if not inserted:
            return None
        rating = "positive" if reaction.rating == 1 else "negative"
        metrics.FEEDBACK.labels(metrics.homeserver_label(homeserver), rating, answer.kind).inc()
        bound.info("pilot.feedback_recorded", rating=rating, kind=answer.kind)
        if reaction.rating == -1 and await self._repo.acknowledge_dislike(answer.event_id):
            return Acknowledgement(answer, reaction.sender)
        return None

    async def on_redaction(self, room_id: str, redacted_event_id: str) -> None:
        if self._names is None:
            return
        for reactions in self._early.values():
            reactions[:] = [r for r in reactions if r.event_id != redacted_event_id]
        homeserver = await self._repo.remove_feedback(self._names.room(room_id), redacted_event_id)
        if homeserver is not None:
            metrics.FEEDBACK_REMOVED.labels(metrics.homeserver_label(homeserver)).inc()
            log.info("pilot.feedback_removed", room_id=room_id, event_id=redacted_event_id)

    async def comment(self, message: IncomingMessage, text: str) -> None:
        assert self._names is not None, "callers check feedback_on"
        at_ms = int(self._clock() * 1000)
        homeserver = homeserver_of(message.sender)
        await self._repo.add_comment(
            Comment(
                at_ms=at_ms,
                day=paris_day(at_ms),
                room_hash=self._names.room(message.room_id),
                user_hash=self._names.user(message.sender),
                homeserver=homeserver,
                text=text,
            )
        )
        metrics.COMMENTS.labels(metrics.homeserver_label(homeserver)).inc()
        log.info("pilot.comment_recorded", room_id=message.room_id, chars=len(text))

    # --- Rooms and people -----------------------------------------------------------------------
    async def room_figures(self, room_id: str, days: int) -> RoomFigures | None:
        """One room's figures over the last `days` days (`!stats`); None when not recording."""
        if self._names is None:
            return None
        room_hash = self._names.room(room_id)
        since_day = date.fromordinal(paris_today(self._clock()).toordinal() - days + 1).isoformat()
        daily = await self._repo.daily(since_day, room_hash)
        times = (await self._repo.answer_times(since_day, room_hash, per_day=False)).get("")
        feedback = await self._repo.satisfaction(since_day, room_hash)
        return RoomFigures(
            days=days,
            questions=sum(int(d["questions"]) for d in daily),
            summaries=sum(int(d["summaries"]) for d in daily),
            commands=sum(int(d["commands"]) for d in daily),
            people=await self._repo.people(since_day, room_hash),
            errors=sum(int(d["errors"]) for d in daily),
            refusals=sum(int(d["refusals"]) for d in daily),
            median_ms=times.median_ms if times else None,
            p95_ms=times.p95_ms if times else None,
            positive=sum(int(f["positive"]) for f in feedback),
            reactions=sum(int(f["reactions"]) for f in feedback),
            reacting_people=await self._repo.reacting_people(since_day, room_hash),
        )

    async def forget_room(self, room_id: str) -> None:
        await self._repo.forget_room(room_id)

    async def forget_person(self, user_id: str) -> int:
        if self._names is None:
            return 0
        return await self._repo.forget_person(self._names.user(user_id))


def _reset() -> str:
    return texts.QUOTA_RESET_TOMORROW
