"""Wiring and lifecycle: build every part from the settings, run until asked to stop."""

from __future__ import annotations

import asyncio
import contextlib
import signal

import structlog

from bot.answer.conversation import ConversationHandler
from bot.answer.llm import CircuitBreaker, LLMClient
from bot.answer.media import MediaService
from bot.answer.replies import Outbox
from bot.answer.summary import Summarizer
from bot.answer.tokens import MistralTokenCounter
from bot.documents.service import DocumentService
from bot.matrix.gateway import MatrixGateway
from bot.matrix.session import AuthenticationFailed
from bot.ops.health import HealthServer, start_health_server, sync_readiness
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
SHUTDOWN_GRACE_SECONDS = 20.0
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
        store = self.store = await Store.open(settings.database_path)
        tokens = MistralTokenCounter()
        warm_up = asyncio.ensure_future(tokens.warm_up())
        llm = self.llm = LLMClient(
            api_key=settings.mistral_api_key.get_secret_value(),
            server_url=settings.mistral_server_url,
            timeout_seconds=settings.llm_timeout_seconds,
            max_retries=settings.llm_max_retries,
            max_concurrency=settings.llm_max_concurrency,
            backoff_initial_ms=settings.llm_retry_initial_ms,
            backoff_max_ms=settings.llm_retry_max_ms,
            breaker=CircuitBreaker(
                settings.llm_circuit_threshold, settings.llm_circuit_cooldown_seconds
            ),
        )
        gateway = self.gateway = MatrixGateway(settings, store)
        outbox = Outbox(gateway)
        room_config = RoomConfigRepository(store)
        await room_config.load_all()
        room_commands = RoomCommandsRepository(store)
        await room_commands.load_all()
        conversation = ConversationHandler(settings, store, llm, tokens, outbox)
        media = MediaService(settings, store, llm, conversation, gateway)
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
            media,
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
            await gateway.start()
            health = await start_health_server(
                settings, sync_readiness(gateway, settings.sync_timeout_seconds)
            )
            await router.resume_pending()
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
            await warm_up
            log.info("bot.started", user_id=settings.user_id, model=settings.model)
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
            warm_up.cancel()
            if health is not None:
                await health.stop()
            await conversation.close()
            await documents.close()
            await gateway.close()
            await llm.close()
            await store.close()
            log.info("bot.stopped", in_flight_finished=finished)


async def run_until_signalled(settings: Settings) -> int:
    """Run in the foreground; SIGTERM/SIGINT ask for a clean stop."""
    app = BotApp(settings)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, app.request_stop)
    return await app.run()
