"""End-to-end encryption on the real Synapse, with real nio (vodozemac) users.

What must hold: encrypted rooms and DMs behave like clear ones, answers are always encrypted
(checked on the server's copy, not only after the client decrypted it), a restart keeps the same
device and keys, late room keys still get the message answered, missing or withheld keys give
the sender one short notice, and the bot's device is cross-signed by a stable identity.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import stat
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import nio
import pytest
from nacl.signing import VerifyKey
from nio.store import DefaultStore
from pydantic import SecretStr
from signedjson.key import decode_verify_key_bytes
from signedjson.sign import SignatureVerifyException, verify_signed_json

from bot import texts
from bot.app import BotApp
from bot.matrix.cross_signing import (
    KEYS_FILE_NAME,
    CrossSigningKeys,
    CrossSigningStatus,
    encode_base64,
    load_keys,
)
from bot.matrix.sending import ClearSendRefused
from bot.matrix.session import DEFAULT_PICKLE_KEY
from sandbox.fake_mistral import FakeMistral
from tests.integration.conftest import BOT_DISPLAY_NAME, RunningBot, StartBot, bot_settings
from tests.support.bot_helpers import ask, bot_replies, replies_to, room_with_bot
from tests.support.matrix_client import (
    DECRYPTED_MARK,
    join_room,
    send_text,
    sync_once,
    wait_for_event,
    wait_for_invite,
)
from tests.support.synapse import RegisteredUser, SynapseServer

pytestmark = pytest.mark.integration


# --- helpers ---------------------------------------------------------------------------------
async def raw_event(
    synapse: SynapseServer, client: nio.AsyncClient, room_id: str, event_id: str
) -> dict[str, Any]:
    """The event as the homeserver stores it (what anyone without the keys would see)."""
    path = f"/_matrix/client/v3/rooms/{quote(room_id)}/event/{quote(event_id)}"
    return await synapse.admin_request("GET", path, client.access_token)


async def assert_encrypted_on_server(
    synapse: SynapseServer, client: nio.AsyncClient, room_id: str, answer: dict[str, Any]
) -> None:
    assert answer.get(DECRYPTED_MARK) is True, "the client had to decrypt the answer"
    stored = await raw_event(synapse, client, room_id, answer["event_id"])
    assert stored["type"] == "m.room.encrypted"
    assert stored["content"]["algorithm"] == "m.megolm.v1.aes-sha2"
    assert "body" not in stored["content"]


async def encrypted_room_with_bot(client: nio.AsyncClient, bot_id: str, **kwargs: Any) -> str:
    return await room_with_bot(client, bot_id, encrypted=True, **kwargs)


async def send_with_held_key(
    client: nio.AsyncClient, room_id: str, body: str, **content: Any
) -> tuple[str, list[dict[str, Any]], str]:
    """Send an encrypted message whose Megolm key is NOT sent yet, as a slow client would.

    Returns the event id, the Olm-encrypted to-device payloads carrying the key (to be sent
    later with `release_key`) and the Megolm session id.
    """
    assert client.olm is not None
    await sync_once(client)
    await client.joined_members(room_id)
    if client.should_query_keys:
        await client.keys_query()
    missing = client.get_missing_sessions(room_id)
    if missing:
        await client.keys_claim(missing)
    room = client.rooms[room_id]
    client.olm.create_outbound_group_session(room_id)  # a fresh session: nobody has it yet
    payloads = [
        to_device
        for _, to_device in client.olm.share_group_session_parallel(
            room_id, list(room.users), ignore_unverified_devices=True
        )
    ]
    session = client.olm.outbound_group_sessions[room_id]
    session.shared = True  # nio now encrypts with it without sharing it
    response = await client.room_send(
        room_id,
        "m.room.message",
        {"msgtype": "m.text", "body": body, **content},
        ignore_unverified_devices=True,
    )
    assert isinstance(response, nio.RoomSendResponse), response
    return str(response.event_id), payloads, str(session.id)


async def release_key(
    synapse: SynapseServer, client: nio.AsyncClient, payloads: list[dict[str, Any]]
) -> None:
    for payload in payloads:
        path = f"/_matrix/client/v3/sendToDevice/m.room.encrypted/{secrets.token_hex(8)}"
        await synapse.admin_request("PUT", path, client.access_token, json_body=payload)


async def withhold_key(
    synapse: SynapseServer,
    client: nio.AsyncClient,
    room_id: str,
    session_id: str,
    bot_id: str,
    bot_device: str,
) -> None:
    """What Element sends with "exclude insecure devices" to a device it does not trust."""
    assert client.olm is not None
    content = {
        "algorithm": "m.megolm.v1.aes-sha2",
        "room_id": room_id,
        "session_id": session_id,
        "sender_key": client.olm.account.identity_keys["curve25519"],
        "code": "m.unverified",
        "reason": "The sender has disabled encrypting to unverified devices.",
        "from_device": client.device_id,
    }
    path = f"/_matrix/client/v3/sendToDevice/m.room_key.withheld/{secrets.token_hex(8)}"
    body = {"messages": {bot_id: {bot_device: content}}}
    await synapse.admin_request("PUT", path, client.access_token, json_body=body)


def notices(client: nio.AsyncClient, room_id: str, bot_id: str) -> list[dict[str, Any]]:
    return [
        e
        for e in bot_replies(client, room_id, bot_id)
        if e["content"].get("body") == texts.UNDECRYPTABLE
    ]


async def keys_of(synapse: SynapseServer, viewer: nio.AsyncClient, user_id: str) -> dict[str, Any]:
    return await synapse.admin_request(
        "POST",
        "/_matrix/client/v3/keys/query",
        viewer.access_token,
        json_body={"device_keys": {user_id: []}},
    )


def single_key(key_object: dict[str, Any]) -> tuple[str, VerifyKey]:
    ((key_id, public),) = key_object["keys"].items()
    algorithm, version = key_id.split(":", 1)
    assert algorithm == "ed25519" and version == public
    verify_key = decode_verify_key_bytes(key_id, _b64decode(public))
    return public, verify_key


def _b64decode(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


def assert_signed(obj: dict[str, Any], user_id: str, verify_key: VerifyKey) -> None:
    try:
        verify_signed_json(obj, user_id, verify_key)
    except SignatureVerifyException as error:  # pragma: no cover - the failure message
        raise AssertionError(f"bad signature: {error}") from None


async def login_new_device(synapse: SynapseServer, user: RegisteredUser) -> RegisteredUser:
    """A second session of the same person (a new phone): a new device through /login."""
    body = {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": user.user_id},
        "password": user.password,
    }
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{synapse.base_url}/_matrix/client/v3/login", json=body) as resp,
    ):
        data = await resp.json()
        assert resp.status == 200, data
    return RegisteredUser(
        user_id=user.user_id,
        password=user.password,
        access_token=data["access_token"],
        device_id=data["device_id"],
    )


# --- encrypted rooms work like clear ones ----------------------------------------------------
async def test_mention_in_encrypted_room_gets_an_encrypted_answer(
    start_bot: StartBot, user_client: Any, synapse: SynapseServer, fake_llm: FakeMistral
) -> None:
    bot = await start_bot()
    alice = await user_client("alice", encryption=True)
    room_id = await encrypted_room_with_bot(alice, bot.user_id, name="Cellule chiffrée")

    answer = await ask(
        alice,
        room_id,
        bot.user_id,
        f"{BOT_DISPLAY_NAME} quel est le plan ?",
        mentions=[bot.user_id],
    )

    assert answer["sender"] == bot.user_id
    assert answer["content"]["body"].startswith("Réponse simulée")
    assert fake_llm.requests[-1]["messages"][-1]["content"].endswith("quel est le plan ?")
    await assert_encrypted_on_server(synapse, alice, room_id, answer)
    assert bot.app.gateway is not None and bot.app.gateway.room_context(room_id).encrypted


async def test_encrypted_dm_is_answered_in_encrypted_form(
    start_bot: StartBot, user_client: Any, synapse: SynapseServer
) -> None:
    bot = await start_bot()
    alice = await user_client("alice", encryption=True)
    room_id = await encrypted_room_with_bot(alice, bot.user_id, is_direct=True)

    answer = await ask(alice, room_id, bot.user_id, "Bonjour, une question confidentielle")

    assert answer["content"]["body"].startswith("Réponse simulée")
    await assert_encrypted_on_server(synapse, alice, room_id, answer)
    assert bot.app.gateway is not None and bot.app.gateway.room_context(room_id).is_direct


async def test_restart_keeps_device_keys_and_identity_and_still_decrypts(
    start_bot: StartBot, user_client: Any, synapse: SynapseServer, fake_llm: FakeMistral
) -> None:
    bot = await start_bot()
    alice = await user_client("alice", encryption=True)
    room_id = await encrypted_room_with_bot(alice, bot.user_id, is_direct=True)
    await ask(alice, room_id, bot.user_id, "Avant le redémarrage")
    gateway = bot.app.gateway
    assert gateway is not None and gateway.client.olm is not None
    device_before = gateway.device_id
    ed25519_before = gateway.client.olm.account.identity_keys["ed25519"]
    identity_before = await keys_of(synapse, alice, bot.user_id)

    await bot.stop()
    while_down = await send_text(alice, room_id, "Question pendant l'arrêt")
    await bot.start()
    late = await wait_for_event(alice, room_id, replies_to(while_down))
    after = await ask(alice, room_id, bot.user_id, "Après le redémarrage")

    gateway = bot.app.gateway
    assert gateway is not None and gateway.client.olm is not None
    assert gateway.device_id == device_before
    assert gateway.client.olm.account.identity_keys["ed25519"] == ed25519_before
    identity_after = await keys_of(synapse, alice, bot.user_id)
    for kind in ("master_keys", "self_signing_keys"):
        assert (
            identity_after[kind][bot.user_id]["keys"] == identity_before[kind][bot.user_id]["keys"]
        )
    assert list(identity_after["device_keys"][bot.user_id]) == list(
        identity_before["device_keys"][bot.user_id]
    ), "no new device appeared"
    for answer in (late, after):
        await assert_encrypted_on_server(synapse, alice, room_id, answer)
    assert fake_llm.requests_containing("Question pendant l'arrêt")


async def test_new_member_and_new_device_can_read_answers(
    start_bot: StartBot, user_client: Any, synapse: SynapseServer, new_user: Any
) -> None:
    bot = await start_bot()
    alice_account = await new_user("alice")
    alice = await user_client(alice_account, encryption=True)
    room_id = await encrypted_room_with_bot(alice, bot.user_id)
    await ask(alice, room_id, bot.user_id, f"{bot.user_id} première", mentions=[bot.user_id])

    bob = await user_client("bob", encryption=True)
    await alice.room_invite(room_id, bob.user_id)
    await wait_for_invite(bob, room_id)
    await join_room(bob, room_id)
    bob_answer = await ask(
        bob, room_id, bot.user_id, f"{bot.user_id} arrivé", mentions=[bot.user_id]
    )
    await assert_encrypted_on_server(synapse, bob, room_id, bob_answer)

    alice_phone = await user_client(await login_new_device(synapse, alice_account), encryption=True)
    phone_answer = await ask(
        alice_phone,
        room_id,
        bot.user_id,
        f"{bot.user_id} depuis mon téléphone",
        mentions=[bot.user_id],
    )
    await assert_encrypted_on_server(synapse, alice_phone, room_id, phone_answer)
    # Everyone present reads every later answer, the first member included.
    seen_by_alice = await wait_for_event(
        alice, room_id, lambda e: e["event_id"] == phone_answer["event_id"]
    )
    assert seen_by_alice.get(DECRYPTED_MARK) is True
    seen_by_bob = await wait_for_event(
        bob, room_id, lambda e: e["event_id"] == phone_answer["event_id"]
    )
    assert seen_by_bob["content"]["body"] == phone_answer["content"]["body"]


async def test_threads_replies_and_edits_in_encrypted_room(
    start_bot: StartBot, user_client: Any, synapse: SynapseServer, fake_llm: FakeMistral
) -> None:
    bot = await start_bot()
    alice = await user_client("alice", encryption=True)
    room_id = await encrypted_room_with_bot(alice, bot.user_id)

    root = await send_text(alice, room_id, "Fil : organisation du séminaire")
    in_thread = await ask(
        alice,
        room_id,
        bot.user_id,
        f"{bot.user_id} dans le fil ?",
        mentions=[bot.user_id],
        thread_root=root,
    )
    relation = in_thread["content"]["m.relates_to"]
    assert relation["rel_type"] == "m.thread" and relation["event_id"] == root
    await assert_encrypted_on_server(synapse, alice, room_id, in_thread)
    stored = await raw_event(synapse, alice, room_id, in_thread["event_id"])
    assert stored["content"]["m.relates_to"]["rel_type"] == "m.thread", "relations stay in clear"

    first = await ask(
        alice, room_id, bot.user_id, f"{bot.user_id} question", mentions=[bot.user_id]
    )
    follow_up = await ask(alice, room_id, bot.user_id, "et la suite ?", reply_to=first["event_id"])
    await assert_encrypted_on_server(synapse, alice, room_id, follow_up)

    note = await send_text(alice, room_id, "Budget prévu : 10 k€")
    await send_text(
        alice,
        room_id,
        "* Budget prévu : 20 k€",
        extra_content={
            "m.new_content": {"msgtype": "m.text", "body": "Budget prévu : 20 k€"},
            "m.relates_to": {"rel_type": "m.replace", "event_id": note},
        },
    )
    await ask(alice, room_id, bot.user_id, f"{bot.user_id} le budget ?", mentions=[bot.user_id])
    assert bot.store is not None
    edited = await bot.store.messages.get(note)
    assert edited is not None and edited.body == "Budget prévu : 20 k€"


async def test_answers_are_never_sent_in_clear_to_an_encrypted_room(
    start_bot: StartBot, user_client: Any, synapse: SynapseServer
) -> None:
    bot = await start_bot()
    alice = await user_client("alice", encryption=True)
    room_id = await encrypted_room_with_bot(alice, bot.user_id, is_direct=True)
    await ask(alice, room_id, bot.user_id, "Bonjour")
    gateway = bot.app.gateway
    assert gateway is not None
    nio_room = gateway.client.rooms[room_id]

    nio_room.encrypted = False  # nio's live state lost the encryption; its store still knows
    try:
        with pytest.raises(ClearSendRefused):
            await gateway.send_event(room_id, {"msgtype": "m.text", "body": "fuite"}, "txn-clear-1")
    finally:
        nio_room.encrypted = True
    with pytest.raises(ClearSendRefused):  # nio would send reactions in clear
        await gateway.send_event(
            room_id,
            {"m.relates_to": {"rel_type": "m.annotation", "event_id": "$x", "key": "👍"}},
            "txn-clear-2",
            event_type="m.reaction",
        )

    messages = await synapse.admin_request(
        "GET",
        f"/_matrix/client/v3/rooms/{quote(room_id)}/messages?dir=b&limit=50",
        alice.access_token,
    )
    from_bot = [e for e in messages["chunk"] if e["sender"] == bot.user_id]
    assert from_bot and all(e["type"] in ("m.room.encrypted", "m.room.member") for e in from_bot), [
        e["type"] for e in from_bot
    ]


# --- keys that come late, never, or are refused ------------------------------------------------
async def test_message_whose_key_arrives_late_is_answered_when_it_arrives(
    start_bot: StartBot, user_client: Any, synapse: SynapseServer, fake_llm: FakeMistral
) -> None:
    bot = await start_bot(undecryptable_notice_seconds=600)
    alice = await user_client("alice", encryption=True)
    room_id = await encrypted_room_with_bot(alice, bot.user_id, is_direct=True)
    await ask(alice, room_id, bot.user_id, "Premier message, clé normale")

    event_id, payloads, _ = await send_with_held_key(alice, room_id, "Clé en retard : réponds")
    gateway = bot.app.gateway
    assert gateway is not None
    for _ in range(100):  # the bot has seen the event and is holding it
        if gateway.is_waiting_for_key(event_id):
            break
        await asyncio.sleep(0.1)
    assert gateway.is_waiting_for_key(event_id)
    assert not fake_llm.requests_containing("Clé en retard")

    await release_key(synapse, alice, payloads)
    answer = await wait_for_event(alice, room_id, replies_to(event_id))

    assert answer["content"]["body"].startswith("Réponse simulée")
    await assert_encrypted_on_server(synapse, alice, room_id, answer)
    assert not gateway.is_waiting_for_key(event_id)
    assert len(fake_llm.requests_containing("Clé en retard")) == 1
    assert notices(alice, room_id, bot.user_id) == []


async def test_key_that_never_comes_gives_one_notice_then_late_key_still_answers(
    start_bot: StartBot, user_client: Any, synapse: SynapseServer, fake_llm: FakeMistral
) -> None:
    bot = await start_bot(undecryptable_notice_seconds=0.5)
    alice = await user_client("alice", encryption=True)
    room_id = await encrypted_room_with_bot(alice, bot.user_id, is_direct=True)

    first, payloads, _ = await send_with_held_key(alice, room_id, "Illisible numéro un")
    notice = await wait_for_event(alice, room_id, replies_to(first))
    assert notice["content"]["msgtype"] == "m.notice"
    assert notice["content"]["body"] == texts.UNDECRYPTABLE
    assert notice["content"]["m.mentions"] == {"user_ids": [alice.user_id]}
    await assert_encrypted_on_server(synapse, alice, room_id, notice)

    # More unreadable messages from the same session: no more notices.
    second = await send_text(alice, room_id, "Illisible numéro deux")
    gateway = bot.app.gateway
    assert gateway is not None
    for _ in range(100):
        if gateway.is_waiting_for_key(second):
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.5)  # three times the bound: a second notice would be out by now
    await sync_once(alice)
    assert len(notices(alice, room_id, bot.user_id)) == 1

    await release_key(synapse, alice, payloads)
    await wait_for_event(
        alice,
        room_id,
        lambda e: replies_to(first)(e) and e["content"]["body"].startswith("Réponse simulée"),
    )
    await wait_for_event(alice, room_id, replies_to(second))
    assert len(fake_llm.requests_containing("Illisible numéro un")) >= 1
    assert len(notices(alice, room_id, bot.user_id)) == 1


async def test_withheld_key_gives_the_notice_without_waiting(
    start_bot: StartBot, user_client: Any, synapse: SynapseServer, fake_llm: FakeMistral
) -> None:
    bot = await start_bot(undecryptable_notice_seconds=3600)
    alice = await user_client("alice", encryption=True)
    room_id = await encrypted_room_with_bot(alice, bot.user_id, is_direct=True)
    gateway = bot.app.gateway
    assert gateway is not None and gateway.device_id is not None

    event_id, _, session_id = await send_with_held_key(alice, room_id, "Clé refusée")
    await withhold_key(synapse, alice, room_id, session_id, bot.user_id, gateway.device_id)

    notice = await wait_for_event(alice, room_id, replies_to(event_id))
    assert notice["content"]["body"] == texts.UNDECRYPTABLE
    await assert_encrypted_on_server(synapse, alice, room_id, notice)
    assert not fake_llm.requests_containing("Clé refusée")


async def test_group_room_notices_each_sender_once(
    start_bot: StartBot, user_client: Any, synapse: SynapseServer
) -> None:
    bot = await start_bot(undecryptable_notice_seconds=0.3)
    alice = await user_client("alice", encryption=True)
    room_id = await encrypted_room_with_bot(alice, bot.user_id)

    first, _, _ = await send_with_held_key(alice, room_id, "Illisible A")
    await wait_for_event(alice, room_id, replies_to(first))
    # A new Megolm session (another unreadable batch) in a mention-only room: still quiet.
    second, _, _ = await send_with_held_key(alice, room_id, "Illisible B")
    gateway = bot.app.gateway
    assert gateway is not None
    for _ in range(100):
        if gateway.is_waiting_for_key(second):
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.0)
    await sync_once(alice)
    assert [
        n["content"]["m.relates_to"]["m.in_reply_to"]["event_id"]
        for n in notices(alice, room_id, bot.user_id)
    ] == [first]


# --- cross-signing -----------------------------------------------------------------------------
async def test_bot_device_is_cross_signed_and_identity_survives_restart(
    start_bot: StartBot, user_client: Any, synapse: SynapseServer
) -> None:
    bot = await start_bot()
    viewer = await user_client("viewer")
    gateway = bot.app.gateway
    assert gateway is not None and gateway.client.olm is not None
    assert gateway.cross_signing_status is CrossSigningStatus.CREATED
    device_id = gateway.device_id
    device_ed25519 = gateway.client.olm.account.identity_keys["ed25519"]

    keys = await keys_of(synapse, viewer, bot.user_id)
    master = keys["master_keys"][bot.user_id]
    self_signing = keys["self_signing_keys"][bot.user_id]
    device = keys["device_keys"][bot.user_id][device_id]
    assert master["usage"] == ["master"] and self_signing["usage"] == ["self_signing"]
    master_public, master_key = single_key(master)
    ssk_public, ssk_key = single_key(self_signing)
    assert_signed(self_signing, bot.user_id, master_key)
    assert_signed(device, bot.user_id, ssk_key)
    assert device["keys"][f"ed25519:{device_id}"] == device_ed25519
    # The owner's view also shows the user-signing key and the device's vouch for the master key.
    own = await keys_of(synapse, gateway.client, bot.user_id)
    assert_signed(own["user_signing_keys"][bot.user_id], bot.user_id, master_key)
    device_key = decode_verify_key_bytes(f"ed25519:{device_id}", _b64decode(device_ed25519))
    assert_signed(own["master_keys"][bot.user_id], bot.user_id, device_key)

    keys_file = bot.settings.crypto_store_dir / KEYS_FILE_NAME
    assert stat.S_IMODE(keys_file.stat().st_mode) == 0o600
    assert master_public not in keys_file.read_text(), "the file holds private seeds only"

    await bot.restart()
    gateway = bot.app.gateway
    assert gateway is not None and gateway.client.olm is not None
    assert gateway.cross_signing_status is CrossSigningStatus.READY
    assert gateway.device_id == device_id
    assert gateway.client.olm.account.identity_keys["ed25519"] == device_ed25519
    again = await keys_of(synapse, viewer, bot.user_id)
    assert single_key(again["master_keys"][bot.user_id])[0] == master_public
    assert single_key(again["self_signing_keys"][bot.user_id])[0] == ssk_public
    assert_signed(again["device_keys"][bot.user_id][device_id], bot.user_id, ssk_key)


async def _start_custom(
    synapse: SynapseServer,
    fake_llm: FakeMistral,
    account: RegisteredUser,
    data_dir: Path,
    **overrides: Any,
) -> RunningBot:
    settings = bot_settings(synapse, fake_llm, account, data_dir, **overrides)
    bot = RunningBot(account=account, settings=settings, app=BotApp(settings))
    await bot.start()
    return bot


async def test_identity_made_elsewhere_is_kept_until_the_admin_resets_it(
    synapse: SynapseServer, fake_llm: FakeMistral, new_user: Any, tmp_path: Path
) -> None:
    account = await new_user("assistant", displayname=BOT_DISPLAY_NAME)
    foreign = CrossSigningKeys.generate()  # e.g. the account was once used in Element
    await synapse.admin_request(
        "POST",
        "/_matrix/client/v3/keys/device_signing/upload",
        account.access_token,
        json_body=foreign.upload_body(account.user_id),
    )

    async def server_master() -> str:
        keys = await synapse.admin_request(
            "POST",
            "/_matrix/client/v3/keys/query",
            account.access_token,
            json_body={"device_keys": {account.user_id: []}},
        )
        return single_key(keys["master_keys"][account.user_id])[0]

    def status(bot: RunningBot) -> CrossSigningStatus | None:
        assert bot.app.gateway is not None
        return bot.app.gateway.cross_signing_status

    bot = await _start_custom(synapse, fake_llm, account, tmp_path / "bot")
    try:
        assert status(bot) is CrossSigningStatus.CONFLICT
        assert not (bot.settings.crypto_store_dir / KEYS_FILE_NAME).exists()
        assert await server_master() == foreign.master.public_key

        # The admin asks for a reset but gives only a token: Synapse demands the password.
        await bot.restart(
            cross_signing_reset=True, password=None, access_token=SecretStr(account.access_token)
        )
        assert status(bot) is CrossSigningStatus.NEEDS_PASSWORD
        assert await server_master() == foreign.master.public_key

        # With the password for one start, the bot's identity replaces the foreign one (UIA).
        await bot.restart(cross_signing_reset=True, password=SecretStr(account.password))
        assert status(bot) is CrossSigningStatus.READY
        local = load_keys(bot.settings.crypto_store_dir / KEYS_FILE_NAME, account.user_id)
        assert local is not None and await server_master() == local.master.public_key

        await bot.restart(cross_signing_reset=False)
        assert status(bot) is CrossSigningStatus.READY
        assert await server_master() == local.master.public_key
    finally:
        await bot.stop()


async def test_access_token_only_bot_is_cross_signed_too(
    synapse: SynapseServer,
    fake_llm: FakeMistral,
    new_user: Any,
    tmp_path: Path,
    user_client: Any,
) -> None:
    account = await new_user("assistant", displayname=BOT_DISPLAY_NAME)
    bot = await _start_custom(
        synapse,
        fake_llm,
        account,
        tmp_path / "bot",
        password=None,
        access_token=account.access_token,
    )
    try:
        gateway = bot.app.gateway
        assert gateway is not None
        # This Synapse allows the first upload without a password (MSC3967).
        assert gateway.cross_signing_status is CrossSigningStatus.CREATED
        assert gateway.device_id == account.device_id
        viewer = await user_client("viewer")
        keys = await keys_of(synapse, viewer, account.user_id)
        _, ssk_key = single_key(keys["self_signing_keys"][account.user_id])
        assert_signed(
            keys["device_keys"][account.user_id][account.device_id], account.user_id, ssk_key
        )
    finally:
        await bot.stop()


# --- keys at rest ------------------------------------------------------------------------------
async def test_store_passphrase_seals_existing_keys_and_is_then_required(
    start_bot: StartBot, user_client: Any, synapse: SynapseServer
) -> None:
    bot = await start_bot()
    alice = await user_client("alice", encryption=True)
    room_id = await encrypted_room_with_bot(alice, bot.user_id, is_direct=True)
    await ask(alice, room_id, bot.user_id, "Avant la phrase de passe")
    gateway = bot.app.gateway
    assert gateway is not None and gateway.client.olm is not None
    device_id, ed25519 = gateway.device_id, gateway.client.olm.account.identity_keys["ed25519"]
    crypto_dir = bot.settings.crypto_store_dir
    phrase = SecretStr("une phrase de passe longue et aléatoire")

    await bot.restart(store_passphrase=phrase)  # an administrator adds the passphrase later

    gateway = bot.app.gateway
    assert gateway is not None and gateway.client.olm is not None
    assert gateway.device_id == device_id
    assert gateway.client.olm.account.identity_keys["ed25519"] == ed25519
    assert gateway.cross_signing_status is CrossSigningStatus.READY
    # Alice's Megolm session from before still decrypts: the room keys were re-sealed, not lost.
    answer = await ask(alice, room_id, bot.user_id, "Après la phrase de passe")
    await assert_encrypted_on_server(synapse, alice, room_id, answer)

    store = DefaultStore(bot.user_id, str(device_id), str(crypto_dir), DEFAULT_PICKLE_KEY)
    try:
        with pytest.raises(Exception):  # noqa: B017 - vodozemac's pickle errors vary
            store.load_account()
        store.pickle_key = phrase.get_secret_value()
        assert store.load_account() is not None
        assert len(list(store.load_inbound_group_sessions())) >= 1
    finally:
        store.database.close()
    keys_file = crypto_dir / KEYS_FILE_NAME
    keys = load_keys(keys_file, bot.user_id, phrase.get_secret_value())
    assert keys is not None
    assert encode_base64(keys.master.seed) not in keys_file.read_text()
    assert stat.S_IMODE(keys_file.stat().st_mode) == 0o600

    for wrong in (SecretStr("pas la bonne"), None):
        with pytest.raises(AssertionError, match="start-up with 3"):
            await bot.restart(store_passphrase=wrong)
        assert await bot.stop() == 3
    await bot.restart(store_passphrase=phrase)
    gateway = bot.app.gateway
    assert gateway is not None and gateway.device_id == device_id


async def until_held(gateway: Any, event_id: str) -> None:
    """The bot has seen the encrypted event and is holding it for its key."""
    for _ in range(100):
        if gateway.is_waiting_for_key(event_id):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"the bot never held {event_id}")


@pytest.mark.parametrize("key_comes", ["after the restart", "while the bot is down"])
async def test_message_waiting_for_its_key_survives_a_restart(
    start_bot: StartBot,
    user_client: Any,
    synapse: SynapseServer,
    fake_llm: FakeMistral,
    key_comes: str,
) -> None:
    bot = await start_bot(undecryptable_notice_seconds=600)
    alice = await user_client("alice", encryption=True)
    room_id = await encrypted_room_with_bot(alice, bot.user_id, is_direct=True)
    await ask(alice, room_id, bot.user_id, "Premier message, clé normale")
    question = f"Clé reçue {key_comes}"
    event_id, payloads, _ = await send_with_held_key(alice, room_id, question)
    assert bot.app.gateway is not None
    await until_held(bot.app.gateway, event_id)

    await bot.stop()
    if key_comes == "while the bot is down":
        await release_key(synapse, alice, payloads)
    await bot.start()
    if key_comes == "after the restart":
        assert bot.app.gateway is not None and bot.app.gateway.is_waiting_for_key(event_id)
        await release_key(synapse, alice, payloads)
    answer = await wait_for_event(alice, room_id, replies_to(event_id))

    assert answer["content"]["body"].startswith("Réponse simulée")
    assert len(fake_llm.requests_containing(question)) == 1
    assert bot.app.gateway is not None and not bot.app.gateway.is_waiting_for_key(event_id)
