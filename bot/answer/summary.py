"""Room summaries: a transcript cut into chunks that fit the model, summarised map-reduce style.

A busy room's history can be far larger than the model's context. The transcript is cut on
message boundaries into chunks sized by real token counts; chunks are summarised concurrently
(bounded, so one summary cannot take every LLM slot from the other rooms' questions), then the
partial summaries are merged — recursively if they themselves do not fit. A history that fits
is summarised with one request and no merge.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, TypeVar

from bot import texts
from bot.answer.citations import number_lines
from bot.answer.llm import ChatMessage, ChatRequest, Completion
from bot.answer.tokens import MESSAGE_OVERHEAD_TOKENS, TokenCounter
from bot.answer.untrusted import ROOM_NAME_MAX_CHARS, fence, one_line
from bot.french import PARIS
from bot.store.database import StoredMessage
from config.settings import Settings

# Never cut the transcript finer than this, even when a huge system prompt eats the budget.
MIN_CHUNK_TOKENS = 256
# Room left in prompts for the "part i of n" header, the partial titles and the data fence.
HEADER_ALLOWANCE_TOKENS = 64

T = TypeVar("T")
# Told after each chunk of a map-reduce summary: (chunks done, chunks in all).
Progress = Callable[[int, int], Awaitable[None]]


class CompletionClient(Protocol):
    """What the summarizer needs from the LLM client (LLMClient, or a fake in unit tests)."""

    async def complete(self, request: ChatRequest) -> Completion: ...


@dataclass(frozen=True)
class SummaryResult:
    text: str
    chunks: int
    calls: int
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class _Part:
    """A piece of the summary covering the messages sent between `start_ms` and `end_ms`."""

    start_ms: int
    end_ms: int
    text: str


@dataclass
class _Tally:
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0


def _local(timestamp_ms: int) -> datetime:
    return datetime.fromtimestamp(timestamp_ms / 1000, PARIS)


def spans_several_days(messages: Sequence[StoredMessage]) -> bool:
    if not messages:
        return False
    return _local(messages[0].timestamp_ms).date() != _local(messages[-1].timestamp_ms).date()


def _stamp(timestamp_ms: int, with_date: bool) -> str:
    """`HH:MM` or `DD/MM HH:MM`, Paris time (an f-string: strftime costs 5 times as much)."""
    moment = _local(timestamp_ms)
    clock = f"{moment.hour:02d}:{moment.minute:02d}"
    return f"{moment.day:02d}/{moment.month:02d} {clock}" if with_date else clock


def transcript_line(
    message: StoredMessage, *, with_date: bool, names: dict[str, str] | None = None
) -> str:
    """`HH:MM Name : text`; continuation lines are indented so they cannot pose as speakers.
    `names`: the speakers' names already made one-line, for a whole transcript."""
    name = names.get(message.sender_name) if names is not None else None
    if name is None:
        name = one_line(message.sender_name)
        if names is not None:
            names[message.sender_name] = name
    body = "\n  ".join(line.rstrip() for line in message.body.strip().splitlines()) or "…"
    return f"{_stamp(message.timestamp_ms, with_date)} {name} : {body}"


def transcript(messages: Sequence[StoredMessage]) -> list[str]:
    """`[n] HH:MM Name : text`, numbered from 1: the model cites these numbers, and message n
    is `messages[n - 1]` (see `bot.answer.citations`)."""
    with_date = spans_several_days(messages)
    names: dict[str, str] = {}  # a room has few speakers: each name is cleaned once
    return number_lines(
        [transcript_line(message, with_date=with_date, names=names) for message in messages]
    )


class Summarizer:
    """Summarises stored room messages with the LLM. Holds no state between summaries."""

    def __init__(
        self,
        llm: CompletionClient,
        tokens: TokenCounter,
        settings: Settings,
        *,
        max_parallel: int | None = None,
    ) -> None:
        self._llm = llm
        self._tokens = tokens
        self._settings = settings
        # Half the LLM client's slots by default: questions in other rooms keep flowing.
        self._max_parallel = max_parallel or max(1, settings.llm_max_concurrency // 2)

    async def summarize(
        self,
        messages: list[StoredMessage],
        *,
        room_name: str,
        language: str,
        instructions: str,
        model: str | None = None,
        temperature: float | None = None,
        progress: Progress | None = None,
    ) -> SummaryResult:
        """Summary of `messages` (oldest first). `instructions` is the room's standing system
        prompt (persona, room rules); the summary task is appended to it. Raises LLMError."""
        if not messages:
            return SummaryResult(text="", chunks=0, calls=0, prompt_tokens=0, completion_tokens=0)
        await self._tokens.warm_up()
        run = _Run(
            llm=self._llm,
            tokens=self._tokens,
            settings=self._settings,
            semaphore=asyncio.Semaphore(self._max_parallel),
            room_name=room_name,
            language=language,
            instructions=instructions.strip(),
            model=model or self._settings.model,
            temperature=self._settings.temperature if temperature is None else temperature,
            progress=progress,
        )
        try:
            text, chunks = await run.summarize(messages)
        finally:
            # Even when it failed: the progress message must exist before it says so.
            await run.reports_landed()
        return SummaryResult(
            text=text,
            chunks=chunks,
            calls=run.tally.calls,
            prompt_tokens=run.tally.prompt_tokens,
            completion_tokens=run.tally.completion_tokens,
        )

    def chunk(
        self, messages: Sequence[StoredMessage], budget: int
    ) -> list[list[tuple[StoredMessage, str]]]:
        """Consecutive messages with their transcript lines, each chunk within `budget` tokens."""
        return _chunk(self._tokens, messages, budget)


def _chunk(
    tokens: TokenCounter, messages: Sequence[StoredMessage], budget: int
) -> list[list[tuple[StoredMessage, str]]]:
    chunks: list[list[tuple[StoredMessage, str]]] = []
    current: list[tuple[StoredMessage, str]] = []
    used = 0
    for message, line in zip(messages, transcript(messages), strict=True):
        cost = tokens.count(line) + 1  # + the newline joining lines
        if cost > budget:
            line = _shorten(tokens, line, budget - 1)
            cost = tokens.count(line) + 1
        if current and used + cost > budget:
            chunks.append(current)
            current, used = [], 0
        current.append((message, line))
        used += cost
    if current:
        chunks.append(current)
    return chunks


def _shorten(tokens: TokenCounter, line: str, budget: int) -> str:
    """One message bigger than a whole chunk (a pasted document): keep its beginning."""
    cost = tokens.count(line)
    while cost > budget and len(line) > 1:
        keep = max(1, int(len(line) * budget / cost * 0.9))
        line = line[:keep]
        cost = tokens.count(line + texts.SUMMARY_TRUNCATED_MARK)
    return line + texts.SUMMARY_TRUNCATED_MARK


def _period(part: _Part, with_date: bool) -> str:
    return f"{_stamp(part.start_ms, with_date)} – {_stamp(part.end_ms, with_date)}"


async def _bounded_gather(items: Sequence[T], work: Callable[[T], Awaitable[str]]) -> list[str]:
    """Run `work` on every item concurrently; on the first failure cancel the rest and raise.

    The tasks start one loop turn apart: a model request leaves in a task that aiohttp
    schedules (Python 3.11), which would otherwise wait behind every other chunk's request
    being built (~6 ms each in the SDK): the first chunk went out 50 ms late."""
    tasks: list[asyncio.Future[str]] = []
    try:
        for item in items:
            tasks.append(asyncio.ensure_future(work(item)))
            await asyncio.sleep(0)
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


@dataclass
class _Run:
    """One summary: its parameters, its concurrency bound and the tokens it spent."""

    llm: CompletionClient
    tokens: TokenCounter
    settings: Settings
    semaphore: asyncio.Semaphore
    room_name: str
    language: str
    instructions: str
    model: str
    temperature: float
    progress: Progress | None = None
    tally: _Tally = field(default_factory=_Tally)
    _reports: list[asyncio.Task[None]] = field(default_factory=list)

    def _report(self, done: int, total: int) -> None:
        """Tell the progress without waiting for it: its message is a round trip to the
        homeserver, which must not hold back the next model call (the last one preceded the
        merge by that much). Reports start in order; the callee keeps its messages so."""
        if self.progress is not None:
            self._reports.append(asyncio.ensure_future(self.progress(done, total)))

    async def reports_landed(self) -> None:
        await asyncio.gather(*self._reports, return_exceptions=True)

    def _system(self, task: str) -> str:
        room_name = one_line(self.room_name, ROOM_NAME_MAX_CHARS)
        filled = task.format(room_name=room_name, language=self.language)
        return f"{self.instructions}\n\n{filled}" if self.instructions else filled

    def _budget(self, *tasks: str) -> int:
        """Tokens left for the transcript (or partials) once the prompt and answer are paid."""
        fixed = max(self.tokens.count(self._system(task)) for task in tasks)
        fixed += (
            2 * MESSAGE_OVERHEAD_TOKENS + HEADER_ALLOWANCE_TOKENS + self.settings.max_answer_tokens
        )
        return max(MIN_CHUNK_TOKENS, self.settings.context_token_budget - fixed)

    async def _complete(self, task: str, user: str) -> str:
        request = ChatRequest(
            messages=[ChatMessage("system", self._system(task)), ChatMessage("user", user)],
            model=self.model,
            temperature=self.temperature,
            max_tokens=self.settings.max_answer_tokens,
        )
        async with self.semaphore:
            completion = await self.llm.complete(request)
        self.tally.calls += 1
        self.tally.prompt_tokens += completion.prompt_tokens
        self.tally.completion_tokens += completion.completion_tokens
        return completion.text.strip()

    async def summarize(self, messages: list[StoredMessage]) -> tuple[str, int]:
        budget = self._budget(texts.SUMMARY_TASK_SINGLE, texts.SUMMARY_TASK_PART)
        # Counting thousands of lines is CPU work: keep it off the event loop.
        chunks = await asyncio.to_thread(_chunk, self.tokens, messages, budget)
        if len(chunks) == 1:
            lines = "\n".join(line for _, line in chunks[0])
            text = await self._complete(
                texts.SUMMARY_TASK_SINGLE, f"{texts.SUMMARY_TRANSCRIPT_HEADER}\n\n{fence(lines)}"
            )
            return text, 1

        total = len(chunks)
        done = 0
        self._report(0, total)

        async def summarize_chunk(indexed: tuple[int, list[tuple[StoredMessage, str]]]) -> str:
            nonlocal done
            index, chunk = indexed
            header = texts.SUMMARY_PART_HEADER.format(index=index, total=total)
            lines = "\n".join(line for _, line in chunk)
            text = await self._complete(texts.SUMMARY_TASK_PART, f"{header}\n\n{fence(lines)}")
            done += 1
            self._report(done, total)
            return text

        partials = await _bounded_gather(list(enumerate(chunks, start=1)), summarize_chunk)
        parts = [
            _Part(chunk[0][0].timestamp_ms, chunk[-1][0].timestamp_ms, text)
            for chunk, text in zip(chunks, partials, strict=True)
        ]
        return await self._merge(parts, spans_several_days(messages)), total

    def _partials_prompt(self, parts: Sequence[_Part], with_date: bool) -> str:
        sections = [
            f"{texts.SUMMARY_PARTIAL_TITLE.format(index=i, period=_period(part, with_date))}\n{part.text}"
            for i, part in enumerate(parts, start=1)
        ]
        return texts.SUMMARY_PARTIALS_HEADER + "\n\n" + fence("\n\n".join(sections))

    def _groups(self, parts: list[_Part], budget: int, with_date: bool) -> list[list[_Part]]:
        """Consecutive partials that fit one merge request; at least two per group (except a
        lone last one), so every round strictly reduces their number and recursion ends."""
        groups: list[list[_Part]] = []
        current: list[_Part] = []
        used = 0
        for part in parts:
            cost = self.tokens.count(self._partials_prompt([part], with_date)) + 2
            if len(current) >= 2 and used + cost > budget:
                groups.append(current)
                current, used = [], 0
            current.append(part)
            used += cost
        if current:
            groups.append(current)
        return groups

    async def _merge(self, parts: list[_Part], with_date: bool) -> str:
        budget = self._budget(texts.SUMMARY_TASK_MERGE, texts.SUMMARY_TASK_MERGE_PART)
        while True:
            groups = self._groups(parts, budget, with_date)
            if len(groups) == 1:
                return await self._complete(
                    texts.SUMMARY_TASK_MERGE, self._partials_prompt(groups[0], with_date)
                )

            async def merge_group(group: list[_Part]) -> str:
                if len(group) == 1:
                    return group[0].text
                return await self._complete(
                    texts.SUMMARY_TASK_MERGE_PART, self._partials_prompt(group, with_date)
                )

            merged = await _bounded_gather(groups, merge_group)
            parts = [
                _Part(group[0].start_ms, group[-1].end_ms, text)
                for group, text in zip(groups, merged, strict=True)
            ]
