"""Health and metrics over HTTP, for the orchestrator (liveness/readiness) and Prometheus.

`/healthz`: the process and its event loop answer (200). `/readyz`: logged in and syncing
(200), else 503 — the bot is not ready before its first sync, nor when the last successful sync
is older than the long-poll could explain (homeserver down, token revoked). `/metrics`: the
Prometheus text format. Bound to 127.0.0.1 by default: metrics are operational data, not public.
"""

from __future__ import annotations

import asyncio
import socket
import time
import urllib.request
from collections.abc import Callable, Mapping
from typing import Protocol

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from config.settings import Settings

log = structlog.get_logger(__name__)

SYNC_GRACE_SECONDS = 30.0


class SyncingGateway(Protocol):
    @property
    def ready(self) -> asyncio.Event: ...

    @property
    def last_sync_monotonic(self) -> float | None: ...


def sync_readiness(
    gateway: SyncingGateway,
    sync_timeout_seconds: float,
    clock: Callable[[], float] = time.monotonic,
) -> Callable[[], bool]:
    """Ready when the first sync is done and the last successful one is recent.

    A healthy long-poll returns at least every `sync_timeout_seconds`; twice that plus a grace
    period tolerates one slow round without flapping.
    """
    max_age = 2 * sync_timeout_seconds + SYNC_GRACE_SECONDS

    def ready() -> bool:
        last = gateway.last_sync_monotonic
        return gateway.ready.is_set() and last is not None and clock() - last < max_age

    return ready


class HealthServer:
    """A running health endpoint; `port` is the bound port (useful when asked for port 0)."""

    def __init__(self, runner: web.AppRunner | None, port: int) -> None:
        self._runner = runner
        self.port = port

    @property
    def running(self) -> bool:
        return self._runner is not None

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def _app(readiness: Callable[[], bool]) -> web.Application:
    async def healthz(_request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(_request: web.Request) -> web.Response:
        if readiness():
            return web.Response(text="ready\n")
        return web.Response(status=503, text="not ready\n")

    async def metrics(_request: web.Request) -> web.Response:
        response = web.Response(body=generate_latest())
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app


async def start_health_server(settings: Settings, readiness: Callable[[], bool]) -> HealthServer:
    """Serve /healthz, /readyz and /metrics on `health_host:health_port` (port 0 disables).

    A port already in use is logged, not fatal: answering users matters more than probes.
    """
    wanted = settings.health_port
    if wanted == 0:
        log.info("health.disabled")
        return HealthServer(None, 0)
    runner = web.AppRunner(_app(readiness), access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    sock = socket.socket(socket.AF_INET6 if ":" in settings.health_host else socket.AF_INET)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((settings.health_host, wanted))
        site = web.SockSite(runner, sock)
        await site.start()
    except OSError as error:
        sock.close()
        await runner.cleanup()
        log.error(
            "health.bind_failed",
            host=settings.health_host,
            port=wanted,
            error_type=type(error).__name__,
            errno=error.errno,
        )
        return HealthServer(None, 0)
    bound = int(sock.getsockname()[1])
    log.info("health.listening", host=settings.health_host, port=bound)
    return HealthServer(runner, bound)


def probe(environ: Mapping[str, str], timeout: float = 4.0) -> int:
    """The image's HEALTHCHECK (`tchap-bot healthcheck`): 0 when /healthz answers 200.

    Follows the configured endpoint: TCHAP_BOT_HEALTH_PORT (8080) and TCHAP_BOT_HEALTH_HOST
    (a wildcard bind address is probed on loopback). Needs no other setting.
    """
    from bot import texts
    from config.settings import Settings

    port = int(environ.get("TCHAP_BOT_HEALTH_PORT", Settings.model_fields["health_port"].default))
    if port == 0:
        print(texts.HEALTHCHECK_DISABLED)
        return 0
    host = environ.get("TCHAP_BOT_HEALTH_HOST", "127.0.0.1").strip() or "127.0.0.1"
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "[::]": "::1"}.get(host, host)
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via HTTP_PROXY
    try:
        with direct.open(f"http://{host}:{port}/healthz", timeout=timeout) as answer:
            return 0 if answer.status == 200 else 1
    except OSError:
        return 1
