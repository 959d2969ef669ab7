"""Rights, schedules and the data folder on a real Synapse.

- Power levels are read from two state events and cached per room; a change of the room's
  power levels (seen by sync) drops the cache: a moderator command is refused, allowed after
  a promotion, refused again after a demotion.
- A scheduled run speaks for its author: if the author left the room, or is no longer an
  allowed user, the run is skipped.
- One process per data folder: a second `python -m bot` exits with code 4 and one French line
  naming the first one's PID.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from bot.app import EXIT_ALREADY_RUNNING
from bot.french import PARIS
from bot.ops import datalock
from sandbox.fake_mistral import FakeMistral
from tests.integration.conftest import BOT_DISPLAY_NAME, StartBot
from tests.integration.test_commands import group_room, set_power_level
from tests.support.bot_helpers import ask, room_with_bot
from tests.support.bot_process import BotProcess
from tests.support.matrix_client import events_in, send_text, sync_once
from tests.support.synapse import SynapseServer

REFUSED = "réservée aux modérateurs"


async def test_power_levels_are_cached_and_follow_promotion_and_demotion(
    start_bot: StartBot, user_client: Any
) -> None:
    bot = await start_bot()
    alice, bob = await user_client("alice"), await user_client("bob")
    room_id = await group_room(alice, bob, bot)
    power = bot.app.gateway.power

    first = await ask(bob, room_id, bot.user_id, "!config consigne Réponds en vers.")
    assert REFUSED in first["content"]["body"]
    fetched = power.fetches
    again = await ask(bob, room_id, bot.user_id, "!config consigne Réponds en prose.")
    assert REFUSED in again["content"]["body"]
    assert power.fetches == fetched, "no state change: the cached power levels are used"

    await set_power_level(alice, room_id, bob.user_id, 50)
    promoted = await ask(bob, room_id, bot.user_id, "!config consigne Réponds en vers.")
    assert "✅" in promoted["content"]["body"]
    assert power.fetches == fetched + 1, "the promotion dropped the cache: read once more"

    await set_power_level(alice, room_id, bob.user_id, 0)
    demoted = await ask(bob, room_id, bot.user_id, "!config consigne Réponds en prose.")
    assert REFUSED in demoted["content"]["body"]
    audit = await bot.store.settings.audit_of(room_id)
    assert [row.new_value for row in audit] == ["Réponds en vers."]


async def _due_schedule(bot: Any, client: Any, room_id: str) -> Any:
    soon = datetime.fromtimestamp(time.time() + 180, PARIS)
    answer = await ask(
        client, room_id, bot.user_id, f'!planifier "tous-les-jours {soon:%H:%M}" aide'
    )
    assert "Planification n°" in answer["content"]["body"]
    [schedule] = await bot.store.schedules.list(room_id)
    return schedule


async def _status_when_done(bot: Any, event_id: str) -> str | None:
    deadline = time.monotonic() + 20
    while (status := await bot.store.triggers.status(event_id)) in (None, "pending"):
        assert time.monotonic() < deadline, f"scheduled run {event_id} still {status}"
        await asyncio.sleep(0.1)
    return status


async def test_a_scheduled_run_is_skipped_when_its_author_left_or_is_no_longer_allowed(
    start_bot: StartBot, user_client: Any, fake_llm: FakeMistral
) -> None:
    bot = await start_bot()
    alice, bob = await user_client("alice"), await user_client("bob")
    room_id = await group_room(alice, bob, bot)
    await set_power_level(alice, room_id, bob.user_id, 50)
    schedule = await _due_schedule(bot, bob, room_id)
    await bob.room_leave(room_id)
    await sync_once(alice)

    assert bot.app.scheduler is not None
    bot.app.scheduler.clock = lambda: schedule.next_run_ms / 1000 + 60
    assert await bot.app.scheduler.tick() == 1, "advanced and claimed together"
    run_id = f"$schedule-{schedule.id}-{schedule.next_run_ms}"
    assert await _status_when_done(bot, run_id) == "skipped"
    [moved] = await bot.store.schedules.list(room_id)
    assert moved.next_run_ms > schedule.next_run_ms

    # Alice's own schedule, while she is allowed, runs; then she no longer is.
    await bot.store.schedules.delete(room_id, schedule.id, alice.user_id)
    mine = await _due_schedule(bot, alice, room_id)
    bot.app.scheduler.clock = lambda: mine.next_run_ms / 1000 + 60
    assert await bot.app.scheduler.tick() == 1
    assert await _status_when_done(bot, f"$schedule-{mine.id}-{mine.next_run_ms}") == "answered"
    [mine] = await bot.store.schedules.list(room_id)
    await bot.restart(allowed_users=["@personne-d-autre:*"])
    bot.app.scheduler.clock = lambda: mine.next_run_ms / 1000 + 60
    assert await bot.app.scheduler.tick() == 1
    assert await _status_when_done(bot, f"$schedule-{mine.id}-{mine.next_run_ms}") == "skipped"


async def test_a_second_process_on_the_same_data_folder_exits_4_naming_the_first(
    synapse: SynapseServer,
    fake_llm: FakeMistral,
    new_user: Any,
    user_client: Any,
    tmp_path: Path,
) -> None:
    account = await new_user("assistant", displayname=BOT_DISPLAY_NAME)
    bot = BotProcess.create(synapse, fake_llm, account, tmp_path)
    try:
        await bot.start()
        assert bot.process is not None
        first_pid = bot.process.pid
        assert datalock.holder(bot.data_dir) == first_pid, "doctor can read who holds the folder"

        second = bot.run_cli("run", timeout=60)

        assert second.returncode == EXIT_ALREADY_RUNNING
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1, second.stderr
        assert f"PID {first_pid}" in lines[0] and "dossier de données" in lines[0]
        assert bot.process.poll() is None, "the first process is untouched"
        alice = await user_client("alice")
        room_id = await room_with_bot(alice, bot.user_id, is_direct=True)
        question = await send_text(alice, room_id, "Toujours là ?")
        await ask(alice, room_id, bot.user_id, "Et maintenant ?")
        assert any(
            e["content"].get("m.relates_to", {}).get("m.in_reply_to", {}).get("event_id")
            == question
            for e in events_in(alice, room_id)
        )
        assert await bot.stop() == 0
        assert datalock.holder(bot.data_dir) is None, "released with the process"
    finally:
        bot.kill()
