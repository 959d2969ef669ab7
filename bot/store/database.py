"""SQLite persistence: the only module that writes SQL.

One aiosqlite connection in autocommit mode; every multi-statement change runs inside one
explicit transaction under a lock, so a crash (even SIGKILL) leaves either all of it or none.
Numbered migrations in `bot/migrations/` run at start.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import aiosqlite
from pydantic import BaseModel, ConfigDict

from bot.models import IncomingMessage
from bot.ops import faults

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


class StoredMessage(Record):
    event_id: str
    room_id: str
    sender: str
    sender_name: str
    body: str
    timestamp_ms: int
    thread_root_id: str | None = None


class ConversationTurn(Record):
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
    documents: int = 0


INSERT_MESSAGE = (
    "INSERT OR IGNORE INTO room_messages "
    "(event_id, room_id, sender, sender_name, body, timestamp_ms, thread_root_id) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)


def _message_row(m: StoredMessage) -> tuple[str, str, str, str, str, int, str | None]:
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


class Store:
    """Async access to the bot's database. Create with `await Store.open(path)`."""

    def __init__(self, connection: aiosqlite.Connection) -> None:
        self._db = connection
        self._write_lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path) -> Store:
        path.parent.mkdir(parents=True, exist_ok=True)
        connection = await aiosqlite.connect(path, isolation_level=None)
        with contextlib.suppress(OSError):
            os.chmod(path, 0o600)  # holds the access token and people's messages
        connection.row_factory = aiosqlite.Row
        await connection.execute("PRAGMA journal_mode=WAL")
        await connection.execute("PRAGMA synchronous=NORMAL")
        await connection.execute("PRAGMA foreign_keys=ON")
        await connection.execute("PRAGMA busy_timeout=5000")
        store = cls(connection)
        await store.migrate()
        return store

    async def close(self) -> None:
        await self._db.close()

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._write_lock:
            await self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                await self._db.execute("ROLLBACK")
                raise
            await self._db.execute("COMMIT")

    async def _fetchone(self, sql: str, params: Sequence[Any] = ()) -> aiosqlite.Row | None:
        async with self._db.execute(sql, params) as cursor:
            return await cursor.fetchone()

    async def _fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[aiosqlite.Row]:
        async with self._db.execute(sql, params) as cursor:
            return list(await cursor.fetchall())

    # --- Schema ---------------------------------------------------------------------------------
    async def migrate(self) -> int:
        """Apply pending numbered migrations; returns the schema version."""
        row = await self._fetchone("PRAGMA user_version")
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

    # --- Session and state ----------------------------------------------------------------------
    async def load_session(self) -> Session | None:
        row = await self._fetchone(
            "SELECT user_id, device_id, access_token FROM session WHERE id = 1"
        )
        return Session(**dict(row)) if row else None

    async def save_session(self, session: Session) -> None:
        async with self._transaction() as db:
            await db.execute(
                "INSERT OR REPLACE INTO session (id, user_id, device_id, access_token) VALUES (1, ?, ?, ?)",
                (session.user_id, session.device_id, session.access_token),
            )

    async def get_state(self, key: str) -> str | None:
        row = await self._fetchone("SELECT value FROM bot_state WHERE key = ?", (key,))
        return str(row[0]) if row else None

    async def set_state(self, key: str, value: str) -> None:
        async with self._transaction() as db:
            await db.execute(
                "INSERT OR REPLACE INTO bot_state (key, value) VALUES (?, ?)", (key, value)
            )

    # --- Rooms ----------------------------------------------------------------------------------
    async def remember_room(self, room_id: str, is_direct: bool) -> None:
        async with self._transaction() as db:
            await db.execute(
                "INSERT INTO rooms (room_id, is_direct, joined_at) VALUES (?, ?, ?) "
                "ON CONFLICT(room_id) DO UPDATE SET is_direct = max(is_direct, excluded.is_direct)",
                (room_id, int(is_direct), now_ms()),
            )

    async def is_direct_room(self, room_id: str) -> bool:
        row = await self._fetchone("SELECT is_direct FROM rooms WHERE room_id = ?", (room_id,))
        return bool(row and row[0])

    async def known_room_ids(self) -> list[str]:
        return [str(row[0]) for row in await self._fetchall("SELECT room_id FROM rooms")]

    async def rooms_with_data(self) -> list[str]:
        """Every room something is stored about (retention must not miss unregistered ones)."""
        rows = await self._fetchall(
            "SELECT room_id FROM rooms UNION SELECT room_id FROM room_messages "
            "UNION SELECT room_id FROM conversation_turns UNION SELECT room_id FROM triggers "
            "UNION SELECT room_id FROM documents"
        )
        return [str(row[0]) for row in rows]

    async def forget_room(self, room_id: str) -> None:
        """Delete everything stored about a room the bot left (data protection)."""
        async with self._transaction() as db:
            for table in (
                "room_messages",
                "conversation_turns",
                "triggers",
                "room_settings",
                "settings_audit",
                "room_usage",
                "disabled_commands",
                "custom_commands",
                "schedules",
                "awaiting_keys",
                "documents",  # passages, their index and embeddings follow (cascade)
                "rooms",
            ):
                await db.execute(f"DELETE FROM {table} WHERE room_id = ?", (room_id,))

    # --- Room messages --------------------------------------------------------------------------
    async def save_messages(self, messages: Iterable[StoredMessage]) -> None:
        rows = [_message_row(m) for m in messages]
        if not rows:
            return
        async with self._transaction() as db:
            await db.executemany(INSERT_MESSAGE, rows)

    async def get_message(self, event_id: str) -> StoredMessage | None:
        row = await self._fetchone("SELECT * FROM room_messages WHERE event_id = ?", (event_id,))
        return StoredMessage(**dict(row)) if row else None

    async def apply_edit(self, room_id: str, event_id: str, sender: str, new_body: str) -> None:
        """The stored text becomes the edited text (only the original sender may edit)."""
        async with self._transaction() as db:
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
        async with self._transaction() as db:
            for table in ("room_messages", "conversation_turns"):
                await db.execute(
                    f"DELETE FROM {table} WHERE room_id = ? AND (event_id = ? OR event_id IN "
                    f"({derived}))",
                    (room_id, event_id, event_id, room_id),
                )
            await db.execute(
                "DELETE FROM documents WHERE room_id = ? AND event_id = ?", (room_id, event_id)
            )
            await db.execute(
                "UPDATE triggers SET payload = '{}', status = CASE status WHEN 'pending' "
                "THEN 'skipped' ELSE status END WHERE event_id = ? AND room_id = ?",
                (event_id, room_id),
            )

    async def messages_in_window(
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
            f"SELECT * FROM room_messages WHERE {' AND '.join(clauses)} ORDER BY timestamp_ms DESC"
        )
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        rows = await self._fetchall(sql, params)
        return [StoredMessage(**dict(row)) for row in reversed(rows)]

    async def last_message_time(self, room_id: str, sender: str, before_ms: int) -> int | None:
        row = await self._fetchone(
            "SELECT max(timestamp_ms) FROM room_messages WHERE room_id = ? AND sender = ? AND timestamp_ms < ?",
            (room_id, sender, before_ms),
        )
        return int(row[0]) if row and row[0] is not None else None

    async def purge_messages_older_than(self, room_id: str, cutoff_ms: int) -> int:
        async with self._transaction() as db:
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
        return max(deleted, 0)

    # --- Conversation context -------------------------------------------------------------------
    async def recent_turns(
        self, room_id: str, thread_root_id: str | None, limit: int
    ) -> list[ConversationTurn]:
        rows = await self._fetchall(
            "SELECT role, sender, sender_name, content, event_id, timestamp_ms FROM conversation_turns "
            "WHERE room_id = ? AND thread_root_id IS ? ORDER BY id DESC LIMIT ?",
            (room_id, thread_root_id, limit),
        )
        return [ConversationTurn(**dict(row)) for row in reversed(rows)]

    async def clear_conversation(self, room_id: str) -> int:
        async with self._transaction() as db:
            cursor = await db.execute(
                "DELETE FROM conversation_turns WHERE room_id = ?", (room_id,)
            )
            return max(cursor.rowcount, 0)

    async def clear_room_messages(self, room_id: str) -> int:
        async with self._transaction() as db:
            cursor = await db.execute("DELETE FROM room_messages WHERE room_id = ?", (room_id,))
            deleted = max(cursor.rowcount, 0)
            await db.execute("DELETE FROM documents WHERE room_id = ?", (room_id,))
            return deleted

    # --- Exactly-once triggers ------------------------------------------------------------------
    async def claim_trigger(
        self, message: IncomingMessage, stored: StoredMessage | None = None
    ) -> bool:
        """Record a triggering event (and its text for summaries, in the same transaction: one
        write on the question's path); False if it was already answered (or given up)."""
        async with self._transaction() as db:
            await db.execute(
                "INSERT OR IGNORE INTO triggers (event_id, room_id, sender, status, received_at_ms, "
                "event_timestamp_ms, payload, updated_at_ms) VALUES (?, ?, ?, 'pending', ?, ?, ?, ?)",
                (
                    message.event_id,
                    message.room_id,
                    message.sender,
                    now_ms(),
                    message.timestamp_ms,
                    message.model_dump_json(),
                    now_ms(),
                ),
            )
            async with db.execute(
                "SELECT status FROM triggers WHERE event_id = ?", (message.event_id,)
            ) as cursor:
                row = await cursor.fetchone()
            pending = bool(row and row[0] == "pending")
            if pending and stored is not None:
                await db.execute(INSERT_MESSAGE, _message_row(stored))
        return pending

    async def trigger_status(self, event_id: str) -> TriggerStatus | None:
        row = await self._fetchone("SELECT status FROM triggers WHERE event_id = ?", (event_id,))
        return row[0] if row else None

    async def pending_triggers(self) -> list[IncomingMessage]:
        rows = await self._fetchall(
            "SELECT payload FROM triggers WHERE status = 'pending' ORDER BY received_at_ms"
        )
        return [IncomingMessage.model_validate_json(row[0]) for row in rows]

    async def finish_trigger(
        self,
        message: IncomingMessage,
        status: TriggerStatus,
        *,
        answer_event_id: str | None = None,
        turns: Sequence[ConversationTurn] = (),
        answer_messages: Sequence[StoredMessage] = (),
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        question: bool = True,
    ) -> None:
        """Record the outcome of a trigger and the exchange it produced, atomically.
        Commands pass `question=False`: usage counts questions to the model only."""
        if answer_event_id is not None:
            faults.maybe_crash("after_send_before_record")  # tests only: sent, not recorded
        timestamp = now_ms()
        answered = 1 if status == "answered" and question else 0
        asked = 1 if question else 0
        async with self._transaction() as db:
            await db.execute(
                "UPDATE triggers SET status = ?, answer_event_id = ?, updated_at_ms = ? WHERE event_id = ?",
                (status, answer_event_id, timestamp, message.event_id),
            )
            await db.executemany(
                "INSERT INTO conversation_turns (room_id, thread_root_id, role, sender, sender_name, "
                "content, event_id, timestamp_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        message.room_id,
                        message.thread_root_id,
                        turn.role,
                        turn.sender,
                        turn.sender_name,
                        turn.content,
                        turn.event_id,
                        turn.timestamp_ms,
                    )
                    for turn in turns
                ],
            )
            await db.executemany(INSERT_MESSAGE, [_message_row(m) for m in answer_messages])
            await db.execute(
                "INSERT INTO room_usage (room_id, questions, answers, prompt_tokens, completion_tokens, "
                "last_activity_ms) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(room_id) DO UPDATE SET "
                "questions = questions + excluded.questions, answers = answers + excluded.answers, "
                "prompt_tokens = prompt_tokens + excluded.prompt_tokens, "
                "completion_tokens = completion_tokens + excluded.completion_tokens, "
                "last_activity_ms = excluded.last_activity_ms",
                (message.room_id, asked, answered, prompt_tokens, completion_tokens, timestamp),
            )

    async def record_usage(self, room_id: str, prompt_tokens: int, completion_tokens: int) -> None:
        """Tokens spent outside a question (summaries, commands)."""
        async with self._transaction() as db:
            await db.execute(
                "INSERT INTO room_usage (room_id, prompt_tokens, completion_tokens, last_activity_ms) "
                "VALUES (?, ?, ?, ?) ON CONFLICT(room_id) DO UPDATE SET "
                "prompt_tokens = prompt_tokens + excluded.prompt_tokens, "
                "completion_tokens = completion_tokens + excluded.completion_tokens, "
                "last_activity_ms = excluded.last_activity_ms",
                (room_id, prompt_tokens, completion_tokens, now_ms()),
            )

    async def room_usage(self, room_id: str) -> RoomUsage:
        row = await self._fetchone(
            "SELECT questions, answers, prompt_tokens, completion_tokens, last_activity_ms "
            "FROM room_usage WHERE room_id = ?",
            (room_id,),
        )
        return RoomUsage(**dict(row)) if row else RoomUsage()

    # --- Room settings --------------------------------------------------------------------------
    async def room_settings(self, room_id: str) -> dict[str, Any]:
        row = await self._fetchone(
            "SELECT settings FROM room_settings WHERE room_id = ?", (room_id,)
        )
        return dict(json.loads(row[0])) if row else {}

    async def all_room_settings(self) -> dict[str, dict[str, Any]]:
        rows = await self._fetchall("SELECT room_id, settings FROM room_settings")
        return {str(row[0]): dict(json.loads(row[1])) for row in rows}

    async def change_room_setting(
        self,
        room_id: str,
        user_id: str,
        key: str,
        settings: dict[str, Any],
        old: str | None,
        new: str | None,
    ) -> None:
        """Save a room's settings and the audit row of the change in one transaction."""
        timestamp = now_ms()
        async with self._transaction() as db:
            await db.execute(
                "INSERT OR REPLACE INTO room_settings (room_id, settings, updated_at_ms) VALUES (?, ?, ?)",
                (room_id, json.dumps(settings, ensure_ascii=False), timestamp),
            )
            await db.execute(
                "INSERT INTO settings_audit (room_id, user_id, key, old_value, new_value, changed_at_ms) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (room_id, user_id, key, old, new, timestamp),
            )

    async def settings_audit(self, room_id: str) -> list[SettingChange]:
        rows = await self._fetchall(
            "SELECT room_id, user_id, key, old_value, new_value, changed_at_ms FROM settings_audit "
            "WHERE room_id = ? ORDER BY id",
            (room_id,),
        )
        return [SettingChange(**dict(row)) for row in rows]

    # --- Data subject requests ------------------------------------------------------------------
    async def export_user(self, user_id: str) -> dict[str, Any]:
        messages = await self._fetchall(
            "SELECT * FROM room_messages WHERE sender = ? ORDER BY timestamp_ms", (user_id,)
        )
        turns = await self._fetchall(
            "SELECT room_id, thread_root_id, role, content, event_id, timestamp_ms "
            "FROM conversation_turns WHERE sender = ? ORDER BY id",
            (user_id,),
        )
        audit = await self._fetchall(
            "SELECT room_id, key, old_value, new_value, changed_at_ms FROM settings_audit "
            "WHERE user_id = ? ORDER BY id",
            (user_id,),
        )
        return {
            "user_id": user_id,
            "messages": [dict(row) for row in messages],
            "conversation_turns": [dict(row) for row in turns],
            "settings_changes": [dict(row) for row in audit],
            "documents": [
                {**dict(row), "text": str(row["text"] or "")}
                for row in await self._fetchall(
                    "SELECT d.room_id, d.event_id, d.name, d.mimetype, d.pages, d.timestamp_ms, "
                    "group_concat(p.text, char(10) || char(10)) AS text FROM documents d "
                    "LEFT JOIN (SELECT document_id, text FROM document_passages ORDER BY position) p "
                    "ON p.document_id = d.id WHERE d.sender = ? GROUP BY d.id ORDER BY d.timestamp_ms",
                    (user_id,),
                )
            ],
        }

    async def purge_user(self, user_id: str) -> UserDataDeleted:
        async with self._transaction() as db:
            cursor = await db.execute("DELETE FROM room_messages WHERE sender = ?", (user_id,))
            messages = max(cursor.rowcount, 0)
            cursor = await db.execute("DELETE FROM conversation_turns WHERE sender = ?", (user_id,))
            turns = max(cursor.rowcount, 0)
            # The bot's answers to this user's questions are built from them: they go too.
            answers = (
                "SELECT answer_event_id FROM triggers WHERE sender = ? "
                "AND answer_event_id IS NOT NULL"
            )
            cursor = await db.execute(
                f"DELETE FROM conversation_turns WHERE role = 'assistant' AND event_id IN ({answers})",
                (user_id,),
            )
            turns += max(cursor.rowcount, 0)
            await db.execute(f"DELETE FROM room_messages WHERE event_id IN ({answers})", (user_id,))
            await db.execute(
                "UPDATE triggers SET payload = '{}' WHERE sender = ? AND status != 'pending'",
                (user_id,),
            )
            await db.execute(
                "DELETE FROM triggers WHERE sender = ? AND status = 'pending'", (user_id,)
            )
            cursor = await db.execute("DELETE FROM documents WHERE sender = ?", (user_id,))
            documents = max(cursor.rowcount, 0)
        return UserDataDeleted(messages=messages, conversation_turns=turns, documents=documents)

    # --- Room commands: disabled built-ins, custom commands, schedules ----------------------------
    async def disabled_commands(self) -> dict[str, set[str]]:
        rows = await self._fetchall("SELECT room_id, command FROM disabled_commands")
        disabled: dict[str, set[str]] = {}
        for row in rows:
            disabled.setdefault(str(row[0]), set()).add(str(row[1]))
        return disabled

    async def set_command_enabled(
        self, room_id: str, command: str, user_id: str, enabled: bool
    ) -> None:
        """Enable or disable a command in a room, with its audit row."""
        timestamp = now_ms()
        async with self._transaction() as db:
            if enabled:
                await db.execute(
                    "DELETE FROM disabled_commands WHERE room_id = ? AND command = ?",
                    (room_id, command),
                )
            else:
                await db.execute(
                    "INSERT OR REPLACE INTO disabled_commands (room_id, command, disabled_by, disabled_at_ms) "
                    "VALUES (?, ?, ?, ?)",
                    (room_id, command, user_id, timestamp),
                )
            await self._audit(
                db,
                room_id,
                user_id,
                f"commande:{command}",
                None,
                "activée" if enabled else "désactivée",
                timestamp,
            )

    async def custom_commands(self) -> list[CustomCommand]:
        rows = await self._fetchall("SELECT * FROM custom_commands ORDER BY room_id, name")
        return [CustomCommand(**dict(row)) for row in rows]

    async def save_custom_command(self, command: CustomCommand, old_template: str | None) -> None:
        async with self._transaction() as db:
            await db.execute(
                "INSERT OR REPLACE INTO custom_commands (room_id, name, template, description, created_by, "
                "created_at_ms) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    command.room_id,
                    command.name,
                    command.template,
                    command.description,
                    command.created_by,
                    command.created_at_ms,
                ),
            )
            await self._audit(
                db,
                command.room_id,
                command.created_by,
                f"commande-perso:{command.name}",
                old_template,
                command.template,
                command.created_at_ms,
            )

    async def delete_custom_command(
        self, room_id: str, name: str, user_id: str, old_template: str
    ) -> None:
        async with self._transaction() as db:
            await db.execute(
                "DELETE FROM custom_commands WHERE room_id = ? AND name = ?", (room_id, name)
            )
            await self._audit(
                db, room_id, user_id, f"commande-perso:{name}", old_template, None, now_ms()
            )

    async def add_schedule(
        self, room_id: str, spec: str, command_line: str, user_id: str, next_run_ms: int
    ) -> int:
        timestamp = now_ms()
        async with self._transaction() as db:
            cursor = await db.execute(
                "INSERT INTO schedules (room_id, spec, command_line, created_by, created_at_ms, next_run_ms) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (room_id, spec, command_line, user_id, timestamp, next_run_ms),
            )
            schedule_id = int(cursor.lastrowid or 0)
            await self._audit(
                db,
                room_id,
                user_id,
                f"planification:{schedule_id}",
                None,
                f"{spec} → {command_line}",
                timestamp,
            )
        return schedule_id

    async def schedules(self, room_id: str | None = None) -> list[Schedule]:
        if room_id is None:
            rows = await self._fetchall("SELECT * FROM schedules ORDER BY next_run_ms")
        else:
            rows = await self._fetchall(
                "SELECT * FROM schedules WHERE room_id = ? ORDER BY id", (room_id,)
            )
        return [Schedule(**dict(row)) for row in rows]

    async def delete_schedule(self, room_id: str, schedule_id: int, user_id: str) -> bool:
        async with self._transaction() as db:
            cursor = await db.execute(
                "DELETE FROM schedules WHERE room_id = ? AND id = ?", (room_id, schedule_id)
            )
            deleted = cursor.rowcount > 0
            if deleted:
                await self._audit(
                    db, room_id, user_id, f"planification:{schedule_id}", "active", None, now_ms()
                )
        return deleted

    async def advance_schedule(
        self, schedule_id: int, expected_next_ms: int, ran_at_ms: int | None, next_run_ms: int
    ) -> bool:
        """Move a schedule to its next run; False if another run already moved it (never twice)."""
        async with self._transaction() as db:
            cursor = await db.execute(
                "UPDATE schedules SET next_run_ms = ?, last_run_ms = coalesce(?, last_run_ms) "
                "WHERE id = ? AND next_run_ms = ?",
                (next_run_ms, ran_at_ms, schedule_id, expected_next_ms),
            )
            return cursor.rowcount > 0

    @staticmethod
    async def _audit(
        db: aiosqlite.Connection,
        room_id: str,
        user_id: str,
        key: str,
        old: str | None,
        new: str | None,
        timestamp: int,
    ) -> None:
        await db.execute(
            "INSERT INTO settings_audit (room_id, user_id, key, old_value, new_value, changed_at_ms) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (room_id, user_id, key, old, new, timestamp),
        )

    # --- Encrypted events waiting for their room key ----------------------------------------
    async def save_awaiting_key(
        self, room_id: str, event_id: str, session_id: str, source: str
    ) -> None:
        async with self._transaction() as db:
            await db.execute(
                "INSERT OR IGNORE INTO awaiting_keys (event_id, room_id, session_id, source, received_at_ms) "
                "VALUES (?, ?, ?, ?, ?)",
                (event_id, room_id, session_id, source, now_ms()),
            )

    async def awaiting_keys(self, since_ms: int) -> list[tuple[str, str]]:
        """(room_id, encrypted event JSON) of events still waiting, received after `since_ms`."""
        async with self._transaction() as db:
            await db.execute("DELETE FROM awaiting_keys WHERE received_at_ms < ?", (since_ms,))
        rows = await self._fetchall(
            "SELECT room_id, source FROM awaiting_keys ORDER BY received_at_ms"
        )
        return [(str(row[0]), str(row[1])) for row in rows]

    async def forget_awaiting_key(self, event_id: str) -> None:
        async with self._transaction() as db:
            await db.execute("DELETE FROM awaiting_keys WHERE event_id = ?", (event_id,))
