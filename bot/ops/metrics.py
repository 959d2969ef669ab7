"""Prometheus metrics, served on /metrics by bot.health."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from prometheus_client import Counter, Gauge, Histogram

_FAST_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
_LLM_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 40, 80)

# Questions, commands and scheduled runs are counted apart: a command is no question.
QUESTIONS = Counter("tchapbot_questions_total", "Questions for the model (commands excluded)")
ANSWERS = Counter("tchapbot_answers_total", "Answers sent")
ERRORS = Counter(
    "tchapbot_errors_total",
    "Questions or commands that failed inside the bot, by kind (LLM failures: tchapbot_llm_errors_total)",
    ["kind"],
)
COMMANDS = Counter("tchapbot_commands_total", "Commands run, by name", ["command"])
SCHEDULED_RUNS = Counter("tchapbot_scheduled_runs_total", "Scheduled commands queued")
RATE_LIMITED = Counter("tchapbot_rate_limited_total", "Questions refused by rate limits", ["scope"])

LLM_LATENCY = Histogram("tchapbot_llm_seconds", "LLM call duration", buckets=_LLM_BUCKETS)
LLM_FIRST_TOKEN_LATENCY = Histogram(
    "tchapbot_llm_first_token_seconds", "Time to the first streamed token", buckets=_LLM_BUCKETS
)
LLM_ERRORS = Counter("tchapbot_llm_errors_total", "LLM failures after retries, by kind", ["kind"])
LLM_TOKENS = Counter("tchapbot_llm_tokens_total", "Tokens reported by the LLM", ["kind"])

RAW_OVERHEAD_SAMPLES: list[tuple[str, float, str, float]] | None = None
"""Off (None) in production. The benchmark sets it to [] to also keep every overhead
observation as (stage, seconds, observing task's name, perf_counter() when observed), for
exact percentiles instead of bucket estimates; a room's questions run in order in one named
task, so stages pair up, and the time lines them up with the LLM server's own clock."""


class _SampledHistogram(Histogram):
    def observe(self, amount: float, exemplar: dict[str, str] | None = None) -> None:
        super().observe(amount, exemplar)
        samples = RAW_OVERHEAD_SAMPLES
        if samples is not None and self._labelvalues:
            task = asyncio.current_task()
            name = task.get_name() if task is not None else ""
            samples.append((str(self._labelvalues[0]), amount, name, time.perf_counter()))


BOT_OVERHEAD = _SampledHistogram(
    "tchapbot_overhead_seconds",
    "Time spent inside the bot, by stage: event received -> LLM request (before_llm), of "
    "which event received -> the room's job starts on it, behind the room's previous answer "
    "(queued), last token -> send (after_llm), command received -> its first send request "
    "(command)",
    ["stage"],
    buckets=_FAST_BUCKETS,
)

_QUEUED: ContextVar[float | None] = ContextVar("tchapbot_queued_seconds", default=None)


@contextmanager
def question_queued(seconds: float | None) -> Iterator[None]:
    """While a room's job works on a question: how long the question waited for that job to
    start (`queued`; None for a command or a question with no arrival time). Observed with
    the question's `before_llm` (observe_before_llm), not when the job starts."""
    token = _QUEUED.set(seconds)
    try:
        yield
    finally:
        _QUEUED.reset(token)


def observe_before_llm(received_at: float) -> None:
    """`before_llm` (event received -> LLM client called), just after its `queued` part when
    a room's job set one: a question refused or withdrawn before the model has neither, so
    each `before_llm` has one `queued`, observed in the same task (the benchmark pairs a
    room's stages by order)."""
    before_llm = time.perf_counter() - received_at
    queued = _QUEUED.get()
    if queued is not None:
        BOT_OVERHEAD.labels("queued").observe(queued)
    BOT_OVERHEAD.labels("before_llm").observe(before_llm)


SYNC_LAG = Gauge("tchapbot_sync_lag_seconds", "Age of the newest event at the last sync")
QUEUE_DEPTH = Gauge("tchapbot_queue_depth", "Questions waiting for a room worker or the LLM")
LAST_SYNC = Gauge("tchapbot_last_sync_timestamp_seconds", "Unix time of the last successful sync")
LLM_RETRIES = Counter(
    "tchapbot_llm_retries_total", "LLM attempts retried, by failure kind", ["kind"]
)
LLM_CIRCUIT_OPEN = Gauge("tchapbot_llm_circuit_open", "1 while the LLM circuit breaker is open")
MEDIA_PROCESSED = Counter(
    "tchapbot_media_total", "Voice messages transcribed and images read, by kind", ["kind"]
)
