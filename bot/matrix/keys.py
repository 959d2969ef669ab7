"""Encrypted events waiting for their room key.

An event whose Megolm key has not arrived is held (in memory, and its ciphertext in SQLite so a
restart loses nothing), its key requested, and the wait bounded: if the key comes, the event is
delivered as if it had just arrived; if it is withheld or never comes, the sender is told once.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from nio import (
    AsyncClient,
    EncryptionError,
    MatrixRoom,
    MegolmEvent,
    RoomMessage,
    UnknownToDeviceEvent,
)

from bot.models import UndecryptableMessage
from bot.store import Store
from config.settings import Settings

log = structlog.get_logger(__name__)

WITHHELD_EVENT_TYPES = {"m.room_key.withheld", "org.matrix.room_key.withheld"}
MAX_WAITING_SESSIONS = 2_000  # undecryptable events kept in memory, by Megolm session
MAX_WITHHELD_SESSIONS = 2_000

Deliver = Callable[[MatrixRoom, RoomMessage, bool], Awaitable[None]]
Notify = Callable[[UndecryptableMessage], Awaitable[None]]


class HeldEvents:
    def __init__(
        self,
        client: AsyncClient,
        settings: Settings,
        store: Store,
        answerable: Callable[[int], bool],
        deliver: Deliver,
        notify: Notify,
    ) -> None:
        self.client = client
        self._settings = settings
        self._store = store
        self._user_id = settings.user_id
        self._answerable = answerable
        self._deliver = deliver
        self._notify = notify
        self._undecrypted: dict[str, list[MegolmEvent]] = {}
        self._not_answerable: set[str] = set()  # waiting events that arrived as history
        self._withheld: dict[str, str] = {}  # session_id -> withheld code, this process only
        self._give_up_tasks: dict[str, asyncio.Task[None]] = {}

    async def close(self) -> None:
        for task in self._give_up_tasks.values():
            task.cancel()
        await asyncio.gather(*self._give_up_tasks.values(), return_exceptions=True)
        self._give_up_tasks.clear()

    async def on_megolm(self, room: MatrixRoom, event: MegolmEvent) -> None:
        """A message we cannot decrypt yet: ask for the key, keep the event, bound the wait.

        If the key arrives (`on_room_key`) the message is handled as if it had just come. If it
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
        if not answerable or event.sender == self._user_id:
            return  # history: waiting quietly is enough
        # Ciphertext only: kept so a restart before the key arrives loses nothing.
        await self._store.keys.save(
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
        if self.is_waiting(event.event_id):
            await self._give_up(event, "timeout")

    async def _give_up(self, event: MegolmEvent, reason: str) -> None:
        """Tell the sink that this message stays unreadable (it may still be decrypted later)."""
        task = self._give_up_tasks.pop(event.event_id, None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        log.warning(
            "matrix.room_key_missing", room_id=event.room_id, event_id=event.event_id, reason=reason
        )
        relates = event.source.get("content", {}).get("m.relates_to")
        thread_root = (
            relates.get("event_id")
            if isinstance(relates, dict) and relates.get("rel_type") == "m.thread"
            else None
        )
        try:
            await self._notify(
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

    async def on_room_key(self, event: Any) -> None:
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
                await self._store.keys.forget(megolm.event_id)
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
            await self._store.keys.forget(megolm.event_id)
            answerable = megolm.event_id not in self._not_answerable
            self._not_answerable.discard(megolm.event_id)
            if isinstance(decrypted, RoomMessage) and room is not None:
                log.info(
                    "matrix.late_key_decrypted", room_id=megolm.room_id, event_id=megolm.event_id
                )
                await self._deliver(room, decrypted, answerable)

    async def load(self) -> None:
        """Events that waited for a key when the bot last stopped wait again (catch-up window)."""
        window_ms = int(self._settings.catch_up_window_minutes * 60_000)
        now = int(time.time() * 1000)
        for room_id, source in await self._store.keys.since(since_ms=now - 86_400_000):
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

    async def retry_all(self) -> None:
        """After the first sync: keys that came while the bot was down are in the store now."""
        for session_id in list(self._undecrypted):
            await self._decrypt_waiting(session_id, keep_on_failure=True)

    async def on_to_device(self, event: UnknownToDeviceEvent) -> None:
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

    def is_waiting(self, event_id: str) -> bool:
        return any(
            event.event_id == event_id for events in self._undecrypted.values() for event in events
        )
