"""The HTTP transport under the mistralai SDK's client: aiohttp instead of httpcore.

Why: a streamed answer comes as one HTTP chunk per token. httpcore hands every chunk through
h11's pure-Python parser and an anyio cancel scope: about half of the bot's CPU for a streamed
answer went there (bench/, figure 3's profile). aiohttp, already the bot's HTTP library through
matrix-nio, parses HTTP in C.

The socket is read only while the body is being pulled (reading is paused in between, as
httpcore does): the paced reading of streams (bot/answer/stream_pacing.py) lets the model's
tokens wait in the kernel's buffer, then takes them all in one read instead of waking the
event loop for each one.

How: an `httpx2.AsyncBaseTransport`, the extension point httpx offers (the SDK gets the client
through its `async_client` parameter and is not touched). Requests go out as httpx built them,
without redirects or decompression (httpx does both, as with its own transport); the SDK's
per-request timeouts become aiohttp's; aiohttp's failures become the httpx exceptions that the
SDK and `bot.answer.llm` classify.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import httpx2

# Written by aiohttp from the request itself (or meaningless once httpx has framed the body).
_SKIPPED_REQUEST_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})


def _timeout(request: httpx2.Request) -> aiohttp.ClientTimeout:
    """httpx's per-phase timeouts (the SDK's `timeout_ms` sets them) in aiohttp's terms."""
    timeouts: dict[str, Any] = request.extensions.get("timeout", {})
    connect, read, pool = timeouts.get("connect"), timeouts.get("read"), timeouts.get("pool")
    return aiohttp.ClientTimeout(
        total=None,
        connect=None if connect is None or pool is None else connect + pool,
        sock_connect=connect,
        sock_read=read,
    )


def as_httpx_error(error: BaseException, request: httpx2.Request) -> httpx2.TransportError:
    """The httpx exception for an aiohttp failure: retries and error kinds stay the same."""
    if isinstance(error, aiohttp.ClientProxyConnectionError):
        return httpx2.ProxyError(str(error), request=request)
    if isinstance(error, aiohttp.ConnectionTimeoutError):
        return httpx2.ConnectTimeout(str(error) or "connect timeout", request=request)
    if isinstance(error, (aiohttp.SocketTimeoutError, TimeoutError)):
        return httpx2.ReadTimeout(str(error) or "read timeout", request=request)
    if isinstance(error, aiohttp.ClientConnectorError):
        return httpx2.ConnectError(str(error), request=request)
    if isinstance(error, (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError)):
        return httpx2.RemoteProtocolError(str(error) or "server disconnected", request=request)
    return httpx2.ReadError(str(error) or type(error).__name__, request=request)


class _ResponseBody(httpx2.AsyncByteStream):
    """A response body read on demand: everything buffered at each pull, nothing in between."""

    def __init__(self, response: aiohttp.ClientResponse, request: httpx2.Request) -> None:
        self._response = response
        self._request = request

    def _reading(self, on: bool) -> None:
        connection = self._response.connection
        protocol = connection.protocol if connection is not None else None
        if protocol is not None:
            if on:
                protocol.resume_reading()
            else:
                protocol.pause_reading()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        content = self._response.content
        try:
            while True:
                self._reading(True)
                part = await content.readany()
                self._reading(False)
                if not part:
                    return
                yield part
        except (aiohttp.ClientError, TimeoutError) as error:
            raise as_httpx_error(error, self._request) from error
        finally:
            self._reading(True)  # the connection goes back to the pool readable

    async def aclose(self) -> None:
        self._response.release()


class AiohttpTransport(httpx2.AsyncBaseTransport):
    """One aiohttp session (its own connection pool) for the SDK's requests."""

    def __init__(self, *, max_connections: int, proxy: str | None = None) -> None:
        self._max_connections = max_connections
        self._proxy = proxy
        self._session: aiohttp.ClientSession | None = None

    def _open_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=self._max_connections, limit_per_host=self._max_connections
                ),
                auto_decompress=False,  # httpx decodes by Content-Encoding, as it always does
                skip_auto_headers=("Accept-Encoding", "User-Agent", "Content-Type"),
                trust_env=False,  # the proxy is decided by bot.ops.proxy
            )
        return self._session

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        session = self._open_session()
        headers = [
            (name, value)
            for name, value in request.headers.multi_items()
            if name.lower() not in _SKIPPED_REQUEST_HEADERS
        ]
        body = await request.aread()
        try:
            response = await session.request(
                request.method,
                str(request.url),
                headers=headers,
                data=body or None,
                proxy=self._proxy,
                timeout=_timeout(request),
                allow_redirects=False,
            )
        except (aiohttp.ClientError, TimeoutError) as error:
            raise as_httpx_error(error, request) from error
        return httpx2.Response(
            status_code=response.status,
            headers=[
                (name.decode("latin-1"), value.decode("latin-1"))
                for name, value in response.raw_headers
            ],
            stream=_ResponseBody(response, request),
            extensions={"http_version": b"HTTP/1.1"},
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
