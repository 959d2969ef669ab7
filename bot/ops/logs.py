"""Structured logs (structlog) that never carry secrets.

Message contents and prompts are only logged when `TCHAP_BOT_LOG_MESSAGE_CONTENT` is on. As a
last line of defence every log line (ours and the libraries', tracebacks included) is scrubbed:
fields named like secrets are masked, known secret values (configured ones, and the access
token obtained at login, see `register_secret`) are replaced, and token shapes are masked even
when their value is unknown (`access_token=` in URLs — matrix-nio puts it there — `Bearer`
headers, Synapse `syt_` tokens).
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, Mapping, MutableMapping
from types import TracebackType
from typing import Any

import structlog

REDACTED = "[secret masqué]"

# Field names whose value is a secret whatever it looks like. Matched on the whole name or its
# last `_` part(s), so `prompt_tokens` (a count) stays visible while `access_token` is masked.
_SECRET_KEY = re.compile(
    r"(?:^|_)(?:password|passwd|passphrase|secret|api_?key|token|access_token|refresh_token|"
    r"authorization|auth_header|cookie)$",
    re.IGNORECASE,
)
_TOKEN_SHAPES = (
    re.compile(r"(access_token=)[^&\s\"'<>]+", re.IGNORECASE),
    re.compile(r"(\bBearer\s+)[A-Za-z0-9._~+/=-]+", re.IGNORECASE),
    re.compile(r"()\bsy[tu]_[A-Za-z0-9_=-]{8,}"),
)
_MIN_SECRET_LENGTH = 4


def is_secret_key(key: str) -> bool:
    return bool(_SECRET_KEY.search(key))


class SecretScrubber:
    """A structlog processor (and a plain text scrubber) that masks secrets."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: list[str] = []
        for value in secrets:
            self.add(value)

    def add(self, secret: str | None) -> None:
        if secret and len(secret) >= _MIN_SECRET_LENGTH and secret not in self._secrets:
            self._secrets.append(secret)
            self._secrets.sort(key=len, reverse=True)  # longest first: no partial leftovers

    def __call__(
        self, _logger: Any, _name: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        for key in list(event):
            event[key] = REDACTED if is_secret_key(str(key)) else self.scrub_value(event[key])
        return event

    def scrub_value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.scrub(value)
        if isinstance(value, Mapping):
            return {
                key: REDACTED if is_secret_key(str(key)) else self.scrub_value(item)
                for key, item in value.items()
            }
        if isinstance(value, (list, tuple, set, frozenset)):
            return [self.scrub_value(item) for item in value]
        if isinstance(value, (int, float, bool)) or value is None:
            return value
        return self.scrub(str(value))  # exceptions, paths, URLs: as the renderer would print

    def scrub(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        for pattern in _TOKEN_SHAPES:
            text = pattern.sub(lambda match: match.group(1) + REDACTED, text)
        return text


_scrubber = SecretScrubber()


def register_secret(value: str | None) -> None:
    """Mask `value` in every later log line (e.g. the access token obtained by logging in)."""
    _scrubber.add(value)


def configure_logging(
    level: str = "info", fmt: str = "console", secrets: Iterable[str] = ()
) -> None:
    """Every line on stderr in one format: ours, the libraries' (nio, aiohttp, the SDK),
    warnings and uncaught exceptions. With `fmt="json"` each line is one JSON object."""
    numeric = getattr(logging, level.upper(), logging.INFO)
    for secret in secrets:
        _scrubber.add(secret)
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    timestamper = structlog.processors.TimeStamper(fmt="iso", utc=True)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            timestamper,
            structlog.processors.format_exc_info,
            _scrubber,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    # matrix-nio, aiohttp and the SDK log through the standard library: the same processors
    # render their records (structlog's ProcessorFormatter), scrubbed, tracebacks included.
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.stdlib.add_logger_name,
            structlog.stdlib.add_log_level,
            timestamper,
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            _scrubber,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    # Libraries stay quiet below WARNING (their debug lines may carry message contents).
    logging.basicConfig(level=max(numeric, logging.WARNING), handlers=[handler], force=True)
    logging.captureWarnings(True)
    sys.excepthook = _log_uncaught


def _log_uncaught(
    kind: type[BaseException], error: BaseException, traceback: TracebackType | None
) -> None:
    """An uncaught exception is one more log line, in the configured format."""
    logging.getLogger("tchap_bot").critical("uncaught_exception", exc_info=(kind, error, traceback))
