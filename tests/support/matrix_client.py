"""Test "users": real matrix-nio clients logged in on the test homeserver.

Why real clients: what the bot receives must be exactly what Element/Tchap would send
(including Megolm-encrypted events), and what the bot answers must be checked the way a
human's client would see it, decryption included.

Every client made here records every timeline event it syncs, so ``wait_for_event`` never
misses an event that arrived before the call (e.g. the bot answered very fast).
"""

from __future__ import annotations

import asyncio
import io
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nio

from tests.support.synapse import RegisteredUser, SynapseServer

SYNC_POLL_MS = 1_000
"""Long-poll length of each sync while waiting: the server answers as soon as events come."""

DECRYPTED_MARK = "_decrypted"
"""Key added to the dicts of events that arrived encrypted and were decrypted here."""

Predicate = Callable[[dict[str, Any]], bool]


@dataclass
class _EventLog:
    """Every timeline event a client has seen, in arrival order, deduplicated by event id."""

    events: list[tuple[str, nio.Event]] = field(default_factory=list)
    seen_ids: set[str] = field(default_factory=set)

    def record(self, room: nio.MatrixRoom, event: nio.Event) -> None:
        event_id = getattr(event, "event_id", None)
        if event_id is not None:
            if event_id in self.seen_ids:
                return
            self.seen_ids.add(event_id)
        self.events.append((room.room_id, event))


_logs: weakref.WeakKeyDictionary[nio.AsyncClient, _EventLog] = weakref.WeakKeyDictionary()


def _event_log(client: nio.AsyncClient) -> _EventLog:
    """The client's event log, installed on first use (events before that are unknown)."""
    log = _logs.get(client)
    if log is None:
        log = _EventLog()
        _logs[client] = log

        async def on_event(room: nio.MatrixRoom, event: nio.Event) -> None:
            log.record(room, event)

        client.add_event_callback(on_event, nio.Event)
    return log


def _raise_on_error(response: Any, what: str) -> Any:
    if isinstance(response, nio.ErrorResponse):
        raise AssertionError(f"{what} failed: {response}")
    return response


async def sync_once(client: nio.AsyncClient, timeout_ms: int = 0) -> nio.SyncResponse:
    """One sync plus the E2E housekeeping ``sync_forever`` would do (keys, to-device)."""
    response = _raise_on_error(await client.sync(timeout=timeout_ms), "sync")
    if client.olm is not None:
        if client.should_upload_keys:
            _raise_on_error(await client.keys_upload(), "keys_upload")
        if client.should_query_keys:
            _raise_on_error(await client.keys_query(), "keys_query")
        if client.should_claim_keys:
            users = client.get_users_for_key_claiming()
            _raise_on_error(await client.keys_claim(users), "keys_claim")
        await client.send_to_device_messages()
    assert isinstance(response, nio.SyncResponse)
    return response


async def make_client(
    server: SynapseServer,
    user: RegisteredUser,
    store_dir: Path | None = None,
    encryption: bool = False,
) -> nio.AsyncClient:
    """A nio client restored from the user's token (no new device), first sync done.

    With ``encryption``, the Olm store lives in ``store_dir`` (default: a dir in the
    server's workdir) and device keys are uploaded before returning, so other clients can
    encrypt for this device right away.
    """
    if store_dir is None:
        store_dir = server.workdir / "clients" / f"{user.localpart}-{user.device_id}"
    store_dir.mkdir(parents=True, exist_ok=True)
    config = nio.AsyncClientConfig(
        encryption_enabled=encryption,
        store_sync_tokens=encryption,
    )
    client = nio.AsyncClient(
        server.base_url,
        user.user_id,
        device_id=user.device_id,
        store_path=str(store_dir),
        config=config,
    )
    client.restore_login(user.user_id, user.device_id, user.access_token)
    _event_log(client)
    try:
        await sync_once(client)
        if encryption:
            if client.olm is None:
                raise AssertionError("encryption requested but nio has no Olm machine")
            if client.should_upload_keys:
                _raise_on_error(await client.keys_upload(), "keys_upload")
    except BaseException:
        await client.close()
        raise
    return client


def event_dict(event: nio.Event) -> dict[str, Any]:
    """The event as a plain dict: ``event.source``, decrypted content for encrypted events.

    Decrypted events carry ``"_decrypted": True``; events nio could not decrypt keep
    type ``m.room.encrypted`` and their ciphertext.
    """
    source = dict(event.source)
    if getattr(event, "decrypted", False):
        source[DECRYPTED_MARK] = True
    return source


def _summary(data: dict[str, Any]) -> str:
    content = data.get("content") or {}
    text = content.get("body") or content.get("membership") or ""
    return f"{data.get('type')} from {data.get('sender')}: {str(text)[:80]!r}"


def _matches(predicate: Predicate, data: dict[str, Any]) -> bool:
    """Predicates may index freely: a KeyError or TypeError just means 'not this event'."""
    try:
        return bool(predicate(data))
    except (KeyError, TypeError, AttributeError, IndexError):
        return False


def _retry_decryption(client: nio.AsyncClient, log: _EventLog) -> None:
    """Room keys may arrive after the message: decrypt buffered Megolm events again."""
    if client.olm is None:
        return
    for index, (room_id, event) in enumerate(log.events):
        if isinstance(event, nio.MegolmEvent):
            event.room_id = room_id
            try:
                decrypted = client.decrypt_event(event)
            except Exception:  # still undecryptable: keep the ciphertext
                continue
            if isinstance(decrypted, nio.Event) and not isinstance(decrypted, nio.MegolmEvent):
                log.events[index] = (room_id, decrypted)


async def wait_for_event(
    client: nio.AsyncClient,
    room_id: str,
    predicate: Predicate,
    timeout: float = 15,  # noqa: ASYNC109 - a deadline spread over many syncs
) -> dict[str, Any]:
    """Sync until a timeline event of ``room_id`` satisfies ``predicate``; return its dict.

    Events already seen by this client (since ``make_client``) are checked first. On
    timeout, raises AssertionError listing what the room did show, to make failures
    readable.
    """
    log = _event_log(client)
    deadline = time.monotonic() + timeout
    while True:
        # The whole buffer is scanned each round: it is small, and Megolm events that
        # could not be decrypted earlier may have become readable since.
        _retry_decryption(client, log)
        for event_room, event in log.events:
            if event_room == room_id:
                data = event_dict(event)
                if _matches(predicate, data):
                    return data
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        await sync_once(client, int(min(remaining * 1000, SYNC_POLL_MS)))
    seen = [_summary(event_dict(e)) for r, e in log.events if r == room_id]
    raise AssertionError(
        f"{client.user_id}: no matching event in {room_id} within {timeout} s; "
        f"saw {len(seen)} event(s):\n  " + "\n  ".join(seen[-30:])
    )


def events_in(client: nio.AsyncClient, room_id: str) -> list[dict[str, Any]]:
    """Every timeline event of ``room_id`` this client has synced so far (no new sync)."""
    log = _event_log(client)
    _retry_decryption(client, log)
    return [event_dict(e) for r, e in log.events if r == room_id]


async def _wait_for_room(client: nio.AsyncClient, room_id: str, within: float = 10) -> None:
    """Sync until nio knows the room (needed before sending to an encrypted room)."""
    deadline = time.monotonic() + within
    while room_id not in client.rooms:
        if time.monotonic() > deadline:
            raise AssertionError(f"{client.user_id}: room {room_id} never showed up in sync")
        await sync_once(client, 200)


async def send_text(
    client: nio.AsyncClient,
    room_id: str,
    body: str,
    formatted_body: str | None = None,
    mentions: list[str] | None = None,
    reply_to: str | None = None,
    thread_root: str | None = None,
    extra_content: dict[str, Any] | None = None,
) -> str:
    """Send an ``m.text`` message the way Element does; return its event id.

    ``mentions`` fills ``m.mentions.user_ids``; ``reply_to`` adds ``m.in_reply_to``;
    ``thread_root`` makes it a thread message (with ``reply_to`` as the in-thread reply,
    else the thread fallback to the root). Encrypted rooms are handled transparently.
    """
    content: dict[str, Any] = {"msgtype": "m.text", "body": body}
    if formatted_body is not None:
        content["format"] = "org.matrix.custom.html"
        content["formatted_body"] = formatted_body
    if mentions is not None:
        content["m.mentions"] = {"user_ids": list(mentions)}
    if thread_root is not None:
        content["m.relates_to"] = {
            "rel_type": "m.thread",
            "event_id": thread_root,
            "is_falling_back": reply_to is None,
            "m.in_reply_to": {"event_id": reply_to or thread_root},
        }
    elif reply_to is not None:
        content["m.relates_to"] = {"m.in_reply_to": {"event_id": reply_to}}
    if extra_content:
        content.update(extra_content)
    if client.olm is not None:
        # nio must know the room and its current members to share the Megolm key with them.
        await _wait_for_room(client, room_id)
        await sync_once(client)
    response = _raise_on_error(
        await client.room_send(room_id, "m.room.message", content, ignore_unverified_devices=True),
        "room_send",
    )
    return str(response.event_id)


async def upload_file(
    client: nio.AsyncClient, data: bytes, name: str, mimetype: str, encrypt: bool
) -> dict[str, Any]:
    """Upload bytes the way Element does; return the content keys locating them.

    Clear: ``{"url": mxc}``. Encrypted (nio's AES-CTR, as in encrypted rooms):
    ``{"file": {"url": mxc, "key": {...}, "iv": ..., "hashes": {"sha256": ...}, "v": "v2"}}``.
    """
    response, keys = await client.upload(
        io.BytesIO(data), content_type=mimetype, filename=name, encrypt=encrypt, filesize=len(data)
    )
    _raise_on_error(response, "upload")
    if encrypt:
        assert keys is not None
        return {"file": {"url": response.content_uri, **keys}}
    return {"url": response.content_uri}


async def send_file(
    client: nio.AsyncClient,
    room_id: str,
    data: bytes,
    name: str,
    mimetype: str,
    msgtype: str = "m.file",
    encrypt: bool | None = None,
    info: dict[str, Any] | None = None,
    extra_content: dict[str, Any] | None = None,
) -> str:
    """Upload and send a file event (``m.file``, ``m.image``, ``m.audio``, ``m.video``).

    ``encrypt`` defaults to whether the client runs encryption and the room is encrypted (as
    Element decides). Returns the event id.
    """
    if client.olm is not None:
        await _wait_for_room(client, room_id)
    if encrypt is None:
        room = client.rooms.get(room_id)
        encrypt = bool(client.olm is not None and room is not None and room.encrypted)
    location = await upload_file(client, data, name, mimetype, encrypt)
    content: dict[str, Any] = {
        "msgtype": msgtype,
        "body": name,
        "info": {"mimetype": mimetype, "size": len(data), **(info or {})},
        **location,
    }
    if extra_content:
        content.update(extra_content)
    if client.olm is not None:
        await sync_once(client)
    response = _raise_on_error(
        await client.room_send(room_id, "m.room.message", content, ignore_unverified_devices=True),
        "room_send",
    )
    return str(response.event_id)


async def create_room(
    client: nio.AsyncClient,
    invite: list[str] | None = None,
    is_direct: bool = False,
    encrypted: bool = False,
    name: str | None = None,
    initial_state: list[dict[str, Any]] | None = None,
) -> str:
    """Create a private room (``trusted_private_chat`` for DMs, like Element) and return its id.

    For a DM the inviter's ``m.direct`` account data is updated too, as clients do.
    Returns once the creator's client has synced the room.
    """
    invite = list(invite or [])
    state = list(initial_state or [])
    if encrypted:
        state.append(
            {
                "type": "m.room.encryption",
                "state_key": "",
                "content": {"algorithm": "m.megolm.v1.aes-sha2"},
            }
        )
    preset = nio.RoomPreset.trusted_private_chat if is_direct else nio.RoomPreset.private_chat
    response = _raise_on_error(
        await client.room_create(
            name=name,
            invite=invite,
            is_direct=is_direct,
            preset=preset,
            initial_state=state,
        ),
        "room_create",
    )
    room_id = str(response.room_id)
    if is_direct and invite:
        await _add_direct_rooms(client, {user_id: room_id for user_id in invite})
    await _wait_for_room(client, room_id)
    return room_id


async def _add_direct_rooms(client: nio.AsyncClient, new: dict[str, str]) -> None:
    """Merge DM rooms into the user's ``m.direct`` account data."""
    path = f"/_matrix/client/v3/user/{client.user_id}/account_data/m.direct"
    headers = {"Authorization": f"Bearer {client.access_token}"}
    assert client.client_session is not None
    url = client.homeserver + path
    async with client.client_session.get(url, headers=headers) as resp:
        direct: dict[str, list[str]] = await resp.json() if resp.status == 200 else {}
    for user_id, room_id in new.items():
        direct.setdefault(user_id, []).append(room_id)
    async with client.client_session.put(url, json=direct, headers=headers) as resp:
        if resp.status != 200:
            raise AssertionError(f"setting m.direct failed: {resp.status} {await resp.text()}")


async def join_room(client: nio.AsyncClient, room_id: str) -> None:
    """Join (an invited room) and sync until nio knows it."""
    _raise_on_error(await client.join(room_id), "join")
    await _wait_for_room(client, room_id)


async def wait_for_invite(
    client: nio.AsyncClient,
    room_id: str,
    timeout: float = 15,  # noqa: ASYNC109 - a deadline spread over many syncs
) -> None:
    """Sync until the client sees an invite to ``room_id``."""
    deadline = time.monotonic() + timeout
    while room_id not in client.invited_rooms:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"{client.user_id}: no invite to {room_id} within {timeout} s")
        await sync_once(client, int(min(remaining * 1000, SYNC_POLL_MS)))


async def close_all(clients: list[nio.AsyncClient]) -> None:
    """Close clients (their HTTP sessions) without letting one failure hide the others."""
    await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
