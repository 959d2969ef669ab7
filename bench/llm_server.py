"""The LLM for the benchmark: tests/support's FakeMistral in its own process, with knobs.

Why a separate process: the fake's HTTP work must not share a core's event loop with the
bot or the measuring clients. A small control API (another port) sets the latency and pace
per figure and reports what was asked (calls, tokens, in-flight high-water mark).

Usage counts are real Mistral (Tekken) tokens, so the summary figure's token counts mean
what they would mean on Mistral's API.

Run: `python -m bench.llm_server` prints `READY <chat_url> <control_url>` on stdout.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
import time
from typing import Any

import aiohttp
from aiohttp import web

from sandbox.fake_mistral import FakeMistral
from sandbox.mistral_wire import message_text, split_tokens

# A plausible answer to a civil servant's question: French prose with a little Markdown.
_ANSWER_SENTENCES = (
    "Voici les points essentiels à retenir pour votre demande.",
    "La procédure se déroule en trois étapes : la saisie du dossier, la validation par le "
    "service compétent, puis la notification à l'agent concerné.",
    "**Attention** : les délais courent à compter de la réception du dossier complet.",
    "Pour les agents contractuels, les mêmes règles s'appliquent, sauf mention contraire dans "
    "le contrat.",
    "Vous pouvez consulter la circulaire de référence ou vous rapprocher de votre service des "
    "ressources humaines.",
    "En cas de doute, je peux détailler chacune de ces étapes.",
)


def bench_answer(words: int) -> str:
    """A deterministic answer of about `words` words (Markdown, two paragraphs)."""
    out: list[str] = []
    count = 0
    index = 0
    while count < words:
        sentence = _ANSWER_SENTENCES[index % len(_ANSWER_SENTENCES)]
        out.append(sentence)
        count += len(sentence.split())
        index += 1
    half = max(1, len(out) // 2)
    return " ".join(out[:half]) + "\n\n" + " ".join(out[half:])


class BenchLLM(FakeMistral):
    """FakeMistral with a fixed-length answer, real token counts and request bookkeeping."""

    def __init__(self) -> None:
        super().__init__(responder=self._respond)
        self.answer_words = 60
        self.in_flight = 0
        self.max_in_flight = 0
        self.timeline: list[dict[str, Any]] = []
        self.sleeps_done: list[float] = []
        self.usages: list[dict[str, int]] = []
        from bot.answer.tokens import MistralTokenCounter

        self._tokens = MistralTokenCounter()
        self._tokens.count("warm up")

    async def _respond(self, body: dict[str, Any]) -> str:
        text = bench_answer(self.answer_words)
        pace = self.stream_tokens_per_second
        if pace and not body.get("stream"):
            # A model writes as fast streamed or not: the whole answer comes when it is written.
            await asyncio.sleep(len(split_tokens(text)) / pace)
        return text

    def _usage(self, body: dict[str, Any], text: str) -> dict[str, int]:  # type: ignore[override]
        prompt = sum(self._tokens.count(message_text(m)) for m in body.get("messages", []))
        completion = self._tokens.count(text) if text else 0
        usage = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
        self.usages.append(usage)
        return usage

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        arrived = time.perf_counter()
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            body = await request.json()  # aiohttp keeps the bytes: the fake reads them again
            users = [m for m in body.get("messages", []) if m.get("role") == "user"]
            key = message_text(users[-1])[-60:] if users else ""
            response = await super()._chat(request)
            # Send it now (aiohttp would after we return) so `done` is when the last byte left.
            if not response.prepared:
                await response.prepare(request)
            await response.write_eof()
            self.timeline.append({"arrived": arrived, "done": time.perf_counter(), "key": key})
            return response
        finally:
            self.in_flight -= 1

    async def _sleep(self, seconds: float) -> None:
        """The fake sleeps for the latency, then before each streamed token: when the second
        sleep of a stream ends, its first token leaves (sequential figures read that)."""
        await super()._sleep(seconds)
        self.sleeps_done.append(time.perf_counter())

    def stats(self) -> dict[str, Any]:
        users = []
        for body in self.requests:
            texts = [message_text(m) for m in body.get("messages", []) if m.get("role") == "user"]
            users.append(texts[-1][:120] if texts else "")
        return {
            "calls": len(self.requests),
            "streamed": sum(1 for body in self.requests if body.get("stream")),
            "max_in_flight": self.max_in_flight,
            "prompt_tokens": sum(u["prompt_tokens"] for u in self.usages),
            "prompt_token_counts": [u["prompt_tokens"] for u in self.usages],
            "completion_tokens": sum(u["completion_tokens"] for u in self.usages),
            "user_heads": users,
            "arrivals": [entry["arrived"] for entry in self.timeline],
            "timeline": list(self.timeline),
            "sleeps_done": list(self.sleeps_done),
        }

    def reset_stats(self) -> None:
        self.requests.clear()
        self.timeline.clear()
        self.sleeps_done.clear()
        self.usages.clear()
        self.max_in_flight = self.in_flight


async def _control_app(llm: BenchLLM) -> web.AppRunner:
    async def configure(request: web.Request) -> web.Response:
        data = await request.json()
        if "delay_seconds" in data:
            llm.delay_seconds = float(data["delay_seconds"])
        if "stream_tokens_per_second" in data:
            value = data["stream_tokens_per_second"]
            llm.stream_tokens_per_second = float(value) if value else None
        if "answer_words" in data:
            llm.answer_words = int(data["answer_words"])
        return web.json_response({"ok": True})

    async def stats(_request: web.Request) -> web.Response:
        return web.json_response(llm.stats())

    async def reset(_request: web.Request) -> web.Response:
        llm.reset_stats()
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/config", configure)
    app.router.add_get("/stats", stats)
    app.router.add_post("/reset", reset)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    return runner


async def _serve() -> None:
    llm = BenchLLM()
    await llm.start()
    control = await _control_app(llm)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    await web.SockSite(control, sock).start()
    print(f"READY {llm.base_url} http://127.0.0.1:{port}", flush=True)
    try:
        # Ends when the parent closes our stdin (or dies): no orphan server.
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    finally:
        await control.cleanup()
        await llm.stop()


class LLMServer:
    """Handle on the LLM server process, for the benchmark's side."""

    def __init__(self) -> None:
        self.process: asyncio.subprocess.Process | None = None
        self.base_url = ""
        self.control_url = ""

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.llm_server",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert self.process.stdout is not None
        line = (await asyncio.wait_for(self.process.stdout.readline(), 60)).decode().split()
        if not line or line[0] != "READY":
            raise RuntimeError(f"LLM server did not start: {line}")
        self.base_url, self.control_url = line[1], line[2]

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        async with (
            aiohttp.ClientSession() as session,
            session.request(method, self.control_url + path, json=body) as response,
        ):
            response.raise_for_status()
            return await response.json()

    async def configure(
        self,
        *,
        delay_seconds: float = 0.0,
        stream_tokens_per_second: float | None = None,
        answer_words: int = 60,
    ) -> None:
        await self._call(
            "POST",
            "/config",
            {
                "delay_seconds": delay_seconds,
                "stream_tokens_per_second": stream_tokens_per_second,
                "answer_words": answer_words,
            },
        )

    async def stats(self) -> dict[str, Any]:
        return dict(await self._call("GET", "/stats"))

    async def reset(self) -> None:
        await self._call("POST", "/reset")

    async def stop(self) -> None:
        if self.process is None:
            return
        if self.process.stdin is not None:
            self.process.stdin.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.process.wait(), 10)
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()
        self.process = None


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve())
