"""SQL for documents: rows per shared file, passages, FTS5 search, embedding search.

Passages are searched per room only: the FTS query always ANDs the room's token (a word
derived from the room ID, indexed with the passage), and vector search filters on room_id, so
one room's documents can never reach another room's prompt. Embeddings are float32 blobs in
sqlite-vec's layout: ranked in SQL by `vec_distance_cosine` when the connection can load
sqlite-vec, else by numpy over the room's vectors (same order; see tests/unit/test_documents*).
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import structlog
from pydantic import BaseModel, ConfigDict

from bot.store.database import Database, now_ms

if TYPE_CHECKING:  # numpy (~11 MB resident) loads when a room first ranks by embeddings
    import numpy as np

log = structlog.get_logger(__name__)
VECTOR_CACHE_ROOMS = 16


class DocumentRecord(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: int
    room_id: str
    event_id: str
    sender: str
    sender_name: str
    name: str
    mimetype: str | None
    size: int | None
    format: str | None
    pages: int | None
    status: str
    error: str | None
    ocr_pages: int
    passages: int
    chars: int
    embedded: int
    thread_root_id: str | None
    timestamp_ms: int


class StoredPassage(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: int
    document_id: int
    position: int
    label: str
    page: int | None
    text: str
    document_name: str
    event_id: str
    room_id: str


class NewPassage(BaseModel):
    model_config = ConfigDict(frozen=True)

    position: int
    label: str
    page: int | None
    text: str


def room_token(room_id: str) -> str:
    """One FTS word per room: letters and digits only, so the tokenizer keeps it whole."""
    return "room" + hashlib.sha256(room_id.encode()).hexdigest()[:20]


def to_blob(vector: Sequence[float]) -> bytes:
    import numpy as np

    array = np.asarray(vector, dtype=np.float32)
    norm = float(np.linalg.norm(array))
    return (array / norm if norm > 0 else array).astype("<f4").tobytes()


_DOCUMENT_COLUMNS = (
    "id, room_id, event_id, sender, sender_name, name, mimetype, size, format, pages, status, "
    "error, ocr_pages, passages, chars, embedded, thread_root_id, timestamp_ms"
)
_PASSAGE_SELECT = (
    "SELECT p.id, p.document_id, p.position, p.label, p.page, p.text, d.name AS document_name, "
    "d.event_id, d.room_id FROM document_passages p JOIN documents d ON d.id = p.document_id"
)


class DocumentsRepository:
    def __init__(self, db: Database) -> None:
        self._db = db
        self.sqlite_vec = False
        self._vectors: OrderedDict[str, tuple[tuple[Any, ...], np.ndarray, np.ndarray]] = (
            OrderedDict()
        )
        # Rooms where a file was ever registered (loaded once, grown by `register`): most
        # questions come from rooms without any, which then skip the document path entirely.
        # Deleted documents leave their room here: it only costs the full check.
        self._rooms_with_documents: set[str] | None = None
        self._rooms_registered: set[str] = set()  # also those registered while it loads

    async def load_sqlite_vec(self) -> bool:
        """Load sqlite-vec into the connection if this Python's sqlite3 allows extensions."""
        if not self._db.can_load_extensions:
            # Checked first: importing sqlite_vec imports numpy (~11 MB) for nothing.
            log.info("documents.sqlite_vec_unavailable", error_type="NoExtensionLoading")
            self.sqlite_vec = False
            return False
        try:
            import sqlite_vec

            await self._db.load_extension(sqlite_vec.loadable_path())
            self.sqlite_vec = True
        except Exception as error:  # no extension loading in this build of sqlite3
            log.info("documents.sqlite_vec_unavailable", error_type=type(error).__name__)
            self.sqlite_vec = False
        return self.sqlite_vec

    # --- Documents ------------------------------------------------------------------------------
    async def register(
        self,
        *,
        room_id: str,
        event_id: str,
        sender: str,
        sender_name: str,
        name: str,
        mimetype: str | None,
        size: int | None,
        thread_root_id: str | None,
        timestamp_ms: int,
        source: dict[str, Any],
    ) -> int | None:
        """A new pending document; None if this event is already known (a replayed sync)."""
        rows = await self._db.write_returning(
            "INSERT OR IGNORE INTO documents (room_id, event_id, sender, sender_name, name, "
            "mimetype, size, thread_root_id, timestamp_ms, source) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (
                room_id,
                event_id,
                sender,
                sender_name,
                name,
                mimetype,
                size,
                thread_root_id,
                timestamp_ms,
                json.dumps(source),
            ),
        )
        if not rows:
            return None
        self._rooms_registered.add(room_id)
        return int(rows[0][0])

    async def room_may_have_documents(self, room_id: str) -> bool:
        """False only when no file was ever registered in the room (no query after the first)."""
        if self._rooms_with_documents is None:
            rows = await self._db.fetchall("SELECT DISTINCT room_id FROM documents")
            self._rooms_with_documents = {str(row[0]) for row in rows}
        return room_id in self._rooms_registered or room_id in self._rooms_with_documents

    async def pending(self) -> list[tuple[DocumentRecord, str]]:
        rows = await self._db.fetchall(
            f"SELECT {_DOCUMENT_COLUMNS}, source FROM documents "
            "WHERE status = 'pending' AND source IS NOT NULL ORDER BY id"
        )
        return [(_document(row), str(row["source"])) for row in rows]

    async def save_indexed(
        self,
        document_id: int,
        *,
        room_id: str,
        format: str,
        pages: int | None,
        ocr_pages: int,
        passages: Sequence[NewPassage],
        embeddings: Sequence[bytes] | None,
    ) -> bool:
        """Store the passages (and vectors) and mark the document indexed, in one transaction.
        False if the document was deleted meanwhile (redacted while being read)."""
        token = room_token(room_id)
        async with self._db.transaction() as db:
            async with db.execute(
                "SELECT 1 FROM documents WHERE id = ? AND status = 'pending'", (document_id,)
            ) as cursor:
                if await cursor.fetchone() is None:
                    return False
            await db.executemany(
                "INSERT INTO document_passages (document_id, room_id, room_token, position, "
                "label, page, text, embedding) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        document_id,
                        room_id,
                        token,
                        passage.position,
                        passage.label,
                        passage.page,
                        passage.text,
                        embeddings[index] if embeddings is not None else None,
                    )
                    for index, passage in enumerate(passages)
                ],
            )
            await db.execute(
                "UPDATE documents SET status = 'indexed', format = ?, pages = ?, ocr_pages = ?, "
                "passages = ?, chars = ?, embedded = ?, indexed_at_ms = ?, source = NULL "
                "WHERE id = ?",
                (
                    format,
                    pages,
                    ocr_pages,
                    len(passages),
                    sum(len(p.text) for p in passages),
                    1 if embeddings is not None else 0,
                    now_ms(),
                    document_id,
                ),
            )
        self._vectors.pop(room_id, None)
        return True

    async def mark_failed(self, document_id: int, reason: str, format: str | None = None) -> None:
        await self._db.write(
            "UPDATE documents SET status = 'failed', error = ?, format = ?, source = NULL "
            "WHERE id = ?",
            (reason, format, document_id),
        )

    async def by_event(self, room_id: str, event_id: str) -> DocumentRecord | None:
        row = await self._db.fetchone(
            f"SELECT {_DOCUMENT_COLUMNS} FROM documents WHERE room_id = ? AND event_id = ?",
            (room_id, event_id),
        )
        return _document(row) if row else None

    async def in_room(self, room_id: str) -> list[DocumentRecord]:
        """The room's documents, oldest first (the numbering `!documents` shows)."""
        rows = await self._db.fetchall(
            f"SELECT {_DOCUMENT_COLUMNS} FROM documents WHERE room_id = ? "
            "ORDER BY timestamp_ms, id",
            (room_id,),
        )
        return [_document(row) for row in rows]

    async def shared_between(
        self, room_id: str, after_ms: int, before_ms: int
    ) -> list[DocumentRecord]:
        rows = await self._db.fetchall(
            f"SELECT {_DOCUMENT_COLUMNS} FROM documents WHERE room_id = ? AND timestamp_ms > ? "
            "AND timestamp_ms <= ? ORDER BY timestamp_ms, id",
            (room_id, after_ms, before_ms),
        )
        return [_document(row) for row in rows]

    async def has_indexed(self, room_id: str) -> bool:
        row = await self._db.fetchone(
            "SELECT 1 FROM documents WHERE room_id = ? AND status = 'indexed' LIMIT 1", (room_id,)
        )
        return row is not None

    async def delete(self, room_id: str, document_id: int) -> bool:
        async with self._db.transaction() as db:
            cursor = await db.execute(
                "DELETE FROM documents WHERE room_id = ? AND id = ?", (room_id, document_id)
            )
        self._vectors.pop(room_id, None)
        return cursor.rowcount == 1

    # --- Passages -------------------------------------------------------------------------------
    async def passages_of(self, document_id: int) -> list[StoredPassage]:
        rows = await self._db.fetchall(
            f"{_PASSAGE_SELECT} WHERE p.document_id = ? ORDER BY p.position", (document_id,)
        )
        return [StoredPassage(**dict(row)) for row in rows]

    async def passages(self, room_id: str, ids: Sequence[int]) -> dict[int, StoredPassage]:
        """Passages by ID, of this room only."""
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        rows = await self._db.fetchall(
            f"{_PASSAGE_SELECT} WHERE p.id IN ({marks}) AND p.room_id = ?", (*ids, room_id)
        )
        return {int(row["id"]): StoredPassage(**dict(row)) for row in rows}

    async def search_text(
        self,
        room_id: str,
        match: str,
        limit: int,
        document_ids: Sequence[int] | None = None,
    ) -> list[int]:
        """Passage IDs by BM25 (best first) for an FTS5 `match` expression, in this room.

        The room's token in the expression confines the match to the room inside the index
        itself, so no row of another room is even read (`passages()` checks the room again)."""
        expression = f"room_token:{room_token(room_id)} AND ({match})"
        if document_ids is None:
            rows = await self._db.fetchall(
                "SELECT rowid FROM document_passages_fts WHERE document_passages_fts MATCH ? "
                "ORDER BY rank LIMIT ?",
                (expression, limit),
            )
        else:
            marks = ",".join("?" * len(document_ids))
            rows = await self._db.fetchall(
                "SELECT p.id FROM document_passages_fts f JOIN document_passages p "
                "ON p.id = f.rowid WHERE document_passages_fts MATCH ? AND p.room_id = ? "
                f"AND p.document_id IN ({marks}) ORDER BY f.rank LIMIT ?",
                (expression, room_id, *document_ids, limit),
            )
        return [int(row[0]) for row in rows]

    async def frequent_words(self, words: Sequence[str], max_fraction: float) -> set[str]:
        """Words found in more than `max_fraction` of all passages: matching them ranks little
        and costs much (FTS5 scores every passage that has them)."""
        if not words:
            return set()
        total_row = await self._db.fetchone("SELECT max(id) FROM document_passages")
        total = int(total_row[0] or 0) if total_row is not None else 0
        if total < 50:
            return set()
        marks = ",".join("?" * len(words))
        rows = await self._db.fetchall(
            f"SELECT term, doc FROM document_passages_vocab WHERE term IN ({marks})", words
        )
        return {str(row[0]) for row in rows if int(row[1]) > max_fraction * total}

    async def search_vectors(
        self,
        room_id: str,
        query: bytes,
        limit: int,
        min_similarity: float,
        document_ids: Sequence[int] | None = None,
    ) -> list[int]:
        """Passage IDs by cosine similarity to `query` (best first), at least `min_similarity`."""
        if self.sqlite_vec:
            params: list[Any] = [query, room_id]
            restrict = ""
            if document_ids is not None:
                restrict = f" AND document_id IN ({','.join('?' * len(document_ids))})"
                params.extend(document_ids)
            params.extend([1.0 - min_similarity, limit])
            rows = await self._db.fetchall(
                "SELECT id, distance FROM (SELECT id, vec_distance_cosine(embedding, ?) AS distance "
                f"FROM document_passages WHERE room_id = ? AND embedding IS NOT NULL{restrict}) "
                "WHERE distance <= ? ORDER BY distance LIMIT ?",
                params,
            )
            return [int(row[0]) for row in rows]
        import numpy as np

        ids, matrix = await self._room_vectors(room_id)
        if not len(ids):
            return []
        scores = matrix @ np.frombuffer(query, dtype="<f4")
        if document_ids is not None:
            allowed = await self._passage_ids_of(document_ids)
            scores = np.where(np.isin(ids, allowed), scores, -2.0)
        order = np.argsort(-scores)[:limit]
        return [int(ids[i]) for i in order if scores[i] >= min_similarity]

    async def _passage_ids_of(self, document_ids: Sequence[int]) -> np.ndarray:
        import numpy as np

        rows = await self._db.fetchall(
            "SELECT id FROM document_passages WHERE document_id IN "
            f"({','.join('?' * len(document_ids))})",
            document_ids,
        )
        return np.array([int(row[0]) for row in rows], dtype=np.int64)

    async def _room_vectors(self, room_id: str) -> tuple[np.ndarray, np.ndarray]:
        """The room's vectors, cached while the room's passages stay the same (any deletion,
        through this repository or the Store's data-protection paths, changes the version)."""
        import numpy as np

        version_row = await self._db.fetchone(
            "SELECT count(*), min(id), max(id) FROM document_passages WHERE room_id = ?",
            (room_id,),
        )
        version = tuple(version_row) if version_row is not None else ()
        cached = self._vectors.get(room_id)
        if cached is not None and cached[0] == version:
            self._vectors.move_to_end(room_id)
            return cached[1], cached[2]
        rows = await self._db.fetchall(
            "SELECT id, embedding FROM document_passages WHERE room_id = ? "
            "AND embedding IS NOT NULL",
            (room_id,),
        )
        ids = np.array([int(row[0]) for row in rows], dtype=np.int64)
        if rows:
            matrix = np.vstack([np.frombuffer(row[1], dtype="<f4") for row in rows])
        else:
            matrix = np.zeros((0, 1), dtype=np.float32)
        self._vectors[room_id] = (version, ids, matrix)
        while len(self._vectors) > VECTOR_CACHE_ROOMS:
            self._vectors.popitem(last=False)
        return ids, matrix


def _document(row: Any) -> DocumentRecord:
    return DocumentRecord(**{key: row[key] for key in DocumentRecord.model_fields})
