"""Secrets never reach the logs, whatever path they take (our events, libraries, tracebacks)."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from bot.ops.logs import REDACTED, SecretScrubber, configure_logging, is_secret_key, register_secret

PASSWORD = "mot-de-passe-tres-secret"
API_KEY = "mistral-cle-0123456789"
LOGIN_TOKEN = "syt_YXNzaXN0YW50_abcdefghijklmnop_0AbCdE"


@pytest.fixture
def json_logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Configure the real logging pipeline (JSON to stderr) and give a reader of its lines."""
    stderr = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    configure_logging("debug", "json", [PASSWORD, API_KEY])

    def lines() -> list[str]:
        return [line for line in stderr.getvalue().splitlines() if line.strip()]

    yield lines
    structlog.reset_defaults()
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)


def test_configured_secrets_are_masked_everywhere_in_an_event(json_logs: Any) -> None:
    log = structlog.get_logger("test")
    log.warning(
        f"échec avec {PASSWORD}",
        detail=f"clé {API_KEY} refusée",
        nested={"headers": [f"x-key: {API_KEY}"], "password": "autre"},
    )

    (line,) = json_logs()
    assert PASSWORD not in line and API_KEY not in line and "autre" not in line
    record = json.loads(line)
    assert record["event"] == f"échec avec {REDACTED}"
    assert record["detail"] == f"clé {REDACTED} refusée"
    assert record["nested"]["password"] == REDACTED


def test_fields_named_like_secrets_are_masked_but_counts_stay(json_logs: Any) -> None:
    structlog.get_logger("test").info(
        "llm.answered", access_token="abcd1234", api_key="k-999", prompt_tokens=120
    )

    record = json.loads(json_logs()[0])
    assert record["access_token"] == REDACTED
    assert record["api_key"] == REDACTED
    assert record["prompt_tokens"] == 120


def test_token_obtained_at_login_is_masked_once_registered(json_logs: Any) -> None:
    secret = "a-runtime-token-value-42"
    register_secret(secret)
    structlog.get_logger("test").error("sync failed", url=f"/sync?since=s1&token={secret}")

    line = json_logs()[0]
    assert secret not in line


@pytest.mark.parametrize(
    "text",
    [
        "GET http://hs/_matrix/client/v3/sync?access_token=unknownSecretValue&since=s72",
        "Authorization: Bearer unknownSecretValue",
        f"token {LOGIN_TOKEN} rejected",
    ],
)
def test_token_shapes_are_masked_without_knowing_the_value(text: str) -> None:
    scrubbed = SecretScrubber().scrub(text)
    assert "unknownSecretValue" not in scrubbed
    assert LOGIN_TOKEN not in scrubbed
    assert REDACTED in scrubbed


def test_library_logs_and_their_tracebacks_are_scrubbed(json_logs: Any) -> None:
    library = logging.getLogger("nio.responses")
    try:
        raise RuntimeError(f"connection to https://hs/?access_token=abc123def failed ({PASSWORD})")
    except RuntimeError:
        library.exception("request failed with key %s", API_KEY)

    output = "\n".join(json_logs())
    assert "request failed with key" in output, "the library's warning is kept"
    assert "RuntimeError" in output, "the traceback is kept"
    for secret in (PASSWORD, API_KEY, "abc123def"):
        assert secret not in output


def test_secret_key_names() -> None:
    for name in ("password", "access_token", "MISTRAL_API_KEY", "apikey", "Authorization"):
        assert is_secret_key(name), name
    for name in ("prompt_tokens", "completion_tokens", "room_id", "event_id", "token_count"):
        assert not is_secret_key(name), name
