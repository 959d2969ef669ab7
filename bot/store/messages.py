"""What was said: room messages (for summaries) and conversation turns (for prompts)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from bot.store.database import (
    INSERT_MESSAGE,
    MESSAGE_COLUMNS,
    ConversationTurn,
    Database,
    StoredMessage,
    message_row,
)

RECENT_TURNS = (
    "SELECT role, sender, sender_name, content, event_id, timestamp_ms FROM conversation_turns "
    "WHERE room_id = ? AND thread_root_id IS ? ORDER BY id DESC LIMIT ?"
)


class TurnsQuery(NamedTuple):
    """A conversation's most recent turns: its room, its thread (None: the main timeline)."""

    room_id: str
    thread_root_id: str | None
    limit: int


def _oldest_first(rows: Iterable[Sequence[Any]]) -> list[ConversationTurn]:
    """RECENT_TURNS' rows, newest first, as turns oldest first (its columns in field order)."""
    return [ConversationTurn(*row) for row in reversed(list(rows))]


def read_recent_turns(connection: sqlite3.Connection, query: TurnsQuery) -> list[ConversationTurn]:
    """On aiosqlite's thread (inside `Database.in_one_hop`)."""
    return _oldest_first(connection.execute(RECENT_TURNS, query).fetchall())


class MessagesRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def save(self, messages: Iterable[StoredMessage]) -> None:
        rows = [message_row(m) for m in messages]
        if len(rows) == 1:
            await self._db.write(INSERT_MESSAGE, rows[0])  # the usual case: one hop
        elif rows:
            async with self._db.transaction() as db:
                await db.executemany(INSERT_MESSAGE, rows)

    async def get(self, event_id: str) -> StoredMessage | None:
        row = await self._db.fetchone(
            f"SELECT {MESSAGE_COLUMNS} FROM room_messages WHERE event_id = ?", (event_id,)
        )
        return StoredMessage(*row) if row else None

    async def apply_edit(self, room_id: str, event_id: str, sender: str, new_body: str) -> None:
        """The stored text becomes the edited text (only the original sender may edit)."""
        async with self._db.transaction() as db:
            await db.execute(
                "UPDATE room_messages SET body = ? WHERE event_id = ? AND room_id = ? AND sender = ?",
                (new_body, event_id, room_id, sender),
            )
            await db.execute(
                "UPDATE conversation_turns SET content = ? "
                "WHERE event_id = ? AND room_id = ? AND sender = ? AND role = 'user'",
                (new_body, event_id, room_id, sender),
            )

    async def delete_event(self, room_id: str, event_id: str) -> None:
        """A redaction: the message leaves the store and every future prompt, and so does the
        bot's answer to it (built from it, it often quotes it). A question redacted before its
        answer is not resumed after a restart."""
        derived = (
            "SELECT answer_event_id FROM triggers WHERE event_id = ? AND room_id = ? "
            "AND answer_event_id IS NOT NULL"
        )
        async with self._db.transaction() as db:
            for table in ("room_messages", "conversation_turns"):
                await db.execute(
                    f"DELETE FROM {table} WHERE room_id = ? AND (event_id = ? OR event_id IN "
                    f"({derived}))",
                    (room_id, event_id, event_id, room_id),
                )
            # A redacted file: its document, passages, index and embeddings go (cascade).
            await db.execute(
                "DELETE FROM documents WHERE room_id = ? AND event_id = ?", (room_id, event_id)
            )
            await db.execute(
                "UPDATE triggers SET payload = '{}', status = CASE status WHEN 'pending' "
                "THEN 'skipped' ELSE status END WHERE event_id = ? AND room_id = ?",
                (event_id, room_id),
            )

    async def in_window(
        self,
        room_id: str,
        *,
        since_ms: int | None = None,
        limit: int | None = None,
        thread_root_id: str | None = None,
        before_ms: int | None = None,
    ) -> list[StoredMessage]:
        """Messages of a room (or of one thread), oldest first, newest `limit` kept."""
        clauses = ["room_id = ?"]
        params: list[Any] = [room_id]
        if thread_root_id is not None:
            clauses.append("(thread_root_id = ? OR event_id = ?)")
            params += [thread_root_id, thread_root_id]
        if since_ms is not None:
            clauses.append("timestamp_ms >= ?")
            params.append(since_ms)
        if before_ms is not None:
            clauses.append("timestamp_ms < ?")
            params.append(before_ms)
        sql = (
            f"SELECT {MESSAGE_COLUMNS} FROM room_messages WHERE {' AND '.join(clauses)} "
            "ORDER BY timestamp_ms DESC"
        )
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        rows = await self._db.fetchall(sql, params)
        return [StoredMessage(*row) for row in reversed(rows)]

    async def last_time(self, room_id: str, sender: str, before_ms: int) -> int | None:
        row = await self._db.fetchone(
            "SELECT max(timestamp_ms) FROM room_messages WHERE room_id = ? AND sender = ? AND timestamp_ms < ?",
            (room_id, sender, before_ms),
        )
        return int(row[0]) if row and row[0] is not None else None

    async def purge_older_than(self, room_id: str, cutoff_ms: int) -> int:
        async with self._db.transaction() as db:
            cursor = await db.execute(
                "DELETE FROM room_messages WHERE room_id = ? AND timestamp_ms < ?",
                (room_id, cutoff_ms),
            )
            deleted = cursor.rowcount
            await db.execute(
                "DELETE FROM conversation_turns WHERE room_id = ? AND timestamp_ms < ?",
                (room_id, cutoff_ms),
            )
            await db.execute(
                "DELETE FROM triggers WHERE room_id = ? AND received_at_ms < ? AND status != 'pending'",
                (room_id, cutoff_ms),
            )
            await db.execute(
                "DELETE FROM documents WHERE room_id = ? AND timestamp_ms < ?", (room_id, cutoff_ms)
            )
            # Which events of the room were answers (room and event IDs): the pilot's feedback
            # rows keep their own kind and model, so a reaction older than this is not needed.
            await db.execute(
                "DELETE FROM bot_answers WHERE room_id = ? AND created_at_ms < ?",
                (room_id, cutoff_ms),
            )
        return max(deleted, 0)

    async def recent_turns(
        self, room_id: str, thread_root_id: str | None, limit: int
    ) -> list[ConversationTurn]:
        return _oldest_first(
            await self._db.fetchall(RECENT_TURNS, (room_id, thread_root_id, limit))
        )

    async def clear_conversation(self, room_id: str) -> int:
        """`!oublie`: the room's context, and the text of every question it recorded."""
        async with self._db.transaction() as db:
            cursor = await db.execute(
                "DELETE FROM conversation_turns WHERE room_id = ?", (room_id,)
            )
            await db.execute(
                "UPDATE triggers SET payload = '{}' WHERE room_id = ? AND status != 'pending' "
                "AND payload != '{}'",
                (room_id,),
            )
            return max(cursor.rowcount, 0)

    async def clear_room(self, room_id: str) -> int:
        async with self._db.transaction() as db:
            cursor = await db.execute("DELETE FROM room_messages WHERE room_id = ?", (room_id,))
            deleted = max(cursor.rowcount, 0)
            await db.execute("DELETE FROM documents WHERE room_id = ?", (room_id,))
            return deleted
