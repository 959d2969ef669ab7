"""Wiring and lifecycle: build every part from the settings, run until asked to stop."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Awaitable
from typing import Any

import aiohttp
import structlog

from bot import texts
from bot.answer.conversation import ConversationHandler
from bot.answer.llm import LLMClient
from bot.answer.llm_failures import CircuitBreaker
from bot.answer.media import MediaService
from bot.answer.replies import Outbox
from bot.answer.summary import Summarizer
from bot.answer.tokens import MistralTokenCounter
from bot.documents.service import DocumentService
from bot.matrix.gateway import MatrixGateway
from bot.matrix.session import AuthenticationFailed
from bot.ops import datalock
from bot.ops.health import HealthServer, start_health_server, sync_readiness
from bot.pilot.service import Pilot
from bot.room_commands import RoomCommandsRepository
from bot.room_config import RoomConfigRepository
from bot.router import Router
from bot.schedule import Scheduler
from bot.store import Store
from bot.store.retention import retention_loop
from commands import build_registry
from commands.dispatcher import CommandDispatcher
from config.settings import Settings

log = structlog.get_logger(__name__)

EXIT_OK = 0
EXIT_AUTH_FAILED = 3
EXIT_ALREADY_RUNNING = 4
EXIT_STOP_FORCED = 5
STOP_DEADLINE_SECONDS = 10.0  # SIGTERM/SIGINT → process gone, whatever it was doing
SHUTDOWN_GRACE_SECONDS = 5.0  # in-flight answers; unfinished ones are resumed at next start
CLOSE_TIMEOUT_SECONDS = 1.5  # each client/store close, after the grace
FORCED_EXIT_AFTER_SECONDS = 9.0  # last resort: a thread exits the process if the loop is stuck
RETENTION_EVERY_SECONDS = 3600.0


class BotApp:
    """The running bot. `run()` returns the process exit code."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.stop_event = asyncio.Event()
        self.store: Store | None = None
        self.gateway: MatrixGateway | None = None
        self.router: Router | None = None
        self.llm: LLMClient | None = None
        self.scheduler: Scheduler | None = None
        self.documents: DocumentService | None = None

    def request_stop(self) -> None:
        self.stop_event.set()

    async def run(self) -> int:
        settings = self.settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):  # session token, crypto keys, people's messages
            settings.data_dir.chmod(0o700)
        try:  # before anything touches the crypto store: one process per data folder
            with datalock.held(settings.data_dir):
                return await self._run_locked()
        except datalock.LockHeld as error:
            print(
                texts.ALREADY_RUNNING.format(
                    pid=error.pid or "inconnu", data_dir=settings.data_dir
                ),
                file=sys.stderr,
                flush=True,
            )
            return EXIT_ALREADY_RUNNING

    async def _run_locked(self) -> int:
        settings = self.settings
        store = self.store = await Store.open(settings.database_path)
        tokens = MistralTokenCounter()  # loads the tokenizer when a count is first needed
        llm = self.llm = LLMClient(
            api_key=settings.mistral_api_key.get_secret_value(),
            server_url=settings.mistral_server_url,
            timeout_seconds=settings.llm_timeout_seconds,
            max_retries=settings.llm_max_retries,
            max_concurrency=settings.llm_max_concurrency,
            backoff_initial_ms=settings.llm_retry_initial_ms,
            backoff_max_ms=settings.llm_retry_max_ms,
            stream_interval_seconds=settings.stream_edit_interval_seconds,
            breaker=CircuitBreaker(
                settings.llm_circuit_threshold, settings.llm_circuit_cooldown_seconds
            ),
            proxy_url=settings.proxy_url,
        )
        gateway = self.gateway = MatrixGateway(settings, store)
        outbox = Outbox(gateway)
        room_config = RoomConfigRepository(store)
        await room_config.load_all()
        room_commands = RoomCommandsRepository(store)
        await room_commands.load_all()
        conversation = ConversationHandler(settings, store, llm, tokens, outbox)
        media = MediaService(settings, store, llm, conversation, gateway)
        pilot = Pilot(settings, store)
        dispatcher = CommandDispatcher(
            build_registry(),
            settings=settings,
            store=store,
            llm=llm,
            outbox=outbox,
            conversation=conversation,
            room_config=room_config,
            room_commands=room_commands,
            power_level_of=gateway.power_level,
            summarizer=Summarizer(llm, tokens, settings),
            pilot=pilot,
            media=media,
            direct_room=gateway.direct_room_with,
        )
        router = self.router = Router(
            settings,
            store,
            gateway,
            conversation,
            dispatcher,
            room_config,
            outbox,
            room_commands,
            media=media,
            pilot=pilot,
        )
        scheduler = self.scheduler = dispatcher.scheduler = Scheduler(store, router.run_scheduled)
        await store.documents.load_sqlite_vec()
        documents = self.documents = DocumentService(
            settings, store.documents, gateway, llm, tokens
        )
        router.documents = dispatcher.documents = conversation.documents = documents
        gateway.attach(router)
        background: list[asyncio.Task[None]] = []
        health: HealthServer | None = None
        try:
            # Probes first: /healthz answers and /readyz says "not ready" while connecting.
            health = await start_health_server(
                settings, sync_readiness(gateway, settings.sync_timeout_seconds)
            )
            if not await self._unless_stopped(self._connect(gateway)):
                return EXIT_OK
            if not await self._unless_stopped(router.resume_pending()):
                return EXIT_OK
            await documents.resume_pending()
            background.append(
                asyncio.create_task(
                    retention_loop(
                        store,
                        room_config,
                        settings.retention_days,
                        RETENTION_EVERY_SECONDS,
                        self.stop_event,
                    )
                )
            )
            background.append(asyncio.create_task(scheduler.run_forever(self.stop_event)))
            background.append(asyncio.create_task(_prepare_when_ready(gateway, llm)))
            log.info(
                "bot.started",
                user_id=settings.user_id,
                model=settings.model,
                pilot_statistics=settings.pilot_secret is not None,
                feedback=settings.feedback_enabled,
            )
            await gateway.run(self.stop_event)
            return EXIT_OK
        except AuthenticationFailed as error:
            log.error("bot.authentication_failed", reason=str(error))
            return EXIT_AUTH_FAILED
        finally:
            self.stop_event.set()
            finished = await router.workers.drain(SHUTDOWN_GRACE_SECONDS)
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            for closing in (
                health.stop() if health is not None else None,
                conversation.close(),
                documents.close(),
                gateway.close(),
                llm.close(),
                store.close(),
            ):
                if closing is not None:
                    await _bounded(closing, CLOSE_TIMEOUT_SECONDS)
            log.info("bot.stopped", in_flight_finished=finished)

    async def _unless_stopped(self, work: Awaitable[Any]) -> bool:
        """Run `work` unless a stop is asked first (then cancel it): True when it finished."""
        task = asyncio.ensure_future(work)
        stop = asyncio.ensure_future(self.stop_event.wait())
        await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if task.done():
            task.result()  # its exception, if any
            return True
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return False

    async def _connect(self, gateway: MatrixGateway) -> None:
        """Log in or restore the session, retrying with the bot's own backoff while the
        homeserver is unreachable: one French line per attempt, never a hot loop."""
        settings = self.settings
        delay = 1.0
        attempt = 0
        while not self.stop_event.is_set():  # a library may turn our cancel into an error
            attempt += 1
            try:
                await gateway.start()
                return
            except (aiohttp.ClientError, TimeoutError, OSError) as error:
                log.warning(
                    "matrix.unreachable",
                    message=texts.homeserver_unreachable(settings.homeserver, attempt, delay),
                    attempt=attempt,
                    retry_in=delay,
                    error_type=type(error).__name__,
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop_event.wait(), timeout=delay)
            delay = min(delay * 2, settings.homeserver_retry_max_seconds)


async def _prepare_when_ready(gateway: MatrixGateway, llm: LLMClient) -> None:
    """The SDK is loaded once the first sync has been handled, not at start: it then reuses
    the heap that sync's parsing left free (bot/answer/llm.py, bench/ figure 5)."""
    await gateway.ready.wait()
    llm.prepare()


async def _bounded(work: Awaitable[Any], seconds: float) -> None:
    """Await `work` for at most `seconds`; a failure while closing is logged, not raised."""
    try:
        await asyncio.wait_for(work, timeout=seconds)
    except Exception as error:
        log.warning("bot.close_failed", error_type=type(error).__name__)


async def run_until_signalled(settings: Settings) -> int:
    """Run in the foreground; SIGTERM/SIGINT ask for a clean stop, done within
    STOP_DEADLINE_SECONDS whatever the bot is doing. A second signal, or a stop that hangs
    past FORCED_EXIT_AFTER_SECONDS, ends the process at once."""
    app = BotApp(settings)
    loop = asyncio.get_running_loop()
    watchdog: list[threading.Timer] = []

    def on_signal(signum: int) -> None:
        if app.stop_event.is_set() and watchdog:
            _force_exit()
        log.info("bot.stopping", signal=signal.Signals(signum).name)
        app.request_stop()
        if not watchdog:
            timer = threading.Timer(FORCED_EXIT_AFTER_SECONDS, _force_exit)
            timer.daemon = True
            timer.start()
            watchdog.append(timer)

    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, on_signal, signum)
    try:
        return await app.run()
    finally:
        for timer in watchdog:
            timer.cancel()


def _force_exit() -> None:
    log.error("bot.stop_forced", message=texts.STOP_FORCED)
    os._exit(EXIT_STOP_FORCED)
