"""The Matrix gateway: the only module that talks to matrix-nio.

It logs in once and reuses the saved session, runs the sync loop (`bot/matrix/sync.py`, a mixin:
the sync token is saved in SQLite only after every event of a sync was handed over), keeps
encryption keys flowing, and turns nio events into the typed models of `bot.models` for the
event sink (the router). Two more mixins hold its other jobs: sending (`bot/matrix/sending.py`)
and what it reads from the homeserver on demand (`bot/matrix/lookups.py`).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Protocol

import structlog
from nio import (
    AsyncClient,
    AsyncClientConfig,
    Event,
    ForwardedRoomKeyEvent,
    InviteMemberEvent,
    JoinError,
    MatrixRoom,
    MegolmEvent,
    ReactionEvent,
    ReceiptEvent,
    RedactionEvent,
    RoomCreateError,
    RoomEncryptedMedia,
    RoomGetStateError,
    RoomKeyEvent,
    RoomMemberEvent,
    RoomMessage,
    RoomPreset,
    UnknownEvent,
    UnknownToDeviceEvent,
)

from bot.matrix.cross_signing import CrossSigningStatus
from bot.matrix.direct import ACCESS_RULES_EVENT, DirectRooms
from bot.matrix.events import parse_message, parse_reaction, parse_redaction
from bot.matrix.keys import HeldEvents
from bot.matrix.lookups import RoomLookups
from bot.matrix.power import PowerLevelCache
from bot.matrix.sending import Sender, SendFailed
from bot.matrix.session import (
    pickle_key,
    raise_if_auth_error,
    restore_or_login,
    setup_cross_signing,
    unlock_crypto_store,
)
from bot.matrix.sync import (
    SYNC_AT_KEY,
    SYNC_TOKEN_KEY,
    SyncLoop,
    sync_filter,
)
from bot.models import (
    IncomingMessage,
    Reaction,
    ReadReceipt,
    RoomContext,
    RoomInvite,
    UndecryptableMessage,
)
from bot.ops import faults, logs, metrics
from bot.ops.proxy import proxy_for
from bot.store import Store
from config.settings import Settings

log = structlog.get_logger(__name__)


class EventSink(Protocol):
    async def on_message(
        self, message: IncomingMessage, room: RoomContext, answerable: bool
    ) -> None: ...

    async def on_invite(self, invite: RoomInvite) -> None: ...

    async def on_redaction(self, room_id: str, redacts: str) -> None: ...

    async def on_left(self, room_id: str) -> None: ...

    async def on_undecryptable(self, event: UndecryptableMessage) -> None: ...

    async def on_reaction(self, reaction: Reaction) -> None: ...
    async def on_receipt(self, receipt: ReadReceipt) -> None: ...


class MatrixGateway(SyncLoop, Sender, RoomLookups):
    def __init__(self, settings: Settings, store: Store) -> None:
        self._settings = settings
        self._store = store
        self._sink: EventSink | None = None
        settings.crypto_store_dir.mkdir(parents=True, exist_ok=True)
        config = AsyncClientConfig(
            encryption_enabled=True,
            store_sync_tokens=False,  # the sync token lives in our SQLite, saved at the right moment
            max_timeout_retry_wait_time=settings.homeserver_retry_max_seconds,
            max_timeouts=0,  # nio's endless "Timed out, sleeping" retries off: ours decide
            request_timeout=settings.sync_timeout_seconds + 30,
            pickle_key=pickle_key(settings),
        )
        self.client = AsyncClient(
            settings.homeserver,
            settings.user_id,
            store_path=str(settings.crypto_store_dir),
            config=config,
            proxy=proxy_for(settings.homeserver, settings.proxy_url),
        )
        self._callbacks_registered = False
        self._held_loaded = False
        self.direct = DirectRooms(self.client, store, settings.user_id)
        self._sync_token: str | None = None
        self._sync_filter = sync_filter(settings.user_id)
        self._first_sync_ever = False
        self._in_first_sync = True
        # Syncs still obeying the catch-up window: the first of the process, and the two right
        # after an outage (Synapse answers a retried request from its sync cache: the late sync
        # may bring a stale, empty batch, and what was missed comes with the next one).
        self._catch_up_syncs = 1
        self._batch = None  # events queued during a sync (SyncLoop)
        self._attempts: dict[str, int] = {}
        self.held = HeldEvents(
            self.client,
            settings,
            store,
            answerable=self._answerable,
            deliver=self._on_room_message,
            notify=self._notify_undecryptable,
        )
        self._keys_lock = asyncio.Lock()
        self.power = PowerLevelCache(self._fetch_room_power)
        # Room display names, computed once per state change: nio names a room without
        # `m.room.name` or alias from its members, sorting them all at every call (~3 ms in a
        # room of 2,000), and the bot gets no summary (heroes) without lazy-loading.
        self._room_names: dict[str, str] = {}
        self.cross_signing_status: CrossSigningStatus | None = None
        self.display_name: str | None = None
        self.ready = asyncio.Event()
        self._synced = asyncio.Condition()  # notified after every sync (DM creation waits on it)
        self._dm_lock = asyncio.Lock()
        self.last_sync_monotonic: float | None = None  # readiness probe (bot.health)

    @property
    def user_id(self) -> str:
        return self._settings.user_id

    @property
    def device_id(self) -> str | None:
        return self.client.device_id  # type: ignore[no-any-return]

    def attach(self, sink: EventSink) -> None:
        self._sink = sink

    # --- Session ----------------------------------------------------------------------------
    async def start(self) -> None:
        """Restore the saved session (or log in once) and prepare the sync loop."""
        if self._settings.store_passphrase is not None:
            logs.register_secret(self._settings.store_passphrase.get_secret_value())
        await asyncio.to_thread(unlock_crypto_store, self._settings)
        await restore_or_login(self.client, self._settings, self._store)
        logs.register_secret(self.client.access_token)  # also mask a token got by logging in
        self.cross_signing_status = await setup_cross_signing(self.client, self._settings)
        self._sync_token = await self._store.state.get(SYNC_TOKEN_KEY)
        saved_at = await self._store.state.get(SYNC_AT_KEY)
        self._sync_token_saved_at_ms = int(saved_at) if saved_at and saved_at.isdigit() else None
        self._first_sync_ever = self._sync_token is None
        await self.direct.load()
        self._register_callbacks()
        if not self._held_loaded:  # start() is retried while the homeserver is down
            await self.held.load()
            self._held_loaded = True
        profile = await self.client.get_displayname(self.user_id)
        self.display_name = getattr(profile, "displayname", None)
        fingerprint = (
            self.client.olm.account.identity_keys.get("ed25519") if self.client.olm else None
        )
        log.info(
            "matrix.ready_to_sync",
            user_id=self.user_id,
            device_id=self.device_id,
            device_fingerprint=_group_fingerprint(fingerprint) if fingerprint else None,
            first_start=self._first_sync_ever,
        )

    async def close(self) -> None:
        await self.held.close()
        await self.client.close()

    async def _notify_undecryptable(self, event: UndecryptableMessage) -> None:
        if self._sink is not None:
            await self._sink.on_undecryptable(event)

    def is_waiting_for_key(self, event_id: str) -> bool:
        return self.held.is_waiting(event_id)

    # --- Sync loop --------------------------------------------------------------------------
    # --- nio callbacks -> typed models ------------------------------------------------------
    def _register_callbacks(self) -> None:
        if self._callbacks_registered:  # start() is retried while the homeserver is down
            return
        self._callbacks_registered = True
        defer = self._deferred
        self.client.add_event_callback(
            defer(self._on_room_message), (RoomMessage, RoomEncryptedMedia)
        )
        self.client.add_event_callback(defer(self.held.on_megolm), MegolmEvent)
        self.client.add_event_callback(defer(self._on_redaction), RedactionEvent)
        self.client.add_event_callback(defer(self._on_reaction), ReactionEvent)
        self.client.add_event_callback(defer(self.direct.on_state_event), UnknownEvent)
        self.client.add_event_callback(defer(self._on_invite), InviteMemberEvent)
        self.client.add_ephemeral_callback(defer(self._on_receipts), ReceiptEvent)
        self.client.add_to_device_callback(
            defer(self.held.on_room_key), (RoomKeyEvent, ForwardedRoomKeyEvent)
        )
        self.client.add_to_device_callback(defer(self.held.on_to_device), UnknownToDeviceEvent)

    def room_context(self, room_id: str) -> RoomContext:
        room = self.client.rooms.get(room_id)
        if room is None:
            return RoomContext(room_id=room_id, name=room_id, is_direct=False, encrypted=False)
        return RoomContext(
            room_id=room_id,
            name=self._room_name(room),
            is_direct=self.direct.is_direct(room_id, room.users),
            encrypted=bool(room.encrypted),
        )

    def _room_name(self, room: MatrixRoom) -> str:
        """The room's display name, cached until sync shows a change of its state."""
        name = room.named_room_name()
        if name:  # `m.room.name` or alias: nothing to compute
            return str(name)
        cached = self._room_names.get(room.room_id)
        if cached is None:
            cached = self._room_names[room.room_id] = str(room.display_name or room.room_id)
        return cached

    def member_name(self, room_id: str, user_id: str) -> str:
        room = self.client.rooms.get(room_id)
        if room is not None:
            user = room.users.get(user_id)
            if user is not None and user.display_name:
                return str(user.display_name)
        return user_id

    def bot_names(self, room_id: str) -> tuple[str, ...]:
        names = {self.display_name} if self.display_name else set()
        room_name = self.member_name(room_id, self.user_id)
        if room_name != self.user_id:
            names.add(room_name)
        return tuple(sorted(name for name in names if name))

    async def _on_room_message(
        self, room: MatrixRoom, event: Any, answerable: bool | None = None
    ) -> None:
        if self._sink is None:
            return
        source = event.source if isinstance(event.source, dict) else {}
        encrypted = bool(getattr(event, "decrypted", False))
        message = parse_message(
            room.room_id, source, self.member_name(room.room_id, str(event.sender)), encrypted
        )
        if message is None:
            return
        metrics.SYNC_LAG.set(max(0.0, time.time() - message.timestamp_ms / 1000))
        if answerable is None:
            answerable = self._answerable(message.timestamp_ms)
        await self._sink.on_message(message, self.room_context(room.room_id), answerable)
        faults.maybe_crash("mid_sync")  # tests only: handed over, sync token not saved yet

    async def _on_receipts(self, room: MatrixRoom, event: ReceiptEvent) -> None:
        """Public read receipts (`m.read`) of members; private ones never reach the bot."""
        if self._sink is None:
            return
        for receipt in event.receipts:
            if receipt.receipt_type != "m.read" or receipt.user_id == self.user_id:
                continue
            thread = receipt.thread_id if receipt.thread_id not in (None, "main") else ""
            await self._sink.on_receipt(
                ReadReceipt(
                    room_id=room.room_id,
                    user_id=receipt.user_id,
                    event_id=receipt.event_id,
                    read_at_ms=int(receipt.timestamp),
                    thread=thread or "",
                )
            )

    async def _on_redaction(self, room: MatrixRoom, event: RedactionEvent) -> None:
        redaction = parse_redaction(
            room.room_id, event.source if isinstance(event.source, dict) else {}
        )
        if redaction is not None and self._sink is not None:
            await self._sink.on_redaction(room.room_id, redaction.redacts)

    async def _on_reaction(self, room: MatrixRoom, event: ReactionEvent) -> None:
        reaction = parse_reaction(
            room.room_id, event.source if isinstance(event.source, dict) else {}
        )
        if reaction is not None and self._sink is not None:
            await self._sink.on_reaction(reaction)

    async def _on_invite(self, room: MatrixRoom, event: InviteMemberEvent) -> None:
        if event.state_key != self.user_id or event.membership != "invite" or self._sink is None:
            return
        content = event.content if isinstance(event.content, dict) else {}
        await self._sink.on_invite(
            RoomInvite(
                room_id=room.room_id,
                inviter=str(event.sender),
                is_direct=content.get("is_direct") is True,
            )
        )

    # --- Actions ----------------------------------------------------------------------------
    async def join(self, room_id: str, is_direct: bool, inviter: str | None = None) -> bool:
        response = await self.client.join(room_id)
        if isinstance(response, JoinError):
            log.warning("matrix.join_failed", room_id=room_id, status=response.status_code)
            return False
        await self.direct.joined(room_id, is_direct, inviter)
        return True

    async def direct_room_with(self, user_id: str, timeout: float = 30) -> str:  # noqa: ASYNC109
        """The bot's DM with `user_id`, created (encrypted, `direct` access rule, listed in
        m.direct) and known to the sync loop before this returns. Raises SendFailed."""
        async with self._dm_lock:
            for room_id in self.direct.flagged_rooms():
                room = self.client.rooms.get(room_id)
                if room is not None and set(room.users) == {self.user_id, user_id}:
                    return room_id
            response = await self.client.room_create(
                is_direct=True,
                preset=RoomPreset.trusted_private_chat,
                invite=[user_id],
                initial_state=[
                    {
                        "type": "m.room.encryption",
                        "state_key": "",
                        "content": {"algorithm": "m.megolm.v1.aes-sha2"},
                    },
                    {"type": ACCESS_RULES_EVENT, "state_key": "", "content": {"rule": "direct"}},
                ],
            )
            if isinstance(response, RoomCreateError):
                raise_if_auth_error(response)
                raise SendFailed(f"DM not created: {response.status_code}")
            room_id = str(response.room_id)
            await self.direct.joined(room_id, True, user_id)
            await self._learn_room_state(room_id)

            def known() -> bool:
                room = self.client.rooms.get(room_id)
                return room is not None and bool(room.encrypted) and user_id in room.users

            async with self._synced:
                await asyncio.wait_for(self._synced.wait_for(known), timeout)
            log.info("matrix.dm_created", room_id=room_id)
            return room_id

    async def _learn_room_state(self, room_id: str) -> None:
        """A room the bot created: every state event in it is its own, which its sync filter
        leaves out of the timeline (`sync_filter`), so nio is told the room's state once, as
        its own sync handling would (members, encryption, tracked devices)."""
        response = await self.client.room_get_state(room_id)
        if isinstance(response, RoomGetStateError):
            raise_if_auth_error(response)
            raise SendFailed(f"state of the new room unavailable: {response.status_code}")
        room = self.client.rooms.get(room_id)
        if room is None:
            room = MatrixRoom(room_id, self.user_id, room_id in self.client.encrypted_rooms)
            self.client.rooms[room_id] = room
        for raw in response.events:
            event = Event.parse_event(raw)
            if isinstance(event, RoomMemberEvent):
                room.handle_membership(event)
            elif isinstance(event, Event):
                room.handle_event(event)
        if room.encrypted:
            self.client.encrypted_rooms.add(room_id)
            if self.client.store is not None:
                self.client.store.save_encrypted_rooms({room_id})
            if self.client.olm is not None:
                self.client.olm.update_tracked_users(room)

    async def reject_invite(self, room_id: str) -> None:
        await self.client.room_leave(room_id)


def _group_fingerprint(key: str) -> str:
    return " ".join(key[i : i + 4] for i in range(0, len(key), 4))
