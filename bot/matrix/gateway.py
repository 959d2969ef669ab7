"""The Matrix gateway: the only module that talks to matrix-nio.

It logs in once and reuses the saved session, runs the sync loop (persisting the sync token in
SQLite only after every event of a sync was handed over), keeps encryption keys flowing, and
turns nio events into the typed models of `bot.models` for the event sink (the router).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol
from urllib.parse import quote

import structlog
from nio import (
    AsyncClient,
    AsyncClientConfig,
    EncryptionError,
    ForwardedRoomKeyEvent,
    InviteMemberEvent,
    JoinError,
    LoginResponse,
    MatrixRoom,
    MegolmEvent,
    MemoryDownloadResponse,
    RedactionEvent,
    RoomEncryptedMedia,
    RoomGetStateError,
    RoomKeyEvent,
    RoomMessage,
    RoomSendResponse,
    SyncError,
    SyncResponse,
    UnknownAccountDataEvent,
    UnknownEvent,
    UnknownToDeviceEvent,
    WhoamiResponse,
)
from nio.crypto.attachments import decrypt_attachment
from nio.store import DefaultStore

from bot.attachments import Attachment, AttachmentError, AttachmentErrorReason
from bot.matrix.cross_signing import KEYS_FILE_NAME, CrossSigningStatus, ensure_cross_signing
from bot.matrix.events import parse_message, parse_redaction
from bot.models import IncomingMessage, RoomContext, RoomInvite, UndecryptableMessage
from bot.ops import faults, logs, metrics
from bot.store.database import Session, Store
from config.settings import Settings

log = structlog.get_logger(__name__)

SYNC_TOKEN_KEY = "sync_token"
SEND_ATTEMPTS = 6
ACCESS_RULES_EVENT = "im.vector.room.access_rules"
DEFAULT_PICKLE_KEY = "DEFAULT_KEY"  # nio's own default: the store is then effectively clear
UNLIMITED_POWER = 1 << 53  # room v12 creators outrank every power level
AUTH_ERROR_CODES = {
    "M_UNKNOWN_TOKEN",
    "M_MISSING_TOKEN",
    "M_FORBIDDEN",
    "ORG_MATRIX_EXPIRED_ACCOUNT",
    "M_USER_DEACTIVATED",
}
SYNC_FILTER: dict[str, Any] = {
    "presence": {"not_types": ["*"]},
    "room": {"timeline": {"limit": 50}, "ephemeral": {"not_types": ["*"]}},
}


class AuthenticationFailed(Exception):
    """The homeserver refuses the bot's credentials: retrying cannot help, the admin must act."""


class SendFailed(Exception):
    pass


class ClearSendRefused(SendFailed):
    """The room is encrypted but the message would have left in clear: never send it."""


WITHHELD_EVENT_TYPES = {"m.room_key.withheld", "org.matrix.room_key.withheld"}
MAX_WAITING_SESSIONS = 2_000  # undecryptable events kept in memory, by Megolm session
MAX_WITHHELD_SESSIONS = 2_000


class EventSink(Protocol):
    async def on_message(
        self, message: IncomingMessage, room: RoomContext, answerable: bool
    ) -> None: ...

    async def on_invite(self, invite: RoomInvite) -> None: ...

    async def on_redaction(self, room_id: str, redacts: str) -> None: ...

    async def on_left(self, room_id: str) -> None: ...

    async def on_undecryptable(self, event: UndecryptableMessage) -> None: ...


def effective_power_level(
    user_id: str,
    power_levels: Mapping[str, Any] | None,
    create_sender: str | None,
    create_content: Mapping[str, Any] | None,
) -> int:
    """A user's power in a room, including room-version-12 creators (absent from power_levels)."""
    create_content = create_content or {}
    version = str(create_content.get("room_version", "1"))
    if _creators_are_privileged(version):
        creators = {create_sender} if create_sender else set()
        extra = create_content.get("additional_creators")
        if isinstance(extra, list):
            creators.update(item for item in extra if isinstance(item, str))
        if user_id in creators:
            return UNLIMITED_POWER
    if power_levels is None:
        # No power_levels event: the creator has 100, everybody else 0 (spec, all versions).
        return 100 if user_id == create_sender else 0
    users = power_levels.get("users")
    default = _as_int(power_levels.get("users_default"), 0)
    if isinstance(users, Mapping) and user_id in users:
        return _as_int(users[user_id], default)
    return default


def _creators_are_privileged(version: str) -> bool:
    if version == "org.matrix.hydra.11":
        return True
    return version.isdigit() and int(version) >= 12


def _as_int(value: Any, fallback: int) -> int:
    if isinstance(value, bool):
        return fallback
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return fallback


class MatrixGateway:
    def __init__(self, settings: Settings, store: Store) -> None:
        self._settings = settings
        self._store = store
        self._sink: EventSink | None = None
        settings.crypto_store_dir.mkdir(parents=True, exist_ok=True)
        config = AsyncClientConfig(
            encryption_enabled=True,
            store_sync_tokens=False,  # the sync token lives in our SQLite, saved at the right moment
            max_timeout_retry_wait_time=settings.homeserver_retry_max_seconds,
            request_timeout=settings.sync_timeout_seconds + 30,
            pickle_key=_pickle_key(settings),
        )
        self.client = AsyncClient(
            settings.homeserver,
            settings.user_id,
            store_path=str(settings.crypto_store_dir),
            config=config,
        )
        self._direct_rooms: set[str] = set()
        self._sync_token: str | None = None
        self._first_sync_ever = False
        self._in_first_sync = True
        self._catch_up_cutoff_ms = 0
        self._undecrypted: dict[str, list[MegolmEvent]] = {}
        self._not_answerable: set[str] = set()  # waiting events that arrived as history
        self._withheld: dict[str, str] = {}  # session_id -> withheld code, this process only
        self._give_up_tasks: dict[str, asyncio.Task[None]] = {}
        self._keys_lock = asyncio.Lock()
        self.cross_signing_status: CrossSigningStatus | None = None
        self.display_name: str | None = None
        self.ready = asyncio.Event()
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
        await self._restore_or_login()
        logs.register_secret(self.client.access_token)  # also mask a token got by logging in
        await self._setup_cross_signing()
        self._sync_token = await self._store.get_state(SYNC_TOKEN_KEY)
        self._first_sync_ever = self._sync_token is None
        for room_id in await self._store.known_room_ids():
            if await self._store.is_direct_room(room_id):
                self._direct_rooms.add(room_id)
        self._register_callbacks()
        await self._load_held_events()
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

    async def _restore_or_login(self) -> None:
        settings = self._settings
        saved = await self._store.load_session()
        if (
            saved is not None
            and saved.user_id == settings.user_id
            and (
                settings.access_token is None
                or saved.access_token == settings.access_token.get_secret_value()
            )
        ):
            self.client.restore_login(saved.user_id, saved.device_id, saved.access_token)
            log.info("matrix.session_restored", device_id=saved.device_id)
            return
        if settings.access_token is not None:
            token = settings.access_token.get_secret_value()
            device_id = settings.device_id
            if device_id is None:
                self.client.access_token = token
                whoami = await self.client.whoami()
                if not isinstance(whoami, WhoamiResponse) or not whoami.device_id:
                    raise AuthenticationFailed(
                        "TCHAP_BOT_ACCESS_TOKEN refusé par le serveur (ou sans appareil) : "
                        "définissez TCHAP_BOT_DEVICE_ID ou renouvelez le jeton"
                    )
                device_id = whoami.device_id
            self.client.restore_login(settings.user_id, device_id, token)
            await self._store.save_session(
                Session(user_id=settings.user_id, device_id=device_id, access_token=token)
            )
            log.info("matrix.session_from_token", device_id=device_id)
            return
        assert settings.password is not None  # guaranteed by Settings validation
        response = await self.client.login(
            settings.password.get_secret_value(), device_name=settings.device_name
        )
        if not isinstance(response, LoginResponse):
            raise AuthenticationFailed(
                f"Connexion refusée pour {settings.user_id} : vérifiez TCHAP_BOT_PASSWORD "
                f"({getattr(response, 'status_code', 'erreur inconnue')})"
            )
        await self._store.save_session(
            Session(
                user_id=response.user_id,
                device_id=response.device_id,
                access_token=response.access_token,
            )
        )
        log.info("matrix.logged_in", device_id=response.device_id)

    async def _setup_cross_signing(self) -> None:
        """Publish the device keys, then make sure the bot's own identity signs this device."""
        olm = self.client.olm
        if olm is None or not self.device_id:
            return
        password = self._settings.password
        passphrase = self._settings.store_passphrase
        try:
            if self.client.should_upload_keys:  # the signature covers the server's copy
                await self.client.keys_upload()
            self.cross_signing_status = await ensure_cross_signing(
                self._http_json,
                user_id=self.user_id,
                device_id=str(self.device_id),
                device_ed25519=olm.account.identity_keys["ed25519"],
                sign_with_device=olm.account.sign,
                keys_path=self._settings.crypto_store_dir / KEYS_FILE_NAME,
                password=password.get_secret_value() if password is not None else None,
                passphrase=passphrase.get_secret_value() if passphrase is not None else None,
                replace_foreign=self._settings.cross_signing_reset,
            )
        except Exception as error:  # transport trouble: the bot runs anyway, retried next start
            log.warning("cross_signing.failed", error_type=type(error).__name__)
            self.cross_signing_status = CrossSigningStatus.FAILED

    async def _http_json(
        self, method: str, path: str, body: dict[str, Any] | None
    ) -> tuple[int, dict[str, Any]]:
        """One authenticated request through nio's HTTP session (same TLS and proxy settings)."""
        headers = {
            "Authorization": f"Bearer {self.client.access_token}",
            "Content-Type": "application/json",
        }
        data = json.dumps(body) if body is not None else None
        async with await self.client.send(method, path, data=data, headers=headers) as response:
            try:
                payload = await response.json(content_type=None)
            except ValueError:
                payload = None
            return response.status, payload if isinstance(payload, dict) else {}

    async def close(self) -> None:
        for task in self._give_up_tasks.values():
            task.cancel()
        await asyncio.gather(*self._give_up_tasks.values(), return_exceptions=True)
        self._give_up_tasks.clear()
        await self.client.close()

    # --- Sync loop --------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Sync until `stop` is set. Raises AuthenticationFailed when the account is refused."""
        backoff = 1.0
        while not stop.is_set():
            first = self._in_first_sync
            sync_task = asyncio.ensure_future(
                self.client.sync(
                    timeout=0 if first else int(self._settings.sync_timeout_seconds * 1000),
                    sync_filter=SYNC_FILTER,
                    since=self._sync_token,
                    full_state=True if first else None,
                )
            )
            stop_task = asyncio.ensure_future(stop.wait())
            done, _ = await asyncio.wait(
                {sync_task, stop_task}, return_when=asyncio.FIRST_COMPLETED
            )
            if sync_task not in done:
                sync_task.cancel()
                await asyncio.gather(sync_task, return_exceptions=True)
                break
            stop_task.cancel()
            try:
                response = sync_task.result()
            except Exception as error:  # transport errors nio did not absorb
                # nio may have advanced next_batch before failing: replay from our saved token.
                self.client.next_batch = self._sync_token
                log.warning("matrix.sync_failed", error_type=type(error).__name__, retry_in=backoff)
                await _sleep_unless(stop, backoff)
                backoff = min(backoff * 2, self._settings.homeserver_retry_max_seconds)
                continue
            if isinstance(response, SyncError):
                self._raise_if_auth_error(response)
                log.warning("matrix.sync_error", status=response.status_code, retry_in=backoff)
                await _sleep_unless(stop, backoff)
                backoff = min(backoff * 2, self._settings.homeserver_retry_max_seconds)
                continue
            backoff = 1.0
            await self._after_sync(response)
            if first:
                await self._retry_held_events()
                self._in_first_sync = False
                self.ready.set()

    def _raise_if_auth_error(self, response: Any) -> None:
        transport = getattr(response, "transport_response", None)
        http_status = getattr(transport, "status", None)
        code = str(getattr(response, "status_code", "") or "")
        if http_status in (401, 403) or code in AUTH_ERROR_CODES:
            if code == "ORG_MATRIX_EXPIRED_ACCOUNT":
                detail = (
                    "le compte du bot a expiré (ORG_MATRIX_EXPIRED_ACCOUNT) : faites-le renouveler"
                )
            else:
                detail = f"le serveur refuse le jeton d'accès du bot ({code or http_status}) : renouvelez-le"
            raise AuthenticationFailed(detail)

    async def _after_sync(self, response: SyncResponse) -> None:
        await self._note_direct_rooms(response)
        for room_id in response.rooms.leave:
            self._direct_rooms.discard(room_id)
            if self._sink is not None:
                await self._sink.on_left(room_id)
        await self._crypto_housekeeping()
        # Saved last: a crash before this line replays the sync, and the store's trigger
        # table makes the replay harmless.
        self._sync_token = response.next_batch
        await self._store.set_state(SYNC_TOKEN_KEY, response.next_batch)
        metrics.LAST_SYNC.set(time.time())
        self.last_sync_monotonic = time.monotonic()

    async def _crypto_housekeeping(self) -> None:
        client = self.client
        if client.olm is None:
            return
        await client.send_to_device_messages()
        if client.should_upload_keys:
            await client.keys_upload()
        async with self._keys_lock:
            if client.should_query_keys:
                await client.keys_query()
        if client.should_claim_keys:
            await client.keys_claim(client.get_users_for_key_claiming())

    # --- nio callbacks -> typed models ------------------------------------------------------
    def _register_callbacks(self) -> None:
        guard = _isolated
        self.client.add_event_callback(
            guard(self._on_room_message), (RoomMessage, RoomEncryptedMedia)
        )
        self.client.add_event_callback(guard(self._on_megolm), MegolmEvent)
        self.client.add_event_callback(guard(self._on_redaction), RedactionEvent)
        self.client.add_event_callback(guard(self._on_unknown), UnknownEvent)
        self.client.add_event_callback(guard(self._on_invite), InviteMemberEvent)
        self.client.add_to_device_callback(
            guard(self._on_room_key), (RoomKeyEvent, ForwardedRoomKeyEvent)
        )
        self.client.add_to_device_callback(guard(self._on_unknown_to_device), UnknownToDeviceEvent)

    def _answerable(self, timestamp_ms: int) -> bool:
        if not self._in_first_sync:
            return True
        if self._first_sync_ever:
            return False  # first start: nothing from before start-up is answered
        window_ms = int(self._settings.catch_up_window_minutes * 60_000)
        return timestamp_ms >= int(time.time() * 1000) - window_ms

    def room_context(self, room_id: str) -> RoomContext:
        room = self.client.rooms.get(room_id)
        if room is None:
            return RoomContext(
                room_id=room_id,
                name=room_id,
                is_direct=room_id in self._direct_rooms,
                encrypted=False,
                member_count=0,
            )
        return RoomContext(
            room_id=room_id,
            name=room.display_name or room_id,
            is_direct=room_id in self._direct_rooms,
            encrypted=bool(room.encrypted),
            member_count=int(room.member_count or 0),
        )

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

    async def _on_megolm(self, room: MatrixRoom, event: MegolmEvent) -> None:
        """A message we cannot decrypt yet: ask for the key, keep the event, bound the wait.

        If the key arrives (`_on_room_key`) the message is handled as if it had just come. If it
        does not within `undecryptable_notice_seconds`, or the sender's device withholds it, the
        sink is told once (`_give_up`) so the sender learns why the bot stays silent.
        """
        event.room_id = room.room_id
        if event.session_id not in self._undecrypted:
            while len(self._undecrypted) >= MAX_WAITING_SESSIONS:  # bounded memory: oldest go
                for dropped in self._undecrypted.pop(next(iter(self._undecrypted))):
                    self._not_answerable.discard(dropped.event_id)
        waiting = self._undecrypted.setdefault(event.session_id, [])
        if any(known.event_id == event.event_id for known in waiting):
            return  # a replayed sync
        waiting.append(event)
        answerable = self._answerable(int(event.server_timestamp))
        if not answerable:
            self._not_answerable.add(event.event_id)
        try:
            await self.client.request_room_key(event)
        except Exception as error:  # a duplicate request raises; the first one is enough
            log.debug("matrix.key_request_skipped", error_type=type(error).__name__)
        log.info(
            "matrix.undecryptable",
            room_id=room.room_id,
            event_id=event.event_id,
            session_id=event.session_id,
        )
        if not answerable or event.sender == self.user_id:
            return  # history: waiting quietly is enough
        # Ciphertext only: kept so a restart before the key arrives loses nothing.
        await self._store.save_awaiting_key(
            room.room_id, event.event_id, event.session_id, json.dumps(event.source)
        )
        code = self._withheld.get(event.session_id)
        if code is not None:
            await self._give_up(event, f"withheld:{code}")
            return
        self._give_up_tasks[event.event_id] = asyncio.create_task(
            self._give_up_later(event), name=f"key-wait-{event.event_id}"
        )

    async def _give_up_later(self, event: MegolmEvent) -> None:
        await asyncio.sleep(self._settings.undecryptable_notice_seconds)
        self._give_up_tasks.pop(event.event_id, None)
        if self.is_waiting_for_key(event.event_id):
            await self._give_up(event, "timeout")

    async def _give_up(self, event: MegolmEvent, reason: str) -> None:
        """Tell the sink that this message stays unreadable (it may still be decrypted later)."""
        task = self._give_up_tasks.pop(event.event_id, None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        log.warning(
            "matrix.room_key_missing", room_id=event.room_id, event_id=event.event_id, reason=reason
        )
        if self._sink is None:
            return
        relates = event.source.get("content", {}).get("m.relates_to")
        thread_root = (
            relates.get("event_id")
            if isinstance(relates, dict) and relates.get("rel_type") == "m.thread"
            else None
        )
        try:
            await self._sink.on_undecryptable(
                UndecryptableMessage(
                    room_id=event.room_id,
                    event_id=event.event_id,
                    sender=event.sender,
                    session_id=event.session_id,
                    timestamp_ms=int(event.server_timestamp),
                    thread_root_id=thread_root if isinstance(thread_root, str) else None,
                    reason=reason,
                )
            )
        except Exception:
            log.exception("matrix.undecryptable_notice_failed", room_id=event.room_id)

    async def _on_room_key(self, event: Any) -> None:
        """A room key arrived: decrypt the events that were waiting for it and hand them on."""
        session_id = getattr(event, "session_id", None)
        if session_id:
            self._withheld.pop(session_id, None)  # the sender changed its mind (e.g. verified us)
        if session_id:
            await self._decrypt_waiting(session_id, keep_on_failure=False)

    async def _decrypt_waiting(self, session_id: str, *, keep_on_failure: bool) -> None:
        """Decrypt the events held for `session_id` and hand them on as if they had just come."""
        waiting = self._undecrypted.pop(session_id, [])
        for index, megolm in enumerate(waiting):
            try:
                decrypted = self.client.decrypt_event(megolm)
            except EncryptionError as error:  # no key yet, or one starting at a later index
                if keep_on_failure:
                    self._undecrypted[session_id] = waiting[index:]
                    return
                log.warning(
                    "matrix.late_key_unusable",
                    room_id=megolm.room_id,
                    event_id=megolm.event_id,
                    error_type=type(error).__name__,
                )
                await self._store.forget_awaiting_key(megolm.event_id)
                continue
            room = self.client.rooms.get(megolm.room_id)
            if room is None:
                # The first sync of a process hands keys over before the rooms: the key is
                # stored now, and the pass after that sync decrypts this event again.
                self._undecrypted.setdefault(session_id, []).append(megolm)
                continue
            task = self._give_up_tasks.pop(megolm.event_id, None)
            if task is not None:
                task.cancel()
            await self._store.forget_awaiting_key(megolm.event_id)
            answerable = megolm.event_id not in self._not_answerable
            self._not_answerable.discard(megolm.event_id)
            if isinstance(decrypted, RoomMessage) and room is not None:
                log.info(
                    "matrix.late_key_decrypted", room_id=megolm.room_id, event_id=megolm.event_id
                )
                await self._on_room_message(room, decrypted, answerable=answerable)

    async def _load_held_events(self) -> None:
        """Events that waited for a key when the bot last stopped wait again (catch-up window)."""
        window_ms = int(self._settings.catch_up_window_minutes * 60_000)
        now = int(time.time() * 1000)
        for room_id, source in await self._store.awaiting_keys(since_ms=now - 86_400_000):
            try:
                event = MegolmEvent.from_dict(json.loads(source))
            except Exception:
                continue
            if not isinstance(event, MegolmEvent):
                continue
            event.room_id = room_id
            self._undecrypted.setdefault(event.session_id, []).append(event)
            if int(event.server_timestamp) < now - window_ms:
                self._not_answerable.add(event.event_id)
            else:
                self._give_up_tasks[event.event_id] = asyncio.create_task(
                    self._give_up_later(event), name=f"key-wait-{event.event_id}"
                )

    async def _retry_held_events(self) -> None:
        """After the first sync: keys that came while the bot was down are in the store now."""
        for session_id in list(self._undecrypted):
            await self._decrypt_waiting(session_id, keep_on_failure=True)

    async def _on_unknown_to_device(self, event: UnknownToDeviceEvent) -> None:
        """`m.room_key.withheld`: the sender's device refuses us the key (e.g. `m.unverified`)."""
        if event.type not in WITHHELD_EVENT_TYPES:
            return
        content = event.source.get("content")
        if not isinstance(content, dict):
            return
        code = str(content.get("code") or "unknown")
        session_id = content.get("session_id")
        log.warning("matrix.room_key_withheld", room_id=content.get("room_id"), code=code)
        if not isinstance(session_id, str):
            return  # m.no_olm carries no session: the timeout covers those messages
        while len(self._withheld) >= MAX_WITHHELD_SESSIONS:
            self._withheld.pop(next(iter(self._withheld)))
        self._withheld[session_id] = code
        for megolm in list(self._undecrypted.get(session_id, [])):
            if megolm.event_id in self._give_up_tasks:
                await self._give_up(megolm, f"withheld:{code}")

    def is_waiting_for_key(self, event_id: str) -> bool:
        return any(
            event.event_id == event_id for events in self._undecrypted.values() for event in events
        )

    async def _on_redaction(self, room: MatrixRoom, event: RedactionEvent) -> None:
        redaction = parse_redaction(
            room.room_id, event.source if isinstance(event.source, dict) else {}
        )
        if redaction is not None and self._sink is not None:
            await self._sink.on_redaction(room.room_id, redaction.redacts)

    async def _on_unknown(self, room: MatrixRoom, event: UnknownEvent) -> None:
        content = event.source.get("content")
        is_direct_rule = (
            event.type == ACCESS_RULES_EVENT
            and isinstance(content, dict)
            and content.get("rule") == "direct"
        )
        if is_direct_rule and room.room_id not in self._direct_rooms:
            self._direct_rooms.add(room.room_id)
            await self._store.remember_room(room.room_id, is_direct=True)

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
        await self._store.remember_room(room_id, is_direct)
        if is_direct:
            self._direct_rooms.add(room_id)
            if inviter is not None:
                await self._list_in_m_direct(inviter, room_id)
        return True

    async def _list_in_m_direct(self, user_id: str, room_id: str) -> None:
        """Record the DM in the bot's own `m.direct`, as clients do for theirs."""
        path = f"/_matrix/client/v3/user/{quote(self.user_id)}/account_data/m.direct"
        try:
            status, direct = await self._http_json("GET", path, None)
            rooms = direct.get(user_id) if status == 200 else None
            listed = [r for r in rooms if isinstance(r, str)] if isinstance(rooms, list) else []
            if room_id in listed:
                return
            updated = {**(direct if status == 200 else {}), user_id: [*listed, room_id]}
            status, _ = await self._http_json("PUT", path, updated)
            if status != 200:
                log.warning("matrix.m_direct_not_saved", room_id=room_id, status=status)
        except Exception as error:  # the store already knows it is a DM: this is a courtesy
            log.warning(
                "matrix.m_direct_not_saved", room_id=room_id, error_type=type(error).__name__
            )

    async def _note_direct_rooms(self, response: SyncResponse) -> None:
        """Rooms listed in the bot's `m.direct` account data are DMs."""
        for event in response.account_data_events:
            if not isinstance(event, UnknownAccountDataEvent) or event.type != "m.direct":
                continue
            content = event.content if isinstance(event.content, dict) else {}
            for rooms in content.values():
                for room_id in rooms if isinstance(rooms, list) else []:
                    if isinstance(room_id, str) and room_id not in self._direct_rooms:
                        self._direct_rooms.add(room_id)
                        await self._store.remember_room(room_id, is_direct=True)

    async def reject_invite(self, room_id: str) -> None:
        await self.client.room_leave(room_id)

    def is_direct(self, room_id: str) -> bool:
        return room_id in self._direct_rooms

    async def send_event(
        self, room_id: str, content: dict[str, Any], txn_id: str, event_type: str = "m.room.message"
    ) -> str:
        """Send (encrypted when the room is); the same txn_id returns the same event after a crash.

        Raises ClearSendRefused rather than let anything leave in clear in an encrypted room.
        """
        delay = 1.0
        for attempt in range(SEND_ATTEMPTS):
            await self._guard_encryption(room_id, event_type)
            response = await self.client.room_send(
                room_id,
                event_type,
                content,
                tx_id=txn_id,
                ignore_unverified_devices=self._settings.encrypt_for_unverified_devices,
            )
            if isinstance(response, RoomSendResponse):
                return str(response.event_id)
            self._raise_if_auth_error(response)
            http_status = getattr(getattr(response, "transport_response", None), "status", None)
            if (
                not (isinstance(http_status, int) and http_status >= 500)
                or attempt == SEND_ATTEMPTS - 1
            ):
                break
            # A proxy in front of a restarting homeserver answers 502/503: the same
            # transaction ID makes the retry safe.
            log.warning("matrix.send_retry", room_id=room_id, status=http_status, retry_in=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._settings.homeserver_retry_max_seconds)
        raise SendFailed(f"{getattr(response, 'status_code', 'unknown')}")

    def is_encrypted(self, room_id: str) -> bool:
        """Encrypted per nio's live room state or per its persisted list of encrypted rooms."""
        room = self.client.rooms.get(room_id)
        return bool(room is not None and room.encrypted) or room_id in self.client.encrypted_rooms

    async def _guard_encryption(self, room_id: str, event_type: str) -> None:
        if not self.is_encrypted(room_id):
            return
        room = self.client.rooms.get(room_id)
        # nio encrypts only when it has an Olm machine, knows the room as encrypted, and the
        # event is not a reaction; anything else would go out in clear.
        if (
            self.client.olm is None
            or room is None
            or not room.encrypted
            or event_type == "m.reaction"
        ):
            log.error("matrix.clear_send_refused", room_id=room_id, event_type=event_type)
            raise ClearSendRefused(f"refus d'envoyer en clair dans un salon chiffré ({event_type})")
        # New devices (a member's new session, a new member) must be known before nio picks
        # who receives the room key, else they could not read this answer.
        async with self._keys_lock:
            if self.client.should_query_keys:
                await self.client.keys_query()

    async def set_typing(self, room_id: str, typing: bool) -> None:
        try:
            await self.client.room_typing(room_id, typing_state=typing, timeout=60_000)
        except Exception as error:  # typing is cosmetic; never let it fail an answer
            log.debug("matrix.typing_failed", room_id=room_id, error_type=type(error).__name__)

    async def power_level(self, room_id: str, user_id: str) -> int:
        """Read the room's real, current power levels (never a cached copy)."""
        response = await self.client.room_get_state(room_id)
        if isinstance(response, RoomGetStateError):
            log.warning("matrix.state_unavailable", room_id=room_id, status=response.status_code)
            return 0
        power_levels: Mapping[str, Any] | None = None
        create_sender: str | None = None
        create_content: Mapping[str, Any] | None = None
        for event in response.events:
            if not isinstance(event, dict):
                continue
            if event.get("type") == "m.room.power_levels" and event.get("state_key") == "":
                power_levels = (
                    event.get("content") if isinstance(event.get("content"), dict) else None
                )
            elif event.get("type") == "m.room.create" and event.get("state_key") == "":
                create_sender = (
                    event.get("sender") if isinstance(event.get("sender"), str) else None
                )
                create_content = (
                    event.get("content") if isinstance(event.get("content"), dict) else None
                )
        return effective_power_level(user_id, power_levels, create_sender, create_content)

    async def download_attachment(
        self, attachment: Attachment, max_bytes: int | None = None
    ) -> bytes:
        """The attachment's bytes, decrypted (hash checked) when it came from an encrypted room.

        Downloads through the authenticated media API (nio's `download`). Refuses what is
        declared or turns out larger than `max_bytes` (default: `attachment_max_mb`). Raises
        AttachmentError; never returns partial or unchecked bytes.
        """
        cap = max_bytes if max_bytes is not None else self._settings.attachment_max_bytes
        if attachment.size is not None and attachment.size > cap:
            raise AttachmentError(AttachmentErrorReason.TOO_LARGE, "declared size")
        try:
            response = await asyncio.wait_for(
                self.client.download(mxc=attachment.mxc_url),
                timeout=self._settings.attachment_download_timeout_seconds,
            )
        except TimeoutError:
            raise AttachmentError(AttachmentErrorReason.TIMEOUT) from None
        except Exception as error:  # transport errors nio did not absorb
            raise AttachmentError(AttachmentErrorReason.UNAVAILABLE, type(error).__name__) from None
        if not isinstance(response, MemoryDownloadResponse) or not isinstance(response.body, bytes):
            status = getattr(response, "status_code", None)
            log.warning("matrix.download_failed", status=status)
            raise AttachmentError(AttachmentErrorReason.UNAVAILABLE, str(status))
        data = response.body
        if len(data) > cap:
            raise AttachmentError(AttachmentErrorReason.TOO_LARGE, "downloaded size")
        encrypted = attachment.encrypted_file
        if encrypted is None:
            return data
        try:
            plain = await asyncio.to_thread(
                decrypt_attachment, data, encrypted.key, encrypted.sha256, encrypted.iv
            )
        except (EncryptionError, ValueError, TypeError):  # bad hash, key or iv
            raise AttachmentError(AttachmentErrorReason.INTEGRITY) from None
        return bytes(plain)

    async def event_sender(self, room_id: str, event_id: str) -> str | None:
        """Who sent an event we did not store (e.g. a reply to a message older than the bot)."""
        response = await self.client.room_get_event(room_id, event_id)
        event = getattr(response, "event", None)
        sender = getattr(event, "sender", None)
        return sender if isinstance(sender, str) else None


def _pickle_key(settings: Settings) -> str:
    passphrase = settings.store_passphrase
    return passphrase.get_secret_value() if passphrase is not None else DEFAULT_PICKLE_KEY


def _opens(store: DefaultStore) -> bool:
    """Whether every private key of a nio store unpickles with the store's current key."""
    try:
        store.load_account()
        store.load_sessions()
        store.load_inbound_group_sessions()
    except Exception:  # vodozemac raises its own pickle errors on a wrong key
        return False
    return True


def unlock_crypto_store(settings: Settings) -> None:
    """Check that TCHAP_BOT_STORE_PASSPHRASE opens the crypto store; seal a store made without.

    nio pickles the device's Olm account, Olm sessions and Megolm room keys with this key.
    Adding a passphrase to an existing store re-encrypts them in one transaction; a wrong or
    missing passphrase stops the bot with a clear message instead of a new device.
    """
    key = _pickle_key(settings)
    prefix = f"{settings.user_id}_"
    for path in sorted(settings.crypto_store_dir.glob(f"{prefix}*.db")):
        device_id = path.name[len(prefix) : -len(".db")]
        store = DefaultStore(settings.user_id, device_id, str(settings.crypto_store_dir), key)
        try:
            if _opens(store):
                continue
            store.pickle_key = DEFAULT_PICKLE_KEY
            if key == DEFAULT_PICKLE_KEY or not _opens(store):
                raise AuthenticationFailed(
                    "TCHAP_BOT_STORE_PASSPHRASE absent ou incorrect : il ne déchiffre pas le "
                    f"magasin de clés {path.name} (remettez la phrase de passe d'origine)"
                )
            account = store.load_account()
            sessions = store.load_sessions()
            inbound = store.load_inbound_group_sessions()
            store.pickle_key = key
            with store.database.atomic():
                if account is not None:
                    store.save_account(account)
                for sender_key, session_list in sessions.items():
                    for session in session_list:
                        store.save_session(sender_key, session)
                for group_session in inbound:
                    store.save_inbound_group_session(group_session)
            log.info("matrix.crypto_store_sealed", device_id=device_id)
        finally:
            store.database.close()


def _isolated(handler: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    """One event's failure must not abort its whole sync: nio would skip the replayed batch
    (same next_batch), silently losing every later event of it. Log it and go on."""

    async def guarded(*args: Any) -> None:
        try:
            await handler(*args)
        except Exception as error:
            room_id = getattr(args[0], "room_id", None) if len(args) > 1 else None
            log.exception(
                "matrix.event_handling_failed",
                room_id=room_id,
                event_id=getattr(args[-1], "event_id", None),
                error_type=type(error).__name__,
            )

    return guarded


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


def _group_fingerprint(key: str) -> str:
    return " ".join(key[i : i + 4] for i in range(0, len(key), 4))
