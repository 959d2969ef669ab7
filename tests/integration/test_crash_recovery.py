"""Exactly once across crashes: the bot is SIGKILLed at each dangerous point, then restarted.

Each run kills the real `python -m bot` process (TCHAP_BOT_FAULT_POINT, see bot/faults.py) at
one point between "question seen" and "answer recorded", restarts it without the fault, and
checks through a real user's client that every question got exactly one reply.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest

from bot.ops.faults import POINTS
from sandbox.fake_mistral import FakeMistral
from tests.integration.conftest import BOT_DISPLAY_NAME
from tests.support.bot_helpers import bot_replies, replies_to, room_with_bot
from tests.support.bot_process import BotProcess
from tests.support.matrix_client import send_text, wait_for_event
from tests.support.synapse import SynapseServer


def replies_by_question(client: Any, room_id: str, bot_id: str) -> dict[str, list[str]]:
    """Question event id -> event ids of the bot's replies to it (edits excluded)."""
    found: dict[str, list[str]] = {}
    for event in bot_replies(client, room_id, bot_id):
        relates = event["content"].get("m.relates_to", {})
        question = relates.get("m.in_reply_to", {}).get("event_id")
        if question:
            found.setdefault(question, []).append(event["event_id"])
    return found


@pytest.mark.parametrize("point", POINTS)
async def test_sigkill_at_each_point_still_answers_exactly_once(
    point: str,
    synapse: SynapseServer,
    fake_llm: FakeMistral,
    new_user: Any,
    user_client: Any,
    tmp_path: Path,
) -> None:
    account = await new_user("assistant", displayname=BOT_DISPLAY_NAME)
    bot = BotProcess.create(synapse, fake_llm, account, tmp_path)
    try:
        await bot.start(fault=point)
        alice = await user_client("alice")
        room_id = await room_with_bot(alice, bot.user_id, name="Salle de crise")

        question = await send_text(
            alice, room_id, f"{bot.user_id} question avant la panne", mentions=[bot.user_id]
        )
        code = await bot.wait_exit()
        assert code == -signal.SIGKILL, f"the fault at {point} did not fire:\n{bot.log_tail()}"
        assert bot.query("SELECT status FROM triggers WHERE event_id = ?", (question,)) == [
            ("pending",)
        ], "the question was recorded before the crash, and not as done"

        await bot.start()
        first = await wait_for_event(alice, room_id, replies_to(question), timeout=30)
        # A barrier: the room's timeline is ordered, so a duplicate answer to the first question
        # (sent before this one's answer) would be seen by the time this one is answered.
        follow_up = await send_text(
            alice, room_id, f"{bot.user_id} question après la reprise", mentions=[bot.user_id]
        )
        await wait_for_event(alice, room_id, replies_to(follow_up), timeout=30)

        replies = replies_by_question(alice, room_id, bot.user_id)
        assert replies.get(question) == [first["event_id"]], replies
        assert len(replies.get(follow_up, [])) == 1, replies
        assert bot.query(
            "SELECT status, answer_event_id FROM triggers WHERE event_id = ?", (question,)
        ) == [("answered", first["event_id"])], "the resend was deduplicated to the same event"
        assert fake_llm.requests_containing("question avant la panne")
        assert await bot.stop() == 0
    finally:
        bot.kill()
