"""Extraction in worker processes: off the event loop, bounded in time and memory.

A parser stuck on a hostile file cannot be interrupted in a thread; in a process it can. Each
call has a timeout; on timeout (or a crashed worker) the pool is terminated and rebuilt, and the
caller gets DocumentError(TIMEOUT or CORRUPT). Workers are started with `spawn` (no fork of a
process that holds threads and sockets) and limit their own address space.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import multiprocessing.pool
from typing import Any

import structlog

from bot.documents.errors import DocumentError, DocumentErrorReason
from bot.documents.extract import Extracted, Limits, extract_document

log = structlog.get_logger(__name__)

WORKER_MEMORY_BYTES = 2 * 1024**3


def _limit_memory(max_bytes: int) -> None:
    with contextlib.suppress(Exception):  # not every platform has RLIMIT_AS
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (max_bytes, max_bytes))


class ExtractionPool:
    def __init__(self, workers: int = 1, timeout_seconds: float = 60.0) -> None:
        self._workers = max(1, workers)
        self._timeout = timeout_seconds
        self._pool: multiprocessing.pool.Pool | None = None
        self._slots = asyncio.Semaphore(self._workers)

    def _ensure(self) -> multiprocessing.pool.Pool:
        if self._pool is None:
            context = multiprocessing.get_context("spawn")
            self._pool = context.Pool(
                self._workers, initializer=_limit_memory, initargs=(WORKER_MEMORY_BYTES,)
            )
        return self._pool

    def _reset(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            with contextlib.suppress(Exception):  # a pool whose handler died still terminates
                pool.terminate()

    async def extract(
        self, data: bytes, name: str, mimetype: str | None, limits: Limits
    ) -> Extracted:
        async with self._slots:  # one file per worker; the rest wait here, not in the pool
            loop = asyncio.get_running_loop()
            future: asyncio.Future[Any] = loop.create_future()

            def done(value: Any) -> None:
                loop.call_soon_threadsafe(_settle, future, value, None)

            def failed(error: BaseException) -> None:
                loop.call_soon_threadsafe(_settle, future, None, error)

            pool = await asyncio.to_thread(self._ensure)  # spawning takes a moment
            pool.apply_async(
                extract_document,
                (data, name, mimetype, limits),
                callback=done,
                error_callback=failed,
            )
            try:
                result = await asyncio.wait_for(future, self._timeout)
            except TimeoutError:
                log.warning("documents.extraction_timeout", seconds=self._timeout)
                await asyncio.to_thread(self._reset)
                raise DocumentError(DocumentErrorReason.TIMEOUT) from None
            except DocumentError:
                raise
            except Exception as error:  # a worker died (memory limit) or could not unpickle
                log.warning("documents.extraction_crashed", error_type=type(error).__name__)
                await asyncio.to_thread(self._reset)
                raise DocumentError(DocumentErrorReason.CORRUPT, type(error).__name__) from None
            assert isinstance(result, Extracted)
            return result

    async def close(self) -> None:
        await asyncio.to_thread(self._close_sync)

    def _close_sync(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.terminate()
            pool.join()


def _settle(future: asyncio.Future[Any], value: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)
