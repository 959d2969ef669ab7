"""Conversation handling: from a question to an answer in the room, with the room's memory.

The prompt is the system prompt, then the room's (or thread's) recent exchange trimmed to a
token budget, then the question. Only this room's turns are ever read: the store query is keyed
by room, so one room's content cannot reach another room's prompt.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

import structlog

from bot import texts
from bot.answer.llm import ChatMessage, ChatRequest, Completion, LLMClient
from bot.answer.llm_failures import LLMError, LLMErrorKind
from bot.answer.replies import Outbox
from bot.answer.streaming import StreamingReply, stream_answer
from bot.answer.tokens import TokenCounter, fit_to_budget, fits_by_bytes
from bot.answer.typing_notice import (
    TYPING_DELAY_SECONDS,
    TYPING_DELAY_STREAMED_SECONDS,
    TypingNotice,
)
from bot.answer.untrusted import ROOM_NAME_MAX_CHARS, fence, one_line
from bot.french import PARIS
from bot.models import IncomingMessage, RoomContext
from bot.ops import metrics
from bot.pilot import usage
from bot.store import Store
from bot.store.database import ConversationTurn, StoredMessage, now_ms
from bot.store.messages import TurnsQuery
from config.room_settings import RoomSettings
from config.settings import Settings

if TYPE_CHECKING:
    from bot.documents.context import DocumentContext

log = structlog.get_logger(__name__)
HISTORY_SCAN_LIMIT = 400  # turns read from the store before trimming to the token budget

ERROR_TEXTS = {
    LLMErrorKind.CIRCUIT_OPEN: texts.LLM_CIRCUIT_OPEN,
    LLMErrorKind.RATE_LIMITED: texts.LLM_RATE_LIMITED,
    LLMErrorKind.TIMEOUT: texts.LLM_TIMEOUT,
    LLMErrorKind.EMPTY: texts.LLM_EMPTY_ANSWER,
}


class DocumentSource(Protocol):
    """The room's documents, as questions see them (bot.documents.service.DocumentService)."""

    async def room_may_have_documents(self, room_id: str) -> bool: ...

    async def context_for(
        self,
        message: IncomingMessage,
        question: str,
        budget_tokens: int,
        *,
        is_direct: bool,
        last_exchange_ms: int | None,
    ) -> DocumentContext | None: ...


def french_date(moment: datetime) -> str:
    return (
        f"{texts.WEEKDAYS[moment.weekday()]} {moment.day} "
        f"{texts.MONTHS[moment.month - 1]} {moment.year}"
    )


def error_text(error: LLMError) -> str:
    return ERROR_TEXTS.get(error.kind, texts.LLM_UNAVAILABLE)


class ConversationHandler:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        llm: LLMClient,
        tokens: TokenCounter,
        outbox: Outbox,
        clock: Callable[[], float] = time.time,
        documents: DocumentSource | None = None,
    ) -> None:
        self._settings = settings
        self.documents = documents
        self._store = store
        self._llm = llm
        self._tokens = tokens
        self.tokens = tokens  # shared with commands (document summaries)
        self._outbox = outbox
        self._clock = clock
        self._base_prompt = settings.default_system_prompt()
        self._background: set[asyncio.Future[None]] = set()
        self._context_reads: dict[str, list[ConversationTurn]] = {}

    def context_query(self, message: IncomingMessage) -> TurnsQuery:
        """What `build_request` reads of the conversation, so that the router can have it read
        with the question's claim (one SQLite hop for both) when the job starts at once."""
        return TurnsQuery(message.room_id, message.thread_root_id, HISTORY_SCAN_LIMIT)

    def keep_context(self, event_id: str, turns: list[ConversationTurn]) -> None:
        """The turns read with the claim; `build_request` takes them."""
        self._context_reads[event_id] = turns

    def drop_context(self, event_id: str) -> None:
        """The question's job ended without building a prompt."""
        self._context_reads.pop(event_id, None)

    async def close(self) -> None:
        """Let the last typing notices finish before the Matrix client closes."""
        pending = [task for task in self._background if not task.done()]
        if pending:
            await asyncio.wait(pending, timeout=5)
        self._background.clear()

    def system_prompt(self, room: RoomContext, room_settings: RoomSettings) -> str:
        today = french_date(datetime.fromtimestamp(self._clock(), PARIS))
        name = (
            "conversation privée"
            if room.is_direct
            else one_line(room.name, ROOM_NAME_MAX_CHARS, fallback=room.room_id)
        )
        prompt = self._base_prompt.replace("{date}", today).replace("{room_name}", name)
        if room_settings.langue.lower() not in ("français", "francais", "french"):
            prompt += "\n\n" + texts.ANSWER_LANGUAGE.format(language=room_settings.langue)
        if room_settings.consigne:
            prompt += f"\n\n{texts.ROOM_INSTRUCTIONS_HEADER}\n{room_settings.consigne}"
        return prompt

    def _speaker_line(self, room: RoomContext, name: str, text: str) -> str:
        return text if room.is_direct else f"{one_line(name)} : {text}"

    async def build_request(
        self,
        message: IncomingMessage,
        question: str,
        room: RoomContext,
        room_settings: RoomSettings,
        images: tuple[str, ...] = (),
        documents: DocumentContext | None = None,
    ) -> ChatRequest:
        """`images` (data URLs) go with the question to the vision model."""
        system = self.system_prompt(room, room_settings)
        question_line = self._speaker_line(room, message.sender_name, question)
        if documents is not None and documents.block:
            question_line = f"{documents.block}\n\n{question_line}"
        if message.reply_to_event_id:
            quoted = await self._store.messages.get(message.reply_to_event_id)
            if (
                quoted is not None
                and quoted.room_id == message.room_id
                and quoted.sender != self._settings.user_id
            ):
                excerpt = quoted.body if len(quoted.body) <= 2000 else quoted.body[:2000] + "…"
                question_line = (
                    texts.REPLIED_MESSAGE_CONTEXT.format(sender=one_line(quoted.sender_name))
                    + "\n"
                    + fence(excerpt)
                    + "\n"
                    + question_line
                )
        turns = self._context_reads.pop(message.event_id, None)
        if turns is None:
            turns = await self._store.messages.recent_turns(*self.context_query(message))
        history = [
            ChatMessage(
                role=turn.role,
                content=turn.content
                if turn.role == "assistant"
                else self._speaker_line(room, turn.sender_name, turn.content),
            )
            for turn in turns
            if turn.event_id != message.event_id
        ]
        fixed = [system, question_line]
        newest_first = [item.content for item in reversed(history)]
        budget = self._settings.context_token_budget - self._settings.max_answer_tokens
        if not fits_by_bytes([*fixed, *newest_first], budget):
            await self._tokens.warm_up()  # counting is needed: load the tokenizer off the loop
        kept = fit_to_budget(self._tokens, fixed, newest_first, budget)
        messages = [
            ChatMessage("system", system),
            *history[len(history) - kept :],
            ChatMessage("user", question_line),
        ]
        merged = _merge_consecutive(messages)
        if images:
            last = merged[-1]
            merged[-1] = ChatMessage(last.role, last.content, images=images)
        return ChatRequest(
            messages=merged,
            model=self._settings.vision_model
            if images
            else room_settings.model_or(self._settings.model),
            temperature=room_settings.temperature_or(self._settings.temperature),
            max_tokens=self._settings.max_answer_tokens,
        )

    async def answer(
        self,
        message: IncomingMessage,
        question: str,
        room: RoomContext,
        room_settings: RoomSettings,
        received_at: float | None = None,
        *,
        images: tuple[str, ...] = (),
        reply_prefix: str = "",
        recorded_question: str | None = None,
        failure_text: Callable[[LLMError], str] | None = None,
    ) -> None:
        """Answer one question and record the exchange; failures become a French notice.

        Voice and images: `images` go to the vision model with the question; `reply_prefix`
        (the quoted transcript) starts the reply but is not recorded as the answer;
        `recorded_question` is what the room's memory keeps of the question (a placeholder
        instead of the image); `failure_text` may explain some failures better."""
        bound = log.bind(room_id=message.room_id, event_id=message.event_id)
        documents = (
            None if images else await self._documents_for(message, question, room, room_settings)
        )
        if documents is not None and documents.sources:
            usage.current().kind = "document"  # the pilot's report counts document answers apart
        if documents is not None and documents.notice is not None:
            await self._outbox.reply(message, documents.notice, purpose="document", notice=True)
            await self._store.triggers.finish(message, "answered")
            return
        recorded = question if recorded_question is None else recorded_question
        streaming = (
            room_settings.streaming
            if room_settings.streaming is not None
            else self._settings.streaming
        )
        typing = TypingNotice(
            self._outbox,
            message.room_id,
            TYPING_DELAY_STREAMED_SECONDS if streaming else TYPING_DELAY_SECONDS,
        )
        try:
            request = await self.build_request(
                message, question, room, room_settings, images, documents
            )
            usage.current().model = request.model
            if self._settings.log_message_content:
                bound.debug("conversation.prompt", messages=[m.as_dict() for m in request.messages])
            if received_at is not None:
                metrics.observe_before_llm(received_at)
            footer = documents.footer if documents is not None and documents.sources else None
            if streaming:
                completion = await self._stream(
                    message, recorded, request, reply_prefix, footer, lambda: self._end(typing)
                )
            else:
                completion = await self._llm.complete(request)
                llm_done = time.perf_counter()
                shown = completion.text + (footer(completion.text) if footer else "")
                event_ids = await self._outbox.reply(
                    message, reply_prefix + shown, purpose="answer", measure_from=llm_done
                )
                if not await self.record_answer(
                    message, recorded, completion.text, event_ids, completion
                ):
                    await self._withdrawn_meanwhile(message)
                    return
        except LLMError as error:  # counted by the LLM client (tchapbot_llm_errors_total)
            usage.current().failed()
            await self._send_failure(message, error, failure_text)
            return
        finally:
            self._end(typing)
        bound.info(
            "conversation.answered",
            prompt_tokens=completion.prompt_tokens,
            completion_tokens=completion.completion_tokens,
        )

    def _end(self, typing: TypingNotice) -> None:
        """The notice's end is sent in the background (`close` waits for it)."""
        ending = typing.end()
        if ending is not None:
            self._background.add(ending)
        self._background = {task for task in self._background if not task.done()}

    async def _documents_for(
        self,
        message: IncomingMessage,
        question: str,
        room: RoomContext,
        room_settings: RoomSettings,
    ) -> DocumentContext | None:
        """Passages of the room's documents for this question, within the token budget."""
        if self.documents is None or not await self.documents.room_may_have_documents(
            message.room_id
        ):
            return None
        settings = self._settings
        await self._tokens.warm_up()  # off the event loop, and only for rooms with documents
        available = (
            settings.context_token_budget
            - settings.max_answer_tokens
            - self._tokens.count(self.system_prompt(room, room_settings))
            - self._tokens.count(question)
            - 64
        )
        last = await self._store.messages.recent_turns(message.room_id, message.thread_root_id, 1)
        return await self.documents.context_for(
            message,
            question,
            available,
            is_direct=room.is_direct,
            last_exchange_ms=last[-1].timestamp_ms if last else None,
        )

    async def _stream(
        self,
        message: IncomingMessage,
        question: str,
        request: ChatRequest,
        prefix: str = "",
        footer: Callable[[str], str] | None = None,
        on_shown: Callable[[], None] | None = None,
    ) -> Completion:
        usage = Completion(text="")
        reply = StreamingReply(
            self._outbox,
            message,
            edit_interval=self._settings.stream_edit_interval_seconds,
            footer=footer,
            on_shown=on_shown,
        )
        deltas = self._llm.stream(request, usage, on_finish=reply.model_finished)
        outcome = await stream_answer(_prefixed(deltas, prefix) if prefix else deltas, reply)
        usage.text = outcome.text.removeprefix(prefix)
        usage.finished = outcome.complete
        if not await self.record_answer(message, question, usage.text, outcome.event_ids, usage):
            await self._withdrawn_meanwhile(message)
        return usage

    async def _withdrawn_meanwhile(self, message: IncomingMessage) -> None:
        """The trigger stopped being pending while its answer was written (withdrawn by
        another process, e.g. `tchap-bot purge-user`): what was sent for it is redacted."""
        redacted = await self._outbox.retract(message)
        log.info("conversation.withdrawn_while_answering", redacted=redacted)

    async def record_answer(
        self,
        message: IncomingMessage,
        question: str,
        answer: str,
        event_ids: list[str],
        completion: Completion,
    ) -> bool:
        """Store the exchange; False (nothing stored) if the trigger was withdrawn meanwhile."""
        timestamp = now_ms()
        bot = self._settings.user_id
        recorded = await self._store.triggers.finish(
            message,
            "answered",
            answer_event_id=event_ids[0] if event_ids else None,
            turns=[
                ConversationTurn(
                    role="user",
                    sender=message.sender,
                    sender_name=message.sender_name,
                    content=question,
                    event_id=message.event_id,
                    timestamp_ms=message.timestamp_ms,
                ),
                ConversationTurn(
                    role="assistant",
                    sender=bot,
                    sender_name=bot,
                    content=answer,
                    event_id=event_ids[0] if event_ids else "",
                    timestamp_ms=timestamp,
                ),
            ],
            answer_messages=[
                StoredMessage(
                    event_id=event_id,
                    room_id=message.room_id,
                    sender=bot,
                    sender_name="Assistant",
                    body=answer,
                    timestamp_ms=timestamp,
                    thread_root_id=message.thread_root_id,
                )
                for event_id in event_ids[:1]
            ],
            prompt_tokens=completion.prompt_tokens,
            completion_tokens=completion.completion_tokens,
        )
        if not recorded:
            return False
        metrics.ANSWERS.inc()
        note = usage.current()
        note.answered(
            "document" if note.kind == "document" else "question",
            event_ids,
            note.model or self._settings.model,
            completion.prompt_tokens,
            completion.completion_tokens,
        )
        return True

    async def _send_failure(
        self,
        message: IncomingMessage,
        error: LLMError,
        failure_text: Callable[[LLMError], str] | None = None,
    ) -> None:
        text = failure_text(error) if failure_text is not None else error_text(error)
        await self._outbox.reply(message, text, purpose="error", notice=True)
        if not await self._store.triggers.finish(message, "failed"):
            await self._withdrawn_meanwhile(message)


async def _prefixed(deltas: AsyncIterator[str], prefix: str) -> AsyncIterator[str]:
    """The model's deltas with `prefix` before the first one: nothing shows before the model
    writes, so a failure before its first token is still reported as a failure."""
    first = True
    async for delta in deltas:
        yield prefix + delta if first else delta
        first = False


def _merge_consecutive(messages: list[ChatMessage]) -> list[ChatMessage]:
    """Mistral's API wants user and assistant turns to alternate; merge neighbours of one role."""
    merged: list[ChatMessage] = []
    for item in messages:
        if merged and merged[-1].role == item.role and item.role != "system":
            merged[-1] = ChatMessage(item.role, f"{merged[-1].content}\n\n{item.content}")
        else:
            merged.append(item)
    return merged
