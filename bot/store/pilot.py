"""The pilot's tables (migration 0006): usage events, answers, feedback, comments.

No message content and no user ID: people and rooms arrive here already hashed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from bot.store.database import Database

UsageKind = Literal["question", "summary", "document", "custom", "command"]
AnswerKind = Literal["question", "summary", "document", "custom"]
Outcome = Literal["answered", "error", "refused", "quota"]
ANSWER_KINDS: tuple[AnswerKind, ...] = ("question", "summary", "document", "custom")


class Row(BaseModel):
    model_config = ConfigDict(frozen=True)


class UsageEvent(Row):
    at_ms: int
    day: str
    kind: UsageKind
    outcome: Outcome
    homeserver: str
    user_hash: str
    room_hash: str
    model: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    duration_ms: int | None = None


class AnswerRecord(Row):
    event_id: str
    room_id: str
    thread_root_id: str | None = None
    kind: AnswerKind
    model: str
    created_at_ms: int


class Feedback(Row):
    reaction_event_id: str
    answer_event_id: str
    room_hash: str
    user_hash: str
    homeserver: str
    rating: Literal[-1, 1]
    kind: AnswerKind
    model: str
    day: str
    at_ms: int


class Comment(Row):
    at_ms: int
    day: str
    room_hash: str
    user_hash: str
    homeserver: str
    text: str


class AnswerTimes(Row):
    count: int
    median_ms: float
    p95_ms: float


class PilotRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def _all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return await self._db.fetchall(sql, params)

    async def _one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return await self._db.fetchone(sql, params)

    # --- Recording ----------------------------------------------------------------------------
    async def record(self, event: UsageEvent, answers: Sequence[AnswerRecord] = ()) -> None:
        """One usage event and the answer events it produced, in one transaction."""
        insert = (
            "INSERT INTO usage_events (at_ms, day, kind, outcome, homeserver, user_hash, "
            "room_hash, model, prompt_tokens, completion_tokens, duration_ms) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        )
        row = (
            event.at_ms,
            event.day,
            event.kind,
            event.outcome,
            event.homeserver,
            event.user_hash,
            event.room_hash,
            event.model,
            event.prompt_tokens,
            event.completion_tokens,
            event.duration_ms,
        )
        if not answers:
            await self._db.write(insert, row)  # one statement: atomic alone
            return
        async with self._db.transaction() as db:
            await db.execute(insert, row)
            await db.executemany(
                "INSERT OR IGNORE INTO bot_answers (event_id, room_id, thread_root_id, kind, model, "
                "created_at_ms) VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (a.event_id, a.room_id, a.thread_root_id, a.kind, a.model, a.created_at_ms)
                    for a in answers
                ],
            )

    async def answer(self, event_id: str) -> AnswerRecord | None:
        row = await self._one(
            "SELECT event_id, room_id, thread_root_id, kind, model, created_at_ms "
            "FROM bot_answers WHERE event_id = ?",
            (event_id,),
        )
        return AnswerRecord(**dict(row)) if row else None

    async def add_feedback(self, feedback: Feedback) -> bool:
        """False when this reaction (or the same person's same rating) is already recorded."""
        changed = await self._db.write(
            "INSERT OR IGNORE INTO feedback (reaction_event_id, answer_event_id, room_hash, "
            "user_hash, homeserver, rating, kind, model, day, at_ms) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                feedback.reaction_event_id,
                feedback.answer_event_id,
                feedback.room_hash,
                feedback.user_hash,
                feedback.homeserver,
                feedback.rating,
                feedback.kind,
                feedback.model,
                feedback.day,
                feedback.at_ms,
            ),
        )
        return changed > 0

    async def remove_feedback(self, room_hash: str, reaction_event_id: str) -> str | None:
        """Un-record a redacted reaction; returns its homeserver, None if it was not feedback."""
        rows = await self._db.write_returning(
            "DELETE FROM feedback WHERE reaction_event_id = ? AND room_hash = ? "
            "RETURNING homeserver",
            (reaction_event_id, room_hash),
        )
        return str(rows[0][0]) if rows else None

    async def acknowledge_dislike(self, answer_event_id: str) -> bool:
        """True only the first time: one acknowledgement per answer, even across restarts."""
        changed = await self._db.write(
            "UPDATE bot_answers SET dislike_acknowledged = 1 "
            "WHERE event_id = ? AND dislike_acknowledged = 0",
            (answer_event_id,),
        )
        return changed > 0

    async def add_comment(self, comment: Comment) -> None:
        await self._db.write(
            "INSERT INTO feedback_comments (at_ms, day, room_hash, user_hash, homeserver, text) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (
                comment.at_ms,
                comment.day,
                comment.room_hash,
                comment.user_hash,
                comment.homeserver,
                comment.text,
            ),
        )

    async def forget_room(self, room_id: str) -> None:
        """The bot left: its answers there can no longer receive reactions."""
        await self._db.write("DELETE FROM bot_answers WHERE room_id = ?", (room_id,))

    async def forget_person(self, user_hash: str) -> int:
        """`!oublie-moi` / `purge-user`: the person's pseudonymous rows go too."""
        deleted = 0
        async with self._db.transaction() as db:
            for table in ("usage_events", "feedback", "feedback_comments"):
                cursor = await db.execute(f"DELETE FROM {table} WHERE user_hash = ?", (user_hash,))
                deleted += max(cursor.rowcount, 0)
        return deleted

    # --- Quotas -------------------------------------------------------------------------------
    async def tokens_on(self, homeserver: str, day: str) -> int:
        row = await self._one(
            "SELECT coalesce(sum(prompt_tokens + completion_tokens), 0) FROM usage_events "
            "WHERE homeserver = ? AND day = ?",
            (homeserver, day),
        )
        return int(row[0]) if row else 0

    async def questions_on(self, user_hash: str, day: str) -> int:
        """Requests to the model that were served today (refusals do not count)."""
        row = await self._one(
            "SELECT count(*) FROM usage_events WHERE user_hash = ? AND day = ? "
            "AND kind != 'command' AND outcome IN ('answered', 'error')",
            (user_hash, day),
        )
        return int(row[0]) if row else 0

    # --- Report -------------------------------------------------------------------------------
    async def daily(self, since_day: str, room_hash: str | None = None) -> list[dict[str, Any]]:
        where, params = _scope(since_day, room_hash)
        rows = await self._all(
            "SELECT day, sum(kind = 'question') AS questions, sum(kind = 'summary') AS summaries, "
            "sum(kind IN ('command', 'custom')) AS commands, sum(kind = 'document') AS documents, "
            "count(DISTINCT user_hash) AS people, count(DISTINCT room_hash) AS rooms, "
            "sum(outcome = 'error') AS errors, sum(outcome IN ('refused', 'quota')) AS refusals, "
            "count(*) AS events, sum(prompt_tokens + completion_tokens) AS tokens "
            f"FROM usage_events WHERE {where} GROUP BY day ORDER BY day",
            params,
        )
        return [dict(row) for row in rows]

    async def answer_times(
        self, since_day: str, room_hash: str | None = None, *, per_day: bool = True
    ) -> dict[str, AnswerTimes]:
        """Median and 95th percentile (nearest rank) of answer times, per day or over the whole
        period (key ""), computed in SQLite: a million events never cross into Python."""
        where, params = _scope(since_day, room_hash)
        group = "day" if per_day else "''"
        rows = await self._all(
            f"WITH answered AS (SELECT {group} AS grp, duration_ms, "
            f"row_number() OVER (PARTITION BY {group} ORDER BY duration_ms) AS rn, "
            f"count(*) OVER (PARTITION BY {group}) AS n FROM usage_events WHERE {where} "
            "AND outcome = 'answered' AND duration_ms IS NOT NULL) "
            "SELECT grp, n, avg(CASE WHEN rn IN ((n + 1) / 2, (n + 2) / 2) THEN duration_ms END), "
            "max(CASE WHEN rn = (95 * n + 99) / 100 THEN duration_ms END) "
            "FROM answered GROUP BY grp",
            params,
        )
        return {
            str(row[0]): AnswerTimes(
                count=int(row[1]), median_ms=float(row[2]), p95_ms=float(row[3])
            )
            for row in rows
        }

    async def people(self, since_day: str, room_hash: str | None = None) -> int:
        where, params = _scope(since_day, room_hash)
        row = await self._one(
            f"SELECT count(DISTINCT user_hash) FROM usage_events WHERE {where}", params
        )
        return int(row[0]) if row else 0

    async def by_homeserver(self, since_day: str) -> list[dict[str, Any]]:
        rows = await self._all(
            "SELECT homeserver, count(*) AS events, sum(kind = 'question') AS questions, "
            "count(DISTINCT user_hash) AS people, count(DISTINCT room_hash) AS rooms, "
            "sum(prompt_tokens + completion_tokens) AS tokens "
            "FROM usage_events WHERE day >= ? GROUP BY homeserver ORDER BY events DESC",
            (since_day,),
        )
        return [dict(row) for row in rows]

    async def by_model(self, since_day: str) -> list[dict[str, Any]]:
        rows = await self._all(
            "SELECT day, model, count(*) AS calls, sum(prompt_tokens) AS prompt_tokens, "
            "sum(completion_tokens) AS completion_tokens, count(DISTINCT user_hash) AS people "
            "FROM usage_events WHERE day >= ? AND model IS NOT NULL "
            "GROUP BY day, model ORDER BY day, model",
            (since_day,),
        )
        return [dict(row) for row in rows]

    async def homeserver_days(self, since_day: str) -> list[dict[str, Any]]:
        rows = await self._all(
            "SELECT homeserver, day, sum(prompt_tokens + completion_tokens) AS tokens, "
            "count(DISTINCT user_hash) AS people, sum(outcome = 'quota') AS quota_refusals "
            "FROM usage_events WHERE day >= ? GROUP BY homeserver, day",
            (since_day,),
        )
        return [dict(row) for row in rows]

    async def person_days_at_cap(self, since_day: str, cap: int) -> list[dict[str, Any]]:
        """Per day: how many people used their whole daily question cap."""
        rows = await self._all(
            "SELECT day, count(*) AS people_at_cap FROM (SELECT day, user_hash FROM usage_events "
            "WHERE day >= ? AND kind != 'command' AND outcome IN ('answered', 'error') "
            "GROUP BY day, user_hash HAVING count(*) >= ?) GROUP BY day",
            (since_day, cap),
        )
        return [dict(row) for row in rows]

    async def satisfaction(
        self, since_day: str, room_hash: str | None = None
    ) -> list[dict[str, Any]]:
        where, params = _scope(since_day, room_hash)
        rows = await self._all(
            "SELECT kind, sum(rating = 1) AS positive, count(*) AS reactions, "
            "count(DISTINCT user_hash) AS people "
            f"FROM feedback WHERE {where} GROUP BY kind ORDER BY kind",
            params,
        )
        return [dict(row) for row in rows]

    async def reacting_people(self, since_day: str, room_hash: str | None = None) -> int:
        where, params = _scope(since_day, room_hash)
        row = await self._one(
            f"SELECT count(DISTINCT user_hash) FROM feedback WHERE {where}", params
        )
        return int(row[0]) if row else 0

    async def latest_comments(self, since_day: str, limit: int) -> list[tuple[str, str]]:
        rows = await self._all(
            "SELECT day, text FROM feedback_comments WHERE day >= ? ORDER BY id DESC LIMIT ?",
            (since_day, limit),
        )
        return [(str(row[0]), str(row[1])) for row in rows]


def _scope(since_day: str, room_hash: str | None) -> tuple[str, tuple[str, ...]]:
    if room_hash is None:
        return "day >= ?", (since_day,)
    return "day >= ? AND room_hash = ?", (since_day, room_hash)
