"""The bot as a real subprocess (`python -m bot`), configured only by environment variables.

Why a subprocess: crash recovery must be proven with a real SIGKILL (no `finally`, no flush),
exit codes must be the process's own, and "no secret in the logs" must be checked on what the
process really writes to stderr. Readiness is read from the bot's own `/readyz` endpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from sandbox.fake_mistral import FakeMistral
from tests.support.synapse import RegisteredUser, SynapseServer, free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 60.0


def _die_with_parent() -> None:
    """SIGKILL the bot if pytest dies, so no orphan keeps syncing."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def bot_environment(
    synapse: SynapseServer,
    llm: FakeMistral,
    account: RegisteredUser,
    data_dir: Path,
    health_port: int,
    **settings: Any,
) -> dict[str, str]:
    """The process environment: the parent's minus any bot setting, plus the test's settings."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("TCHAP_BOT_", "MISTRAL_"))
    }
    api_key = str(settings.pop("mistral_api_key", "test-key"))
    values: dict[str, Any] = {
        "homeserver": synapse.base_url,
        "user_id": account.user_id,
        "password": account.password,
        "data_dir": data_dir,
        "sync_timeout_seconds": 5,
        "llm_retry_initial_ms": 50,
        "llm_retry_max_ms": 200,
        "llm_timeout_seconds": 10,
        "homeserver_retry_max_seconds": 1,
        "health_port": health_port,
        "log_format": "json",
        **settings,
    }
    for key, value in values.items():
        if isinstance(value, bool):
            value = "true" if value else "false"
        env[f"TCHAP_BOT_{key.upper()}"] = str(value)
    env["MISTRAL_API_KEY"] = api_key
    env["MISTRAL_SERVER_URL"] = llm.base_url
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclass
class BotProcess:
    """One bot account and data directory; the process can be started, killed, restarted."""

    account: RegisteredUser
    env: dict[str, str]
    data_dir: Path
    log_path: Path
    health_port: int
    process: subprocess.Popen[bytes] | None = None
    exit_codes: list[int] = field(default_factory=list)

    @classmethod
    def create(
        cls,
        synapse: SynapseServer,
        llm: FakeMistral,
        account: RegisteredUser,
        workdir: Path,
        **settings: Any,
    ) -> BotProcess:
        port = free_port()
        data_dir = workdir / "data"
        env = bot_environment(synapse, llm, account, data_dir, port, **settings)
        return cls(account, env, data_dir, workdir / "bot.log", port)

    @property
    def user_id(self) -> str:
        return self.account.user_id

    @property
    def database_path(self) -> Path:
        return self.data_dir / "tchap-bot.sqlite3"

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.health_port}"

    def start_process(self, fault: str | None = None, **extra_env: str) -> None:
        """Spawn `python -m bot`; `fault` sets TCHAP_BOT_FAULT_POINT for this run only."""
        if self.process is not None and self.process.poll() is None:
            raise AssertionError("the bot process is already running")
        env = dict(self.env, **extra_env)
        if fault is not None:
            env["TCHAP_BOT_FAULT_POINT"] = fault
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log_file:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "bot"],
                cwd=REPO_ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
            )

    async def start(self, fault: str | None = None, **extra_env: str) -> None:
        """Spawn and wait until `/readyz` says the bot is logged in and syncing."""
        self.start_process(fault, **extra_env)
        await self.wait_ready()

    async def get(self, path: str) -> tuple[int, str]:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session,
            session.get(self.health_url + path) as response,
        ):
            return response.status, await response.text()

    async def wait_ready(self, timeout: float = START_TIMEOUT) -> None:  # noqa: ASYNC109
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                status, _ = await self.get("/readyz")
                if status == 200:
                    return
            await asyncio.sleep(0.1)
        raise AssertionError(f"bot not ready within {timeout} s:\n{self.log_tail()}")

    def _check_alive(self) -> None:
        assert self.process is not None, "bot process not started"
        code = self.process.poll()
        if code is not None:
            raise AssertionError(f"bot exited with {code} during start-up:\n{self.log_tail()}")

    async def wait_exit(self, timeout: float = 30.0) -> int:  # noqa: ASYNC109
        """Wait for the process to end by itself; returns its exit code (-9 after SIGKILL)."""
        assert self.process is not None, "bot process not started"
        deadline = time.monotonic() + timeout
        while self.process.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"bot still running after {timeout} s:\n{self.log_tail()}")
            await asyncio.sleep(0.05)
        return self._reaped()

    def _reaped(self) -> int:
        assert self.process is not None
        code = int(self.process.returncode)
        self.exit_codes.append(code)
        self.process = None
        return code

    async def stop(self, timeout: float = 30.0) -> int:  # noqa: ASYNC109
        """SIGTERM (a clean stop, as systemd does) and wait; SIGKILL if it hangs."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return await self.wait_exit(timeout)
        except AssertionError:
            self.kill()
            raise

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        if self.process is not None:
            self._reaped()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:]) or "(no output)"

    def run_cli(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """`python -m bot <args>` with this bot's environment (export-data, purge-user...)."""
        return subprocess.run(
            [sys.executable, "-m", "bot", *args],
            cwd=REPO_ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Read the bot's database directly (read-only), independently of the bot's code."""
        return query_database(self.database_path, sql, params)


def query_database(path: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        return list(connection.execute(sql, params).fetchall())
    finally:
        connection.close()


def rows_about(path: Path, column: str, value: str) -> dict[str, int]:
    """Rows per table whose `column` equals `value`, for every table having that column.

    Tables are discovered from the schema, so a table added later is checked too.
    """
    counts: dict[str, int] = {}
    tables = [
        str(row[0])
        for row in query_database(path, "SELECT name FROM sqlite_master WHERE type = 'table'")
    ]
    for table in tables:
        columns = [str(row[1]) for row in query_database(path, f"PRAGMA table_info({table})")]
        if column in columns:
            ((count,),) = query_database(
                path, f"SELECT count(*) FROM {table} WHERE {column} = ?", (value,)
            )
            counts[table] = int(count)
    return counts


def database_text(path: Path) -> str:
    """Every text value of every table: what someone reading the file would find."""
    values: list[str] = []
    tables = [
        str(row[0])
        for row in query_database(path, "SELECT name FROM sqlite_master WHERE type = 'table'")
    ]
    for table in tables:
        for row in query_database(path, f"SELECT * FROM {table}"):
            values.extend(value for value in row if isinstance(value, str))
    return "\n".join(values)
