"""Operations on a real process: stopping in every state, one log format, an outbound proxy.

The bot runs as a subprocess (`python -m bot`) against the suite's real Synapse and the fake
Mistral server; SIGTERM is a real signal, and the logs read are the process's own stderr.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from bot.app import STOP_DEADLINE_SECONDS
from tests.integration.conftest import BOT_DISPLAY_NAME
from tests.support.bot_helpers import ask, room_with_bot
from tests.support.bot_process import BotProcess
from tests.support.fake_mistral import FakeMistral
from tests.support.http_proxy import LocalProxy
from tests.support.synapse import SynapseServer

pytestmark = pytest.mark.integration


def json_lines(bot: BotProcess) -> list[dict[str, Any]]:
    """Every line the process wrote, each parsed as one JSON object (fails on any other line)."""
    records = []
    for number, line in enumerate(bot.log_text().splitlines(), 1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise AssertionError(f"line {number} is not JSON: {line!r}") from None
        assert isinstance(record, dict) and "event" in record and "level" in record, line
        records.append(record)
    return records


async def eventually(condition: Callable[[], bool], timeout: float = 30.0) -> None:  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


async def stopped_within_deadline(bot: BotProcess, signum: int = signal.SIGTERM) -> int:
    assert bot.process is not None
    bot.process.send_signal(signum)
    return await bot.wait_exit(timeout=STOP_DEADLINE_SECONDS)


@pytest.fixture
async def silent_server() -> AsyncIterator[int]:
    """A TCP server that accepts connections and never answers (a homeserver that hangs)."""
    held: list[asyncio.StreamWriter] = []

    async def accept(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


@pytest.fixture
async def local_proxy() -> AsyncIterator[LocalProxy]:
    proxy = LocalProxy()
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.stop()


async def _new_bot(
    synapse: SynapseServer, fake_llm: FakeMistral, new_user: Any, tmp_path: Path, **settings: Any
) -> BotProcess:
    account = await new_user("assistant", displayname=BOT_DISPLAY_NAME)
    return BotProcess.create(synapse, fake_llm, account, tmp_path, **settings)


async def test_unreachable_homeserver_at_start_backs_off_in_french_and_sigterm_stops_it(
    synapse: SynapseServer, fake_llm: FakeMistral, new_user: Any, tmp_path: Path
) -> None:
    bot = await _new_bot(
        synapse,
        fake_llm,
        new_user,
        tmp_path,
        homeserver="http://127.0.0.1:9",  # nothing listens there
        homeserver_retry_max_seconds=2,
    )
    bot.start_process()
    try:
        started = time.monotonic()
        await eventually(lambda: bot.log_text().count("matrix.unreachable") >= 3)
        elapsed = time.monotonic() - started
        assert await bot.get("/healthz") == (200, "ok\n"), "alive while it retries"
        assert (await bot.get("/readyz"))[0] == 503, "not ready without a homeserver"
        assert await stopped_within_deadline(bot) == 0
    finally:
        bot.kill()

    records = json_lines(bot)
    attempts = [record for record in records if record["event"] == "matrix.unreachable"]
    assert [record["attempt"] for record in attempts] == list(range(1, len(attempts) + 1))
    delays = [record["retry_in"] for record in attempts]
    assert delays[:3] == [1.0, 2.0, 2.0], "doubling, capped by homeserver_retry_max_seconds"
    for record in attempts:
        assert record["message"].startswith("Serveur Matrix injoignable (http://127.0.0.1:9)")
        assert f"nouvel essai dans {record['retry_in']:g} s" in record["message"]
    # No hot loop: each attempt waited its backoff (first three: 1 + 2 s before the third).
    assert len(attempts) <= 2 + elapsed / 1.0
    assert "Timed out, sleeping" not in bot.log_text(), "nio's own retries are off"
    assert any(record["event"] == "bot.stopped" for record in records)


async def test_sigterm_stops_a_bot_whose_homeserver_never_answers_its_first_login(
    synapse: SynapseServer,
    fake_llm: FakeMistral,
    new_user: Any,
    tmp_path: Path,
    silent_server: int,
) -> None:
    bot = await _new_bot(
        synapse, fake_llm, new_user, tmp_path, homeserver=f"http://127.0.0.1:{silent_server}"
    )
    bot.start_process()
    try:
        await eventually(lambda: "health.listening" in bot.log_text())
        assert (await bot.get("/readyz"))[0] == 503
        assert await stopped_within_deadline(bot, signal.SIGINT) == 0
    finally:
        bot.kill()
    json_lines(bot)


async def test_sigterm_while_answering_stops_in_time_and_the_question_is_answered_after(
    synapse: SynapseServer,
    fake_llm: FakeMistral,
    new_user: Any,
    user_client: Any,
    tmp_path: Path,
) -> None:
    """Every line of two real runs (question, stop mid-answer, restart) is one JSON object."""
    bot = await _new_bot(synapse, fake_llm, new_user, tmp_path, streaming=False)
    try:
        await bot.start()
        alice = await user_client("alice")
        room_id = await room_with_bot(alice, bot.user_id, is_direct=True)
        await ask(alice, room_id, bot.user_id, "Première question")
        fake_llm.hang_next(120)  # the model never answers this one while the bot runs
        pending = asyncio.ensure_future(ask(alice, room_id, bot.user_id, "Question Orion-5"))
        await eventually(lambda: bool(fake_llm.requests_containing("Orion-5")))
        assert await stopped_within_deadline(bot) == 0
        await bot.start()  # the pending question is resumed and answered once
        answer = await asyncio.wait_for(pending, 60)
        assert answer["content"]["body"]
        await bot.stop()
    finally:
        with contextlib.suppress(Exception):
            pending.cancel()
        bot.kill()

    records = json_lines(bot)
    events = [record["event"] for record in records]
    assert events.count("bot.started") == 2 and events.count("bot.stopped") == 2
    assert any(record.get("signal") == "SIGTERM" for record in records)


async def test_proxy_from_the_environment_carries_matrix_and_model_traffic(
    synapse: SynapseServer,
    fake_llm: FakeMistral,
    new_user: Any,
    user_client: Any,
    tmp_path: Path,
    local_proxy: LocalProxy,
) -> None:
    bot = await _new_bot(synapse, fake_llm, new_user, tmp_path, streaming=False)
    homeserver = synapse.base_url.removeprefix("http://")
    model = fake_llm.base_url.removeprefix("http://")
    try:
        await bot.start(HTTP_PROXY=local_proxy.url, HTTPS_PROXY=local_proxy.url)
        alice = await user_client("alice")
        room_id = await room_with_bot(alice, bot.user_id, is_direct=True)
        answer = await ask(alice, room_id, bot.user_id, "Question par le proxy")
        assert answer["content"]["body"]
    finally:
        await bot.stop()
    assert {homeserver, model} <= local_proxy.targets(), local_proxy.seen
    assert any("/v1/chat/completions" in target for _, target in local_proxy.seen)

    # NO_PROXY exempts the model's host; TCHAP_BOT_PROXY_URL sets the proxy without HTTP_PROXY.
    local_proxy.seen.clear()
    try:
        await bot.start(TCHAP_BOT_PROXY_URL=local_proxy.url, NO_PROXY=f"example.org,{model}")
        alice_again = await user_client("alice")
        room_id = await room_with_bot(alice_again, bot.user_id, is_direct=True)
        await ask(alice_again, room_id, bot.user_id, "Sans proxy vers le modèle")
    finally:
        await bot.stop()
    assert homeserver in local_proxy.targets()
    assert model not in local_proxy.targets(), local_proxy.seen
