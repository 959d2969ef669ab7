"""Reading a streamed answer at the pace the room shows it, not token by token.

Why: the mistralai SDK turns every server-sent event of a stream into a pydantic object and
builds a pydantic model class to do it (~0.7 ms of CPU per event here), and every read of the
socket costs ~0.3 ms more in httpx, h11 and the event loop. A 300-token answer streamed token
by token cost the bot ~0.7 s of CPU, 19 times the same answer sent whole (bench/, figure 3).
The room sees at most one edit per `stream_edit_interval_seconds`: reading faster buys nothing.

How, without touching the SDK: this is the HTTP transport of the SDK's httpx client (the SDK's
`async_client` parameter). For a `text/event-stream` response it re-frames the events:

- consecutive plain text deltas (one choice, index 0, only `role`/`content` in the delta, other
  keys null, no `finish_reason`, no `usage`) are merged into one event, their contents concatenated;
  the model's finishing event, when it is such a delta with a `finish_reason` (and maybe `usage`),
  carries the text merged before it (one event where there were two); every other event (tool
  calls, usage alone, `[DONE]`, anything unknown) passes verbatim, after the merged text that
  came before it; a stream with `\\r` in it passes verbatim entirely;
- the socket is read greedily while data is waiting; merged text is handed over only when a
  read had to wait for the model (an instant model's whole answer is therefore one event,
  hence one message), the first time once it holds the first words, then at most once per
  interval, sleeping in between so that the model's tokens wait in the socket buffer: about
  a few reads and one SDK event per interval instead of one each per token.

The cost: the end of a paced answer reaches the bot up to half an interval after the model
wrote it (the room sees edits at that cadence anyway).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx2
from pydantic_core import from_json

# A read that took longer than this waited for the model (the buffer was drained).
READ_WAITED_SECONDS = 0.005
_EVENT_END = b"\n\n"
_CHUNK_KEYS = frozenset({"id", "object", "created", "model", "choices", "usage"})
_CHOICE_KEYS = frozenset({"index", "delta", "finish_reason", "logprobs"})
_DELTA_KEYS = frozenset({"role", "content"})
_WHOLE_WORD = re.compile(r"\S+\s")


def first_words_ready(text: str) -> bool:
    """Enough text to show as the start of an answer: two whole words, or a whole line (a
    phone's notification shows this first version, never a lone token)."""
    if next(itertools.islice(_WHOLE_WORD.finditer(text), 1, None), None) is not None:
        return True
    stripped = text.lstrip()
    return "\n" in stripped and bool(stripped.split("\n", 1)[0].strip())


def _plain(mapping: dict[str, Any], known: frozenset[str]) -> bool:
    """Only known keys, or others left null (vLLM and llama.cpp add `stop_reason: null`...)."""
    return mapping.keys() <= known or all(
        key in known or value is None for key, value in mapping.items()
    )


def _plain_delta(block: bytes) -> tuple[dict[str, Any], str, bool] | None:
    """The JSON and text of a plain delta event (one choice, only role/content), and whether
    it is the finishing one (`finish_reason`, maybe `usage`); None for anything else."""
    if not block.startswith(b"data:") or b"\n" in block:
        return None
    try:
        # Every token of every streamed answer comes through here: pydantic's Rust parser
        # reads one in ~1.5 µs where `json.loads` takes ~6 (bench/analysis.md, stop 18).
        chunk = from_json(block[5:])
    except ValueError:  # `[DONE]`, or not JSON: passed on verbatim, the SDK decides
        return None
    if not isinstance(chunk, dict) or not _plain(chunk, _CHUNK_KEYS):
        return None
    choices = chunk.get("choices")
    if not isinstance(choices, list) or len(choices) != 1:
        return None
    choice = choices[0]
    if (
        not isinstance(choice, dict)
        or not _plain(choice, _CHOICE_KEYS)
        or choice.get("index", 0) != 0
        or choice.get("logprobs") is not None
    ):
        return None
    delta = choice.get("delta")
    if not isinstance(delta, dict) or not _plain(delta, _DELTA_KEYS):
        return None
    finishing = choice.get("finish_reason") is not None
    content = delta.get("content")
    if content is None and finishing:
        content = ""
    if not isinstance(content, str):
        return None
    if not finishing and chunk.get("usage") is not None:
        return None
    return chunk, content, finishing


def text_delta(block: bytes) -> tuple[dict[str, Any], str] | None:
    """The JSON and text of a plain text delta event (merged with its neighbours)."""
    parsed = _plain_delta(block)
    if parsed is None or parsed[2]:
        return None
    return parsed[0], parsed[1]


def finishing_delta(block: bytes) -> tuple[dict[str, Any], str] | None:
    """The JSON and text of the model's finishing event when it is a plain delta: the text
    read before it is folded into it (one SDK event fewer for every streamed answer)."""
    parsed = _plain_delta(block)
    if parsed is None or not parsed[2]:
        return None
    return parsed[0], parsed[1]


class _Pending:
    """Text deltas read but not handed over yet."""

    def __init__(self) -> None:
        self.blocks: list[bytes] = []
        self.first: dict[str, Any] | None = None
        self.texts: list[str] = []

    def add(self, block: bytes, chunk: dict[str, Any], text: str) -> None:
        if self.first is None:
            self.first = chunk
        self.blocks.append(block)
        self.texts.append(text)

    @property
    def has_text(self) -> bool:
        return any(self.texts)

    def text(self) -> str:
        return "".join(self.texts)

    def take(self) -> bytes:
        """One event for everything pending (the original bytes when there is one)."""
        if not self.blocks:
            return b""
        if len(self.blocks) == 1 or self.first is None:
            out = b"".join(block + _EVENT_END for block in self.blocks)
        else:
            self.first["choices"][0]["delta"]["content"] = self.text()
            payload = json.dumps(self.first, ensure_ascii=False, separators=(",", ":"))
            out = b"data: " + payload.encode() + _EVENT_END
        self.blocks, self.first, self.texts = [], None, []
        return out

    def take_into(self, finishing: dict[str, Any], content: str) -> bytes:
        """Everything pending and the finishing event as one event: the finishing chunk
        (finish_reason, usage) carrying the pending text before its own."""
        finishing["choices"][0]["delta"]["content"] = self.text() + content
        payload = json.dumps(finishing, ensure_ascii=False, separators=(",", ":"))
        self.blocks, self.first, self.texts = [], None, []
        return b"data: " + payload.encode() + _EVENT_END


class PacedEventStream(httpx2.AsyncByteStream):
    """The body of one streamed chat response, re-framed as the module docstring says."""

    def __init__(
        self,
        inner: httpx2.AsyncByteStream,
        interval: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._inner = inner
        self._interval = interval
        self._clock = clock
        self.reads = 0  # parts read
        self.waits = 0  # reads that had to wait for the model (wake-ups on the socket)
        self.handed_over = 0  # parts handed to the SDK

    async def __aiter__(self) -> AsyncIterator[bytes]:
        source = self._inner.__aiter__()
        pending = _Pending()
        buffer = b""
        shown = False  # some text was handed over
        last_out = 0.0
        verbatim = False
        waited = False
        while True:
            had_text = pending.has_text
            started = self._clock()
            try:
                part = await source.__anext__()
            except StopAsyncIteration:
                break
            except Exception:
                # A broken stream: hand over what was read, then let the SDK see the error.
                if pending.blocks:
                    yield pending.take()
                raise
            self.reads += 1
            now = self._clock()
            waited_before, waited = waited, now - started > READ_WAITED_SECONDS
            self.waits += waited
            if verbatim:
                yield part
                continue
            if b"\r" in part:  # line ends this parser does not split: stop re-framing
                verbatim = True
                yield pending.take() + buffer + part
                buffer = b""
                continue
            *blocks, buffer = (buffer + part).split(_EVENT_END)
            out = b""
            for block in blocks:
                if not block:
                    continue
                parsed = text_delta(block)
                if parsed is not None:
                    pending.add(block, *parsed)
                    continue
                if pending.has_text:
                    shown, last_out = True, now
                closing = finishing_delta(block) if pending.blocks else None
                if closing is not None:
                    out += pending.take_into(*closing)
                else:
                    out += pending.take() + block + _EVENT_END
            if out:
                self.handed_over += 1
                yield out
            if not (waited and had_text and pending.has_text):
                continue  # more is waiting in the socket, or nothing new to show
            if shown:
                due = last_out + self._interval - now
                if due > 0:
                    await asyncio.sleep(due)
                    continue
            elif not (waited_before and first_words_ready(pending.text())):
                # Two waits in a row: the model is pacing its tokens. One alone may be this
                # process losing the CPU in the middle of an instant answer, which then would
                # be sent in two versions.
                continue
            shown, last_out = True, now
            self.handed_over += 1
            yield pending.take()
            # The model's next tokens wait in the socket; a look halfway through the interval
            # notices sooner when the model has finished.
            await asyncio.sleep(self._interval / 2)
        rest = pending.take() + buffer
        if rest:
            yield rest

    async def aclose(self) -> None:
        await self._inner.aclose()


class PacedTransport(httpx2.AsyncBaseTransport):
    """Wraps the real transport; only streamed, unencoded event-stream bodies are paced."""

    def __init__(self, inner: httpx2.AsyncBaseTransport, interval: float) -> None:
        self._inner = inner
        self._interval = interval

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        response = await self._inner.handle_async_request(request)
        content_type = response.headers.get("content-type", "")
        encoding = response.headers.get("content-encoding", "identity")
        if (
            self._interval > 0
            and content_type.startswith("text/event-stream")
            and encoding in ("", "identity")
            and isinstance(response.stream, httpx2.AsyncByteStream)
        ):
            response.stream = PacedEventStream(response.stream, self._interval)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()
