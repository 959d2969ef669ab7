"""The benchmark's world: a real Synapse, the LLM server, users, and the bot under test.

The bot runs as `python -m bot` (its own process, configured by environment variables like
in production) so its CPU time and memory can be read from /proc without the measuring
clients' share; only the overhead figure runs it in-process, to read raw samples.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from bench.llm_server import LLMServer
from bench.observer import QUIET_FILTER, Observer
from bench.procstat import cpu_seconds, memory_mb
from sandbox.synapse import RegisteredUser, SynapseServer, free_port

REPO = Path(__file__).resolve().parent.parent
BOT_DISPLAY_NAME = "Assistant IA [DINUM]"
READY_TIMEOUT = 120.0


@dataclass(frozen=True)
class Scale:
    """Sample counts: the full run fits ~10 minutes on 2 cores, the quick one a few seconds."""

    overhead_rate: float = 20.0
    overhead_seconds: float = 30.0
    overhead_rooms: int = 10
    e2e_samples: int = 100
    summary_messages: int = 5000
    summary_runs: int = 3
    streaming_samples: int = 6  # realistic answers (5.5 s each) per mode, figures 3 and 7
    concurrency_rooms: int = 200
    concurrency_trials: int = 2
    scale_rooms: int = 1000
    scale_messages: int = 1_000_000
    scale_turns_per_room: int = 100
    context_samples: int = 1000
    power_room_members: int = 2000
    power_repeats: int = 15
    power_commands: int = 30  # whole commands per command, room and variant (figure 9)
    restarts: int = 3
    settle_seconds: float = 1.0  # pauses that let the bot finish its bookkeeping off the clock
    warm_up: int = 3
    llm_time_scale: float = 1.0  # the quick run shortens the simulated LLM latencies


FULL = Scale()
QUICK = Scale(
    overhead_seconds=1.0,
    overhead_rooms=2,
    e2e_samples=3,
    summary_messages=400,
    summary_runs=1,
    streaming_samples=1,
    concurrency_rooms=4,
    concurrency_trials=1,
    scale_rooms=4,
    scale_messages=4000,
    scale_turns_per_room=10,
    context_samples=20,
    power_room_members=10,
    power_repeats=3,
    power_commands=3,
    restarts=1,
    settle_seconds=0.2,
    warm_up=1,
    llm_time_scale=0.25,
)


def question_text(index: int) -> str:
    """A civil servant's question of ordinary length, different each time."""
    topics = (
        "un congé bonifié",
        "le télétravail ponctuel",
        "une mutation interne",
        "le compte épargne-temps",
        "une formation qualifiante",
        "le remboursement des frais de mission",
    )
    return (
        f"Bonjour, pourriez-vous me rappeler les étapes pour demander {topics[index % 6]} "
        f"et les délais à prévoir ? (question {index})"
    )


class Bench:
    """Owns every process the run starts; `close()` stops them all."""

    def __init__(self, scale: Scale, synapse_dir: Path | None, work_dir: Path | None) -> None:
        self.scale = scale
        base = synapse_dir if synapse_dir is not None else _fast_tmp()
        self._synapse_root = Path(tempfile.mkdtemp(prefix="bench-synapse-", dir=base))
        self.work_dir = Path(work_dir or tempfile.mkdtemp(prefix="tchap-bench-"))
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.synapse = SynapseServer(workdir=self._synapse_root)
        self.llm = LLMServer()
        self._names = itertools.count()
        self._observers: list[Observer] = []
        self._processes: list[BotProcess | EchoProcess] = []
        self.floor: dict[str, float] = {}
        self.realistic: dict[str, Any] = {}  # bench.figures.realistic, shared by figures 3 and 7
        self.profile_dir: Path | None = None
        # The measured bot's interpreter: the runtime-only venv for full runs (bench.prodenv).
        self.bot_python = sys.executable
        self.synapse_on_tmpfs = _is_tmpfs(self._synapse_root)

    async def start(self) -> None:
        await self.synapse.start_async()
        await self.llm.start()

    async def close(self) -> None:
        for observer in self._observers:
            with contextlib.suppress(Exception):
                await observer.close()
        for process in self._processes:
            with contextlib.suppress(Exception):
                await process.stop()
        await self.llm.stop()
        await self.synapse.stop_async()
        shutil.rmtree(self._synapse_root, ignore_errors=True)

    def cleanup_work_dir(self) -> None:
        shutil.rmtree(self.work_dir, ignore_errors=True)

    async def register(self, name: str, displayname: str | None = None) -> RegisteredUser:
        return await self.synapse.register(f"{name}-{next(self._names)}", displayname=displayname)

    async def observer(
        self, user: RegisteredUser, *, encryption: bool, quiet: bool = False
    ) -> Observer:
        """A measuring user; `quiet` ones sync messages only (no typing notices, no presence)."""
        store = self.work_dir / "clients" / user.localpart
        observer = Observer(
            self.synapse.base_url, user, store, encryption, QUIET_FILTER if quiet else None
        )
        await observer.start()
        self._observers.append(observer)
        return observer

    async def echo(
        self, *, encryption: bool, delay_seconds: float = 0.0, like_bot: bool = False
    ) -> EchoProcess:
        user = await self.register("echo")
        echo = EchoProcess(
            self, user, encryption=encryption, delay_seconds=delay_seconds, like_bot=like_bot
        )
        await echo.start()
        self._processes.append(echo)
        return echo

    async def bot_account(self) -> RegisteredUser:
        return await self.register("assistant", displayname=BOT_DISPLAY_NAME)

    def bot_process(self, account: RegisteredUser, name: str) -> BotProcess:
        process = BotProcess(self, account, self.work_dir / name)
        self._processes.append(process)
        return process

    def bot_settings(
        self, account: RegisteredUser, data_dir: Path, **overrides: Any
    ) -> dict[str, Any]:
        """Production defaults (streaming on), except the rate limits and the pause between
        large summaries (a benchmark asks fast, and figure 6 repeats `!resume 5000`, on purpose)."""
        values: dict[str, Any] = {
            "homeserver": self.synapse.base_url,
            "user_id": account.user_id,
            "access_token": account.access_token,
            "device_id": account.device_id,
            "data_dir": str(data_dir),
            "mistral_api_key": "bench-key",
            "mistral_server_url": self.llm.base_url,
            "user_rate_limit_per_minute": 0,
            "room_rate_limit_per_minute": 0,
            "large_summary_cooldown_seconds": 0,
            "health_port": 0,
            "log_format": "json",
            "log_level": "info",
        }
        values.update(overrides)
        return values

    async def rooms_with(
        self,
        observer: Observer,
        peer: str,
        count: int,
        *,
        encrypted: bool = False,
        concurrency: int = 8,
        wait_join: bool = True,
    ) -> list[str]:
        """`count` DM rooms between the observer and `peer`, created `concurrency` at a time."""
        gate = asyncio.Semaphore(concurrency)

        async def one() -> str:
            async with gate:
                return await observer.create_room([peer], encrypted=encrypted)

        rooms = list(await asyncio.gather(*(one() for _ in range(count))))
        if wait_join:
            await observer.wait_joined(rooms, peer, timeout=max(60.0, count * 0.5))
        return rooms


def _fast_tmp() -> Path:
    """Synapse's SQLite on tmpfs when there is one: fsync latency is the disk's, not the
    homeserver's, and would otherwise dominate room creation (measured 5 vs 16 rooms/s)."""
    shm = Path("/dev/shm")
    return shm if shm.is_dir() and os.access(shm, os.W_OK) else Path(tempfile.gettempdir())


def _is_tmpfs(path: Path) -> bool:
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return False
    best = ("", "")
    resolved = str(path.resolve())
    for line in mounts:
        parts = line.split()
        if len(parts) >= 3 and resolved.startswith(parts[1]) and len(parts[1]) > len(best[0]):
            best = (parts[1], parts[2])
    return best[1] == "tmpfs"


def _clean_env() -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("TCHAP_BOT_", "MISTRAL_"))
    }
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


class BotProcess:
    """`python -m bot` configured through the environment, as an administrator would run it."""

    def __init__(self, bench: Bench, account: RegisteredUser, data_dir: Path) -> None:
        self.bench = bench
        self.account = account
        self.data_dir = data_dir
        self.log_path = data_dir.parent / f"{data_dir.name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.settings: dict[str, Any] = {}
        self.health_port = 0

    @property
    def user_id(self) -> str:
        return self.account.user_id

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def environment(self, **overrides: Any) -> dict[str, str]:
        self.settings = self.bench.bot_settings(self.account, self.data_dir, **overrides)
        env = _clean_env()
        for key, value in self.settings.items():
            name = key.upper() if key.startswith("mistral_") else f"TCHAP_BOT_{key.upper()}"
            env[name] = str(value).lower() if isinstance(value, bool) else str(value)
        return env

    def spawn(self, **overrides: Any) -> float:
        """Start the process; returns the perf_counter time just before the spawn."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.health_port = free_port()
        env = self.environment(health_port=self.health_port, **overrides)
        log = self.log_path.open("ab")
        started = time.perf_counter()
        self.process = subprocess.Popen(
            [self.bench.bot_python, "-m", "bot"],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
        log.close()
        return started

    async def wait_ready(self, timeout: float = READY_TIMEOUT) -> float:  # noqa: ASYNC109
        """Until /readyz says the first sync is done; returns that perf_counter time."""
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{self.health_port}/readyz"
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            while time.monotonic() < deadline:
                if self.process is not None and self.process.poll() is not None:
                    raise RuntimeError(
                        f"bot exited with {self.process.returncode}: {self.log_tail()}"
                    )
                with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                    async with session.get(url) as response:
                        if response.status == 200:
                            return time.perf_counter()
                await asyncio.sleep(0.02)
        raise TimeoutError(f"bot not ready within {timeout} s: {self.log_tail()}")

    async def start(self, **overrides: Any) -> None:
        self.spawn(**overrides)
        await self.wait_ready()

    async def stop(self) -> int:
        process = self.process
        if process is None:
            return 0
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(process.wait, 40)
            except subprocess.TimeoutExpired:
                process.kill()
                await asyncio.to_thread(process.wait, 10)
        self.process = None
        return int(process.returncode or 0)

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    def memory(self) -> dict[str, float]:
        return memory_mb(self.pid)

    def log_tail(self, lines: int = 20) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


class EchoProcess:
    """The zero-work peer (bench.echo) in its own process."""

    def __init__(
        self,
        bench: Bench,
        user: RegisteredUser,
        *,
        encryption: bool,
        delay_seconds: float,
        like_bot: bool = False,
    ) -> None:
        self.bench = bench
        self.user = user
        self.encryption = encryption
        self.delay_seconds = delay_seconds
        self.like_bot = like_bot
        self.process: asyncio.subprocess.Process | None = None

    @property
    def user_id(self) -> str:
        return self.user.user_id

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def start(self) -> None:
        store_path = self.bench.work_dir / "echo" / self.user.localpart
        store_path.mkdir(parents=True, exist_ok=True)
        config = {
            "homeserver": self.bench.synapse.base_url,
            "user_id": self.user.user_id,
            "device_id": self.user.device_id,
            "access_token": self.user.access_token,
            "store_path": str(store_path),
            "encryption": self.encryption,
            "delay_seconds": self.delay_seconds,
            "like_bot": self.like_bot,
        }
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.echo",
            json.dumps(config),
            cwd=REPO,
            env=_clean_env(),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), READY_TIMEOUT)
        if line.strip() != b"READY":
            raise RuntimeError(f"echo peer did not start: {line!r}")

    async def stop(self) -> int:
        if self.process is None:
            return 0
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            await asyncio.wait_for(self.process.wait(), 10)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
        code = int(self.process.returncode or 0)
        self.process = None
        return code

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    def memory(self) -> dict[str, float]:
        return memory_mb(self.pid)


async def ask(observer: Observer, room_id: str, body: str, timeout: float = 30) -> float:  # noqa: ASYNC109
    """One question and its reply; returns the round trip in seconds."""
    event_id, sent = await observer.send(room_id, body)
    arrival = await observer.reply_to(event_id, timeout)
    return arrival.at - sent


async def wait_answering(
    observer: Observer,
    room_id: str,
    timeout: float = READY_TIMEOUT,  # noqa: ASYNC109
    text: str = "Bonjour, êtes-vous disponible ?",
) -> None:
    """Until the bot answers `text` in `room_id` (a first start ignores what came before its
    sync)."""
    deadline = time.monotonic() + timeout
    while True:
        event_id, _ = await observer.send(room_id, text)
        try:
            await observer.reply_to(event_id, timeout=3)
            return
        except TimeoutError:
            if time.monotonic() > deadline:
                raise
