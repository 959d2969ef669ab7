"""What a failed model call means: its kind, whether to retry it, and the circuit breaker.

Retries are ours, not the SDK's (whose loop is bounded only by elapsed time): capped
exponential backoff with jitter on 429, 5xx, connection errors and timeouts, and a
`Retry-After` read from the answer. A persistent outage opens the circuit so questions fail
fast with one clear message each instead of piling retries onto a service that is down; after
a cooldown one question probes it (no retries) and closes it again. `bot.answer.llm` applies
these rules around each call.
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import TYPE_CHECKING, TypeGuard

import httpx2
import structlog

from bot.ops import metrics

if TYPE_CHECKING:
    from mistralai.client.errors import MistralError

log = structlog.get_logger(__name__)

# The SDK is imported only when the client is first needed (`bot.answer.llm`): its errors
# exist once it is loaded, and until then nothing can have raised one.
SDK_ERRORS_MODULE = "mistralai.client.errors"
RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})


class LLMErrorKind(StrEnum):
    UNAVAILABLE = "unavailable"
    RATE_LIMITED = "rate_limited"
    TIMEOUT = "timeout"
    CIRCUIT_OPEN = "circuit_open"
    REJECTED = "rejected"
    EMPTY = "empty"


# Failures that say nothing about the service being down: they never open the circuit.
SERVICE_ANSWERED = frozenset({LLMErrorKind.REJECTED, LLMErrorKind.EMPTY})


def status_detail(error: BaseException) -> str:
    status = getattr(error, "status_code", None)
    return f"HTTP {status}" if status is not None else type(error).__name__


class LLMError(Exception):
    def __init__(self, kind: LLMErrorKind, detail: str = "", status: int | None = None) -> None:
        super().__init__(f"{kind.value}: {detail}" if detail else kind.value)
        self.kind = kind
        self.status = status  # HTTP status, when the service answered one


@dataclass
class CircuitBreaker:
    """Opens after `threshold` consecutive failed questions; lets one trial through after `cooldown`."""

    threshold: int = 3
    cooldown_seconds: float = 30.0
    failures: int = 0
    opened_at: float | None = None
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)
    _trial_in_flight: bool = field(default=False, repr=False)

    def allow(self) -> bool:
        """May a question call the service now? When half-open, only the first one may."""
        if self.opened_at is None:
            return True
        if self.clock() - self.opened_at >= self.cooldown_seconds and not self._trial_in_flight:
            self._trial_in_flight = True  # half-open: one question probes the service
            return True
        return False

    @property
    def probing(self) -> bool:
        """True while the half-open trial runs (its caller must not retry)."""
        return self._trial_in_flight

    def release_trial(self) -> None:
        """The trial ended without a verdict (cancelled): let the next question probe."""
        self._trial_in_flight = False

    def record_success(self) -> None:
        if self.opened_at is not None:
            log.info("llm.circuit_closed")
        self.failures = 0
        self.opened_at = None
        self._trial_in_flight = False
        metrics.LLM_CIRCUIT_OPEN.set(0)

    def record_failure(self) -> None:
        self.failures += 1
        self._trial_in_flight = False
        if self.failures >= self.threshold:
            if self.opened_at is None:
                log.warning("llm.circuit_opened", consecutive_failures=self.failures)
            self.opened_at = self.clock()
            metrics.LLM_CIRCUIT_OPEN.set(1)

    @property
    def is_open(self) -> bool:
        return self.opened_at is not None


def backoff_seconds(
    retry: int, initial_ms: int, max_ms: int, rng: Callable[[], float] = random.random
) -> float:
    """Delay before retry number `retry` (0-based): exponential, capped, with "equal jitter"
    (between half and all of the capped value) so a crowd of clients does not retry in step."""
    capped = min(float(max_ms), initial_ms * 2.0**retry) / 1000
    return capped / 2 + rng() * capped / 2


def _is_sdk(error: BaseException, class_name: str) -> bool:
    """Whether `error` is the SDK's `class_name` (never true before the SDK is loaded)."""
    errors = sys.modules.get(SDK_ERRORS_MODULE)
    return errors is not None and isinstance(error, getattr(errors, class_name))


def is_sdk_error(error: BaseException) -> TypeGuard[MistralError]:
    return _is_sdk(error, "MistralError")


def retry_after_seconds(error: BaseException) -> float | None:
    """The server's `retry-after-ms` / `Retry-After` (seconds or HTTP date), if any."""
    if not is_sdk_error(error):
        return None
    headers = error.headers
    raw_ms = headers.get("retry-after-ms")
    if raw_ms:
        try:
            return max(0.0, float(raw_ms) / 1000)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - time.time())


def is_retryable(error: BaseException) -> bool:
    if is_sdk_error(error):
        return error.status_code in RETRYABLE_STATUS
    return isinstance(error, (httpx2.TransportError, TimeoutError)) or _is_sdk(
        error, "NoResponseError"
    )


def classify_error(error: BaseException) -> LLMErrorKind:
    if isinstance(error, LLMError):
        return error.kind
    if is_sdk_error(error):
        status = int(error.status_code or 0)
        if status == 429:
            return LLMErrorKind.RATE_LIMITED
        if status >= 500 or status == 0:
            return LLMErrorKind.UNAVAILABLE
        return LLMErrorKind.REJECTED
    if isinstance(error, (TimeoutError, httpx2.TimeoutException)):
        return LLMErrorKind.TIMEOUT
    return LLMErrorKind.UNAVAILABLE
