"""A small HTTP proxy for the tests: CONNECT tunnels and absolute-form requests, counted.

Just enough of RFC 9110's proxy behaviour for what the bot's clients do: nio (aiohttp_socks)
opens CONNECT tunnels, httpx sends `GET http://host:port/path` to the proxy for plain-HTTP
targets. Each request's target (host:port, and the path when visible) is recorded, so a test
can prove which traffic went through the proxy. Loopback only.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass
class LocalProxy:
    host: str = "127.0.0.1"
    port: int = 0
    seen: list[tuple[str, str]] = field(default_factory=list)  # (method, target)
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def targets(self) -> set[str]:
        """host:port of every target reached through the proxy."""
        found = set()
        for method, target in self.seen:
            found.add(target if method == "CONNECT" else urlsplit(target).netloc)
        return found

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._client, self.host, self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._server.wait_closed()
            self._server = None

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)  # type: ignore[arg-type]
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            self._tasks.discard(task)  # type: ignore[arg-type]
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            request_line, *header_lines = head.decode("latin-1").split("\r\n")
            method, target, version = request_line.split(" ", 2)
            self.seen.append((method, target))
            if method == "CONNECT":
                host, _, port = target.rpartition(":")
                upstream_reader, upstream_writer = await asyncio.open_connection(host, int(port))
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                await writer.drain()
                await _pipe_both(reader, writer, upstream_reader, upstream_writer)
                return
            # Absolute form: forward to the origin, one request per upstream connection.
            parts = urlsplit(target)
            headers = [line for line in header_lines if line]
            length = 0
            chunked = False
            kept = []
            for line in headers:
                name, _, value = line.partition(":")
                lowered = name.strip().lower()
                if lowered == "content-length":
                    length = int(value.strip())
                if lowered == "transfer-encoding" and "chunked" in value.lower():
                    chunked = True
                if lowered in ("proxy-connection", "connection", "keep-alive"):
                    continue
                kept.append(line)
            body = await _read_body(reader, length, chunked)
            if chunked:
                kept = [line for line in kept if not line.lower().startswith("transfer-encoding")]
                kept.append(f"Content-Length: {len(body)}")
            path = parts.path or "/"
            if parts.query:
                path += "?" + parts.query
            upstream_reader, upstream_writer = await asyncio.open_connection(
                parts.hostname, parts.port or 80
            )
            upstream_writer.write(
                (f"{method} {path} {version}\r\n" + "".join(f"{h}\r\n" for h in kept)).encode(
                    "latin-1"
                )
                + b"Connection: close\r\n\r\n"
                + body
            )
            await upstream_writer.drain()
            # The origin closes after its answer (Connection: close): relay until then.
            while data := await upstream_reader.read(65536):
                writer.write(data)
                await writer.drain()
            upstream_writer.close()
            return  # the client sees the origin's close as the end of a close-delimited reply


async def _read_body(reader: asyncio.StreamReader, length: int, chunked: bool) -> bytes:
    if not chunked:
        return await reader.readexactly(length) if length else b""
    body = b""
    while True:
        size = int((await reader.readuntil(b"\r\n")).strip().split(b";")[0], 16)
        chunk = await reader.readexactly(size + 2)
        if size == 0:
            return body
        body += chunk[:-2]


async def _pipe_both(
    client_reader: asyncio.StreamReader,
    client_writer: asyncio.StreamWriter,
    upstream_reader: asyncio.StreamReader,
    upstream_writer: asyncio.StreamWriter,
) -> None:
    async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        finally:
            with contextlib.suppress(Exception):
                sink.close()

    await asyncio.gather(
        pipe(client_reader, upstream_writer),
        pipe(upstream_reader, client_writer),
        return_exceptions=True,
    )
