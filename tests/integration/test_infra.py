"""Proof that the test infrastructure itself works: if these fail, nothing else is trusted."""

from __future__ import annotations

import time

import httpx2
import pytest
from mistralai.client import Mistral
from mistralai.client.errors import SDKError
from mistralai.client.models import UserMessage

from sandbox.fake_mistral import FakeMistral
from tests.conftest import NewUser, UserClient
from tests.support.matrix_client import (
    DECRYPTED_MARK,
    create_room,
    join_room,
    make_client,
    send_text,
    wait_for_event,
    wait_for_invite,
)
from tests.support.synapse import SynapseServer, find_synapse_python

pytestmark = pytest.mark.integration

MESSAGES = [UserMessage(content="Quelle est la capitale de la France ?")]
EXPECTED = "Réponse simulée : Quelle est la capitale de la France ?"


def is_text(body: str):  # type: ignore[no-untyped-def]
    return lambda e: e["type"] == "m.room.message" and e["content"]["body"] == body


def test_synapse_is_importable() -> None:
    assert find_synapse_python()


async def test_invite_join_and_message(user_client: UserClient, synapse: SynapseServer) -> None:
    alice = await user_client("alice")
    bob = await user_client("bob")
    room_id = await create_room(alice, invite=[bob.user_id], name="Infra")

    await wait_for_invite(bob, room_id)
    await join_room(bob, room_id)
    await wait_for_event(
        alice,
        room_id,
        lambda e: (
            e["type"] == "m.room.member"
            and e["state_key"] == bob.user_id
            and e["content"]["membership"] == "join"
        ),
    )
    event_id = await send_text(alice, room_id, "Bonjour Bob", mentions=[bob.user_id])

    seen = await wait_for_event(bob, room_id, is_text("Bonjour Bob"))
    assert seen["event_id"] == event_id
    assert seen["sender"] == alice.user_id
    assert seen["content"]["m.mentions"] == {"user_ids": [bob.user_id]}
    assert DECRYPTED_MARK not in seen


async def test_wait_for_event_sees_events_synced_earlier(user_client: UserClient) -> None:
    alice = await user_client("alice")
    room_id = await create_room(alice)
    await send_text(alice, room_id, "premier")
    await send_text(alice, room_id, "second")
    # Both already synced by another wait: the buffer must still find the first one.
    await wait_for_event(alice, room_id, is_text("second"))
    await wait_for_event(alice, room_id, is_text("premier"), timeout=0.1)
    with pytest.raises(AssertionError, match="no matching event"):
        await wait_for_event(alice, room_id, is_text("jamais"), timeout=0.3)


async def test_encrypted_room_round_trip(user_client: UserClient) -> None:
    alice = await user_client("alice", encryption=True)
    bob = await user_client("bob", encryption=True)
    room_id = await create_room(alice, invite=[bob.user_id], is_direct=True, encrypted=True)
    await wait_for_invite(bob, room_id)
    await join_room(bob, room_id)
    await wait_for_event(
        alice,
        room_id,
        lambda e: e["type"] == "m.room.member" and e["state_key"] == bob.user_id,
    )

    thread_root = await send_text(alice, room_id, "Message secret")
    seen = await wait_for_event(bob, room_id, is_text("Message secret"))
    assert seen[DECRYPTED_MARK] is True
    assert seen["event_id"] == thread_root

    reply_id = await send_text(bob, room_id, "Bien reçu", thread_root=thread_root)
    back = await wait_for_event(alice, room_id, is_text("Bien reçu"))
    assert back[DECRYPTED_MARK] is True
    assert back["event_id"] == reply_id
    # m.relates_to stays in clear on encrypted events; nio merges it into the content.
    assert back["content"]["m.relates_to"]["rel_type"] == "m.thread"
    assert back["content"]["m.relates_to"]["event_id"] == thread_root


async def test_mistral_sdk_complete_and_stream(fake_llm: FakeMistral) -> None:
    client = Mistral(api_key="k", server_url=fake_llm.base_url)

    response = await client.chat.complete_async(model="mistral-small-latest", messages=MESSAGES)
    message = response.choices[0].message
    assert message is not None and message.content == EXPECTED
    assert (response.usage.total_tokens or 0) > 0

    parts: list[str] = []
    stream = await client.chat.stream_async(model="mistral-small-latest", messages=MESSAGES)
    async with stream as events:
        async for event in events:
            content = event.data.choices[0].delta.content
            if isinstance(content, str):
                parts.append(content)
    assert len(parts) > 3
    assert "".join(parts) == EXPECTED

    assert len(fake_llm.requests) == 2
    assert fake_llm.requests[1]["stream"] is True
    assert len(fake_llm.requests_containing("capitale")) == 2


async def test_mistral_sdk_errors(fake_llm: FakeMistral) -> None:
    client = Mistral(api_key="k", server_url=fake_llm.base_url)

    fake_llm.fail_next(1, 429, retry_after=2)
    with pytest.raises(SDKError) as excinfo:
        await client.chat.complete_async(model="m", messages=MESSAGES)
    assert excinfo.value.status_code == 429
    assert excinfo.value.raw_response.headers["retry-after"] == "2"
    # Only the next request failed.
    ok = await client.chat.complete_async(model="m", messages=MESSAGES)
    assert ok.choices[0].message is not None
    assert ok.choices[0].message.content == EXPECTED

    fake_llm.set_down(True)
    with pytest.raises(SDKError) as excinfo:
        await client.chat.complete_async(model="m", messages=MESSAGES)
    assert excinfo.value.status_code == 503
    fake_llm.set_down(False)

    fake_llm.break_stream_next(after_chars=12)
    received = ""
    # A dropped stream surfaces as the SDK's transport error (httpx2), not as SDKError.
    with pytest.raises(httpx2.RemoteProtocolError, match="incomplete chunked read"):
        stream = await client.chat.stream_async(model="m", messages=MESSAGES)
        async with stream as events:
            async for event in events:
                received += event.data.choices[0].delta.content or ""
    assert received == EXPECTED[:12]

    fake_llm.hang_next(5)
    started = time.monotonic()
    with pytest.raises(httpx2.TimeoutException):
        await client.chat.complete_async(model="m", messages=MESSAGES, timeout_ms=300)
    assert time.monotonic() - started < 2


async def test_fake_llm_custom_responder_and_pacing(fake_llm: FakeMistral) -> None:
    async def responder(body: dict[str, object]) -> str:
        return "un deux trois quatre"

    fake_llm.responder = responder
    fake_llm.stream_tokens_per_second = 40
    client = Mistral(api_key="k", server_url=fake_llm.base_url)
    started = time.monotonic()
    stream = await client.chat.stream_async(model="m", messages=MESSAGES)
    async with stream as events:
        text = "".join([e.data.choices[0].delta.content or "" async for e in events])
    assert text == "un deux trois quatre"
    assert time.monotonic() - started >= 4 / 40 * 0.9


async def test_restart_keeps_users_and_tokens(synapse: SynapseServer, new_user: NewUser) -> None:
    user = await new_user("carol")
    client = await make_client(synapse, user)
    try:
        room_id = await create_room(client)
        await synapse.restart_async()
        # Same port, same database: the old token and the old room still work.
        whoami = await client.whoami()
        assert getattr(whoami, "user_id", None) == user.user_id, whoami
        await send_text(client, room_id, "après redémarrage")
        await wait_for_event(client, room_id, is_text("après redémarrage"))
    finally:
        await client.close()
    # The blocking variant works too (fixtures use it).
    synapse.restart()
    again = await synapse.admin_request(
        "GET", "/_matrix/client/v3/account/whoami", user.access_token
    )
    assert again["user_id"] == user.user_id
