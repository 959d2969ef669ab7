"""Mistral's API wire format, as the fake server (``sandbox.fake_mistral``) reads and writes it.

Why apart from the server: these are pure functions of a request body, with no server state.
Tests and the bench use the readers (``message_text``, ``image_urls``, ``split_tokens``) to
inspect what the bot sent, and the builders keep every JSON body in the exact shape the
``mistralai`` SDK parses (completions, stream chunks, errors, models, embeddings, OCR,
transcriptions) in one place, next to each other.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from typing import Any

from aiohttp import web

DEFAULT_MODEL = "mistral-small-latest"
_TOKEN_RE = re.compile(r"\s*\S+\s*|\s+")

_ERROR_TEXTS = {
    400: "Bad request",
    401: "Unauthorized",
    429: "Requests rate limit exceeded",
    500: "Internal server error",
    502: "Bad gateway",
    503: "Service unavailable",
    504: "Gateway timeout",
}
NOT_FOUND_BODY = '{"detail": "Not Found"}'  # what a server without the endpoint answers


# -- reading requests ----------------------------------------------------------------


def message_text(message: dict[str, Any]) -> str:
    """Text of a chat message whose content is a string or a list of chunks."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


def message_images(message: dict[str, Any]) -> list[str]:
    """The image URLs (``data:`` URLs from the bot) of a chat message's ``image_url`` parts."""
    content = message.get("content")
    if not isinstance(content, list):
        return []
    urls = []
    for part in content:
        if isinstance(part, dict) and part.get("type") == "image_url":
            url = part.get("image_url")
            if isinstance(url, dict):  # {"url": ...} is the other accepted shape
                url = url.get("url")
            if isinstance(url, str):
                urls.append(url)
    return urls


def image_urls(body: dict[str, Any]) -> list[str]:
    """Every image sent in a chat request (the bot sends them with the last question only)."""
    return [
        url for m in body.get("messages", []) if isinstance(m, dict) for url in message_images(m)
    ]


def split_tokens(text: str) -> list[str]:
    """Word-ish tokens whose concatenation is exactly ``text`` (whitespace preserved)."""
    return _TOKEN_RE.findall(text) or [""]


# -- errors --------------------------------------------------------------------------


def error_response(
    status: int, retry_after: float | None = None, body: str | None = None
) -> web.Response:
    """HTTP ``status`` with Mistral's JSON error body (or ``body``) and ``Retry-After``."""
    headers = {}
    if retry_after is not None:
        headers["Retry-After"] = (
            str(int(retry_after)) if float(retry_after).is_integer() else str(retry_after)
        )
    if body is None:
        message = _ERROR_TEXTS.get(status, "Error")
        body = json.dumps(
            {
                "object": "error",
                "message": message,
                "type": message.lower().replace(" ", "_"),
                "param": None,
                "code": str(status),
            }
        )
    return web.Response(status=status, text=body, content_type="application/json", headers=headers)


def image_refused() -> web.Response:
    """The 400 Mistral answers when a model that cannot read images is sent one."""
    return error_response(
        400,
        body=json.dumps(
            {
                "object": "error",
                "message": "Image input is not supported by this model",
                "type": "invalid_request_error",
                "param": None,
                "code": "3051",
            }
        ),
    )


# -- chat answers --------------------------------------------------------------------


def usage(body: dict[str, Any], text: str) -> dict[str, int]:
    """Token counts for a chat request and its answer (``split_tokens`` as the tokenizer)."""
    prompt = sum(len(split_tokens(message_text(m))) for m in body.get("messages", []))
    completion = len(split_tokens(text)) if text else 0
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def completion(body: dict[str, Any], text: str) -> dict[str, Any]:
    """A whole (not streamed) chat completion answering ``text``."""
    return {
        "id": f"cmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model") or DEFAULT_MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "tool_calls": None},
                "finish_reason": "stop",
            }
        ],
        "usage": usage(body, text),
    }


def chunk_header(body: dict[str, Any]) -> dict[str, Any]:
    """The fields every chunk of one streamed answer shares."""
    return {
        "id": f"cmpl-{uuid.uuid4().hex}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": body.get("model") or DEFAULT_MODEL,
    }


def chunk_event(
    header: dict[str, Any], delta: dict[str, Any], finish: str | None = None, **extra: Any
) -> bytes:
    """One server-sent event carrying a stream chunk (``extra``: e.g. the final ``usage``)."""
    chunk = {**header, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
    return f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n".encode()


# -- side endpoints ------------------------------------------------------------------


def model_card(model_id: str, capabilities: dict[str, bool], created: int) -> dict[str, Any]:
    """One entry of ``GET /v1/models``."""
    return {
        "id": model_id,
        "object": "model",
        "created": created,
        "owned_by": "mistralai",
        "type": "base",
        "capabilities": capabilities,
    }


def embeddings(model: str, texts: list[str], vectors: list[list[float]]) -> dict[str, Any]:
    """The answer to ``POST /v1/embeddings``: one vector per input text, in order."""
    tokens = sum(len(split_tokens(text)) for text in texts)
    return {
        "id": uuid.uuid4().hex,
        "object": "list",
        "model": model,
        "usage": {"prompt_tokens": tokens, "completion_tokens": 0, "total_tokens": tokens},
        "data": [
            {"object": "embedding", "embedding": vector, "index": index}
            for index, vector in enumerate(vectors)
        ],
    }


def ocr(model: str, pages: list[tuple[int, str]]) -> dict[str, Any]:
    """The answer to ``POST /v1/ocr``: markdown per (0-based page index, text)."""
    return {
        "model": model,
        "pages": [
            {
                "index": index,
                "markdown": markdown,
                "images": [],
                "dimensions": {"dpi": 200, "height": 2339, "width": 1654},
            }
            for index, markdown in pages
        ],
        "usage_info": {"pages_processed": len(pages), "doc_size_bytes": None},
    }


def transcription(model: str, text: str, language: str) -> dict[str, Any]:
    """The answer to ``POST /v1/audio/transcriptions``."""
    return {
        "model": model,
        "text": text,
        "language": language,
        "segments": [],
        "usage": {
            "prompt_audio_seconds": 1,
            "prompt_tokens": 4,
            "completion_tokens": len(split_tokens(text)),
            "total_tokens": 4 + len(split_tokens(text)),
        },
    }
