"""The "typing" notice seen by a real client on a real Synapse.

An answer sent whole shows the notice while the model works and ends it after the answer. A
streamed answer shows it only while nothing of the answer is visible: not at all when its
first words come quickly, and until they appear when they are slow (bot/answer/typing_notice.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import nio

from bot.answer.typing_notice import TYPING_DELAY_STREAMED_SECONDS
from sandbox.fake_mistral import FakeMistral
from tests.integration.conftest import StartBot
from tests.support.bot_helpers import replies_to, room_with_bot
from tests.support.matrix_client import send_text, sync_once, wait_for_event

ANSWER = " ".join(f"Point {n} : vérifier la pièce {n} du dossier." for n in range(1, 16))


@dataclass
class TypingSeen:
    """Each `m.typing` and timeline event of one room, in the order the client's syncs
    delivered them (typing notices as the set of users typing)."""

    room_id: str
    seen: list[tuple[str, frozenset[str] | dict[str, Any]]] = field(default_factory=list)

    def watch(self, client: nio.AsyncClient) -> None:
        client.add_event_callback(self._on_event, nio.RoomMessageText)
        client.add_ephemeral_callback(self._on_typing, nio.TypingNoticeEvent)

    async def _on_event(self, room: nio.MatrixRoom, event: nio.RoomMessageText) -> None:
        if room.room_id == self.room_id:
            self.seen.append(("event", event.source.get("content", {})))

    async def _on_typing(self, room: nio.MatrixRoom, event: nio.TypingNoticeEvent) -> None:
        if room.room_id == self.room_id:
            self.seen.append(("typing", frozenset(event.users)))

    @property
    def notices(self) -> list[frozenset[str]]:
        return [users for kind, users in self.seen if isinstance(users, frozenset)]

    def first(self, user_id: str, typing: bool, after: int = -1) -> int | None:
        """Position of the first notice showing `user_id` typing (or not), after `after`."""
        for position, (_, users) in enumerate(self.seen):
            if position > after and isinstance(users, frozenset) and (user_id in users) == typing:
                return position
        return None

    def position(self, matches: Any) -> int | None:
        """Position of the first timeline event whose content `matches`."""
        for position, (_, content) in enumerate(self.seen):
            if isinstance(content, dict) and matches(content):
                return position
        return None


async def sync_until(client: nio.AsyncClient, done: Any, rounds: int = 30) -> None:
    for _ in range(rounds):
        if done():
            return
        await sync_once(client, 1_000)
    raise AssertionError("the expected typing notice never came")


async def test_answer_sent_whole_shows_typing_while_the_model_works(
    start_bot: StartBot, user_client: Any, fake_llm: FakeMistral
) -> None:
    fake_llm.responder = lambda _body: ANSWER
    fake_llm.delay_seconds = 1.5
    bot = await start_bot(streaming=False)
    alice = await user_client("alice")
    room_id = await room_with_bot(alice, bot.user_id, is_direct=True)
    seen = TypingSeen(room_id)
    seen.watch(alice)

    question = await send_text(alice, room_id, "Que faut-il vérifier ?")
    await wait_for_event(alice, room_id, replies_to(question))
    answered = seen.position(lambda content: content.get("body") == ANSWER)

    started = seen.first(bot.user_id, typing=True)
    assert started is not None and answered is not None and started < answered, seen.seen
    await sync_until(alice, lambda: seen.first(bot.user_id, False, after=answered) is not None)


async def ask_streamed(
    start_bot: StartBot, user_client: Any, fake_llm: FakeMistral, first_token_delay: float
) -> tuple[str, Any, str, TypingSeen, dict[str, Any]]:
    """A streamed answer (~3 s of tokens after `first_token_delay`), watched to its final
    edit: the bot's ID, the asker, the room, what the asker saw, the first message."""
    fake_llm.responder = lambda _body: ANSWER
    fake_llm.delay_seconds = first_token_delay
    fake_llm.stream_tokens_per_second = 40
    bot = await start_bot(streaming=True, stream_edit_interval_seconds=0.5)
    alice = await user_client("alice")
    room_id = await room_with_bot(alice, bot.user_id, is_direct=True)
    seen = TypingSeen(room_id)
    seen.watch(alice)
    question = await send_text(alice, room_id, "Que faut-il vérifier ?")
    first = await wait_for_event(alice, room_id, replies_to(question))
    await wait_for_event(
        alice,
        room_id,
        lambda e: e["content"].get("m.new_content", {}).get("body") == ANSWER,
    )
    assert first["content"]["body"] != ANSWER, "the answer was streamed"
    return bot.user_id, alice, room_id, seen, first


async def test_streamed_answer_with_quick_first_words_shows_no_typing_notice(
    start_bot: StartBot, user_client: Any, fake_llm: FakeMistral
) -> None:
    bot_id, alice, room_id, seen, _ = await ask_streamed(start_bot, user_client, fake_llm, 0)
    # Typing notices reach members in order: once Alice's own notice is back, any notice the
    # bot sent before it has been delivered too.
    await alice.room_typing(room_id, typing_state=True, timeout=5_000)
    await sync_until(alice, lambda: seen.first(alice.user_id, typing=True) is not None)
    await alice.room_typing(room_id, typing_state=False)
    assert all(bot_id not in users for users in seen.notices), seen.notices


async def test_streamed_answer_with_slow_first_words_shows_typing_until_they_appear(
    start_bot: StartBot, user_client: Any, fake_llm: FakeMistral
) -> None:
    bot_id, _, _, seen, first = await ask_streamed(
        start_bot, user_client, fake_llm, TYPING_DELAY_STREAMED_SECONDS + 1.5
    )
    first_shown = seen.position(lambda content: content.get("body") == first["content"]["body"])
    final_shown = seen.position(
        lambda content: content.get("m.new_content", {}).get("body") == ANSWER
    )
    assert first_shown is not None and final_shown is not None, seen.seen
    started = seen.first(bot_id, typing=True)
    assert started is not None and started < first_shown, ("typing while nothing shown", seen.seen)
    ended = seen.first(bot_id, typing=False, after=started)
    assert ended is not None and ended < final_shown, (
        "typing ended once the first words were shown, not after the final edit",
        seen.seen,
    )
