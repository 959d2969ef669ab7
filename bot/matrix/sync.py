"""The sync loop: long-poll `/sync`, then hand over what it brought, in order, exactly once.

A mixin of `MatrixGateway` (bot/matrix/gateway.py), kept apart because it is the gateway's one
long-running job: nio's callbacks only queue events during a sync (`_deferred`); once the sync
returned, `_after_sync` drops the caches its state changes invalidate, fetches what limited
timelines skipped (`_fetch_gap`), runs the queued handlers (`_dispatch`: a transient failure
replays the sync from the saved token) and only then saves the token. What may still be
answered after a restart or an outage follows the catch-up window (`_answerable`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import structlog
from nio import (
    AsyncClient,
    MatrixRoom,
    MegolmEvent,
    MessageDirection,
    RedactionEvent,
    RoomEncryptedMedia,
    RoomMessage,
    RoomMessagesError,
    SyncError,
    SyncResponse,
    UnknownEvent,
)

from bot.matrix.session import raise_if_auth_error
from bot.ops import memory, metrics
from bot.ops.transient import is_transient

if TYPE_CHECKING:
    from bot.matrix.direct import DirectRooms
    from bot.matrix.gateway import EventSink
    from bot.matrix.keys import HeldEvents
    from bot.matrix.power import PowerLevelCache
    from bot.store import Store
    from config.settings import Settings

log = structlog.get_logger(__name__)

SYNC_TOKEN_KEY = "sync_token"
SYNC_AT_KEY = "sync_token_saved_at_ms"  # wall time the token was saved: see `_may_have_gap`
SYNC_FILTER: dict[str, Any] = {
    "presence": {"not_types": ["*"]},
    # Of ephemeral events, only receipts: `!resume` starts where each member last read.
    "room": {"timeline": {"limit": 50}, "ephemeral": {"types": ["m.receipt"]}},
}
GAP_MAX_EVENTS = 500  # per room and sync: what a limited timeline skipped, fetched with /messages
GAP_PAGE = 100
GAP_FETCH_CONCURRENCY = 4
# A full-state sync (the first after a start) marks every room with history as limited. A room
# whose timeline reaches back this far before the previous sync has no gap; the margin covers
# a homeserver clock behind the bot's.
FULL_STATE_GAP_MARGIN_MS = 5 * 60_000
OUTAGE_MARGIN_SECONDS = 5.0
CATCH_UP_SYNCS = 2
LIVE_DELIVERY_MS = 1_000
MAX_EVENT_ATTEMPTS = 5  # transient failures of one event before it is given up (logged)
POWER_STATE_TYPES = {"m.room.power_levels", "m.room.create"}


Handler = Callable[..., Awaitable[None]]


class _ReplaySync(Exception):
    """An event's handler failed for a transient reason: the sync is replayed from the saved token."""


class _Deferred:
    """One callback nio made during a sync, run after the sync returned (see `_dispatch`)."""

    __slots__ = ("args", "event_id", "handler", "key", "room_id")

    def __init__(self, handler: Handler, args: tuple[Any, ...]) -> None:
        self.handler = handler
        self.args = args
        self.room_id: str | None = getattr(args[0], "room_id", None) if len(args) > 1 else None
        event_id = getattr(args[-1], "event_id", None)
        self.event_id: str | None = event_id if isinstance(event_id, str) else None
        session_id = getattr(args[-1], "session_id", None)  # to-device key events have no ID
        self.key = self.event_id or f"{type(args[-1]).__name__}:{session_id}"


class _SyncDigest:
    """Of one sync response, what is handled after it (`SyncLoop._digest`)."""

    __slots__ = (
        "account_data_events",
        "gapped",
        "left",
        "next_batch",
        "power_changed",
        "state_changed",
    )

    def __init__(self, next_batch: str, account_data_events: list[Any]) -> None:
        self.next_batch = next_batch
        self.account_data_events = account_data_events
        self.state_changed: list[str] = []  # rooms whose cached display name is stale
        self.power_changed: list[str] = []  # rooms whose cached power levels are stale
        self.gapped: list[tuple[str, str]] = []  # (room, prev_batch) of possible gaps
        self.left: list[str] = []


def sync_filter(own_user_id: str) -> dict[str, Any]:
    """SYNC_FILTER without the bot's own timeline events: the router ignores them, and each
    one (every edit of a streamed answer, every answer) would otherwise end the long-poll and
    cost a whole sync round (bench/, figure 3). Its own state still reaches nio: Synapse puts
    it in the rooms' state, and a room the bot creates is read whole (`_learn_room_state`)."""
    timeline = {**SYNC_FILTER["room"]["timeline"], "not_senders": [own_user_id]}
    return {**SYNC_FILTER, "room": {**SYNC_FILTER["room"], "timeline": timeline}}


def gap_possible(
    *, limited: bool, full_state: bool, token_saved_at_ms: int | None, oldest_event_ms: int | None
) -> bool:
    """See `SyncLoop._may_have_gap`."""
    if not limited:
        return False
    if not full_state or token_saved_at_ms is None or not oldest_event_ms:
        return True
    return oldest_event_ms >= token_saved_at_ms - FULL_STATE_GAP_MARGIN_MS


class SyncLoop:
    """The gateway's sync loop (see the module docstring); `MatrixGateway` sets these."""

    client: AsyncClient
    _settings: Settings
    _store: Store
    _sink: EventSink | None
    direct: DirectRooms
    held: HeldEvents
    power: PowerLevelCache
    _room_names: dict[str, str]
    _sync_token: str | None
    _sync_token_saved_at_ms: int | None
    _sync_filter: dict[str, Any]
    _first_sync_ever: bool
    _in_first_sync: bool
    _catch_up_syncs: int
    _batch: list[_Deferred] | None
    _attempts: dict[str, int]
    _keys_lock: asyncio.Lock
    ready: asyncio.Event
    _synced: asyncio.Condition
    last_sync_monotonic: float | None

    async def _on_room_message(
        self, room: MatrixRoom, event: Any, answerable: bool | None = None
    ) -> None:
        raise NotImplementedError

    async def _on_redaction(self, room: MatrixRoom, event: RedactionEvent) -> None:
        raise NotImplementedError

    async def run(self, stop: asyncio.Event) -> None:
        """Sync until `stop` is set. Raises AuthenticationFailed when the account is refused."""
        backoff = 1.0
        replayed = False
        while not stop.is_set():
            first = self._in_first_sync
            since = self._sync_token
            # nio skips a response whose next_batch it already has: a replayed sync, or a
            # full-state first sync that brings nothing new, must still be processed.
            self.client.next_batch = None
            self._batch = []
            started = time.monotonic()
            sync_task = asyncio.ensure_future(
                self.client.sync(
                    timeout=0 if first else int(self._settings.sync_timeout_seconds * 1000),
                    sync_filter=self._sync_filter,
                    since=since,
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
                self._catch_up_syncs = CATCH_UP_SYNCS  # what comes after an outage: the window
                log.warning("matrix.sync_failed", error_type=type(error).__name__, retry_in=backoff)
                await _sleep_unless(stop, backoff)
                backoff = min(backoff * 2, self._settings.homeserver_retry_max_seconds)
                continue
            if isinstance(response, SyncError):
                raise_if_auth_error(response)
                self._catch_up_syncs = CATCH_UP_SYNCS
                log.warning("matrix.sync_error", status=response.status_code, retry_in=backoff)
                await _sleep_unless(stop, backoff)
                backoff = min(backoff * 2, self._settings.homeserver_retry_max_seconds)
                continue
            if time.monotonic() - started > self._outage_after():
                # nio retries an unreachable homeserver inside one sync call: a sync this late
                # ends an outage, and what it brings obeys the catch-up window.
                self._catch_up_syncs = CATCH_UP_SYNCS
                log.info("matrix.sync_after_outage", seconds=round(time.monotonic() - started))
            batch, self._batch = self._batch, None
            digest = self._digest(response, since)
            # The response holds the whole parsed JSON (~13 MB of objects for a full-state sync
            # of 1,000 rooms): let go before its events are handled, so that what they load
            # (the SDK at the first question, bot/answer/llm.py) reuses that heap instead of
            # growing it, and `give_back_free_memory` below finds it free (bench/, figure 5).
            del response, sync_task, done
            try:
                await self._after_sync(digest, since, batch)
            except Exception as error:
                if not (isinstance(error, _ReplaySync) or is_transient(error)):
                    raise
                # Not saved past a failed event: replay the same sync (claims make it harmless).
                log.warning(
                    "matrix.sync_replayed", error_type=type(error).__name__, retry_in=backoff
                )
                replayed = True
                await _sleep_unless(stop, backoff)
                backoff = min(backoff * 2, self._settings.homeserver_retry_max_seconds)
                continue
            backoff = 1.0
            self._catch_up_syncs = max(0, self._catch_up_syncs - 1)
            if first or replayed:
                # Keys handed over by a sync that had to be replayed may not come again.
                replayed = False
                await self.held.retry_all()
                if self._in_first_sync:
                    memory.give_back_free_memory()  # what parsing the full state left behind
                self._in_first_sync = False
                self.ready.set()

    def _digest(self, response: SyncResponse, since: str | None) -> _SyncDigest:
        """What `_after_sync` needs of a response, so that the response itself can go."""
        digest = _SyncDigest(response.next_batch, list(response.account_data_events))
        for room_id, info in response.rooms.join.items():
            if info.timeline.limited or info.state or _has_state(info.timeline.events):
                digest.state_changed.append(room_id)
            if info.timeline.limited or info.state or _has_power_state(info.timeline.events):
                digest.power_changed.append(room_id)
            if since is not None and info.timeline.prev_batch and self._may_have_gap(info):
                digest.gapped.append((room_id, info.timeline.prev_batch))
        digest.left.extend(response.rooms.leave)
        return digest

    async def _after_sync(
        self, digest: _SyncDigest, since: str | None, batch: list[_Deferred] | None
    ) -> None:
        """Hand over what the sync brought, in order, then save its token.

        nio's callbacks only queued the events (`_deferred`): first the rooms whose state
        changed lose their cached power levels, then the gaps of limited timelines are fetched,
        then everything is handed over, each room's events in chronological order.
        """
        await self.direct.note_account_data(digest.account_data_events)
        for room_id in digest.state_changed:
            self._room_names.pop(room_id, None)
        for room_id in digest.power_changed:
            self.power.invalidate(room_id)
        gapped = digest.gapped
        for room_id in digest.left:
            self.power.forget(room_id)
            self._room_names.pop(room_id, None)
        gaps: list[_Deferred] = []
        if since is not None and gapped:
            gate = asyncio.Semaphore(GAP_FETCH_CONCURRENCY)

            async def fetch(room_id: str, prev_batch: str) -> list[_Deferred]:
                async with gate:
                    return await self._fetch_gap(room_id, prev_batch, since)

            for fetched in await asyncio.gather(*(fetch(*room) for room in gapped)):
                gaps.extend(fetched)
        await self._dispatch([*gaps, *(batch or [])])
        for room_id in digest.left:
            self.direct.forget(room_id)
            if self._sink is not None:
                await self._sink.on_left(room_id)
        await self._crypto_housekeeping()
        # Saved last: a crash before this line replays the sync, and the store's trigger
        # table makes the replay harmless.
        await self._store.state.set_many(
            {SYNC_TOKEN_KEY: digest.next_batch, SYNC_AT_KEY: str(int(time.time() * 1000))}
        )
        self._sync_token = digest.next_batch
        metrics.LAST_SYNC.set(time.time())
        self.last_sync_monotonic = time.monotonic()
        async with self._synced:
            self._synced.notify_all()

    async def _dispatch(self, items: list[_Deferred]) -> None:
        """Run the queued callbacks in order. A bug in one event is logged and the rest go on
        (nio would otherwise skip the whole replayed batch); a transient failure (SQLite busy,
        homeserver unreachable) stops here so the sync is replayed, at most
        `MAX_EVENT_ATTEMPTS` times per event before that event is given up, loudly."""
        for item in items:
            key = item.key
            try:
                await item.handler(*item.args)
            except Exception as error:
                bound = log.bind(
                    room_id=item.room_id, event_id=item.event_id, error_type=type(error).__name__
                )
                if not is_transient(error):
                    bound.exception("matrix.event_handling_failed")
                    continue
                attempts = self._attempts.get(key, 0) + 1
                if attempts >= MAX_EVENT_ATTEMPTS:
                    self._attempts.pop(key, None)
                    bound.error("matrix.event_given_up", attempts=attempts)
                    continue
                self._attempts[key] = attempts
                bound.warning("matrix.event_retry", attempt=attempts)
                raise _ReplaySync(key) from error
            else:
                self._attempts.pop(key, None)
            # A question's job, started by its handler, runs up to its model call before the
            # next event and this sync's bookkeeping (token saved, crypto store): ~0.1 ms off
            # its path to the model (bench/, figure 1), and a burst's first answers start sooner.
            await asyncio.sleep(0)

    def _may_have_gap(self, info: Any) -> bool:
        """Whether a limited timeline may have skipped events since the previous sync.

        Incremental syncs say so exactly. The first sync after a start asks for the full state,
        and Synapse then marks every room with more history than the timeline as limited: 1,000
        rooms meant 1,000 empty `/messages` requests before the first answer (bench/, figure
        5). There, a timeline whose oldest event is well older than the previous sync already
        holds everything that came after it."""
        events = info.timeline.events
        return gap_possible(
            limited=bool(info.timeline.limited),
            full_state=self._in_first_sync,
            token_saved_at_ms=self._sync_token_saved_at_ms,
            oldest_event_ms=int(getattr(events[0], "server_timestamp", 0) or 0) if events else None,
        )

    async def _fetch_gap(self, room_id: str, prev_batch: str, since: str) -> list[_Deferred]:
        """What a limited timeline skipped, from `/messages` backwards from `prev_batch` to the
        previous sync's token: at most `GAP_MAX_EVENTS`, and nothing older than the catch-up
        window (an older question would not be answered anyway). Decrypted where the keys are
        known; returned oldest first, with the answerable flag of catch-up."""
        room = self.client.rooms.get(room_id)
        if room is None:
            return []
        cutoff = int(time.time() * 1000) - self._window_ms()
        events: list[Any] = []
        token: str | None = prev_batch
        while token and len(events) < GAP_MAX_EVENTS:
            response = await self.client.room_messages(
                room_id,
                start=token,
                end=since,
                direction=MessageDirection.back,
                limit=min(GAP_PAGE, GAP_MAX_EVENTS - len(events)),
            )
            if isinstance(response, RoomMessagesError):
                log.warning("matrix.gap_unavailable", room_id=room_id, status=response.status_code)
                break
            chunk = list(response.chunk)
            events.extend(chunk)
            if not chunk or response.end == token:
                break
            if int(getattr(chunk[-1], "server_timestamp", 0) or 0) < cutoff:
                break
            token = response.end
        log.info("matrix.gap_fetched", room_id=room_id, events=len(events))
        items: list[_Deferred] = []
        for event in reversed(events):
            handler = self._gap_handler(event)
            if handler is not None:
                items.append(_Deferred(handler, (room, event)))
        return items

    def _gap_handler(self, event: Any) -> Handler | None:
        """The same handlers as live events; gap messages carry the catch-up answerable flag."""
        if isinstance(event, (RoomMessage, RoomEncryptedMedia)):

            async def deliver(room: MatrixRoom, message: Any) -> None:
                timestamp = int(getattr(message, "server_timestamp", 0) or 0)
                await self._on_room_message(room, message, self._within_window(timestamp))

            return deliver
        if isinstance(event, MegolmEvent):
            return self.held.on_megolm
        if isinstance(event, RedactionEvent):
            return self._on_redaction
        if isinstance(event, UnknownEvent):
            return self.direct.on_state_event
        return None

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

    def _deferred(self, handler: Handler) -> Handler:
        """During a sync, nio's callbacks only queue the event; `_after_sync` runs them."""

        async def queue(*args: Any) -> None:
            if self._batch is not None:
                self._batch.append(_Deferred(handler, args))
            else:
                await self._dispatch([_Deferred(handler, args)])

        return queue

    def _outage_after(self) -> float:
        """How long a long-poll may take before its return is treated as the end of an outage."""
        timeout = float(self._settings.sync_timeout_seconds)
        return timeout + max(OUTAGE_MARGIN_SECONDS, timeout)

    def _window_ms(self) -> int:
        # Never below a live message's delivery time, even with a window of 0.
        return max(LIVE_DELIVERY_MS, int(self._settings.catch_up_window_minutes * 60_000))

    def _within_window(self, timestamp_ms: int) -> bool:
        if self._first_sync_ever and self._in_first_sync:
            return False  # first start: nothing from before start-up is answered
        return timestamp_ms >= int(time.time() * 1000) - self._window_ms()

    def _answerable(self, timestamp_ms: int) -> bool:
        """Live events are answered; what arrives after a restart or an outage only if younger
        than the catch-up window (older is stored for summaries, never answered)."""
        if self._catch_up_syncs == 0:
            return True
        return self._within_window(timestamp_ms)


def _has_state(events: list[Any]) -> bool:
    """Any state event (members, name, alias…) among a sync's timeline events."""
    for event in events:
        source = getattr(event, "source", None)
        if isinstance(source, dict) and "state_key" in source:
            return True
    return False


def _has_power_state(events: list[Any]) -> bool:
    for event in events:
        source = getattr(event, "source", None)
        if (
            isinstance(source, dict)
            and source.get("type") in POWER_STATE_TYPES
            and source.get("state_key") == ""
        ):
            return True
    return False


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
