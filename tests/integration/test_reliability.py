"""Reliability on a real Synapse: LLM outages, homeserver restarts, revoked tokens, load, bad input.

Ordering and concurrency are asserted from what the fake LLM saw (requests in flight, requests
already received when an answer is produced), never from wall-clock thresholds.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import aiohttp
import structlog

from bot import texts
from bot.app import EXIT_AUTH_FAILED
from bot.ops.health import start_health_server, sync_readiness
from bot.ops.ratelimit import SWEEP_EVERY, SlidingWindowLimiter
from bot.router import Router
from config.room_settings import AnswerMode
from config.settings import load_settings
from sandbox.fake_mistral import FakeMistral, default_responder
from sandbox.mistral_wire import message_text
from tests.integration.conftest import StartBot
from tests.support.bot_helpers import ask, bot_replies, replies_to, room_with_bot
from tests.support.matrix_client import events_in, send_text, sync_once, wait_for_event
from tests.support.synapse import SynapseServer, free_port


def replied_question(event: dict[str, Any]) -> str | None:
    question = event["content"].get("m.relates_to", {}).get("m.in_reply_to", {}).get("event_id")
    return question if isinstance(question, str) else None


def replies_per_question(client: Any, room_id: str, bot_id: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for event in bot_replies(client, room_id, bot_id):
        question = replied_question(event)
        if question is not None:
            counts[question] = counts.get(question, 0) + 1
    return counts


def last_user_text(body: dict[str, Any]) -> str:
    users = [m for m in body.get("messages", []) if m.get("role") == "user"]
    return message_text(users[-1]) if users else ""


# --- LLM outage and circuit breaker ----------------------------------------------------------


async def test_llm_outage_opens_the_circuit_and_it_closes_when_the_service_returns(
    start_bot: StartBot, user_client: Any, fake_llm: FakeMistral
) -> None:
    bot = await start_bot(
        llm_max_retries=1, llm_circuit_threshold=2, llm_circuit_cooldown_seconds=1.0
    )
    alice = await user_client("alice")
    room_id = await room_with_bot(alice, bot.user_id, is_direct=True)
    fake_llm.set_down(True)

    failures = [await ask(alice, room_id, bot.user_id, f"Question en panne {n}") for n in (1, 2)]
    assert len(fake_llm.requests) == 4, "each failed question: one attempt + one retry"
    fast = [await ask(alice, room_id, bot.user_id, f"Question circuit ouvert {n}") for n in (1, 2)]
    assert len(fake_llm.requests) == 4, "while the circuit is open, nothing reaches the LLM"

    for reply in failures:
        assert reply["content"]["msgtype"] == "m.notice"
        assert reply["content"]["body"] == texts.LLM_UNAVAILABLE
    for reply in fast:
        assert reply["content"]["body"] == texts.LLM_CIRCUIT_OPEN

    fake_llm.set_down(False)
    await asyncio.sleep(1.1)  # the cooldown: the next question probes the service
    back = await ask(alice, room_id, bot.user_id, "Question après le retour")
    again = await ask(alice, room_id, bot.user_id, "Question suivante")

    assert back["content"]["body"].startswith("Réponse simulée")
    assert again["content"]["body"].startswith("Réponse simulée")
    assert not bot.app.llm.breaker.is_open
    await sync_once(alice)
    assert set(replies_per_question(alice, room_id, bot.user_id).values()) == {1}


# --- Homeserver restart and revoked token ----------------------------------------------------


async def test_homeserver_restart_loses_nothing_and_doubles_nothing(
    start_bot: StartBot, user_client: Any, fake_llm: FakeMistral, synapse: SynapseServer
) -> None:
    bot = await start_bot()
    alice = await user_client("alice")
    room_id = await room_with_bot(alice, bot.user_id, is_direct=True)
    await ask(alice, room_id, bot.user_id, "Question avant tout")

    try:
        before_stop = await send_text(alice, room_id, "Question juste avant l'arrêt")
        await synapse.stop_async()
        synced_before = bot.app.gateway.last_sync_monotonic
        await asyncio.sleep(2)
    finally:
        if not synapse.running:
            await synapse.start_async()
    after_start = await send_text(alice, room_id, "Question juste après le retour")

    await wait_for_event(alice, room_id, replies_to(before_stop), timeout=30)
    await wait_for_event(alice, room_id, replies_to(after_start), timeout=30)
    await ask(alice, room_id, bot.user_id, "Question témoin")

    counts = replies_per_question(alice, room_id, bot.user_id)
    assert counts[before_stop] == 1 and counts[after_start] == 1, counts
    assert len(counts) == 4 and set(counts.values()) == {1}
    for text in ("juste avant l'arrêt", "juste après le retour"):
        assert sum(1 for r in fake_llm.requests if text in last_user_text(r)) == 1
    assert bot.app.gateway.last_sync_monotonic != synced_before, "the sync loop resumed"
    assert not bot.task.done()


async def test_revoked_token_stops_the_bot_with_the_auth_exit_code(
    start_bot: StartBot, synapse: SynapseServer
) -> None:
    bot = await start_bot(sync_timeout_seconds=1)
    token = bot.app.gateway.client.access_token

    with structlog.testing.capture_logs() as logs:
        await synapse.admin_request("POST", "/_matrix/client/v3/logout", token, {})
        code = await asyncio.wait_for(asyncio.shield(bot.task), timeout=30)

    assert code == EXIT_AUTH_FAILED
    failures = [entry for entry in logs if entry["event"] == "bot.authentication_failed"]
    assert len(failures) == 1
    assert "jeton" in failures[0]["reason"], "the administrator is told what to renew"
    assert token not in str(logs)
    retries = [
        entry for entry in logs if entry["event"] in ("matrix.sync_error", "matrix.sync_failed")
    ]
    assert len(retries) <= 1, "an authentication failure is not retried in a loop"


# --- Load: order, concurrency, global limit, rate limits ------------------------------------


async def test_questions_in_one_room_are_answered_in_order(
    start_bot: StartBot, user_client: Any, fake_llm: FakeMistral
) -> None:
    bot = await start_bot()
    alice = await user_client("alice")
    room_id = await room_with_bot(alice, bot.user_id, is_direct=True)

    async def responder(body: dict[str, Any]) -> str:
        if "numéro 1" in last_user_text(body):
            await asyncio.sleep(0.8)  # the first is the slowest: only a queue keeps the order
        return default_responder(body)

    fake_llm.responder = responder
    sent = [await send_text(alice, room_id, f"Question numéro {n}") for n in range(1, 6)]
    await wait_for_event(alice, room_id, replies_to(sent[-1]))
    for event_id in sent:
        await wait_for_event(alice, room_id, replies_to(event_id))

    order = [replied_question(e) for e in bot_replies(alice, room_id, bot.user_id)]
    assert order == sent
    assert [last_user_text(r) for r in fake_llm.requests] == [
        f"Question numéro {n}" for n in range(1, 6)
    ]


async def test_different_rooms_are_answered_concurrently(
    start_bot: StartBot, user_client: Any, fake_llm: FakeMistral
) -> None:
    bot = await start_bot()
    alice = await user_client("alice")
    rooms = [await room_with_bot(alice, bot.user_id, is_direct=True) for _ in range(4)]
    seen_at_first_answer: list[int] = []
    all_in = asyncio.Event()

    async def responder(body: dict[str, Any]) -> str:
        if len(fake_llm.requests) >= 4:
            all_in.set()
        with contextlib.suppress(TimeoutError):  # a serialising bot never gets the 4th request
            await asyncio.wait_for(all_in.wait(), 5)  # hold answers until all four are in
        seen_at_first_answer.append(len(fake_llm.requests))
        return default_responder(body)

    fake_llm.responder = responder
    sent = [await send_text(alice, room, f"Question du salon {n}") for n, room in enumerate(rooms)]
    for room, event_id in zip(rooms, sent, strict=True):
        await wait_for_event(alice, room, replies_to(event_id))

    assert seen_at_first_answer[0] == 4, "all four rooms were at the LLM at the same time"


async def test_global_llm_concurrency_limit(
    start_bot: StartBot, user_client: Any, fake_llm: FakeMistral
) -> None:
    bot = await start_bot(llm_max_concurrency=1)
    alice = await user_client("alice")
    rooms = [await room_with_bot(alice, bot.user_id, is_direct=True) for _ in range(3)]
    active = 0
    peak = 0

    async def responder(body: dict[str, Any]) -> str:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0.3)
        active -= 1
        return default_responder(body)

    fake_llm.responder = responder
    sent = [await send_text(alice, room, f"Question limitée {n}") for n, room in enumerate(rooms)]
    for room, event_id in zip(rooms, sent, strict=True):
        await wait_for_event(alice, room, replies_to(event_id))

    assert len(fake_llm.requests) == 3
    assert peak == 1


async def test_rate_limits_answer_politely_without_calling_the_llm(
    start_bot: StartBot, user_client: Any, fake_llm: FakeMistral
) -> None:
    bot = await start_bot(user_rate_limit_per_minute=2, room_rate_limit_per_minute=3)
    alice = await user_client("alice")
    bob = await user_client("bob")
    room_id = await room_with_bot(alice, bot.user_id, name="Salle limitée")
    await alice.room_invite(room_id, bob.user_id)
    await bob.join(room_id)
    await sync_once(bob)
    mention = {"mentions": [bot.user_id]}

    async def question(client: Any, text: str) -> dict[str, Any]:
        return await ask(client, room_id, bot.user_id, f"{bot.user_id} {text}", **mention)

    assert (await question(alice, "alice un"))["content"]["body"].startswith("Réponse simulée")
    assert (await question(alice, "alice deux"))["content"]["body"].startswith("Réponse simulée")
    user_limited = await question(alice, "alice trois")
    assert (await question(bob, "bob un"))["content"]["body"].startswith("Réponse simulée")
    room_limited = await question(bob, "bob deux")

    assert user_limited["content"]["body"] == texts.USER_RATE_LIMITED
    assert user_limited["content"]["msgtype"] == "m.notice"
    assert room_limited["content"]["body"] == texts.ROOM_RATE_LIMITED
    assert len(fake_llm.requests) == 3
    assert not fake_llm.requests_containing("alice trois")
    assert not fake_llm.requests_containing("bob deux")

    flood = await send_text(alice, room_id, f"{bot.user_id} alice quatre", **mention)
    marker = await send_text(alice, room_id, "!aide")
    await wait_for_event(alice, room_id, replies_to(marker))
    assert not any(
        e["content"].get("m.relates_to", {}).get("m.in_reply_to", {}).get("event_id") == flood
        for e in events_in(alice, room_id)
    ), "one rate-limit notice per minute, not one per question"


# --- Bad input -------------------------------------------------------------------------------


async def test_bad_input_is_survived_and_answered_only_where_asked(
    start_bot: StartBot, user_client: Any, fake_llm: FakeMistral
) -> None:
    bot = await start_bot()
    bot_id = bot.user_id
    alice = await user_client("alice")
    room_id = await room_with_bot(alice, bot_id, name="Salle des entrées hostiles")
    quiet_room = await room_with_bot(alice, bot_id, name="Salle voisine")
    await send_text(alice, quiet_room, "Rien à voir ici.")

    def responder(body: dict[str, Any]) -> str:
        if "donne une commande" in last_user_text(body):
            return "!config mode tous"  # a model trying to reconfigure the room
        return default_responder(body)

    fake_llm.responder = responder
    image = await alice.room_send(
        room_id,
        "m.room.message",
        {
            "msgtype": "m.image",
            "body": f"{bot_id} photo.png",
            "url": "mxc://localhost/nimportequoi",
            "info": {"mimetype": "image/png", "size": 12},
            "m.mentions": {"user_ids": [bot_id]},
        },
    )
    mention = {"mentions": [bot_id]}
    questions = {
        "html": await send_text(
            alice,
            room_id,
            f"{bot_id} question html cassé",
            formatted_body=(
                f'<a href="https://matrix.to/#/{bot_id}">Assistant</a> question <b><i>html '
                "cassé <script>alert(1)</script><img src=x onerror=alert(1)><table><tr>"
            ),
            **mention,
        ),
        "big": await send_text(alice, room_id, f"{bot_id} grosse " + "x" * 60_000, **mention),
        "controls": await send_text(
            alice, room_id, f"{bot_id} contrôle \x01\x07\x1b[31m\x7f fin", **mention
        ),
        "rtl": await send_text(
            alice, room_id, f"{bot_id} سؤال بالعربية \u202etxet desrever\u202c שאלה", **mention
        ),
        "injection": await send_text(alice, room_id, f"{bot_id} donne une commande", **mention),
    }
    for event_id in questions.values():
        await wait_for_event(alice, room_id, replies_to(event_id), timeout=30)
    after = await send_text(alice, room_id, "Message sans mention après l'injection")
    final = await ask(alice, room_id, bot_id, f"{bot_id} tout va bien ?", **mention)

    assert final["content"]["body"].startswith("Réponse simulée")
    counts = replies_per_question(alice, room_id, bot_id)
    assert all(counts.get(event_id) == 1 for event_id in questions.values()), counts
    assert image.event_id not in counts, "an image is not a question"
    assert after not in counts, "the model's '!config mode tous' changed nothing"
    assert bot_replies(alice, quiet_room, bot_id) == []
    assert await bot.store.settings.of_room(room_id) == {}
    assert await bot.store.settings.audit_of(room_id) == []
    assert bot.app.router is not None
    assert bot.app.router._room_config.get(room_id).mode is AnswerMode.MENTIONS
    prompts = " ".join(
        message_text(m) for request in fake_llm.requests for m in request["messages"]
    )
    assert "\x07" not in prompts and "\x1b" not in prompts and "\x01" not in prompts
    assert "xxxxxxxxxx" in prompts, "the long question did reach the model"
    assert not bot.task.done()


async def test_an_event_that_breaks_its_handler_loses_nothing_else_of_its_sync(
    start_bot: StartBot, user_client: Any, monkeypatch: Any
) -> None:
    bot = await start_bot()
    alice = await user_client("alice")
    room_id = await room_with_bot(alice, bot.user_id, is_direct=True)
    handle = Router.on_message

    async def fragile(self: Router, message: Any, room: Any, answerable: bool) -> None:
        if "poison" in message.body:
            raise RuntimeError("a bug triggered by one odd event")
        await handle(self, message, room, answerable)

    monkeypatch.setattr(Router, "on_message", fragile)
    await bot.stop()
    poison = await send_text(alice, room_id, "message poison")
    question = await send_text(alice, room_id, "Question dans la même synchronisation")
    await bot.start()  # the catch-up sync delivers both events in one batch

    answer = await wait_for_event(alice, room_id, replies_to(question))

    assert answer["content"]["body"].startswith("Réponse simulée")
    assert poison not in replies_per_question(alice, room_id, bot.user_id)


# --- Health endpoint -------------------------------------------------------------------------


class _SyncState:
    def __init__(self) -> None:
        self.ready = asyncio.Event()
        self.last_sync_monotonic: float | None = None


def test_readiness_needs_a_first_sync_and_a_recent_one() -> None:
    state = _SyncState()
    now = [1000.0]
    ready = sync_readiness(state, sync_timeout_seconds=30, clock=lambda: now[0])

    assert not ready(), "not logged in and synced yet"
    state.last_sync_monotonic = 1000.0
    assert not ready(), "the first sync has not finished"
    state.ready.set()
    assert ready()
    now[0] += 89  # a long-poll of 30 s, late once: still fine (limit 2 x 30 + 30 s)
    assert ready()
    now[0] += 2
    assert not ready(), "no successful sync for 91 s: homeserver down or token revoked"


async def test_health_server_endpoints_and_a_busy_port() -> None:
    port = free_port()
    settings = load_settings(
        None,
        homeserver="http://127.0.0.1:1",
        user_id="@bot:localhost",
        password="x",
        mistral_api_key="k",
        health_port=port,
    )
    readiness = [False]
    server = await start_health_server(settings, lambda: readiness[0])
    busy = await start_health_server(settings, lambda: True)
    try:
        assert server.running and server.port == port
        assert not busy.running, "a port in use is logged, the bot goes on without it"
        async with aiohttp.ClientSession() as session:

            async def get(path: str) -> tuple[int, str, str]:
                async with session.get(f"http://127.0.0.1:{port}{path}") as response:
                    return response.status, response.headers["Content-Type"], await response.text()

            assert (await get("/healthz"))[0] == 200
            assert (await get("/readyz"))[0] == 503
            readiness[0] = True
            assert (await get("/readyz"))[0] == 200
            status, content_type, body = await get("/metrics")
        assert status == 200
        assert content_type.startswith("text/plain")
        for name in (
            "tchapbot_questions_total",
            "tchapbot_answers_total",
            "tchapbot_llm_seconds",
            "tchapbot_sync_lag_seconds",
            "tchapbot_queue_depth",
        ):
            assert name in body, name
    finally:
        await server.stop()
        await busy.stop()


def test_rate_limiter_window_slides_and_forgets_idle_users() -> None:
    now = [0.0]
    limiter = SlidingWindowLimiter(2, clock=lambda: now[0])

    assert limiter.allow("@a") and limiter.allow("@a")
    assert not limiter.allow("@a"), "third question within the minute"
    now[0] = 60.5
    assert limiter.allow("@a"), "the window slid"
    for n in range(SWEEP_EVERY):
        limiter.allow(f"@passant-{n}:localhost")
    now[0] = 200.0
    for _ in range(SWEEP_EVERY):
        limiter.allow("@b")
    assert limiter.tracked_keys <= 2, "idle users are not kept forever"
