"""The LLM client: the mistralai SDK with bounded retries, a concurrency limit and a circuit breaker.

Retries are ours, not the SDK's (whose loop is bounded only by elapsed time): at most
`max_retries` more attempts, capped exponential backoff with jitter, on 429, 5xx, connection
errors and timeouts; a `Retry-After` is honoured when it fits in the question's time budget,
else the question fails at once (waiting minutes helps nobody). A persistent outage opens the
circuit so questions fail fast with one clear message each instead of piling retries onto a
service that is down; after a cooldown one question probes it (no retries) and closes it again.
What a failure means (its kind, retryable or not, the breaker) is `bot.answer.llm_failures`.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import httpx2
import structlog

from bot.answer.http_transport import AiohttpTransport
from bot.answer.llm_failures import (
    SERVICE_ANSWERED,
    CircuitBreaker,
    LLMError,
    LLMErrorKind,
    backoff_seconds,
    classify_error,
    is_retryable,
    is_sdk_error,
    retry_after_seconds,
    status_detail,
)
from bot.answer.stream_pacing import PacedTransport
from bot.ops import faults, metrics
from bot.ops.proxy import proxy_for

if TYPE_CHECKING:
    from mistralai.client import Mistral
    from mistralai.client.models import AssistantMessage, SystemMessage, UserMessage

log = structlog.get_logger(__name__)

# The SDK (~22 MB resident with its models and hooks) is imported when the client is first
# needed: `LLMClient.prepare`, which the app calls once the first sync has been handled.
# Imported then, it reuses the heap that parsing the full-state sync left free instead of
# adding its own (bench/, figure 5; bot/ops/memory.py).

T = TypeVar("T")


@dataclass(frozen=True)
class ModelCard:
    """One model the endpoint lists, with the capabilities it declares (vision, ocr...)."""

    id: str
    capabilities: frozenset[str] = frozenset()


@dataclass(frozen=True)
class ChatMessage:
    role: Literal["system", "user", "assistant"]
    content: str
    images: tuple[str, ...] = ()  # data URLs of prepared images (user messages only)

    def as_dict(self) -> dict[str, str]:
        """For debug logs: the text, and how many images (never their bytes)."""
        if self.images:
            return {"role": self.role, "content": self.content, "images": str(len(self.images))}
        return {"role": self.role, "content": self.content}


@dataclass(frozen=True)
class Transcript:
    text: str
    language: str | None = None


@dataclass(frozen=True)
class ChatRequest:
    messages: Sequence[ChatMessage]
    model: str
    temperature: float
    max_tokens: int


@dataclass
class Completion:
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finished: bool = True


class LLMClient:
    def __init__(
        self,
        *,
        api_key: str,
        server_url: str,
        timeout_seconds: float,
        max_retries: int,
        max_concurrency: int,
        breaker: CircuitBreaker | None = None,
        backoff_initial_ms: int = 500,
        backoff_max_ms: int = 10_000,
        proxy_url: str | None = None,
        stream_interval_seconds: float = 0.0,
    ) -> None:
        """`timeout_seconds` bounds each attempt; a question (retries included) gets twice that.

        The proxy is `proxy_url`, else HTTPS_PROXY/HTTP_PROXY, NO_PROXY honoured (bot.ops.proxy).
        `stream_interval_seconds` (the streaming edit interval): streamed text is read at that
        pace rather than token by token (bot/answer/stream_pacing.py); 0 reads every token."""
        self._timeout_seconds = timeout_seconds
        self._budget_seconds = timeout_seconds * 2
        self._max_retries = max_retries
        self._backoff_initial_ms = backoff_initial_ms
        self._backoff_max_ms = backoff_max_ms
        self._http = httpx2.AsyncClient(
            follow_redirects=True,
            trust_env=False,  # the environment's proxies are read by proxy_for, NO_PROXY included
            transport=PacedTransport(
                # Pooled as wide as the concurrency limit: with fewer connections, questions the
                # semaphore let through would wait unseen in the pool (bench/, figure 4).
                AiohttpTransport(
                    max_connections=max_concurrency, proxy=proxy_for(server_url, proxy_url)
                ),
                stream_interval_seconds,
            ),
        )
        self._api_key = api_key
        self._server_url = server_url
        self._sdk_client: Mistral | None = None  # see SDK_ERRORS_MODULE: made by `prepare`
        self._semaphore = asyncio.Semaphore(max_concurrency)
        self.breaker = breaker or CircuitBreaker()

    def prepare(self) -> None:
        """Import and build the SDK client now (~0.5 s of CPU, once) rather than on the first
        question's path. The app calls it once the first sync has been handled (see
        SDK_ERRORS_MODULE); a question reaching the client earlier builds it itself."""
        _ = self._sdk

    @property
    def _sdk(self) -> Mistral:
        if self._sdk_client is None:
            from mistralai.client import Mistral
            from mistralai.client.utils.retries import BackoffStrategy, RetryConfig

            sdk = Mistral(
                api_key=self._api_key,
                server_url=self._server_url,
                retry_config=RetryConfig("none", BackoffStrategy(0, 0, 1.0, 0), False),
                timeout_ms=int(self._timeout_seconds * 1000),
                async_client=self._http,
            )
            # The SDK imports a resource's module (and its models) on first use: for `chat`,
            # ~0.1 s of CPU that would otherwise fall on the first question's path.
            _ = sdk.chat
            self._sdk_client = sdk
        return self._sdk_client

    async def list_models(self) -> list[ModelCard]:
        """The endpoint's models (`GET /v1/models`), for `tchap-bot doctor`. Raises LLMError."""
        try:
            listed = await self._sdk.models.list_async(timeout_ms=int(self._timeout_seconds * 1000))
        except Exception as error:
            raise LLMError(classify_error(error), status_detail(error)) from error
        cards = []
        for card in listed.data or []:
            capabilities = getattr(card, "capabilities", None)
            flags = (
                {name for name, on in capabilities.model_dump().items() if on is True}
                if capabilities is not None
                else set()
            )
            model_id = getattr(card, "id", None)
            if isinstance(model_id, str):
                cards.append(ModelCard(id=model_id, capabilities=frozenset(flags)))
        return cards

    async def close(self) -> None:
        if self._sdk_client is not None:
            await self._sdk_client.__aexit__(None, None, None)  # type: ignore[no-untyped-call]
        await self._http.aclose()

    def _admit(self) -> bool:
        """Raise CIRCUIT_OPEN unless the breaker lets this question through; True if it probes."""
        if not self.breaker.allow():
            metrics.LLM_ERRORS.labels(LLMErrorKind.CIRCUIT_OPEN.value).inc()
            raise LLMError(LLMErrorKind.CIRCUIT_OPEN)
        return self.breaker.probing

    async def _attempts(self, call: Callable[[], Awaitable[T]], *, probing: bool) -> T:
        """Run `call` until it succeeds, retrying what is worth retrying within the budget."""
        deadline = time.monotonic() + self._budget_seconds
        retries = 0
        while True:
            remaining = deadline - time.monotonic()
            try:
                # `asyncio.timeout`, not `wait_for`: on Python 3.11 `wait_for` runs the call in a
                # task of its own, started a loop turn later (one more task per model call).
                async with asyncio.timeout(max(0.001, min(self._timeout_seconds, remaining))):
                    return await call()
            except Exception as error:
                kind = classify_error(error)
                if (
                    probing
                    or retries >= self._max_retries
                    or not is_retryable(error)
                    or self.breaker.is_open  # others saw the outage: stop adding load
                ):
                    raise
                server_wait = retry_after_seconds(error)
                delay = (
                    server_wait
                    if server_wait is not None
                    else backoff_seconds(retries, self._backoff_initial_ms, self._backoff_max_ms)
                )
                if time.monotonic() + delay >= deadline:
                    log.info(
                        "llm.retry_abandoned",
                        kind=kind.value,
                        wait_seconds=round(delay, 3),
                        retry_after=server_wait is not None,
                    )
                    raise
                retries += 1
                metrics.LLM_RETRIES.labels(kind.value).inc()
                log.info(
                    "llm.retrying",
                    attempt=retries,
                    kind=kind.value,
                    error_type=type(error).__name__,
                    wait_seconds=round(delay, 3),
                    retry_after=server_wait is not None,
                )
                await asyncio.sleep(delay)

    async def _guarded(self, call: Callable[[], Awaitable[T]]) -> T:
        """One model call under the concurrency limit, the retries and the circuit breaker."""
        async with self._semaphore:
            probing = self._admit()
            started = time.perf_counter()
            try:
                response = await self._attempts(call, probing=probing)
            except Exception as error:
                raise self._failed(error) from error
            finally:
                metrics.LLM_LATENCY.observe(time.perf_counter() - started)
                if probing and self.breaker.probing:
                    self.breaker.release_trial()
            self.breaker.record_success()
            return response

    async def complete(self, request: ChatRequest) -> Completion:
        """One whole answer; raises LLMError with a kind the caller can explain to users."""
        response = await self._guarded(
            lambda: self._sdk.chat.complete_async(**_sdk_arguments(request))
        )
        text = _answer_text(response)
        usage = getattr(response, "usage", None)
        completion = Completion(
            text=text,
            prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
        )
        metrics.LLM_TOKENS.labels("prompt").inc(completion.prompt_tokens)
        metrics.LLM_TOKENS.labels("completion").inc(completion.completion_tokens)
        if not text.strip():
            metrics.LLM_ERRORS.labels(LLMErrorKind.EMPTY.value).inc()
            raise LLMError(LLMErrorKind.EMPTY)
        faults.maybe_crash("after_llm")
        return completion

    async def stream(
        self,
        request: ChatRequest,
        usage_out: Completion | None = None,
        on_finish: Callable[[], None] | None = None,
    ) -> AsyncIterator[str]:
        """Text deltas as the model writes them. Errors before the first delta raise LLMError
        (after the same retries as `complete`); a break after it raises LLMError too, and the
        caller keeps what it already has. `on_finish` is called as soon as the model says the
        answer is complete (before the connection is closed, which may yield to other tasks)."""
        async with self._semaphore:
            probing = self._admit()
            started = time.perf_counter()
            got_text = False
            try:
                events = await self._attempts(
                    lambda: self._sdk.chat.stream_async(**_sdk_arguments(request)),
                    probing=probing,
                )
                async with events as stream:
                    async for event in _with_idle_timeout(stream, self._timeout_seconds):
                        data = event.data
                        usage = getattr(data, "usage", None)
                        if usage is not None:
                            prompt_tokens = int(usage.prompt_tokens or 0)
                            completion_tokens = int(usage.completion_tokens or 0)
                            metrics.LLM_TOKENS.labels("prompt").inc(prompt_tokens)
                            metrics.LLM_TOKENS.labels("completion").inc(completion_tokens)
                            if usage_out is not None:
                                usage_out.prompt_tokens = prompt_tokens
                                usage_out.completion_tokens = completion_tokens
                        if not data.choices:
                            continue
                        choice = data.choices[0]
                        delta = choice.delta.content
                        if isinstance(delta, str) and delta:
                            if not got_text:
                                metrics.LLM_FIRST_TOKEN_LATENCY.observe(
                                    time.perf_counter() - started
                                )
                            got_text = True
                            yield delta
                        if choice.finish_reason is not None and on_finish is not None:
                            on_finish()
                self.breaker.record_success()
            except Exception as error:
                raise self._failed(error) from error
            finally:
                metrics.LLM_LATENCY.observe(time.perf_counter() - started)
                if probing and self.breaker.probing:
                    self.breaker.release_trial()
        if not got_text:
            metrics.LLM_ERRORS.labels(LLMErrorKind.EMPTY.value).inc()
            raise LLMError(LLMErrorKind.EMPTY)
        faults.maybe_crash("after_llm")

    async def transcribe(
        self, audio: bytes, file_name: str, model: str, language: str | None
    ) -> Transcript:
        """Speech to text (`POST /v1/audio/transcriptions`, Voxtral), with the same retries,
        concurrency limit and circuit breaker as chat. A service without the endpoint answers
        404: LLMError REJECTED with that status."""
        response = await self._guarded(
            lambda: self._sdk.audio.transcriptions.complete_async(
                model=model,
                file={"content": audio, "file_name": file_name},
                language=language or None,
            )
        )
        text = str(getattr(response, "text", "") or "").strip()
        if not text:
            metrics.LLM_ERRORS.labels(LLMErrorKind.EMPTY.value).inc()
            raise LLMError(LLMErrorKind.EMPTY)
        language_found = getattr(response, "language", None)
        return Transcript(text=text, language=language_found if language_found else None)

    # --- Beyond chat: embeddings and OCR (documents) ------------------------------------------
    # Same retries and concurrency limit as chat; the circuit breaker is left to questions (a
    # local model without these endpoints must not make the bot look down).
    async def embed(self, model: str, inputs: list[str]) -> list[list[float]]:
        """One vector per input (same order). Raises LLMError; `.status` is the HTTP status."""
        async with self._semaphore:
            try:
                response = await self._attempts(
                    lambda: self._sdk.embeddings.create_async(model=model, inputs=inputs),
                    probing=False,
                )
            except Exception as error:
                raise _side_error(error) from error
        vectors: list[list[float]] = [[] for _ in inputs]
        for position, item in enumerate(response.data):
            index = item.index if isinstance(item.index, int) else position
            if 0 <= index < len(inputs) and item.embedding:
                vectors[index] = list(item.embedding)
        if any(not vector for vector in vectors):
            raise LLMError(LLMErrorKind.EMPTY, "embeddings")
        return vectors

    async def ocr_pdf(self, model: str, pdf: bytes, pages: list[int]) -> dict[int, str]:
        """Markdown of the given 1-based pages of a PDF, by page number. Raises LLMError."""
        from mistralai.client.models import DocumentURLChunk

        document = DocumentURLChunk(
            document_url="data:application/pdf;base64," + base64.b64encode(pdf).decode()
        )
        async with self._semaphore:
            try:
                response = await self._attempts(
                    lambda: self._sdk.ocr.process_async(
                        model=model, document=document, pages=[page - 1 for page in pages]
                    ),
                    probing=False,
                )
            except Exception as error:
                raise _side_error(error) from error
        return {int(page.index) + 1: page.markdown or "" for page in response.pages}

    def _failed(self, error: BaseException) -> LLMError:
        kind = classify_error(error)
        if kind in SERVICE_ANSWERED:
            self.breaker.record_success()  # the service is up, the request was the problem
        else:
            self.breaker.record_failure()
        metrics.LLM_ERRORS.labels(kind.value).inc()
        log.warning("llm.request_failed", kind=kind.value, error_type=type(error).__name__)
        status = error.status_code if is_sdk_error(error) else None
        return LLMError(kind, type(error).__name__, status=status)


def _side_error(error: BaseException) -> LLMError:
    kind = classify_error(error)
    status = getattr(error, "status_code", None)
    log.info("llm.side_request_failed", kind=kind.value, status=status)
    failure = LLMError(kind, type(error).__name__)
    failure.status = status if isinstance(status, int) else None
    return failure


async def _with_idle_timeout(stream: Any, seconds: float) -> AsyncIterator[Any]:
    """A stream that stops sending for `seconds` is treated as broken. (`asyncio.timeout`, not
    `wait_for`: no task per event, and events already read are handled without yielding to
    the loop, so a publisher cannot act on a text delta whose finishing chunk is right behind.)"""
    iterator = stream.__aiter__()
    while True:
        try:
            async with asyncio.timeout(seconds):
                event = await iterator.__anext__()
        except StopAsyncIteration:
            return
        yield event


if TYPE_CHECKING:
    SdkMessage = AssistantMessage | SystemMessage | UserMessage


def _sdk_messages(messages: Sequence[ChatMessage]) -> list[SdkMessage]:
    from mistralai.client.models import (
        AssistantMessage,
        ImageURLChunk,
        SystemMessage,
        TextChunk,
        UserMessage,
    )

    converted: list[SdkMessage] = []
    for message in messages:
        if message.role == "system":
            converted.append(SystemMessage(content=message.content))
        elif message.role == "assistant":
            converted.append(AssistantMessage(content=message.content))
        elif message.images:
            parts: list[TextChunk | ImageURLChunk] = [TextChunk(text=message.content)]
            parts.extend(ImageURLChunk(image_url=url) for url in message.images)
            converted.append(UserMessage(content=parts))
        else:
            converted.append(UserMessage(content=message.content))
    return converted


def _sdk_arguments(request: ChatRequest) -> dict[str, Any]:
    return {
        "model": request.model,
        "messages": _sdk_messages(request.messages),
        "temperature": request.temperature,
        "max_tokens": request.max_tokens,
    }


def _answer_text(response: Any) -> str:
    choices = getattr(response, "choices", None) or []
    if not choices:
        return ""
    content = choices[0].message.content
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content chunks: keep the text ones
        return "".join(getattr(chunk, "text", "") or "" for chunk in content)
    return ""
