"""Withdrawing one job (issue 13, item 5): the room's worker goes on; what was sent, even a send
still in flight at the time, is redacted. And a failed prompt leaves no typing notice on."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from bot.answer.conversation import ConversationHandler
from bot.answer.llm import Completion
from bot.answer.replies import Outbox
from bot.answer.tokens import MistralTokenCounter
from bot.answer.typing_notice import TYPING_DELAY_SECONDS
from bot.models import IncomingMessage, MessageKind, RoomContext
from bot.room_commands import RoomCommandsRepository
from bot.room_config import RoomConfigRepository
from bot.router import Router
from bot.store import Store
from bot.workers import RoomWorkers
from config.room_settings import RoomSettings
from config.settings import Settings

ROOM = "!salon:localhost"


def trigger(event_id: str) -> IncomingMessage:
    return IncomingMessage(
        room_id=ROOM,
        event_id=event_id,
        sender="@alice:localhost",
        sender_name="Alice",
        kind=MessageKind.TEXT,
        body="question",
        timestamp_ms=1,
    )


class SlowSender:
    """Sends land when the test says so; redactions are recorded."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.sent: list[str] = []
        self.redacted: list[tuple[str, str]] = []

    async def send_event(
        self, room_id: str, content: dict[str, Any], txn_id: str, event_type: str = ""
    ) -> str:
        await self.release.wait()
        event_id = f"$sent{len(self.sent)}"
        self.sent.append(event_id)
        return event_id

    async def set_typing(self, room_id: str, typing: bool) -> None:
        return None

    async def redact(self, room_id: str, event_id: str, txn_id: str) -> bool:
        self.redacted.append((room_id, event_id))
        return True


async def test_a_send_in_flight_when_its_job_is_cancelled_is_still_redacted() -> None:
    sender = SlowSender()
    outbox = Outbox(sender)
    question = trigger("$q")
    outbox.track("$q")
    sender.release.set()
    await outbox.reply(question, "Premier morceau")
    sender.release.clear()
    job = asyncio.ensure_future(outbox.edit(question, "$sent0", "Suite", purpose="a", revision=1))
    await asyncio.sleep(0.01)
    job.cancel()
    await asyncio.gather(job, return_exceptions=True)
    assert sender.sent == ["$sent0"], "the edit has not reached the homeserver yet"

    sender.release.set()  # the homeserver answers after the cancellation
    assert await outbox.retract(question) == 2

    assert sender.redacted == [(ROOM, "$sent1"), (ROOM, "$sent0")], "newest first, all of them"
    assert outbox.sent_for("$q") == []


async def test_untracked_sends_are_not_remembered() -> None:
    sender = SlowSender()
    sender.release.set()
    outbox = Outbox(sender)
    await outbox.reply(trigger("$q"), "Réponse")
    assert await outbox.retract(trigger("$q")) == 0 and sender.redacted == []


async def test_cancelling_one_job_lets_the_room_go_on_with_the_next() -> None:
    ready = asyncio.Event()
    ready.set()
    workers = RoomWorkers(ready)
    started = asyncio.Event()
    done: list[str] = []

    async def hangs() -> None:
        started.set()
        await asyncio.Event().wait()

    async def follows() -> None:
        done.append("suivante")

    workers.submit(ROOM, hangs, key="$q1")
    workers.submit(ROOM, follows, key="$q2")
    await started.wait()
    assert workers.cancel("$q1") is True
    assert workers.cancel("$absent") is False
    assert await workers.drain(5)
    assert done == ["suivante"] and workers.pending == 0


class TypingOutbox:
    def __init__(self) -> None:
        self.typing_calls: list[bool] = []

    async def typing(self, room_id: str, typing: bool) -> None:
        self.typing_calls.append(typing)


@pytest.mark.parametrize("fails_after_typing_started", [False, True])
async def test_no_typing_notice_is_left_behind_when_the_prompt_cannot_be_built(
    tmp_path: Path, fails_after_typing_started: bool
) -> None:
    store = await Store.open(tmp_path / "bot.sqlite3")
    settings = Settings(
        homeserver="https://matrix.example",
        user_id="@bot:localhost",
        password="secret",
        mistral_api_key="key",
        streaming=False,  # the notice's delay is then TYPING_DELAY_SECONDS
    )
    outbox = TypingOutbox()

    class Unreadable(ConversationHandler):
        async def build_request(self, *args: Any, **kwargs: Any) -> Any:
            if fails_after_typing_started:
                await asyncio.sleep(TYPING_DELAY_SECONDS * 4)
            raise RuntimeError("base illisible")

    handler = Unreadable(settings, store, None, None, outbox)  # type: ignore[arg-type]
    room = RoomContext(room_id=ROOM, name="Salon", is_direct=True, encrypted=False)
    try:
        with pytest.raises(RuntimeError):
            await handler.answer(trigger("$q"), "question", room, RoomSettings())
        await asyncio.sleep(TYPING_DELAY_SECONDS * 4)
        await handler.close()
    finally:
        await store.close()
    assert outbox.typing_calls == ([True, False] if fails_after_typing_started else [])


class Directory:
    """The router's view of the rooms: one DM, everyone a member."""

    user_id = "@bot:localhost"

    def __init__(self) -> None:
        self.ready = asyncio.Event()
        self.ready.set()

    def room_context(self, room_id: str) -> RoomContext:
        return RoomContext(room_id=room_id, name="DM", is_direct=True, encrypted=False)

    def bot_names(self, room_id: str) -> tuple[str, ...]:
        return ("Assistant",)

    async def join(self, room_id: str, is_direct: bool, inviter: str | None = None) -> bool:
        return True

    async def reject_invite(self, room_id: str) -> None:
        return None

    async def power_level(self, room_id: str, user_id: str) -> int:
        return 0

    async def event_sender(self, room_id: str, event_id: str) -> str | None:
        return None

    async def is_member(self, room_id: str, user_id: str) -> bool:
        return True


class NoCommands:
    builtin_words: frozenset[str] = frozenset()

    def room_words(self, room_id: str) -> frozenset[str]:
        return frozenset()

    def withdraws(self, room_id: str, invocation: Any) -> None:
        return None

    def uses_model(self, room_id: str, word: str) -> bool:
        return True

    async def run(self, message: IncomingMessage, room: RoomContext, invocation: Any) -> None:
        return None


class HeldModel:
    """Answers the questions it was asked once the test releases it."""

    def __init__(self) -> None:
        self.asked: list[str] = []
        self.prompts: list[str] = []
        self.called = asyncio.Event()
        self.release = asyncio.Event()

    async def complete(self, request: Any) -> Completion:
        self.asked.append(request.messages[-1].content)
        self.prompts.append("\n".join(m.content for m in request.messages))
        self.called.set()
        await self.release.wait()
        return Completion(text="Réponse.")


def router_for(store: Store, model: HeldModel) -> tuple[Router, SlowSender]:
    """The real router and conversation handler on a real store; Matrix and the model faked."""
    settings = Settings(
        homeserver="https://matrix.example",
        user_id="@bot:localhost",
        password="secret",
        mistral_api_key="key",
        streaming=False,
    )
    sender = SlowSender()
    sender.release.set()
    outbox = Outbox(sender)
    conversation = ConversationHandler(settings, store, model, MistralTokenCounter(), outbox)  # type: ignore[arg-type]
    router = Router(
        settings,
        store,
        Directory(),
        conversation,
        NoCommands(),
        RoomConfigRepository(store),
        outbox,
        RoomCommandsRepository(store),
    )
    return router, sender


def asked(body: str, event_id: str) -> IncomingMessage:
    return trigger(event_id).model_copy(update={"body": body})


async def test_a_question_read_early_with_its_claim_sees_the_previous_exchange(
    tmp_path: Path,
) -> None:
    """In an idle room the context is read with the claim (one round trip); a question that
    waits behind another reads it when it starts, so the previous answer is in its prompt."""
    store = await Store.open(tmp_path / "bot.sqlite3")
    model = HeldModel()
    router, _ = router_for(store, model)
    room = Directory().room_context(ROOM)
    try:
        model.release.set()
        await router.on_message(asked("Première question 1111", "$q1"), room, True)
        assert await router.workers.drain(5)
        model.release.clear()
        model.called.clear()
        await router.on_message(asked("Deuxième question 2222", "$q2"), room, True)
        await model.called.wait()  # the room is busy with the second question
        await router.on_message(asked("Troisième question 3333", "$q3"), room, True)
        model.release.set()
        assert await router.workers.drain(5)

        second, third = model.prompts[1], model.prompts[2]
        assert "1111" in second and "Réponse." in second, "read with its claim, after the first"
        assert "2222" in third, "read when it started, after the second was answered"
    finally:
        await router._conversation.close()
        await store.close()


async def test_a_question_withdrawn_by_another_process_while_queued_never_reaches_the_model(
    tmp_path: Path,
) -> None:
    """A job that starts right after its claim in an idle room trusts the claim's status; one
    that waited behind another re-reads it, so `tchap-bot purge-user` (another process, its own
    connection) withdrawing it meanwhile keeps it from the model."""
    store = await Store.open(tmp_path / "bot.sqlite3")
    other_process = await Store.open(tmp_path / "bot.sqlite3")
    model = HeldModel()
    router, sender = router_for(store, model)
    room = Directory().room_context(ROOM)
    try:
        await router.on_message(trigger("$first"), room, True)
        await model.called.wait()  # the room is busy with the first question
        await router.on_message(trigger("$second"), room, True)
        assert await other_process.triggers.withdraw(["$second"]) == 1

        model.release.set()
        assert await router.workers.drain(5)

        assert len(model.asked) == 1, "only the first question reached the model"
        assert await store.triggers.status("$first") == "answered"
        assert await store.triggers.status("$second") == "skipped"
        assert len(sender.sent) == 1
    finally:
        await router._conversation.close()
        await other_process.close()
        await store.close()
