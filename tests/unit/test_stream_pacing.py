"""The paced event stream: same text and events as the server sent, in fewer, larger events."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest

from bot.answer.stream_pacing import (
    PacedEventStream,
    finishing_delta,
    first_words_ready,
    text_delta,
)


def chunk(content: str | None, finish: str | None = None, **extra: Any) -> bytes:
    delta: dict[str, Any] = {} if content is None else {"content": content}
    body = {
        "id": "cmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        **extra,
    }
    return f"data: {json.dumps(body, ensure_ascii=False)}\n\n".encode()


DONE = b"data: [DONE]\n\n"
USAGE = {"usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}}


class Source(httpx2.AsyncByteStream):
    """A socket: parts arrive on the model's schedule (a pause before each), whether read or
    not, and wait in the buffer until read."""

    def __init__(self, parts: list[tuple[float, bytes]], fail: Exception | None = None) -> None:
        self.parts = parts
        self.fail = fail
        self.closed = False

    async def _produce(self, buffer: asyncio.Queue[bytes | Exception | None]) -> None:
        for pause, part in self.parts:
            if pause:
                await asyncio.sleep(pause)
            buffer.put_nowait(part)
        buffer.put_nowait(self.fail)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        buffer: asyncio.Queue[bytes | Exception | None] = asyncio.Queue()
        producer = asyncio.create_task(self._produce(buffer))
        try:
            while (item := await buffer.get()) is not None:
                if isinstance(item, Exception):
                    raise item
                yield item
        finally:
            producer.cancel()

    async def aclose(self) -> None:
        self.closed = True


async def collect(stream: PacedEventStream) -> list[bytes]:
    return [part async for part in stream]


def events(parts: list[bytes]) -> list[bytes]:
    return [block for block in b"".join(parts).split(b"\n\n") if block]


def texts_of(blocks: list[bytes]) -> list[str]:
    """The text each event carries (the finishing event may carry the last of it)."""
    out = []
    for block in blocks:
        parsed = text_delta(block) or finishing_delta(block)
        if parsed is not None and parsed[1]:
            out.append(parsed[1])
    return out


def finish_of(block: bytes) -> tuple[str | None, Any]:
    choice = json.loads(block[5:])
    return choice["choices"][0]["finish_reason"], choice.get("usage")


WORDS = ["Voici ", "les ", "points ", "essentiels ", "à ", "retenir ", "pour ", "vous."]


async def test_an_instant_answer_becomes_one_event_with_its_finish() -> None:
    finish = chunk("", "stop", **USAGE)
    parts = (
        [(0.0, chunk("", None))] + [(0.0, chunk(w)) for w in WORDS] + [(0.0, finish), (0.0, DONE)]
    )
    out = await collect(PacedEventStream(Source(parts), interval=1.0))
    blocks = events(out)
    assert len(blocks) == 2, "the text and the finish in one event, then [DONE]"
    assert texts_of(blocks) == ["".join(WORDS)]
    assert text_delta(blocks[0]) is None
    assert finish_of(blocks[0]) == ("stop", USAGE["usage"])
    assert blocks[1] == DONE.strip()


async def test_the_finish_keeps_its_own_text_after_the_pending_text() -> None:
    parts = [(0.0, chunk("Bonjour ")), (0.0, chunk("à ", "length")), (0.0, DONE)]
    blocks = events(await collect(PacedEventStream(Source(parts), interval=1.0)))
    assert texts_of(blocks) == ["Bonjour à "]
    assert finish_of(blocks[0]) == ("length", None)


async def test_a_finish_with_nothing_pending_and_a_separate_usage_pass_verbatim() -> None:
    usage_alone = b'data: {"id":"x","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}\n\n'
    finish = chunk("", "stop")
    parts = [(0.0, chunk("Bonjour")), (0.1, chunk(" tous")), (0.1, chunk(" !"))]
    parts += [(1.2, finish), (0.0, usage_alone), (0.0, DONE)]
    blocks = events(await collect(PacedEventStream(Source(parts), interval=0.05)))
    assert "".join(texts_of(blocks)) == "Bonjour tous !"
    assert blocks[-3:] == [finish.strip(), usage_alone.strip(), DONE.strip()]


async def test_a_paced_answer_shows_the_first_words_then_one_event_per_interval() -> None:
    parts = [(0.05, chunk(w)) for w in WORDS * 4] + [(0.0, chunk("", "stop", **USAGE)), (0, DONE)]
    stream = PacedEventStream(Source(parts), interval=0.5)
    out = await collect(stream)
    texts = texts_of(events(out))
    assert "".join(texts) == "".join(WORDS * 4), "not a character lost or reordered"
    assert first_words_ready(texts[0]) and texts[0].startswith("Voici les ")
    assert len(texts[0].split()) <= 3, "the first words come at once, not after an interval"
    # 32 tokens over 1.6 s: the first words, then about one event per 0.5 s.
    assert 3 <= len(texts) <= 6, texts
    assert stream.waits <= 2 * len(texts) + 2, "tokens that waited in the socket are read at once"


async def test_other_events_pass_verbatim_and_in_order() -> None:
    tool = chunk(None, None)  # a delta without content (e.g. tool calls): not merged
    odd = b'data: {"object": "chat.completion.chunk", "choices": [], "p": 1}\n\n'
    comment = b": keep-alive\n\n"
    parts = [
        (0.0, chunk("Bonjour ")),
        (0.0, chunk("à ")),
        (0.0, tool),
        (0.0, comment),
        (0.0, chunk("tous")),
        (0.0, odd),
        (0.0, DONE),
    ]
    blocks = events(await collect(PacedEventStream(Source(parts), interval=1.0)))
    assert texts_of(blocks[:1]) == ["Bonjour à "]
    assert blocks[1:] == [
        tool.strip(),
        comment.strip(),
        chunk("tous").strip(),
        odd.strip(),
        DONE.strip(),
    ]


async def test_carriage_returns_switch_to_verbatim() -> None:
    raw = chunk("un ").replace(b"\n\n", b"\r\n\r\n")
    parts = [(0.0, chunk("Bonjour ")), (0.0, raw), (0.0, chunk("deux ")), (0.0, DONE)]
    out = await collect(PacedEventStream(Source(parts), interval=1.0))
    assert b"".join(out) == b"".join(part for _, part in parts)


async def test_a_broken_stream_hands_over_its_text_before_the_error() -> None:
    parts = [(0.0, chunk("Voici ")), (0.0, chunk("le début"))]
    stream = PacedEventStream(Source(parts, fail=httpx2.ReadError("coupé")), interval=1.0)
    got: list[bytes] = []
    with pytest.raises(httpx2.ReadError):
        async for part in stream:
            got.append(part)
    assert texts_of(events(got)) == ["Voici le début"]


async def test_a_partial_last_event_is_passed_on() -> None:
    parts = [(0.0, chunk("Bonjour ")), (0.0, b'data: {"partial')]
    out = await collect(PacedEventStream(Source(parts), interval=1.0))
    assert b"".join(out).endswith(b'data: {"partial')


def test_first_words() -> None:
    assert not first_words_ready("Voici")
    assert not first_words_ready("Voici ")
    assert not first_words_ready("  Voici les")
    assert first_words_ready("Voici les ")
    assert first_words_ready("Oui\nVoici")
    assert not first_words_ready("\n\nOui")


def test_null_extra_keys_still_merge_but_real_ones_do_not() -> None:
    vllm = b'data: {"id":"x","choices":[{"index":0,"delta":{"content":"a","tool_calls":null},"stop_reason":null,"finish_reason":null}],"system_fingerprint":null}'
    tool = (
        b'data: {"id":"x","choices":[{"index":0,"delta":{"content":"","tool_calls":[{"id":"t"}]}}]}'
    )
    assert text_delta(vllm) == (json.loads(vllm[5:]), "a")
    assert text_delta(tool) is None
    assert text_delta(b"data: [DONE]") is None
    assert finishing_delta(tool) is None
    finishing = chunk(None, "stop", **USAGE).strip()
    assert text_delta(finishing) is None
    assert finishing_delta(finishing) == (json.loads(finishing[5:]), "")
    assert finishing_delta(chunk("a", None, **USAGE).strip()) is None, "usage alone never merges"


async def test_a_token_the_json_parser_refuses_passes_verbatim_after_the_text() -> None:
    # Half of a surrogate pair, escaped: not valid Unicode text. Merged, it could not be
    # re-encoded; passed on as the server sent it, the SDK's own parser decides.
    lone = b'data: {"id":"x","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"\\ud83d"},"finish_reason":null}]}\n\n'
    parts = [(0.0, chunk("Bonjour ")), (0.0, chunk("à ")), (0.0, lone), (0.0, chunk("tous"))]
    parts.append((0.0, DONE))
    blocks = events(await collect(PacedEventStream(Source(parts), interval=1.0)))
    assert texts_of(blocks[:1]) == ["Bonjour à "]
    assert blocks[1:] == [lone.strip(), chunk("tous").strip(), DONE.strip()]
