"""A measuring Matrix user: a real nio client whose sync loop timestamps every arrival.

The timestamp is taken when nio hands the event over (after decryption), i.e. when a
person's client could show it. Sends go through the same client, concurrently with the sync
loop, as in any Matrix app.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nio

from bench.echo import crypto_housekeeping
from sandbox.synapse import RegisteredUser


@dataclass
class Arrival:
    at: float
    event_id: str
    room_id: str
    sender: str
    content: dict[str, Any]
    server_ms: int = 0  # origin_server_ts: when the homeserver accepted the event


# A client that only wants messages (the crowd of figures 4 and 5): no typing, no presence.
QUIET_FILTER: dict[str, Any] = {
    "presence": {"not_types": ["*"]},
    "room": {"ephemeral": {"not_types": ["*"]}},
}


class Observer:
    """One user. `start()` runs the sync loop; `send()` returns (event_id, perf_counter at
    send start); `reply_to()` waits for the first reply to an event."""

    def __init__(
        self,
        homeserver: str,
        user: RegisteredUser,
        store_dir: Path,
        encryption: bool,
        sync_filter: dict[str, Any] | None = None,
    ) -> None:
        store_dir.mkdir(parents=True, exist_ok=True)
        self.user = user
        self.client = nio.AsyncClient(
            homeserver,
            user.user_id,
            device_id=user.device_id,
            store_path=str(store_dir),
            config=nio.AsyncClientConfig(encryption_enabled=encryption, store_sync_tokens=False),
        )
        self.client.restore_login(user.user_id, user.device_id, user.access_token)
        self.sync_filter = sync_filter
        self.replies: dict[str, Arrival] = {}
        self.edits: dict[str, list[Arrival]] = defaultdict(list)
        self.joins: dict[tuple[str, str], float] = {}
        self.undecryptable = 0
        self._pending_megolm: list[tuple[str, nio.MegolmEvent]] = []
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.syncs = 0

    # --- sync loop ------------------------------------------------------------------------
    async def start(self) -> None:
        self.client.add_event_callback(self._on_event, nio.Event)
        self.client.add_event_callback(self._on_megolm, nio.MegolmEvent)
        response = await self.client.sync(timeout=0, full_state=True, sync_filter=self.sync_filter)
        if not isinstance(response, nio.SyncResponse):
            raise RuntimeError(f"{self.user.user_id}: first sync failed: {response}")
        await self._housekeeping()
        self._task = asyncio.create_task(self._loop())

    async def _housekeeping(self) -> None:
        await crypto_housekeeping(self.client)

    async def _loop(self) -> None:
        while not self._stopping:
            response = await self.client.sync(timeout=30_000, sync_filter=self.sync_filter)
            self.syncs += 1
            if not isinstance(response, nio.SyncResponse):
                await asyncio.sleep(0.5)
                continue
            await self._housekeeping()
            self._retry_decryption()
            async with self._changed:
                self._changed.notify_all()

    async def close(self) -> None:
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.client.close()

    # --- arrivals ---------------------------------------------------------------------------
    def _record(self, room_id: str, event: nio.Event, at: float) -> None:
        if isinstance(event, nio.RoomMemberEvent):
            if event.membership == "join":
                self.joins.setdefault((room_id, event.state_key), at)
            return
        if not isinstance(event, nio.RoomMessage):
            return
        source = event.source if isinstance(event.source, dict) else {}
        content = source.get("content") or {}
        arrival = Arrival(
            at,
            str(event.event_id),
            room_id,
            str(event.sender),
            dict(content),
            int(getattr(event, "server_timestamp", 0) or 0),
        )
        relates = content.get("m.relates_to") or {}
        if relates.get("rel_type") == "m.replace":
            self.edits[str(relates.get("event_id"))].append(arrival)
            return
        replied = (relates.get("m.in_reply_to") or {}).get("event_id")
        if replied and replied not in self.replies:
            self.replies[replied] = arrival

    async def _on_event(self, room: nio.MatrixRoom, event: nio.Event) -> None:
        if isinstance(event, nio.MegolmEvent):
            return
        self._record(room.room_id, event, time.perf_counter())

    async def _on_megolm(self, room: nio.MatrixRoom, event: nio.MegolmEvent) -> None:
        self.undecryptable += 1
        self._pending_megolm.append((room.room_id, event))

    def _retry_decryption(self) -> None:
        """A reply whose key came in a later sync: timestamped when it became readable."""
        still = []
        for room_id, event in self._pending_megolm:
            event.room_id = room_id
            try:
                decrypted = self.client.decrypt_event(event)
            except Exception:
                still.append((room_id, event))
                continue
            self._record(room_id, decrypted, time.perf_counter())
        self._pending_megolm = still

    # --- actions ----------------------------------------------------------------------------
    async def send(
        self, room_id: str, body: str, extra: dict[str, Any] | None = None
    ) -> tuple[str, float]:
        content: dict[str, Any] = {"msgtype": "m.text", "body": body, **(extra or {})}
        started = time.perf_counter()
        response = await self.client.room_send(
            room_id, "m.room.message", content, ignore_unverified_devices=True
        )
        if not isinstance(response, nio.RoomSendResponse):
            raise RuntimeError(f"send failed: {response}")
        return str(response.event_id), started

    async def reply_to(self, event_id: str, timeout: float = 30) -> Arrival:  # noqa: ASYNC109
        """The first reply to `event_id` (m.in_reply_to), waiting until it arrives."""
        deadline = time.monotonic() + timeout
        async with self._changed:
            while event_id not in self.replies:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no reply to {event_id} within {timeout} s")
                try:
                    await asyncio.wait_for(self._changed.wait(), remaining)
                except TimeoutError:
                    continue
        return self.replies[event_id]

    async def edit_of(
        self,
        event_id: str,
        predicate: Callable[[Arrival], bool],
        timeout: float = 300,  # noqa: ASYNC109
    ) -> Arrival:
        """The first edit (m.replace) of `event_id` satisfying `predicate`, waiting for it."""
        deadline = time.monotonic() + timeout
        async with self._changed:
            while True:
                for arrival in self.edits.get(event_id, []):
                    if predicate(arrival):
                        return arrival
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no matching edit of {event_id} within {timeout} s")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), remaining)

    async def replies_to(
        self,
        event_ids: list[str],
        timeout: float = 60,  # noqa: ASYNC109
    ) -> dict[str, Arrival]:
        """Replies to every event of `event_ids` (the missing ones are left out at timeout)."""
        deadline = time.monotonic() + timeout
        async with self._changed:
            while any(event_id not in self.replies for event_id in event_ids):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    await asyncio.wait_for(self._changed.wait(), remaining)
                except TimeoutError:
                    continue
        return {e: self.replies[e] for e in event_ids if e in self.replies}

    async def wait_joined(
        self,
        room_ids: list[str],
        user_id: str,
        timeout: float = 120,  # noqa: ASYNC109
    ) -> None:
        deadline = time.monotonic() + timeout
        async with self._changed:
            while any((room_id, user_id) not in self.joins for room_id in room_ids):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    missing = sum((r, user_id) not in self.joins for r in room_ids)
                    raise TimeoutError(f"{user_id} did not join {missing} room(s)")
                try:
                    await asyncio.wait_for(self._changed.wait(), remaining)
                except TimeoutError:
                    continue

    async def create_room(
        self, invite: list[str], *, encrypted: bool = False, direct: bool = True
    ) -> str:
        """A DM-like private room (Tchap's `direct` access rule) with `invite` invited."""
        state: list[dict[str, Any]] = [
            {
                "type": "im.vector.room.access_rules",
                "state_key": "",
                "content": {"rule": "direct" if direct else "restricted"},
            }
        ]
        if encrypted:
            state.append(
                {
                    "type": "m.room.encryption",
                    "state_key": "",
                    "content": {"algorithm": "m.megolm.v1.aes-sha2"},
                }
            )
        response = await self.client.room_create(
            invite=invite,
            is_direct=direct,
            preset=nio.RoomPreset.trusted_private_chat if direct else nio.RoomPreset.private_chat,
            initial_state=state,
        )
        if not isinstance(response, nio.RoomCreateResponse):
            raise RuntimeError(f"room creation failed: {response}")
        return str(response.room_id)
