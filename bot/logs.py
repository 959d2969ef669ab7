"""Structured logs (structlog) that never carry secrets.

Message contents and prompts are only logged when `TCHAP_BOT_LOG_MESSAGE_CONTENT` is on; known
secret values are scrubbed from every string as a last line of defence.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any

import structlog

SECRET_KEYS = ("password", "access_token", "api_key", "token", "secret", "authorization")
REDACTED = "[secret masqué]"


class SecretScrubber:
    def __init__(self, secrets: Iterable[str]) -> None:
        self._secrets = [value for value in secrets if value and len(value) >= 4]

    def __call__(
        self, _logger: Any, _name: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        for key in list(event):
            if any(marker in key.lower() for marker in SECRET_KEYS):
                event[key] = REDACTED
            elif isinstance(event[key], str):
                event[key] = self.scrub(event[key])
        return event

    def scrub(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text


def configure_logging(
    level: str = "info", fmt: str = "console", secrets: Iterable[str] = ()
) -> None:
    numeric = getattr(logging, level.upper(), logging.INFO)
    scrubber = SecretScrubber(secrets)
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            scrubber,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    # matrix-nio and the SDK log through the standard library: keep them quiet and scrubbed.
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_StdlibScrubFilter(scrubber))
    logging.basicConfig(level=max(numeric, logging.WARNING), handlers=[handler], force=True)


class _StdlibScrubFilter(logging.Filter):
    def __init__(self, scrubber: SecretScrubber) -> None:
        super().__init__()
        self._scrubber = scrubber

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self._scrubber.scrub(record.getMessage())
        record.args = None
        return True
