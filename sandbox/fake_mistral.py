"""A local stand-in for Mistral's chat API, driven by the real ``mistralai`` SDK.

Why: the bot must be tested end to end (HTTP, SSE parsing, SDK errors, retries,
timeouts, broken streams, outages) without internet and with deterministic answers.
It speaks the same wire format as ``POST /v1/chat/completions`` on api.mistral.ai, vLLM
or llama.cpp, so ``Mistral(api_key="k", server_url=fake.base_url)`` talks to it unchanged.

Beyond chat it answers ``POST /v1/embeddings`` (deterministic bag-of-words vectors: texts
sharing words are close) and ``POST /v1/ocr`` (a fixed sentence per requested page, or what
``ocr_responder`` says), both in the exact shapes the SDK parses; ``embeddings_enabled`` and
``ocr_enabled`` turn them into 404s, as on a local model that has neither.

The JSON shapes themselves (and the readers tests use on recorded requests) live in
``sandbox.mistral_wire``; this module holds the server, its knobs and its deterministic content.

Also runnable for the bench and demos: ``python -m sandbox.fake_mistral --port 8088``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import inspect
import json
import math
import re
import socket
import time
import unicodedata
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import BodyPartReader, web

from sandbox import mistral_wire as wire
from sandbox.mistral_wire import DEFAULT_MODEL, message_images, message_text, split_tokens

Responder = Callable[[dict[str, Any]], str | Awaitable[str]]
CANNED_MODEL = "reponses-factices"  # what the sandbox's --fake-llm model is called
EMBEDDING_DIMENSIONS = 1024
_WORD_RE = re.compile(r"\w+")


def canned_answer(body: dict[str, Any]) -> str:
    """'Réponse simulée : ' + the last user message (200 characters at most); with images,
    'Réponse simulée (N image) : …' so a test (or a person in the sandbox) sees they came."""
    users = [m for m in body.get("messages", []) if isinstance(m, dict) and m.get("role") == "user"]
    last = " ".join(message_text(users[-1]).split()) if users else ""
    if len(last) > 200:
        last = last[:199] + "…"
    images = len(message_images(users[-1])) if users else 0
    if images:
        return f"Réponse simulée ({images} image{'s' if images > 1 else ''}) : {last}"
    return f"Réponse simulée : {last}"


def default_responder(body: dict[str, Any]) -> str:
    return canned_answer(body)


def fake_embedding(text: str) -> list[float]:
    """A unit vector from the text's words (accents folded, first 6 letters): texts sharing
    words point the same way, so retrieval by similarity behaves sensibly in tests."""
    folded = unicodedata.normalize("NFKD", text.lower())
    folded = "".join(char for char in folded if not unicodedata.combining(char))
    vector = [0.0] * EMBEDDING_DIMENSIONS
    for word in _WORD_RE.findall(folded):
        if len(word) < 3:
            continue
        digest = hashlib.blake2b(word[:6].encode(), digest_size=4).digest()
        vector[int.from_bytes(digest, "little") % EMBEDDING_DIMENSIONS] += 1.0
    norm = math.sqrt(sum(value * value for value in vector)) or 1.0
    return [value / norm for value in vector]


def default_ocr_text(page_index: int) -> str:
    return f"Texte reconnu par OCR sur la page {page_index + 1} du document numérisé."


def _pdf_page_count(document: dict[str, Any]) -> int:
    url = str(document.get("document_url") or "")
    _, _, payload = url.partition("base64,")
    try:
        import pypdfium2

        return len(pypdfium2.PdfDocument(base64.b64decode(payload)))
    except Exception:
        return 1


@dataclass
class _Failure:
    status: int
    retry_after: float | None
    body: str | None


class FakeMistral:
    """An aiohttp server on 127.0.0.1 with knobs to script failures.

    Knobs apply in this order for each chat request: ``set_down`` (503), ``fail_next``
    (queued HTTP errors), ``hang_next``, ``delay_seconds``, then the answer from
    ``responder`` (sync or async), streamed when the body says ``"stream": true``.
    """

    def __init__(
        self,
        responder: Responder | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.responder: Responder = responder or default_responder
        self.requests: list[dict[str, Any]] = []
        self.delay_seconds: float = 0
        self.stream_tokens_per_second: float | None = None
        self.model_ids: list[str] = [
            DEFAULT_MODEL,
            "mistral-medium-latest",
            "mistral-large-latest",
            "voxtral-mini-latest",
            "mistral-ocr-latest",
            "mistral-embed",
        ]
        # Models that read images; a request with an image for another one gets a 400.
        self.vision_models: set[str] = {
            DEFAULT_MODEL,
            "mistral-medium-latest",
            "pixtral-large-latest",
        }
        # Speech to text: every request recorded (model, language, file_name, content bytes).
        self.transcriptions: list[dict[str, Any]] = []
        self.transcription_text: str | None = None  # None: "Transcription simulée (N octets)."
        self.transcription_supported = True  # False: 404, like llama.cpp's server
        self.embeddings_enabled = True
        self.ocr_enabled = True
        self.ocr_responder: Callable[[int], str] = default_ocr_text  # 0-based page index
        self.embedding_requests: list[dict[str, Any]] = []
        self.ocr_requests: list[dict[str, Any]] = []
        self.host = host
        self.port = port
        self.base_url = ""
        self._failures: deque[_Failure] = deque()
        self._breaks: deque[int] = deque()
        self._hangs: deque[float] = deque()
        self._down = False
        self._runner: web.AppRunner | None = None
        self._stopping = asyncio.Event()

    # -- scripting knobs -----------------------------------------------------------

    def fail_next(
        self,
        count: int,
        status: int = 503,
        retry_after: float | None = None,
        body: str | None = None,
    ) -> None:
        """The next ``count`` chat requests get HTTP ``status`` (JSON error body by default)."""
        for _ in range(count):
            self._failures.append(_Failure(status, retry_after, body))

    def break_stream_next(self, after_chars: int) -> None:
        """The next *streamed* answer sends ``after_chars`` characters, then drops the socket."""
        self._breaks.append(after_chars)

    def hang_next(self, seconds: float) -> None:
        """The next chat request waits ``seconds`` before answering (client timeout tests)."""
        self._hangs.append(seconds)

    def set_down(self, down: bool) -> None:
        """While down, every request gets 503 (outage and circuit breaker tests)."""
        self._down = down

    def reset(self) -> None:
        """Forget recorded requests and pending scripted behaviour."""
        self.requests.clear()
        self.transcriptions.clear()
        self.embedding_requests.clear()
        self.ocr_requests.clear()
        self._failures.clear()
        self._breaks.clear()
        self._hangs.clear()
        self._down = False

    def requests_containing(self, text: str) -> list[dict[str, Any]]:
        """Requests where some message's text contains ``text``."""
        return [
            body
            for body in self.requests
            if any(text in message_text(m) for m in body.get("messages", []))
        ]

    @property
    def last_request(self) -> dict[str, Any]:
        if not self.requests:
            raise AssertionError("FakeMistral received no request")
        return self.requests[-1]

    # -- lifecycle -----------------------------------------------------------------

    async def start(self) -> None:
        # Images travel inside chat requests and audio as uploads: more than aiohttp's 1 MiB.
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/audio/transcriptions", self._transcription)
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/embeddings", self._embeddings)
        app.router.add_post("/v1/ocr", self._ocr)
        # A short shutdown timeout: hung handlers must not make teardown wait.
        self._runner = web.AppRunner(app, shutdown_timeout=0.5, access_log=None)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = int(sock.getsockname()[1])
        self.base_url = f"http://{self.host}:{self.port}"
        self._stopping.clear()
        await web.SockSite(self._runner, sock).start()

    async def stop(self) -> None:
        self._stopping.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeMistral:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- HTTP handlers -------------------------------------------------------------

    async def _sleep(self, seconds: float) -> None:
        """Sleep, but wake up at once when the server stops."""
        if seconds > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), seconds)

    def _capabilities(self, model_id: str) -> dict[str, bool]:
        """What Mistral's model cards declare, so capability checks see real shapes."""
        if model_id.startswith("voxtral"):
            return {"audio_transcription": self.transcription_supported, "audio": True}
        if "ocr" in model_id:
            return {"ocr": True}
        if "embed" in model_id:
            return {}
        return {
            "completion_chat": True,
            "function_calling": True,
            "vision": model_id in self.vision_models,
        }

    async def _models(self, request: web.Request) -> web.Response:
        if self._down:
            return wire.error_response(503)
        created = int(time.time())
        data = [
            wire.model_card(model_id, self._capabilities(model_id), created)
            for model_id in self.model_ids
        ]
        return web.json_response({"object": "list", "data": data})

    async def _embeddings(self, request: web.Request) -> web.Response:
        if not self.embeddings_enabled:
            return wire.error_response(404, body=wire.NOT_FOUND_BODY)
        if self._down:
            return wire.error_response(503)
        body = await request.json()
        self.embedding_requests.append(body)
        inputs = body.get("input")  # the SDK's `inputs` goes on the wire as `input`
        texts = [inputs] if isinstance(inputs, str) else [str(item) for item in inputs or []]
        vectors = [fake_embedding(text) for text in texts]
        return web.json_response(
            wire.embeddings(body.get("model", "mistral-embed"), texts, vectors)
        )

    async def _ocr(self, request: web.Request) -> web.Response:
        if not self.ocr_enabled:
            return wire.error_response(404, body=wire.NOT_FOUND_BODY)
        if self._down:
            return wire.error_response(503)
        body = await request.json()
        self.ocr_requests.append(body)
        document = body.get("document") if isinstance(body.get("document"), dict) else {}
        pages = body.get("pages")
        if not isinstance(pages, list) or not pages:
            pages = list(range(_pdf_page_count(document)))
        texts = [(int(index), self.ocr_responder(int(index))) for index in pages]
        return web.json_response(wire.ocr(body.get("model", "mistral-ocr-latest"), texts))

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except json.JSONDecodeError:
            return wire.error_response(400, body='{"object": "error", "message": "invalid JSON"}')
        self.requests.append(body)
        if self._down:
            return wire.error_response(503)
        if self._failures:
            failure = self._failures.popleft()
            return wire.error_response(failure.status, failure.retry_after, failure.body)
        if wire.image_urls(body) and body.get("model") not in self.vision_models:
            return wire.image_refused()
        if self._hangs:
            await self._sleep(self._hangs.popleft())
        await self._sleep(self.delay_seconds)
        answer = self.responder(body)
        text = await answer if inspect.isawaitable(answer) else answer
        if body.get("stream"):
            return await self._stream(request, body, str(text))
        return web.json_response(wire.completion(body, str(text)))

    async def _transcription(self, request: web.Request) -> web.Response:
        """``POST /v1/audio/transcriptions`` (multipart form, as the SDK sends it): records the
        upload and answers ``transcription_text`` (deterministic)."""
        if not self.transcription_supported:
            return wire.error_response(404, body=wire.NOT_FOUND_BODY)
        if self._down:
            return wire.error_response(503)
        fields: dict[str, Any] = {}
        reader = await request.multipart()
        async for part in reader:
            if not isinstance(part, BodyPartReader) or part.name is None:
                continue
            if part.name == "file":
                fields["file_name"] = part.filename
                fields["content_type"] = part.headers.get("Content-Type")
                fields["content"] = bytes(await part.read())
            else:
                fields[part.name] = await part.text()
        self.transcriptions.append(fields)
        if not fields.get("model") or "content" not in fields:
            return wire.error_response(
                422, body='{"object": "error", "message": "model and file needed"}'
            )
        text = self.transcription_text
        if text is None:
            text = f"Transcription simulée ({len(fields['content'])} octets)."
        language = fields.get("language") or "fr"
        return web.json_response(wire.transcription(fields["model"], text, language))

    async def _stream(
        self, request: web.Request, body: dict[str, Any], text: str
    ) -> web.StreamResponse:
        """Server-sent events as Mistral sends them: role chunk, content chunks, usage, [DONE]."""
        header = wire.chunk_header(body)
        break_after = self._breaks.popleft() if self._breaks else None
        if break_after is not None:
            text = text[:break_after]
        response = web.StreamResponse(
            status=200, headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)

        async def send(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> None:
            await response.write(wire.chunk_event(header, delta, finish, **extra))

        try:
            await send({"role": "assistant", "content": ""})
            pace = self.stream_tokens_per_second
            for token in split_tokens(text) if text else []:
                if pace:
                    await self._sleep(1 / pace)
                await send({"content": token})
            if break_after is not None:
                # Abrupt drop: no final chunk, no [DONE], no terminating HTTP chunk.
                await asyncio.sleep(0.01)  # let the partial text reach the client first
                if request.transport is not None:
                    request.transport.abort()
                return response
            await send({"content": ""}, "stop", usage=wire.usage(body, text))
            await response.write(b"data: [DONE]\n\n")
            await response.write_eof()
        except (ConnectionResetError, ConnectionError):
            pass  # the client went away (timeout, cancel): nothing more to do
        return response


async def _serve_forever(args: argparse.Namespace) -> None:
    fake = FakeMistral(host=args.host, port=args.port)
    fake.delay_seconds = args.delay
    fake.stream_tokens_per_second = args.tokens_per_second
    await fake.start()
    print(f"FakeMistral listening on {fake.base_url}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await fake.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Local fake of Mistral's chat API.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before first byte")
    parser.add_argument("--tokens-per-second", type=float, default=None, help="stream pacing")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_forever(args))


if __name__ == "__main__":
    main()
