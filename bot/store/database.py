"""The SQLite connection, transactions, migrations and the records the repositories return.

One aiosqlite connection in autocommit mode; every multi-statement change runs inside one
explicit transaction under a lock, so a crash (even SIGKILL) leaves either all of it or none.
Numbered migrations in `bot/store/migrations/` run at start. Only `bot/store/` writes SQL.

Every call into aiosqlite is one hop to its thread and back (a queue, a thread wake-up, a
wake-up of the event loop): on a busy machine each costs far more than the statement itself.
So a read is one `execute_fetchall` (not execute + fetchone + close), a single-statement write
runs alone in autocommit (atomic by itself, no BEGIN/COMMIT around it), and statements return
what their caller needs (`RETURNING`) instead of a SELECT after them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from types import ModuleType
from typing import Any, Literal, TypeVar

import aiosqlite
from pydantic import BaseModel, ConfigDict

T = TypeVar("T")

TriggerStatus = Literal["pending", "answered", "failed", "skipped"]
Role = Literal["user", "assistant"]


def now_ms() -> int:
    return int(time.time() * 1000)


class Record(BaseModel):
    model_config = ConfigDict(frozen=True)


class Session(Record):
    user_id: str
    device_id: str
    access_token: str


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """A plain dataclass, not a `Record`, for the reason `ConversationTurn` gives: a summary
    reads up to 10,000 of them back, and pydantic's validation took ~8 µs each (40 ms for
    `!resume 5000`, on the event loop, before the first model call)."""

    event_id: str
    room_id: str
    sender: str
    sender_name: str
    body: str
    timestamp_ms: int
    thread_root_id: str | None = None


@dataclass(frozen=True, slots=True)
class ConversationTurn:
    """A plain dataclass, not a `Record`: every question reads up to 400 of
    them back from SQLite, whose columns are already typed (pydantic validation cost ~5 µs
    a row there, more than the query)."""

    role: Role
    sender: str
    sender_name: str
    content: str
    event_id: str
    timestamp_ms: int


class SettingChange(Record):
    room_id: str
    user_id: str
    key: str
    old_value: str | None
    new_value: str | None
    changed_at_ms: int


class RoomUsage(Record):
    questions: int = 0
    answers: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    last_activity_ms: int | None = None


class CustomCommand(Record):
    room_id: str
    name: str
    template: str
    description: str
    created_by: str
    created_at_ms: int


class Schedule(Record):
    id: int
    room_id: str
    spec: str
    command_line: str
    created_by: str
    created_at_ms: int
    next_run_ms: int
    last_run_ms: int | None = None


class UserDataDeleted(Record):
    messages: int
    conversation_turns: int
    questions_withdrawn: int = 0
    custom_commands: int = 0
    schedules: int = 0
    audit_texts: int = 0
    documents: int = 0


# The columns of `room_messages` in the order of `StoredMessage`'s fields.
MESSAGE_COLUMNS = "event_id, room_id, sender, sender_name, body, timestamp_ms, thread_root_id"
INSERT_MESSAGE = (
    f"INSERT OR IGNORE INTO room_messages ({MESSAGE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"
)


def message_row(m: StoredMessage) -> tuple[str, str, str, str, str, int, str | None]:
    return (
        m.event_id,
        m.room_id,
        m.sender,
        m.sender_name,
        m.body,
        m.timestamp_ms,
        m.thread_root_id,
    )


def _migrations() -> list[tuple[int, str]]:
    folder = resources.files("bot.store") / "migrations"
    found = []
    for entry in folder.iterdir():
        name = entry.name
        if name.endswith(".sql") and name[:4].isdigit():
            found.append((int(name[:4]), entry.read_text(encoding="utf-8")))
    return sorted(found)


# SQLite's own page cache (its default is 2,000 KiB). The database file stays in the kernel's
# page cache, so a page SQLite no longer holds costs one read of memory, not of disk; the
# bot's queries (a room's recent turns, by index) touch few pages. Figure 5 measured both.
PAGE_CACHE_KIB = 512


def atomically(connection: sqlite3.Connection, work: Callable[[sqlite3.Connection], T]) -> T:
    """`work` in one transaction, on aiosqlite's thread (inside `in_one_hop`)."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        result = work(connection)
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:  # never leave the one connection mid-transaction
            connection.execute("ROLLBACK")
        raise
    return result


class Database:
    """One aiosqlite connection; every write holds its write lock (`write`, `transaction`,
    `in_one_hop`). Open with `await Database.open(path)`."""

    def __init__(self, connection: aiosqlite.Connection, driver: ModuleType = sqlite3) -> None:
        self._db = connection
        self._driver = driver
        self._write_lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path, driver: ModuleType = sqlite3) -> Database:
        """`driver` is the DB-API module under aiosqlite: the standard `sqlite3`, or one with
        the same interface (`pysqlite3.dbapi2`) where this Python's cannot load extensions."""
        path.parent.mkdir(parents=True, exist_ok=True)
        location = str(path)
        connection = await aiosqlite.Connection(
            lambda: driver.connect(location, isolation_level=None), iter_chunk_size=64
        )
        with contextlib.suppress(OSError):
            os.chmod(path, 0o600)  # holds the access token and people's messages
        connection.row_factory = driver.Row
        await connection.execute("PRAGMA journal_mode=WAL")
        await connection.execute("PRAGMA synchronous=NORMAL")
        await connection.execute("PRAGMA foreign_keys=ON")
        await connection.execute("PRAGMA busy_timeout=5000")
        await connection.execute(f"PRAGMA cache_size=-{PAGE_CACHE_KIB}")
        store = cls(connection, driver)
        await store.migrate()
        return store

    async def close(self) -> None:
        await self._db.close()

    @property
    def can_load_extensions(self) -> bool:
        """Builds of Python without `--enable-loadable-sqlite-extensions` (pyenv's default)
        lack the method altogether; the official Docker images have it."""
        return hasattr(self._driver.Connection, "enable_load_extension")

    async def load_extension(self, path: str) -> None:
        """Load a SQLite extension, allowing extension loading only for that moment."""
        await self._db.enable_load_extension(True)
        try:
            await self._db.load_extension(path)
        finally:
            await self._db.enable_load_extension(False)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """Several statements, all or none (BEGIN and COMMIT: two hops more than the statements)."""
        async with self._write_lock:
            await self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                await self._db.execute("ROLLBACK")
                raise
            await self._db.execute("COMMIT")

    async def write(self, sql: str, params: Sequence[Any] = ()) -> int:
        """One write statement, atomic alone (autocommit): one hop. Returns the rows changed."""
        async with self._write_lock:
            cursor = await self._db.execute(sql, params)
        return max(cursor.rowcount, 0)

    async def write_returning(self, sql: str, params: Sequence[Any] = ()) -> list[aiosqlite.Row]:
        """One write statement with `RETURNING`, atomic alone: one hop, the returned rows."""
        async with self._write_lock:
            return list(await self._db.execute_fetchall(sql, params))

    async def in_one_hop(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """`work` runs on aiosqlite's thread with its connection: several statements for the
        price of one hop (each hop is a thread hand-over and a loop wake-up, ~0.15 ms, more
        than the statements themselves), with no other statement of this process between
        them. aiosqlite has no public call for this; `_execute` is the one all its public
        methods go through (the version is pinned, and the store's tests exercise this)."""
        connection = self._db
        async with self._write_lock:
            result: T = await connection._execute(  # type: ignore[no-untyped-call]
                lambda: work(connection._conn)
            )
        return result

    async def in_one_transaction(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """`in_one_hop` with `work` between BEGIN IMMEDIATE and COMMIT: all of it or none."""
        return await self.in_one_hop(lambda connection: atomically(connection, work))

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> aiosqlite.Row | None:
        """The first row (one hop: the query should name one row, or say LIMIT 1)."""
        rows = await self._db.execute_fetchall(sql, params)
        return next(iter(rows), None)

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[aiosqlite.Row]:
        return list(await self._db.execute_fetchall(sql, params))

    async def migrate(self) -> int:
        """Apply pending numbered migrations; returns the schema version."""
        row = await self.fetchone("PRAGMA user_version")
        version = int(row[0]) if row else 0
        for number, sql in _migrations():
            if number <= version:
                continue
            async with self._write_lock:
                await self._db.executescript(
                    f"BEGIN IMMEDIATE;\n{sql}\nPRAGMA user_version={number};\nCOMMIT;"
                )
            version = number
        return version
