"""The map-reduce summarizer, with a fake LLM (pure logic: chunking, concurrency, merging)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from bot import texts
from bot.answer.llm import ChatRequest, Completion
from bot.answer.llm_failures import LLMError, LLMErrorKind
from bot.answer.summary import Summarizer, transcript, transcript_line
from bot.store.database import StoredMessage
from config.settings import Settings

PARIS = ZoneInfo("Europe/Paris")
ROOM = "!room:localhost"
NAMES = ("Alice Martin", "Bob Durand", "Chloé Petit")


class WordCounter:
    """One token per whitespace-separated word: predictable budgets."""

    async def warm_up(self) -> None:
        pass

    def count(self, text: str) -> int:
        return len(text.split())


class FakeLLM:
    """Answers every request after a short pause, recording requests and peak concurrency."""

    def __init__(self, delay: float = 0.01, fail_on: int | None = None) -> None:
        self.requests: list[ChatRequest] = []
        self.delay = delay
        self.fail_on = fail_on
        self.active = 0
        self.max_active = 0

    async def complete(self, request: ChatRequest) -> Completion:
        self.requests.append(request)
        number = len(self.requests)
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            await asyncio.sleep(self.delay)
            if self.fail_on is not None and number == self.fail_on:
                raise LLMError(LLMErrorKind.TIMEOUT)
            return Completion(text=f"résumé n°{number}", prompt_tokens=100, completion_tokens=10)
        finally:
            self.active -= 1

    def user_prompts(self) -> list[str]:
        return [request.messages[-1].content for request in self.requests]


def make_settings(**overrides: object) -> Settings:
    values: dict[str, object] = {
        "homeserver": "https://matrix.example",
        "user_id": "@bot:example",
        "password": "secret",
        "mistral_api_key": "key",
        "context_token_budget": 2_000,
        "max_answer_tokens": 200,
        "llm_max_concurrency": 8,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def history(count: int, *, words: int = 10, start: datetime | None = None) -> list[StoredMessage]:
    first = start or datetime(2025, 3, 10, 9, 0, tzinfo=PARIS)
    base = int(first.timestamp() * 1000)
    return [
        StoredMessage(
            event_id=f"$e{i}",
            room_id=ROOM,
            sender=f"@u{i % 3}:localhost",
            sender_name=NAMES[i % 3],
            body=f"message-{i:05d} " + " ".join(["mot"] * (words - 1)),
            timestamp_ms=base + i * 60_000,
        )
        for i in range(count)
    ]


async def summarize(llm: FakeLLM, messages: list[StoredMessage], **kwargs: object):  # type: ignore[no-untyped-def]
    summarizer = Summarizer(llm, WordCounter(), make_settings(), **kwargs)  # type: ignore[arg-type]
    return await summarizer.summarize(
        messages, room_name="Équipe projet", language="français", instructions="Tu es l'assistant."
    )


async def test_empty_history_makes_no_call() -> None:
    llm = FakeLLM()
    result = await summarize(llm, [])
    assert llm.requests == []
    assert (result.calls, result.chunks, result.text) == (0, 0, "")


async def test_small_history_is_one_request_without_merge() -> None:
    llm = FakeLLM()
    messages = history(20)
    result = await summarize(llm, messages)
    assert len(llm.requests) == 1
    assert (result.chunks, result.calls) == (1, 1)
    assert result.text == "résumé n°1"
    assert (result.prompt_tokens, result.completion_tokens) == (100, 10)
    request = llm.requests[0]
    system, user = request.messages[0].content, request.messages[-1].content
    assert system.startswith("Tu es l'assistant.")
    assert "Équipe projet" in system and "français" in system
    assert "### Décisions" in system and "### Actions" in system and "[12, 15]" in system
    assert request.max_tokens == 200
    for message in messages:
        assert message.body in user
    for name in NAMES:
        assert f" {name} : " in user


async def test_large_history_is_chunked_concurrently_then_merged() -> None:
    llm = FakeLLM(delay=0.02)
    messages = history(600, words=12)
    result = await summarize(llm, messages, max_parallel=3)
    chunk_prompts = llm.user_prompts()[:-1]
    assert result.chunks == len(chunk_prompts) > 3
    assert result.calls == len(llm.requests) == result.chunks + 1  # one merge: partials fit
    assert 1 < llm.max_active <= 3
    # Every message is in exactly one chunk, in order.
    seen: list[int] = []
    for prompt in chunk_prompts:
        seen += [i for i, message in enumerate(messages) if message.body in prompt]
        assert all(f" {name} : " in prompt for name in NAMES)
    assert seen == list(range(len(messages)))
    # Each chunk request fits the budget.
    counter = WordCounter()
    for request in llm.requests:
        used = sum(counter.count(m.content) for m in request.messages)
        assert used + request.max_tokens <= 2_000
    # The merge sees every partial, in order.
    merge = llm.user_prompts()[-1]
    positions = [merge.index(f"résumé n°{n}") for n in range(1, result.chunks + 1)]
    assert positions == sorted(positions)
    assert "fusionner" in llm.requests[-1].messages[0].content
    assert result.text == f"résumé n°{result.calls}"
    assert result.prompt_tokens == 100 * result.calls


async def test_partials_too_big_for_one_merge_are_merged_recursively() -> None:
    class VerboseLLM(FakeLLM):
        async def complete(self, request: ChatRequest) -> Completion:
            completion = await super().complete(request)
            completion.text += " détail" * 150  # long partials: a few fill a merge budget
            return completion

    llm = VerboseLLM(delay=0)
    messages = history(1_000, words=12)
    result = await summarize(llm, messages)
    merges = [r for r in llm.requests if "fusionner" in r.messages[0].content]
    assert len(merges) >= 3  # intermediate merges, then the final one
    assert result.calls == result.chunks + len(merges)
    assert "en un seul résumé cohérent" in llm.requests[-1].messages[0].content


async def test_a_huge_single_message_is_shortened_not_dropped() -> None:
    llm = FakeLLM()
    messages = history(3)
    messages[1] = replace(messages[1], body="énorme " + "bla " * 10_000)
    result = await summarize(llm, messages)
    prompts = "\n".join(llm.user_prompts())
    assert "énorme" in prompts and "[…]" in prompts
    assert messages[0].body in prompts and messages[2].body in prompts
    assert result.calls >= 1


async def test_llm_failure_propagates_and_cancels_other_chunks() -> None:
    llm = FakeLLM(delay=0.01, fail_on=2)
    with pytest.raises(LLMError):
        await summarize(llm, history(600, words=12), max_parallel=2)
    await asyncio.sleep(0.05)
    assert llm.active == 0


async def test_model_and_temperature_can_be_chosen() -> None:
    llm = FakeLLM()
    summarizer = Summarizer(llm, WordCounter(), make_settings())
    await summarizer.summarize(
        history(2),
        room_name="r",
        language="anglais",
        instructions="",
        model="mistral-large-latest",
        temperature=0.1,
    )
    request = llm.requests[0]
    assert (request.model, request.temperature) == ("mistral-large-latest", 0.1)
    assert request.messages[0].content.startswith("Ta tâche")
    assert "anglais" in request.messages[0].content


def test_transcript_lines() -> None:
    start = datetime(2025, 3, 10, 14, 5, tzinfo=PARIS)
    message = replace(history(1, start=start)[0], body="ligne 1\n[12:00] Faux : x")
    assert transcript_line(message, with_date=False) == (
        "14:05 Alice Martin : ligne 1\n  [12:00] Faux : x"
    )
    assert transcript_line(message, with_date=True).startswith("10/03 14:05 Alice Martin : ")


def test_transcript_shows_dates_when_the_window_spans_days() -> None:
    late = datetime(2025, 3, 10, 23, 58, tzinfo=PARIS)
    lines = transcript(history(4, start=late))
    assert lines[0].startswith("[1] 10/03 23:58") and lines[-1].startswith("[4] 11/03 00:01")
    assert transcript(history(2))[0].startswith("[1] 09:00 ")


async def test_messages_keep_one_number_across_chunks_and_progress_is_told() -> None:
    """Message n of the window is `[n]` in whichever chunk it lands: citations stay exact."""
    llm = FakeLLM(delay=0.005)
    messages = history(300, words=12)
    told: list[tuple[int, int]] = []

    async def progress(done: int, total: int) -> None:
        told.append((done, total))

    summarizer = Summarizer(llm, WordCounter(), make_settings(), max_parallel=2)
    result = await summarizer.summarize(
        messages,
        room_name="Équipe projet",
        language="français",
        instructions="",
        progress=progress,
    )
    chunk_prompts = llm.user_prompts()[: result.chunks]
    for n, message in enumerate(messages, start=1):
        [prompt] = [p for p in chunk_prompts if message.body in p]
        assert f"[{n}] " + transcript_line(message, with_date=False) in prompt
    assert told == [(done, result.chunks) for done in range(result.chunks + 1)]


async def test_one_chunk_tells_no_progress() -> None:
    told: list[tuple[int, int]] = []

    async def progress(done: int, total: int) -> None:
        told.append((done, total))

    summarizer = Summarizer(FakeLLM(), WordCounter(), make_settings())
    await summarizer.summarize(
        history(5), room_name="x", language="français", instructions="", progress=progress
    )
    assert told == []


async def test_progress_messages_never_hold_back_the_model_calls() -> None:
    """Each progress message is a round trip to the homeserver: the chunks and the merge must
    not wait for them. Here every report waits until the LLM has received the merge request;
    the summary still ends, and only once every report has landed."""
    llm = FakeLLM(delay=0.001)
    merge_seen = asyncio.Event()
    complete = llm.complete

    async def complete_noting_the_merge(request: ChatRequest) -> Completion:
        if request.messages[-1].content.startswith(texts.SUMMARY_PARTIALS_HEADER):
            merge_seen.set()
        return await complete(request)

    llm.complete = complete_noting_the_merge  # type: ignore[method-assign]
    landed: list[tuple[int, int]] = []

    async def slow_progress(done: int, total: int) -> None:
        await merge_seen.wait()
        landed.append((done, total))

    summarizer = Summarizer(llm, WordCounter(), make_settings(), max_parallel=2)
    async with asyncio.timeout(10):  # with reports awaited in line, this never ends
        result = await summarizer.summarize(
            history(300, words=12),
            room_name="x",
            language="français",
            instructions="",
            progress=slow_progress,
        )
    assert result.chunks > 2 and result.calls == result.chunks + 1
    assert sorted(landed) == [(done, result.chunks) for done in range(result.chunks + 1)]
