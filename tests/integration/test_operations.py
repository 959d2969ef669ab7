"""Operations on a real process: stopping in every state, one log format, an outbound proxy.

The bot runs as a subprocess (`python -m bot`) against the suite's real Synapse and the fake
Mistral server; SIGTERM is a real signal, and the logs read are the process's own stderr.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bot.app import STOP_DEADLINE_SECONDS
from sandbox.fake_mistral import FakeMistral
from tests.integration.conftest import BOT_DISPLAY_NAME, StartBot
from tests.support.bot_helpers import ask, eventually, room_with_bot
from tests.support.bot_process import REPO_ROOT, BotProcess
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


# --- tchap-bot doctor and reset-session ---------------------------------------------------------


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str


async def cli(bot: BotProcess, *args: str) -> CliResult:
    """`python -m bot <args>` with the bot's environment, without blocking the event loop
    (the fake Mistral server answers from this loop)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        *args,
        cwd=REPO_ROOT,
        env=bot.env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return CliResult(process.returncode, stdout.decode(), stderr.decode())


def doctor_lines(result: Any) -> list[str]:
    lines = result.stdout.strip().splitlines()
    for line in lines:
        assert line.startswith(("✓ ", "✗ ")), f"one ✓/✗ line per check: {line!r}"
    return lines


def failed(lines: list[str], label: str) -> str:
    found = [line for line in lines if line.startswith(f"✗ {label}")]
    assert found, f"no failed check {label!r} in {lines}"
    return found[0]


async def test_doctor_passes_on_a_ready_bot_and_names_each_fault_with_its_fix(
    synapse: SynapseServer,
    fake_llm: FakeMistral,
    new_user: Any,
    tmp_path: Path,
) -> None:
    bot = await _new_bot(
        synapse, fake_llm, new_user, tmp_path, allowed_models="mistral-large-latest"
    )
    await bot.start()  # first start: session, crypto store, cross-signing identity
    await bot.stop()

    passing = await cli(bot, "doctor")
    lines = doctor_lines(passing)
    assert passing.returncode == 0, passing.stdout + passing.stderr
    labels = [line.split(" : ", 1)[0][2:] for line in lines]
    for label in (
        "Configuration",
        "Dossier de données",
        "Verrou",
        "Serveur Matrix",
        "Compte du bot",
        "Magasin de clés",
        "Signature croisée",
        "Service de modèles",
        "Modèle mistral-small-latest",
        "Modèle mistral-large-latest",
        "OCR (facultatif)",
        "Embeddings (facultatif)",
        "Transcription (facultatif)",
        "Vision (facultatif)",
    ):
        assert label in labels, (label, lines)
    assert "appareil" in " ".join(lines) and "signé" in " ".join(lines)
    assert bot.account.password not in passing.stdout + passing.stderr

    # Faults: a revoked token, an unknown model, a data folder others can read.
    ((token,),) = bot.query("SELECT access_token FROM session")
    await synapse.admin_request("POST", "/_matrix/client/v3/logout", token, {})
    bot.data_dir.chmod(0o755)
    bot.env["TCHAP_BOT_MODEL"] = "modele-inconnu"
    failing = await cli(bot, "doctor")
    lines = doctor_lines(failing)
    assert failing.returncode == 1
    assert "reset-session" in failed(lines, "Compte du bot")
    assert "TCHAP_BOT_MODEL" in failed(lines, "Modèle modele-inconnu")
    assert "chmod 700" in failed(lines, "Dossier de données")
    assert token not in failing.stdout + failing.stderr

    # The fix the doctor names: forget the revoked session, start again with the password.
    bot.env["TCHAP_BOT_MODEL"] = "mistral-small-latest"
    bot.data_dir.chmod(0o700)
    reset = await cli(bot, "reset-session")
    assert reset.returncode == 0, reset.stderr
    assert "Session oubliée" in reset.stdout and token not in reset.stdout
    assert bot.query("SELECT count(*) FROM session") == [(0,)]
    await bot.start()
    await bot.stop()
    again = await cli(bot, "doctor")
    assert again.returncode == 0, again.stdout

    # Nothing reachable: the homeserver and the model endpoint are both named, with what to do.
    bot.env["TCHAP_BOT_HOMESERVER"] = "http://127.0.0.1:9"
    fake_llm.set_down(True)
    try:
        down = await cli(bot, "doctor")
    finally:
        fake_llm.set_down(False)
    lines = doctor_lines(down)
    assert down.returncode == 1
    assert "TCHAP_BOT_HOMESERVER" in failed(lines, "Serveur Matrix")
    assert "MISTRAL_SERVER_URL" in failed(lines, "Service de modèles")
    assert "injoignable" in failed(lines, "Compte du bot")


async def test_doctor_reports_invalid_settings_and_reset_session_refuses_a_running_bot(
    synapse: SynapseServer, fake_llm: FakeMistral, new_user: Any, tmp_path: Path
) -> None:
    import fcntl
    import os

    bot = await _new_bot(synapse, fake_llm, new_user, tmp_path)
    bot.env["TCHAP_BOT_PASSWORD"] = "change-me"
    refused = await cli(bot, "doctor")
    assert refused.returncode == 1
    (line,) = doctor_lines(refused)
    assert line.startswith("✗ Configuration") and "TCHAP_BOT_PASSWORD" in line

    # Another process holds the data folder's lock: reset-session names it and changes nothing.
    bot.data_dir.mkdir(parents=True)
    with (bot.data_dir / "tchap-bot.lock").open("w") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        lock.write(f"{os.getpid()}\n")
        lock.flush()
        bot.env["TCHAP_BOT_PASSWORD"] = bot.account.password
        busy = await cli(bot, "reset-session")
        doctor = await cli(bot, "doctor")
    assert busy.returncode == 4
    assert busy.stderr.strip().splitlines() == [
        f"Le bot tourne (PID {os.getpid()}) sur ce dossier de données : arrêtez-le avant "
        "`tchap-bot reset-session`."
    ]
    assert f"✓ Verrou : le bot tourne sur ce dossier (PID {os.getpid()})" in doctor.stdout


# --- Metrics: questions, commands and scheduled runs apart ---------------------------------------


def _sample(name: str, **labels: str) -> float:
    from prometheus_client import REGISTRY

    value = REGISTRY.get_sample_value(name, labels or None)
    return float(value or 0.0)


async def test_questions_and_commands_are_counted_apart(
    start_bot: StartBot, user_client: Any
) -> None:
    bot = await start_bot()
    alice = await user_client("alice")
    room_id = await room_with_bot(alice, bot.user_id, is_direct=True)
    questions = _sample("tchapbot_questions_total")
    commands = _sample("tchapbot_commands_total", command="aide")
    scheduled = _sample("tchapbot_scheduled_runs_total")

    await ask(alice, room_id, bot.user_id, "!aide")
    await ask(alice, room_id, bot.user_id, "Une vraie question")

    assert _sample("tchapbot_questions_total") == questions + 1, "the command is no question"
    assert _sample("tchapbot_commands_total", command="aide") == commands + 1
    assert _sample("tchapbot_scheduled_runs_total") == scheduled
