"""Streamed answers on a real Synapse: one message grown by throttled edits, then a final edit."""

from __future__ import annotations

import asyncio
from typing import Any

from bot import texts
from sandbox.fake_mistral import FakeMistral
from tests.integration.conftest import StartBot
from tests.support.bot_helpers import bot_replies, replies_to, room_with_bot
from tests.support.matrix_client import events_in, send_text, sync_once, wait_for_event

LONG_ANSWER = (
    "Voici la procédure. "
    + " ".join(
        f"Étape {n} : vérifier le dossier numéro {n} et le transmettre." for n in range(1, 13)
    )
    + " Fin de la procédure."
)


def edits_of(client: Any, room_id: str, event_id: str) -> list[dict[str, Any]]:
    return [
        e
        for e in events_in(client, room_id)
        if e["content"].get("m.relates_to", {}).get("rel_type") == "m.replace"
        and e["content"]["m.relates_to"].get("event_id") == event_id
    ]


def is_final_edit_of(event_id: str, expected: str) -> Any:
    def predicate(event: dict[str, Any]) -> bool:
        relates = event["content"].get("m.relates_to", {})
        return bool(
            relates.get("rel_type") == "m.replace"
            and relates.get("event_id") == event_id
            and event["content"]["m.new_content"]["body"] == expected
        )

    return predicate


async def test_streamed_answer_grows_by_throttled_edits_and_ends_complete(
    start_bot: StartBot, user_client: Any, fake_llm: FakeMistral
) -> None:
    fake_llm.responder = lambda _body: LONG_ANSWER
    fake_llm.stream_tokens_per_second = 40
    bot = await start_bot(streaming=True, stream_edit_interval_seconds=0.5)
    alice = await user_client("alice")
    room_id = await room_with_bot(alice, bot.user_id, is_direct=True)

    question = await send_text(alice, room_id, "Quelle est la procédure ?")
    first = await wait_for_event(alice, room_id, replies_to(question))
    assert first["content"]["body"] != LONG_ANSWER, "the first text appears before the end"
    final = await wait_for_event(alice, room_id, is_final_edit_of(first["event_id"], LONG_ANSWER))

    new_content = final["content"]["m.new_content"]
    assert new_content["body"] == LONG_ANSWER
    assert "<p>" in new_content["formatted_body"]
    assert final["content"]["body"] == f"* {LONG_ANSWER}", "clients ignoring edits see the answer"
    await asyncio.sleep(0.3)
    await sync_once(alice)
    edits = edits_of(alice, room_id, first["event_id"])
    words = len(LONG_ANSWER.split())
    stream_seconds = words / 40
    assert 2 <= len(edits) <= stream_seconds / 0.5 + 2, (
        f"{len(edits)} edits for {stream_seconds:.1f} s"
    )
    assert edits[-1]["event_id"] == final["event_id"]
    assert len(bot_replies(alice, room_id, bot.user_id)) == 1


async def test_broken_stream_ends_with_note_and_no_duplicate(
    start_bot: StartBot, user_client: Any, fake_llm: FakeMistral
) -> None:
    fake_llm.responder = lambda _body: LONG_ANSWER
    fake_llm.stream_tokens_per_second = 60
    bot = await start_bot(streaming=True, stream_edit_interval_seconds=0.5)
    alice = await user_client("alice")
    room_id = await room_with_bot(alice, bot.user_id, is_direct=True)

    fake_llm.break_stream_next(after_chars=120)
    question = await send_text(alice, room_id, "Quelle est la procédure ?")
    first = await wait_for_event(alice, room_id, replies_to(question))

    def ends_with_note(event: dict[str, Any]) -> bool:
        relates = event["content"].get("m.relates_to", {})
        return bool(
            relates.get("event_id") == first["event_id"]
            and event["content"]["m.new_content"]["body"].endswith(texts.ANSWER_INCOMPLETE)
        )

    final = await wait_for_event(alice, room_id, ends_with_note)
    assert LONG_ANSWER[:60] in final["content"]["m.new_content"]["body"]
    await asyncio.sleep(0.5)
    await sync_once(alice)
    assert len(bot_replies(alice, room_id, bot.user_id)) == 1, "one message, no second partial"


async def test_streaming_off_sends_a_single_message(
    start_bot: StartBot, user_client: Any, fake_llm: FakeMistral
) -> None:
    fake_llm.responder = lambda _body: LONG_ANSWER
    bot = await start_bot(streaming=False)
    alice = await user_client("alice")
    room_id = await room_with_bot(alice, bot.user_id, is_direct=True)

    question = await send_text(alice, room_id, "Quelle est la procédure ?")
    answer = await wait_for_event(alice, room_id, replies_to(question))
    await asyncio.sleep(0.5)
    await sync_once(alice)

    assert answer["content"]["body"] == LONG_ANSWER
    assert edits_of(alice, room_id, answer["event_id"]) == []
    assert fake_llm.requests[-1].get("stream") in (None, False)
