"""What one call through the mistralai SDK costs the bot in CPU, apart from any network.

Run: `python -m bench.sdkprobe` prints one JSON object. The SDK is used as the bot uses it
(`Mistral(async_client=...)`, the bot's own message conversion); its HTTP client gets an
in-process transport that answers at once with a fixed body, so what is measured is the SDK
building the request and parsing the answer. cProfile counts (exactly) how often the SDK
builds a pydantic model class per call (`pydantic.create_model`), the main cost found.
"""

from __future__ import annotations

import asyncio
import cProfile
import json
import pstats
import time
from typing import Any

import httpx2
from mistralai.client import Mistral

from bot.answer.llm import ChatMessage, ChatRequest, _sdk_arguments

TURNS = 12  # a conversation of 12 exchanges, as in figure 3's rooms halfway through
CALLS = 200
ANSWER = "Voici les points essentiels à retenir pour votre demande. " * 8


def _completion_body() -> bytes:
    return json.dumps(
        {
            "id": "probe",
            "object": "chat.completion",
            "model": "probe",
            "created": 1,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": ANSWER},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 1000, "completion_tokens": 80, "total_tokens": 1080},
        }
    ).encode()


def _stream_body(events: int) -> bytes:
    """`events` text events, then the finishing one and `[DONE]`: what the bot's paced
    transport hands the SDK for a realistic answer (9 events in figure 3)."""
    words = ANSWER.split(" ")
    lines = []
    for index in range(events):
        chunk = {
            "id": "probe",
            "object": "chat.completion.chunk",
            "model": "probe",
            "created": 1,
            "choices": [
                {
                    "index": 0,
                    "delta": {"content": " ".join(words[index::events])},
                    "finish_reason": None,
                }
            ],
        }
        lines.append(b"data: " + json.dumps(chunk).encode() + b"\n\n")
    final = {
        "id": "probe",
        "object": "chat.completion.chunk",
        "model": "probe",
        "created": 1,
        "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1000, "completion_tokens": 80, "total_tokens": 1080},
    }
    lines.append(b"data: " + json.dumps(final).encode() + b"\n\n")
    lines.append(b"data: [DONE]\n\n")
    return b"".join(lines)


class _Answering(httpx2.AsyncBaseTransport):
    def __init__(self) -> None:
        self.plain = _completion_body()
        self.stream = _stream_body(8)

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        body = json.loads(await request.aread())
        if body.get("stream"):
            return httpx2.Response(
                200, headers={"content-type": "text/event-stream"}, content=self.stream
            )
        return httpx2.Response(
            200, headers={"content-type": "application/json"}, content=self.plain
        )


def _request() -> ChatRequest:
    messages = [ChatMessage("system", "Tu es l'assistant des agents de l'État. " * 20)]
    for index in range(TURNS):
        messages.append(ChatMessage("user", f"Question {index} : " + "quel délai ? " * 15))
        messages.append(ChatMessage("assistant", ANSWER))
    messages.append(ChatMessage("user", "Et pour un contractuel ?"))
    return ChatRequest(messages=messages, model="probe", temperature=0.3, max_tokens=800)


async def _measure() -> dict[str, Any]:
    sdk = Mistral(
        api_key="probe",
        server_url="http://127.0.0.1:9",
        async_client=httpx2.AsyncClient(transport=_Answering()),
    )
    request = _request()

    async def plain() -> None:
        await sdk.chat.complete_async(**_sdk_arguments(request))

    async def streamed() -> None:
        events = await sdk.chat.stream_async(**_sdk_arguments(request))
        async with events as stream:
            async for _event in stream:
                pass

    result: dict[str, Any] = {"turns": TURNS, "calls": CALLS}
    for name, call in (("complete", plain), ("stream_9_events", streamed)):
        for _ in range(20):  # warm-up: first-call imports and caches
            await call()
        started = time.process_time()
        for _ in range(CALLS):
            await call()
        result[f"{name}_cpu_ms_per_call"] = (time.process_time() - started) / CALLS * 1000
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(20):
            await call()
        profiler.disable()
        stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
        created = sum(
            calls[1]
            for (filename, _line, function), calls in stats.items()
            if function == "create_model" and filename.endswith("pydantic/main.py")
        )
        result[f"{name}_model_classes_built_per_call"] = created / 20
    return result


def main() -> None:
    print(json.dumps(asyncio.run(_measure())))


if __name__ == "__main__":
    main()
