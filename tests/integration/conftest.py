"""The bot under test: a real BotApp, in this process, against the session's Synapse.

`start_bot()` registers a bot account once per test and runs the bot until the test ends;
`RunningBot.restart()` stops it and starts it again on the same data directory (same device,
same database), as an administrator restarting the service would.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bot.app import BotApp
from config.settings import Settings, load_settings
from sandbox.fake_mistral import FakeMistral
from tests.support.synapse import RegisteredUser, SynapseServer

BOT_DISPLAY_NAME = "Assistant IA [DINUM]"


@dataclass
class RunningBot:
    account: RegisteredUser
    settings: Settings
    app: BotApp
    task: asyncio.Task[int] | None = None
    exit_codes: list[int] = field(default_factory=list)

    @property
    def user_id(self) -> str:
        return self.account.user_id

    async def start(self) -> None:
        self.app = BotApp(self.settings)
        self.task = asyncio.create_task(self.app.run())
        for _ in range(300):
            gateway = self.app.gateway
            if gateway is not None and gateway.ready.is_set():
                return
            if self.task.done():
                raise AssertionError(f"bot stopped during start-up with {self.task.result()}")
            await asyncio.sleep(0.05)
        raise AssertionError("bot not ready after 15 s")

    async def stop(self) -> int:
        if self.task is None:
            return 0
        self.app.request_stop()
        code = await asyncio.wait_for(self.task, timeout=30)
        self.exit_codes.append(code)
        self.task = None
        return code

    async def restart(self, **overrides: Any) -> None:
        await self.stop()
        if overrides:
            self.settings = self.settings.model_copy(update=overrides)
        await self.start()

    @property
    def store(self) -> Any:
        return self.app.store


StartBot = Callable[..., Awaitable[RunningBot]]


def bot_settings(
    synapse: SynapseServer,
    llm: FakeMistral,
    account: RegisteredUser,
    data_dir: Path,
    **overrides: Any,
) -> Settings:
    values: dict[str, Any] = {
        "homeserver": synapse.base_url,
        "user_id": account.user_id,
        "password": account.password,
        "data_dir": data_dir,
        "mistral_api_key": "test-key",
        "mistral_server_url": llm.base_url,
        "sync_timeout_seconds": 10,
        "llm_retry_initial_ms": 50,
        "llm_retry_max_ms": 200,
        "llm_timeout_seconds": 10,
        "homeserver_retry_max_seconds": 1,
        "streaming": False,
        "health_port": 0,
    }
    values.update(overrides)
    return load_settings(None, **values)


@pytest.fixture
async def start_bot(
    synapse: SynapseServer,
    fake_llm: FakeMistral,
    new_user: Callable[..., Awaitable[RegisteredUser]],
    tmp_path: Path,
) -> AsyncIterator[StartBot]:
    """Factory: `bot = await start_bot(**settings_overrides)` — a ready bot with display name
    `Assistant IA [DINUM]`."""
    running: list[RunningBot] = []

    async def factory(**overrides: Any) -> RunningBot:
        account = await new_user("assistant", displayname=BOT_DISPLAY_NAME)
        settings = bot_settings(
            synapse, fake_llm, account, tmp_path / f"bot-{len(running)}", **overrides
        )
        bot = RunningBot(account=account, settings=settings, app=BotApp(settings))
        running.append(bot)
        await bot.start()
        return bot

    yield factory
    for bot in running:
        await bot.stop()
