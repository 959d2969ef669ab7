"""Per-room work queues: a room's questions are handled in order, rooms concurrently."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import structlog

from bot.ops import metrics

log = structlog.get_logger(__name__)

Job = Callable[[], Coroutine[Any, Any, None]]


class RoomWorkers:
    """One queue per room: a room's questions are answered in order, rooms concurrently.

    Each job runs in its own task, so one job can be cancelled (`cancel(key)`: its question
    was withdrawn) while the room's worker goes on with the next."""

    def __init__(self, ready: asyncio.Event) -> None:
        self._ready = ready
        self._queues: dict[str, asyncio.Queue[tuple[str | None, Job]]] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._running: dict[str, tuple[str | None, asyncio.Task[None]]] = {}
        self._pending = 0

    def submit(self, room_id: str, job: Job, key: str | None = None) -> None:
        queue = self._queues.setdefault(room_id, asyncio.Queue())
        self._pending += 1
        metrics.QUEUE_DEPTH.set(self._pending)
        worker = self._tasks.get(room_id)
        if worker is not None and not worker.done():
            queue.put_nowait((key, job))
            return
        # An idle room's job gets its task now: it starts at the loop's next turn instead of
        # a turn after its worker's, ahead of what the sync loop does next (figure 1).
        first = self._start(room_id, key, job) if self._ready.is_set() else None
        if first is None:
            queue.put_nowait((key, job))
        self._tasks[room_id] = asyncio.create_task(
            self._work(room_id, queue, first), name=f"room-{room_id}"
        )

    def _start(self, room_id: str, key: str | None, job: Job) -> asyncio.Task[None]:
        # Named like its worker: log lines and the bench's samples name the room's task.
        task = asyncio.create_task(job(), name=f"room-{room_id}")
        self._running[room_id] = (key, task)
        return task

    async def _work(
        self,
        room_id: str,
        queue: asyncio.Queue[tuple[str | None, Job]],
        started: asyncio.Task[None] | None,
    ) -> None:
        await self._ready.wait()  # nothing is sent before the first sync told us about the rooms
        while started is not None or not queue.empty():
            if started is None:
                key, job = queue.get_nowait()
                started = self._start(room_id, key, job)
            task, started = started, None
            try:
                await task  # cancelling this worker (shutdown) cancels the job too
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise
                log.info("router.job_cancelled", room_id=room_id)  # this job only
            except Exception:
                log.exception("router.job_crashed", room_id=room_id)
            finally:
                self._running.pop(room_id, None)
                self._pending -= 1
                metrics.QUEUE_DEPTH.set(self._pending)
        self._queues.pop(room_id, None)
        self._tasks.pop(room_id, None)

    def idle(self, room_id: str) -> bool:
        """Nothing running or waiting in this room: a job submitted now starts at once."""
        return room_id not in self._queues

    def cancel(self, key: str) -> bool:
        """Cancel the running job submitted with `key`; False if none is running. (A queued
        job is not removed: it checks at its start whether it is still wanted.)"""
        for running_key, task in self._running.values():
            if running_key == key and not task.done():
                task.cancel()
                return True
        return False

    @property
    def pending(self) -> int:
        return self._pending

    async def drain(self, grace_seconds: float) -> bool:
        """Let in-flight work finish for up to `grace_seconds`, then cancel the rest."""
        tasks = [task for task in self._tasks.values() if not task.done()]
        if not tasks:
            return True
        _, still_running = await asyncio.wait(tasks, timeout=grace_seconds)
        for task in still_running:
            task.cancel()
        await asyncio.gather(*still_running, return_exceptions=True)
        return not still_running
