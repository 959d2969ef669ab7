"""Data protection on a real Synapse: redactions, edits, retention, leaving rooms, data requests,
allowed users, and logs without secrets or message contents.

What is stored is checked in the SQLite file itself (every table), what the model sees in the
fake LLM's requests, and what is logged in the real process's stderr.
"""

from __future__ import annotations

import asyncio
import json
import stat
from pathlib import Path
from typing import Any

import structlog
from prometheus_client.parser import text_string_to_metric_families

from bot.app import EXIT_AUTH_FAILED
from bot.room_config import RoomConfigRepository
from bot.store.database import now_ms
from bot.store.retention import DAY_MS, purge_expired
from sandbox.fake_mistral import FakeMistral
from sandbox.mistral_wire import message_text
from tests.integration.conftest import BOT_DISPLAY_NAME, StartBot
from tests.support.bot_helpers import ask, bot_replies, eventually, replies_to, room_with_bot
from tests.support.bot_process import BotProcess, bot_environment, database_text, rows_about
from tests.support.matrix_client import send_text, wait_for_event
from tests.support.synapse import SynapseServer


def prompt_text(request: dict[str, Any], role: str | None = None) -> str:
    return "\n".join(
        message_text(m) for m in request["messages"] if role is None or m["role"] == role
    )


# --- Redactions and edits --------------------------------------------------------------------


async def test_redaction_removes_the_message_from_store_and_from_the_next_prompt(
    start_bot: StartBot, user_client: Any, fake_llm: FakeMistral
) -> None:
    bot = await start_bot()
    alice = await user_client("alice")
    room_id = await room_with_bot(alice, bot.user_id, name="Salle des secrets")
    mention = {"mentions": [bot.user_id]}
    plain = await send_text(alice, room_id, "Le code du coffre est 99817")
    question = await send_text(
        alice, room_id, f"{bot.user_id} mon identifiant est ZX-4417, retiens-le", **mention
    )
    await wait_for_event(alice, room_id, replies_to(question))
    assert await bot.store.messages.get(plain) is not None

    for event_id in (plain, question):
        await alice.room_redact(room_id, event_id, reason="erreur")
    await ask(alice, room_id, bot.user_id, f"{bot.user_id} que sais-tu de moi ?", **mention)

    assert await bot.store.messages.get(plain) is None
    assert await bot.store.messages.get(question) is None
    last = fake_llm.requests[-1]
    assert "ZX-4417" not in prompt_text(last), "neither the question nor the answer quoting it"
    assert "que sais-tu de moi" in prompt_text(last, "user")
    stored = database_text(bot.settings.database_path)
    assert "ZX-4417" not in stored and "99817" not in stored


async def test_edit_replaces_the_stored_text_and_the_next_prompt_shows_it(
    start_bot: StartBot, user_client: Any, fake_llm: FakeMistral
) -> None:
    bot = await start_bot()
    alice = await user_client("alice")
    room_id = await room_with_bot(alice, bot.user_id, is_direct=True)
    question = await send_text(alice, room_id, "Mon bureau est au 3e étage, porte 312")
    await wait_for_event(alice, room_id, replies_to(question))

    await alice.room_send(
        room_id,
        "m.room.message",
        {
            "msgtype": "m.text",
            "body": "* Mon bureau est au 5e étage, porte 508",
            "m.new_content": {"msgtype": "m.text", "body": "Mon bureau est au 5e étage, porte 508"},
            "m.relates_to": {"rel_type": "m.replace", "event_id": question},
        },
    )
    await ask(alice, room_id, bot.user_id, "Où est mon bureau ?")

    edited = await bot.store.messages.get(question)
    assert edited is not None and edited.body == "Mon bureau est au 5e étage, porte 508"
    users = prompt_text(fake_llm.requests[-1], "user")
    assert "porte 508" in users
    assert "porte 312" not in users
    assert len(fake_llm.requests) == 2, "an edit is not a new question"


# --- Retention and leaving rooms ------------------------------------------------------------


async def test_retention_purge_removes_messages_older_than_the_retention(
    start_bot: StartBot, user_client: Any, fake_llm: FakeMistral
) -> None:
    bot = await start_bot(retention_days=30)
    alice = await user_client("alice")
    room_id = await room_with_bot(alice, bot.user_id, is_direct=True)
    await ask(alice, room_id, bot.user_id, "Question à oublier dans un mois")
    room_config = RoomConfigRepository(bot.store)
    await room_config.load_all()
    path = bot.settings.database_path

    assert await purge_expired(bot.store, room_config, 30, at_ms=now_ms()) == 0
    assert rows_about(path, "room_id", room_id)["room_messages"] == 2

    later = now_ms() + 31 * DAY_MS
    removed = await purge_expired(bot.store, room_config, 30, at_ms=later)

    assert removed == 2
    counts = rows_about(path, "room_id", room_id)
    assert counts["room_messages"] == 0 and counts["conversation_turns"] == 0
    await ask(alice, room_id, bot.user_id, "Nouvelle question")
    assert "oublier dans un mois" not in prompt_text(fake_llm.requests[-1])


async def test_a_kicked_bot_deletes_everything_about_the_room(
    start_bot: StartBot, user_client: Any
) -> None:
    bot = await start_bot()
    alice = await user_client("alice")
    room_id = await room_with_bot(alice, bot.user_id, name="Salle quittée")
    other_room = await room_with_bot(alice, bot.user_id, name="Salle gardée")
    for room in (room_id, other_room):
        await send_text(alice, room, "Un message ordinaire")
        await ask(alice, room, bot.user_id, f"{bot.user_id} une question", mentions=[bot.user_id])
    path = bot.settings.database_path
    assert sum(rows_about(path, "room_id", room_id).values()) >= 4

    await alice.room_kick(room_id, bot.user_id, reason="fin du projet")

    async def forgotten() -> bool:
        return sum(rows_about(path, "room_id", room_id).values()) == 0

    await eventually(forgotten)
    assert rows_about(path, "room_id", other_room)["room_messages"] >= 3


# --- Data subject requests (CLI) ------------------------------------------------------------


async def test_export_data_and_purge_user_from_the_command_line(
    start_bot: StartBot,
    user_client: Any,
    synapse: SynapseServer,
    fake_llm: FakeMistral,
) -> None:
    bot = await start_bot()
    alice = await user_client("alice")
    bob = await user_client("bob")
    room_id = await room_with_bot(alice, bot.user_id, name="Salle commune")
    await alice.room_invite(room_id, bob.user_id)
    await bob.join(room_id)
    mention = {"mentions": [bot.user_id]}
    await send_text(alice, room_id, "Mon matricule est A-55120")
    await ask(
        alice, room_id, bot.user_id, f"{bot.user_id} rappelle mon matricule A-55120", **mention
    )
    await ask(bob, room_id, bot.user_id, f"{bot.user_id} question de Bob", **mention)
    env = bot_environment(synapse, fake_llm, bot.account, bot.settings.data_dir, 0)
    cli = BotProcess(bot.account, env, bot.settings.data_dir, bot.settings.data_dir / "cli.log", 0)

    exported = await asyncio.to_thread(cli.run_cli, "export-data", alice.user_id)

    assert exported.returncode == 0, exported.stderr
    data = json.loads(exported.stdout)
    assert data["user_id"] == alice.user_id
    bodies = [m["body"] for m in data["messages"]]
    assert "Mon matricule est A-55120" in bodies and len(bodies) == 2
    assert all(m["sender"] == alice.user_id for m in data["messages"])
    assert "question de Bob" not in exported.stdout

    purged = await asyncio.to_thread(cli.run_cli, "purge-user", alice.user_id)

    assert purged.returncode == 0, purged.stderr
    assert alice.user_id in purged.stdout
    assert "A-55120" not in database_text(bot.settings.database_path)
    assert rows_about(bot.settings.database_path, "sender", alice.user_id)["room_messages"] == 0
    again = json.loads((await asyncio.to_thread(cli.run_cli, "export-data", alice.user_id)).stdout)
    assert again["messages"] == [] and again["conversation_turns"] == []
    assert "question de Bob" in database_text(bot.settings.database_path)


# --- Access control and logs ----------------------------------------------------------------


async def test_users_outside_allowed_users_never_reach_the_llm(
    start_bot: StartBot, user_client: Any, fake_llm: FakeMistral
) -> None:
    bot = await start_bot(allowed_users="@alice-*:localhost")
    alice = await user_client("alice")
    mallory = await user_client("mallory")
    room_id = await room_with_bot(alice, bot.user_id, name="Salle mixte")
    await alice.room_invite(room_id, mallory.user_id)
    await mallory.join(room_id)
    mention = {"mentions": [bot.user_id]}

    intruder = await send_text(mallory, room_id, f"{bot.user_id} question non autorisée", **mention)
    command = await send_text(mallory, room_id, "!aide")
    await ask(alice, room_id, bot.user_id, f"{bot.user_id} question autorisée", **mention)

    answered = {
        e["content"].get("m.relates_to", {}).get("m.in_reply_to", {}).get("event_id")
        for e in bot_replies(alice, room_id, bot.user_id)
    }
    assert intruder not in answered and command not in answered
    assert not fake_llm.requests_containing("non autorisée")
    assert len(fake_llm.requests) == 1


async def test_message_contents_are_logged_when_the_debugging_switch_is_on(
    start_bot: StartBot, user_client: Any
) -> None:
    """The converse (off by default: no content in the logs) is checked on a real process below."""
    bot = await start_bot(log_message_content=True)
    alice = await user_client("alice")
    room_id = await room_with_bot(alice, bot.user_id, is_direct=True)

    with structlog.testing.capture_logs() as logs:
        await ask(alice, room_id, bot.user_id, "Contenu bavard Vega-2")

    prompts = [entry for entry in logs if entry["event"] == "conversation.prompt"]
    assert prompts and "Vega-2" in str(prompts[0]["messages"])


async def test_real_process_logs_no_secret_nor_content_and_serves_health_and_metrics(
    synapse: SynapseServer,
    fake_llm: FakeMistral,
    new_user: Any,
    user_client: Any,
    tmp_path: Path,
) -> None:
    password = "Mdp-Tres-Secret-8841!"
    api_key = "sk-cle-mistral-tres-secrete-5521"
    account = await new_user("assistant", password=password, displayname=BOT_DISPLAY_NAME)
    bot = BotProcess.create(
        synapse, fake_llm, account, tmp_path, mistral_api_key=api_key, log_level="debug"
    )
    try:
        await bot.start()
        assert await bot.get("/healthz") == (200, "ok\n")
        alice = await user_client("alice")
        room_id = await room_with_bot(alice, bot.user_id, is_direct=True)
        fake_llm.fail_next(4, status=500)  # the first attempt and its 3 retries
        failure = await ask(alice, room_id, bot.user_id, "Contenu confidentiel Hermès-7781")
        answer = await ask(alice, room_id, bot.user_id, "Autre contenu Athéna-3302")
        assert failure["content"]["msgtype"] == "m.notice"
        # Streamed: the first message may hold only the first words, then grows by edits.
        assert answer["content"]["body"].startswith("Réponse")

        samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}

        async def answer_recorded() -> bool:
            status, metrics_text = await bot.get("/metrics")
            assert status == 200
            samples.clear()
            samples.update(
                ((sample.name, tuple(sorted(sample.labels.items()))), sample.value)
                for family in text_string_to_metric_families(metrics_text)
                for sample in family.samples
            )
            return samples.get(("tchapbot_answers_total", ())) == 1  # after the final edit

        await eventually(answer_recorded)
        assert samples[("tchapbot_questions_total", ())] == 2
        assert samples[("tchapbot_answers_total", ())] == 1
        # An LLM failure is counted once, by the LLM client, not again as a bot error.
        assert samples[("tchapbot_llm_errors_total", (("kind", "unavailable"),))] == 1
        assert not any(name == "tchapbot_errors_total" for name, _ in samples)
        assert samples[("tchapbot_llm_retries_total", (("kind", "unavailable"),))] == 3
        assert samples[("tchapbot_llm_seconds_count", ())] == 2
        assert samples[("tchapbot_llm_tokens_total", (("kind", "completion"),))] > 0
        assert samples[("tchapbot_queue_depth", ())] == 0
        assert samples[("tchapbot_sync_lag_seconds", ())] >= 0
        assert samples[("tchapbot_last_sync_timestamp_seconds", ())] > 0

        ((token,),) = bot.query("SELECT access_token FROM session")
        await synapse.admin_request("POST", "/_matrix/client/v3/logout", token, {})
        assert await bot.wait_exit() == EXIT_AUTH_FAILED
    finally:
        bot.kill()

    logs = bot.log_text()
    assert "bot.authentication_failed" in logs and "matrix.logged_in" in logs
    assert "llm.request_failed" in logs
    for secret in (password, api_key, token):
        assert secret not in logs
    for content in ("Hermès-7781", "Athéna-3302", "Réponse simulée"):
        assert content not in logs, content
    assert stat.S_IMODE(bot.data_dir.stat().st_mode) & 0o077 == 0
    assert stat.S_IMODE(bot.database_path.stat().st_mode) & 0o077 == 0
