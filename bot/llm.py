"""The LLM client: the mistralai SDK with retries, a concurrency limit and a circuit breaker.

Retries are the SDK's own (capped exponential backoff honouring Retry-After, on 429, 5xx and
connection errors). A persistent outage opens the circuit so questions fail fast with one
clear message each instead of piling retries onto a service that is down.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

import httpx2
import structlog
from mistralai.client import Mistral
from mistralai.client.errors import SDKError
from mistralai.client.models import AssistantMessage, SystemMessage, UserMessage
from mistralai.client.utils.retries import BackoffStrategy, RetryConfig

from bot import metrics

log = structlog.get_logger(__name__)

RETRYABLE_STATUS = ("429", "500", "502", "503", "504")


class LLMErrorKind(StrEnum):
    UNAVAILABLE = "unavailable"
    RATE_LIMITED = "rate_limited"
    TIMEOUT = "timeout"
    CIRCUIT_OPEN = "circuit_open"
    REJECTED = "rejected"
    EMPTY = "empty"


class LLMError(Exception):
    def __init__(self, kind: LLMErrorKind, detail: str = "") -> None:
        super().__init__(f"{kind.value}: {detail}" if detail else kind.value)
        self.kind = kind


@dataclass(frozen=True)
class ChatMessage:
    role: Literal["system", "user", "assistant"]
    content: str

    def as_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


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


@dataclass
class CircuitBreaker:
    """Opens after `threshold` consecutive failed questions; lets one trial through after `cooldown`."""

    threshold: int = 3
    cooldown_seconds: float = 30.0
    failures: int = 0
    opened_at: float | None = None
    _trial_in_flight: bool = field(default=False, repr=False)

    def allow(self) -> bool:
        if self.opened_at is None:
            return True
        if time.monotonic() - self.opened_at >= self.cooldown_seconds and not self._trial_in_flight:
            self._trial_in_flight = True  # half-open: one question probes the service
            return True
        return False

    def record_success(self) -> None:
        if self.opened_at is not None:
            log.info("llm.circuit_closed")
        self.failures = 0
        self.opened_at = None
        self._trial_in_flight = False

    def record_failure(self) -> None:
        self.failures += 1
        self._trial_in_flight = False
        if self.failures >= self.threshold:
            if self.opened_at is None:
                log.warning("llm.circuit_opened", consecutive_failures=self.failures)
            self.opened_at = time.monotonic()

    @property
    def is_open(self) -> bool:
        return self.opened_at is not None


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
    ) -> None:
        self._timeout_seconds = timeout_seconds
        retry = (
            RetryConfig(
                "backoff",
                BackoffStrategy(
                    initial_interval=backoff_initial_ms,
                    max_interval=backoff_max_ms,
                    exponent=2.0,
                    max_elapsed_time=int(timeout_seconds * 1000),
                    jitter_ms=min(250, backoff_initial_ms),
                ),
                retry_connection_errors=True,
                status_codes_override=list(RETRYABLE_STATUS),
            )
            if max_retries > 0
            else RetryConfig("none", BackoffStrategy(0, 0, 1.0, 0), False)
        )
        self._sdk = Mistral(
            api_key=api_key,
            server_url=server_url,
            retry_config=retry,
            timeout_ms=int(timeout_seconds * 1000),
        )
        self._semaphore = asyncio.Semaphore(max_concurrency)
        self.breaker = breaker or CircuitBreaker()

    async def close(self) -> None:
        await self._sdk.__aexit__(None, None, None)  # type: ignore[no-untyped-call]

    @property
    def queue_depth(self) -> int:
        waiters = getattr(self._semaphore, "_waiters", None)
        return len(waiters) if waiters else 0

    async def complete(self, request: ChatRequest) -> Completion:
        """One whole answer; raises LLMError with a kind the caller can explain to users."""
        if not self.breaker.allow():
            raise LLMError(LLMErrorKind.CIRCUIT_OPEN)
        async with self._semaphore:
            started = time.perf_counter()
            try:
                response = await asyncio.wait_for(
                    self._sdk.chat.complete_async(
                        model=request.model,
                        messages=_sdk_messages(request.messages),
                        temperature=request.temperature,
                        max_tokens=request.max_tokens,
                    ),
                    timeout=self._timeout_seconds * 2,
                )
            except Exception as error:
                raise self._failed(error) from error
            finally:
                metrics.LLM_LATENCY.observe(time.perf_counter() - started)
        text = _answer_text(response)
        usage = getattr(response, "usage", None)
        completion = Completion(
            text=text,
            prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
        )
        self.breaker.record_success()
        metrics.LLM_TOKENS.labels("prompt").inc(completion.prompt_tokens)
        metrics.LLM_TOKENS.labels("completion").inc(completion.completion_tokens)
        if not text.strip():
            raise LLMError(LLMErrorKind.EMPTY)
        return completion

    async def stream(
        self, request: ChatRequest, usage_out: Completion | None = None
    ) -> AsyncIterator[str]:
        """Text deltas as the model writes them. Errors before the first delta raise LLMError;
        a break after it raises LLMError too, and the caller keeps what it already has."""
        if not self.breaker.allow():
            raise LLMError(LLMErrorKind.CIRCUIT_OPEN)
        async with self._semaphore:
            started = time.perf_counter()
            got_text = False
            try:
                events = await asyncio.wait_for(
                    self._sdk.chat.stream_async(
                        model=request.model,
                        messages=_sdk_messages(request.messages),
                        temperature=request.temperature,
                        max_tokens=request.max_tokens,
                    ),
                    timeout=self._timeout_seconds * 2,
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
                        delta = data.choices[0].delta.content
                        if isinstance(delta, str) and delta:
                            if not got_text:
                                metrics.LLM_FIRST_TOKEN_LATENCY.observe(
                                    time.perf_counter() - started
                                )
                            got_text = True
                            yield delta
            except LLMError:
                self.breaker.record_failure()
                raise
            except Exception as error:
                raise self._failed(error) from error
            finally:
                metrics.LLM_LATENCY.observe(time.perf_counter() - started)
        if not got_text:
            raise LLMError(LLMErrorKind.EMPTY)
        self.breaker.record_success()

    def _failed(self, error: BaseException) -> LLMError:
        kind = classify_error(error)
        if kind is not LLMErrorKind.REJECTED:
            self.breaker.record_failure()
        metrics.LLM_ERRORS.labels(kind.value).inc()
        log.warning("llm.request_failed", kind=kind.value, error_type=type(error).__name__)
        return LLMError(kind, type(error).__name__)


async def _with_idle_timeout(stream: Any, seconds: float) -> AsyncIterator[Any]:
    """A stream that stops sending for `seconds` is treated as broken."""
    iterator = stream.__aiter__()
    while True:
        try:
            event = await asyncio.wait_for(iterator.__anext__(), timeout=seconds)
        except StopAsyncIteration:
            return
        yield event


SdkMessage = AssistantMessage | SystemMessage | UserMessage


def _sdk_messages(messages: Sequence[ChatMessage]) -> list[SdkMessage]:
    converted: list[SdkMessage] = []
    for message in messages:
        if message.role == "system":
            converted.append(SystemMessage(content=message.content))
        elif message.role == "assistant":
            converted.append(AssistantMessage(content=message.content))
        else:
            converted.append(UserMessage(content=message.content))
    return converted


def classify_error(error: BaseException) -> LLMErrorKind:
    if isinstance(error, LLMError):
        return error.kind
    if isinstance(error, SDKError):
        status = int(getattr(error, "status_code", 0) or 0)
        if status == 429:
            return LLMErrorKind.RATE_LIMITED
        if status >= 500 or status == 0:
            return LLMErrorKind.UNAVAILABLE
        return LLMErrorKind.REJECTED
    if isinstance(error, (TimeoutError, httpx2.TimeoutException)):
        return LLMErrorKind.TIMEOUT
    return LLMErrorKind.UNAVAILABLE


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
