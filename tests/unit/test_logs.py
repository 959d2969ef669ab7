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
    logging.captureWarnings(False)
    monkeypatch.setattr(sys, "excepthook", sys.__excepthook__)
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


def test_json_format_makes_every_line_json_libraries_warnings_and_crashes_included(
    json_logs: Any,
) -> None:
    import warnings

    structlog.get_logger("bot.test").info("ours", room_id="!r:hs")
    logging.getLogger("nio.client.async_client").warning("Timed out, sleeping for %ds", 3)
    logging.getLogger("aiohttp.client").error("Unclosed client session")
    warnings.warn("deprecated thing", UserWarning, stacklevel=1)
    try:
        raise ValueError("boom")
    except ValueError:
        sys.excepthook(*sys.exc_info())

    records = [json.loads(line) for line in json_logs()]  # raises on any non-JSON line
    by_event = {record["event"]: record for record in records}
    assert by_event["ours"]["room_id"] == "!r:hs"
    nio = by_event["Timed out, sleeping for 3s"]
    assert nio["logger"] == "nio.client.async_client" and nio["level"] == "warning"
    assert by_event["Unclosed client session"]["logger"] == "aiohttp.client"
    assert any("deprecated thing" in record["event"] for record in records)
    crash = by_event["uncaught_exception"]
    assert crash["level"] == "critical" and "ValueError: boom" in crash["exception"]
    for record in records:
        assert "timestamp" in record and "level" in record
