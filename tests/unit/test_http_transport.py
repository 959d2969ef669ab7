"""The SDK's HTTP transport (aiohttp under httpx): bodies read on demand, failures as httpx's."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import aiohttp
import httpx2
import pytest
from aiohttp import web

from bot.answer.http_transport import AiohttpTransport, _ResponseBody, as_httpx_error

TOKENS = 60


async def _chunks_then_pause(request: web.Request) -> web.StreamResponse:
    """One HTTP chunk per token, 5 ms apart (a model writing 200 tokens/s)."""
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    for index in range(TOKENS):
        await response.write(f"data: {index}\n\n".encode())
        await asyncio.sleep(0.005)
    await response.write_eof()
    return response


async def _echo(request: web.Request) -> web.Response:
    body = await request.read()
    return web.json_response(
        {"method": request.method, "body": body.decode(), "type": request.content_type},
        status=201,
    )


@pytest.fixture
async def server() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_get("/stream", _chunks_then_pause)
    app.router.add_post("/echo", _echo)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_requests_and_responses_go_through_as_httpx_built_them(server: str) -> None:
    async with httpx2.AsyncClient(transport=AiohttpTransport(max_connections=4)) as client:
        response = await client.post(f"{server}/echo", json={"q": "été"})
    assert response.status_code == 201
    assert response.json() == {"method": "POST", "body": '{"q":"été"}', "type": "application/json"}


async def test_a_slow_reader_gets_the_tokens_in_few_large_parts(server: str) -> None:
    parts: list[bytes] = []
    async with (
        httpx2.AsyncClient(transport=AiohttpTransport(max_connections=4)) as client,
        client.stream("GET", f"{server}/stream") as response,
    ):
        async for part in response.aiter_raw():
            parts.append(part)
            await asyncio.sleep(0.1)  # the edit interval, shortened
    assert b"".join(parts) == b"".join(f"data: {i}\n\n".encode() for i in range(TOKENS))
    assert len(parts) <= TOKENS // 5, len(parts)


async def test_the_socket_is_not_read_between_pulls(server: str) -> None:
    """While the reader is busy, the tokens wait in the kernel's buffer (no event-loop wake-up
    per token); the next pull takes them all."""
    request = httpx2.Request("GET", f"{server}/stream")
    async with aiohttp.ClientSession() as session:
        response = await session.get(f"{server}/stream")
        body = _ResponseBody(response, request)
        connection = response.connection
        assert connection is not None and connection.transport is not None
        transport = connection.transport
        reading_between_pulls = []
        async for _ in body:
            if response.connection is not None:  # not yet back in the pool (body complete)
                reading_between_pulls.append(transport.is_reading())
            await asyncio.sleep(0.02)
        await body.aclose()
    assert reading_between_pulls and not any(reading_between_pulls)


async def test_a_refused_connection_is_httpx_connect_error() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with httpx2.AsyncClient(transport=AiohttpTransport(max_connections=1)) as client:
        with pytest.raises(httpx2.ConnectError):
            await client.get(f"http://127.0.0.1:{port}/")


async def test_a_read_timeout_is_httpx_read_timeout(server: str) -> None:
    async with httpx2.AsyncClient(
        transport=AiohttpTransport(max_connections=1), timeout=httpx2.Timeout(5, read=0.001)
    ) as client:
        with pytest.raises(httpx2.ReadTimeout):
            async with client.stream("GET", f"{server}/stream") as response:
                async for _ in response.aiter_raw():
                    pass


def test_aiohttp_failures_map_to_the_httpx_kinds_the_client_retries() -> None:
    request = httpx2.Request("GET", "http://127.0.0.1/")
    disconnected = as_httpx_error(aiohttp.ServerDisconnectedError(), request)
    assert isinstance(disconnected, httpx2.RemoteProtocolError)
    assert isinstance(as_httpx_error(TimeoutError(), request), httpx2.ReadTimeout)
    assert isinstance(as_httpx_error(aiohttp.ClientOSError(), request), httpx2.ReadError)
