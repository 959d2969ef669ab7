"""Issue 17 (large rooms): nio names a room without `m.room.name` or alias after its members,
sorting every member at each call (~3 ms in a room of 2,000), so the gateway computes that name
once per change of the room's state. The name must stay nio's, and follow the room's state as
soon as sync shows a change."""

from __future__ import annotations

from typing import Any

from tests.integration.conftest import StartBot
from tests.support.bot_helpers import ask, room_with_bot
from tests.support.matrix_client import join_room


async def test_an_unnamed_room_is_named_after_its_members_as_they_change(
    start_bot: StartBot, user_client: Any
) -> None:
    bot = await start_bot()
    alice, bob = await user_client("alice"), await user_client("bob")
    gateway = bot.app.gateway
    assert gateway is not None
    room_id = await room_with_bot(alice, bot.user_id)  # no name, no alias
    await ask(alice, room_id, bot.user_id, "!aide")  # handled: the room's name was asked for
    room = gateway.client.rooms[room_id]
    before = gateway.room_context(room_id).name
    assert before == room.group_name()

    await alice.room_invite(room_id, bob.user_id)
    await join_room(bob, room_id)
    await ask(alice, room_id, bot.user_id, "!aide")  # after the bot's sync brought the join
    after = gateway.room_context(room_id).name
    assert after != before, "a new member renames an unnamed room"
    assert after == room.group_name()

    await alice.room_put_state(room_id, "m.room.name", {"name": "Équipe projet"})
    await ask(alice, room_id, bot.user_id, "!aide")
    assert gateway.room_context(room_id).name == "Équipe projet"

    await alice.room_put_state(room_id, "m.room.name", {"name": ""})
    await ask(alice, room_id, bot.user_id, "!aide")
    assert gateway.room_context(room_id).name == room.group_name() == after
