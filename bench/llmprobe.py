"""Where a streamed answer's extra CPU goes on the model's side alone, without Matrix.

Run: `python -m bench.llmprobe [--answers 8]` prints one JSON object. The fake model runs in
its own process (`bench.llm_server`), paced as in figure 3 (0.5 s to the first token, then 60
tokens a second, ~300 tokens); this process measures its own CPU for `--answers` answers at
once, each way:

- `client_*`: the bot's `LLMClient` (the SDK, the paced transport, aiohttp), `complete()`
  against `stream()` at the production edit interval;
- `read_*`: the same streamed body read through httpx with no SDK, by the paced transport
  (what the SDK is handed: one event per interval) and by the bare aiohttp transport (one
  event per token).

So `client_stream − client_complete` is what streaming costs before any Matrix edit,
`read_paced` the part of it that is reading 300 tokens off the socket, and the rest the SDK's
work on the handed-over events (`python -m bench.sdkprobe` measures that alone).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx2

from bench.figures.realistic import FIRST_TOKEN_SECONDS, TOKENS_PER_SECOND, answer_words
from bench.llm_server import LLMServer
from bot.answer.http_transport import AiohttpTransport
from bot.answer.llm import ChatMessage, ChatRequest, LLMClient
from bot.answer.stream_pacing import PacedTransport
from config.settings import Settings


def _request() -> ChatRequest:
    messages = [ChatMessage("system", "Tu es l'assistant des agents de l'État. " * 20)]
    for index in range(12):
        messages.append(ChatMessage("user", f"Question {index} : " + "quel délai ? " * 15))
        messages.append(ChatMessage("assistant", "Voici les points essentiels. " * 30))
    messages.append(ChatMessage("user", "Et pour un contractuel ?"))
    return ChatRequest(messages=messages, model="probe", temperature=0.3, max_tokens=800)


async def _cpu_ms_each(answers: int, one: Callable[[], Awaitable[None]]) -> float:
    await one()  # warm-up: first-call imports and caches
    started = time.process_time()
    await asyncio.gather(*(one() for _ in range(answers)))
    return (time.process_time() - started) / answers * 1000


async def _measure(answers: int) -> dict[str, Any]:
    interval = Settings.model_fields["stream_edit_interval_seconds"].default
    server = LLMServer()
    await server.start()
    try:
        await server.configure(
            delay_seconds=FIRST_TOKEN_SECONDS - 1 / TOKENS_PER_SECOND,
            stream_tokens_per_second=TOKENS_PER_SECOND,
            answer_words=answer_words(),
        )
        client = LLMClient(
            api_key="probe",
            server_url=server.base_url,
            timeout_seconds=60,
            max_retries=0,
            max_concurrency=answers,
            stream_interval_seconds=interval,
        )
        client.prepare()
        request = _request()

        async def complete() -> None:
            await client.complete(request)

        async def stream() -> None:
            async for _delta in client.stream(request):
                pass

        body = {"model": "probe", "stream": True, "messages": [{"role": "user", "content": "?"}]}
        readers: list[httpx2.AsyncClient] = []

        def reader(paced: bool) -> Callable[[], Awaitable[None]]:
            inner = AiohttpTransport(max_connections=answers)
            http = httpx2.AsyncClient(transport=PacedTransport(inner, interval) if paced else inner)
            readers.append(http)

            async def read() -> None:
                async with http.stream(
                    "POST", server.base_url + "/v1/chat/completions", json=body
                ) as response:
                    async for _part in response.aiter_bytes():
                        pass

            return read

        result: dict[str, Any] = {"answers_at_once": answers, "edit_interval_s": interval}
        for name, one in (
            ("client_complete", complete),
            ("client_stream", stream),
            ("read_paced", reader(paced=True)),
            ("read_per_token", reader(paced=False)),
        ):
            result[f"{name}_cpu_ms"] = round(await _cpu_ms_each(answers, one), 2)
        await client.close()
        for http in readers:
            await http.aclose()
        return result
    finally:
        await server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--answers", type=int, default=8, help="answers at once, each way")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(_measure(args.answers))))


if __name__ == "__main__":
    main()
