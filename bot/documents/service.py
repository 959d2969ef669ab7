"""Documents in rooms: indexing files as they are shared, and the passages a question needs.

Indexing runs in background tasks (never in a room's question queue, so a slow or broken file
blocks nobody): download (decrypted), extraction in a worker process, OCR of pages without a
text layer, passages, embeddings when the endpoint has them, one transaction. A question that
needs a document still being read waits for that document only.

Nothing of a document's content, nor its name, is logged: IDs, sizes, counts and durations.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Protocol

import structlog

from bot import texts
from bot.answer.llm import LLMClient
from bot.answer.llm_failures import LLMError
from bot.answer.tokens import TokenCounter
from bot.attachments import Attachment, AttachmentError, AttachmentKind
from bot.documents.chunk import chunk_sections
from bot.documents.context import DocumentContext, build_context
from bot.documents.errors import DocumentError, DocumentErrorReason
from bot.documents.extract import (
    HTML_EXTENSIONS,
    TEXT_EXTENSIONS,
    Extracted,
    Limits,
    Section,
)
from bot.documents.pool import ExtractionPool
from bot.documents.retrieval import fts_expression, query_words, reciprocal_rank_fusion
from bot.models import IncomingMessage
from bot.store.documents import (
    DocumentRecord,
    DocumentsRepository,
    NewPassage,
    StoredPassage,
    to_blob,
)
from config.settings import Settings

log = structlog.get_logger(__name__)

EMBED_BATCH = 16
EMBEDDINGS_RETRY_AFTER_SECONDS = 600.0  # an endpoint without embeddings is asked again after
NO_EMBEDDINGS_STATUS = frozenset({400, 404, 405, 422, 501})
COMMON_FRACTION = 0.2  # words in more passages than this are left out of full-text queries
SEARCH_DEPTH = 30  # candidates taken from each ranking before fusion
ROOM_WAIT_SECONDS = 10.0  # a question not about a given file waits this long for files in reading
SUPPORTED_EXTENSIONS = {"pdf", "docx", "odt"} | TEXT_EXTENSIONS | HTML_EXTENSIONS
SUPPORTED_MIMETYPES = {
    "application/pdf",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.oasis.opendocument.text",
    "text/html",
    "application/xhtml+xml",
}


class Downloader(Protocol):
    async def download_attachment(
        self, attachment: Attachment, max_bytes: int | None = None
    ) -> bytes: ...


def is_document_candidate(attachment: Attachment) -> bool:
    """Worth downloading: an `m.file` whose name or mimetype says a supported format."""
    if attachment.kind is not AttachmentKind.FILE:
        return False
    mimetype = attachment.mimetype or ""
    return (
        attachment.extension in SUPPORTED_EXTENSIONS
        or mimetype in SUPPORTED_MIMETYPES
        or mimetype.startswith("text/")
    )


def error_sentence(reason: str | None, settings: Settings) -> str:
    template = texts.DOCUMENT_ERRORS.get(reason or "", texts.DOCUMENT_ERRORS["corrupt"])
    return template.format(
        max_mb=f"{settings.attachment_max_mb:g}", max_pages=settings.document_max_pages
    )


class DocumentService:
    def __init__(
        self,
        settings: Settings,
        repository: DocumentsRepository,
        downloader: Downloader,
        llm: LLMClient,
        tokens: TokenCounter,
        pool: ExtractionPool | None = None,
    ) -> None:
        self._settings = settings
        self.repository = repository
        self._downloader = downloader
        self._llm = llm
        self._tokens = tokens
        self._pool = pool or ExtractionPool(
            settings.document_workers, settings.document_extract_timeout_seconds
        )
        self._limits = Limits(
            max_pages=settings.document_max_pages,
            max_inflated_bytes=int(settings.document_max_inflated_mb * 1_000_000),
        )
        self._tasks: dict[str, tuple[str, asyncio.Task[None]]] = {}  # event -> (room, task)
        self._slots = asyncio.Semaphore(max(1, settings.document_workers) * 2)
        self._embeddings_off_until = 0.0

    async def close(self) -> None:
        tasks = [task for _, task in self._tasks.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._pool.close()

    # --- Indexing -------------------------------------------------------------------------------
    async def on_attachment(self, message: IncomingMessage) -> None:
        """A file was shared: remember it and read it in the background (once per event)."""
        attachment = message.attachment
        if attachment is None or attachment.kind is not AttachmentKind.FILE:
            return
        document_id = await self.repository.register(
            room_id=message.room_id,
            event_id=message.event_id,
            sender=message.sender,
            sender_name=message.sender_name,
            name=attachment.name,
            mimetype=attachment.mimetype,
            size=attachment.size,
            thread_root_id=message.thread_root_id,
            timestamp_ms=message.timestamp_ms,
            source=attachment.model_dump(mode="json"),
        )
        if document_id is None:
            return  # known already (a replayed sync)
        if not is_document_candidate(attachment):
            await self.repository.mark_failed(document_id, DocumentErrorReason.UNSUPPORTED.value)
            return
        self._start(document_id, message.room_id, message.event_id, attachment)

    async def resume_pending(self) -> int:
        """Documents whose reading a stop interrupted are read again."""
        resumed = 0
        for record, source in await self.repository.pending():
            try:
                attachment = Attachment.model_validate_json(source)
            except ValueError:
                await self.repository.mark_failed(record.id, DocumentErrorReason.CORRUPT.value)
                continue
            self._start(record.id, record.room_id, record.event_id, attachment)
            resumed += 1
        return resumed

    def _start(self, document_id: int, room_id: str, event_id: str, attachment: Attachment) -> None:
        task = asyncio.create_task(
            self._index(document_id, room_id, event_id, attachment), name=f"document-{event_id}"
        )
        self._tasks[event_id] = (room_id, task)
        task.add_done_callback(lambda _: self._tasks.pop(event_id, None))

    async def wait_until_read(self, event_id: str, timeout: float) -> None:  # noqa: ASYNC109
        entry = self._tasks.get(event_id)
        if entry is not None:
            await asyncio.wait([entry[1]], timeout=timeout)

    @property
    def read_timeout(self) -> float:
        """How long a question waits for a document still being read."""
        return self._settings.document_extract_timeout_seconds * 2 + 30

    async def readable(self, room_id: str, event_id: str) -> DocumentRecord | str | None:
        """The indexed document of this file event, or the sentence saying why it is not
        readable, or None if the event is no document the bot knows."""
        if await self.repository.by_event(room_id, event_id) is None:
            return None
        await self.wait_until_read(event_id, self.read_timeout)
        current = await self.repository.by_event(room_id, event_id)
        if current is None:
            return texts.DOCUMENT_NOT_A_DOCUMENT
        if current.status == "indexed":
            return current
        reason = current.error if current.status == "failed" else "timeout"
        return error_sentence(reason, self._settings)

    async def wait_for_room(self, room_id: str, timeout: float) -> None:  # noqa: ASYNC109
        """Let the room's documents still being read finish (a question right after a share)."""
        tasks = [task for (room, task) in self._tasks.values() if room == room_id]
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)

    async def _index(
        self, document_id: int, room_id: str, event_id: str, attachment: Attachment
    ) -> None:
        bound = log.bind(room_id=room_id, event_id=event_id, document_id=document_id)
        started = time.perf_counter()
        async with self._slots:
            try:
                data = await self._downloader.download_attachment(attachment)
                extracted = await self._pool.extract(
                    data, attachment.name, attachment.mimetype, self._limits
                )
                ocr_pages = await self._ocr(extracted, data, bound)
                passages = await asyncio.to_thread(chunk_sections, extracted.sections)
                stored = [NewPassage(**vars(p)) for p in passages]
                embeddings = await self._embed([p.text for p in stored], bound)
                saved = await self.repository.save_indexed(
                    document_id,
                    room_id=room_id,
                    format=extracted.format,
                    pages=extracted.pages,
                    ocr_pages=ocr_pages,
                    passages=stored,
                    embeddings=embeddings,
                )
            except AttachmentError as error:
                bound.warning("documents.download_failed", reason=error.reason.value)
                await self.repository.mark_failed(document_id, f"attachment:{error.reason.value}")
                return
            except DocumentError as error:
                bound.info("documents.unreadable", reason=error.reason.value)
                await self.repository.mark_failed(document_id, error.reason.value)
                return
            except asyncio.CancelledError:
                raise  # shutdown: stays pending, resumed at next start
            except Exception as error:
                bound.exception("documents.index_failed", error_type=type(error).__name__)
                await self.repository.mark_failed(document_id, DocumentErrorReason.CORRUPT.value)
                return
        bound.info(
            "documents.indexed",
            saved=saved,
            format=extracted.format,
            pages=extracted.pages,
            ocr_pages=ocr_pages,
            passages=len(stored),
            embedded=embeddings is not None,
            bytes=len(data),
            seconds=round(time.perf_counter() - started, 3),
        )

    async def _ocr(self, extracted: Extracted, data: bytes, bound: structlog.BoundLogger) -> int:
        """Pages without a text layer, read by the OCR model. Raises SCANNED when nothing at all
        is readable; a partly scanned document keeps its text pages if OCR is unavailable."""
        if not extracted.scanned_pages:
            return 0
        model = self._settings.ocr_model
        recognised: dict[int, str] = {}
        if model:
            try:
                recognised = await self._llm.ocr_pdf(model, data, extracted.scanned_pages)
            except LLMError as error:
                bound.warning("documents.ocr_failed", kind=error.kind.value, status=error.status)
        added = [
            Section(label=f"page {page}", text=text, page=page)
            for page, text in recognised.items()
            if page in extracted.scanned_pages and text.strip()
        ]
        if not added and not extracted.sections:
            raise DocumentError(DocumentErrorReason.SCANNED)
        extracted.sections = sorted(
            [*extracted.sections, *added], key=lambda section: section.page or 0
        )
        return len(added)

    def embeddings_available(self) -> bool:
        return (
            bool(self._settings.embedding_model) and time.monotonic() >= self._embeddings_off_until
        )

    async def _embed(
        self, inputs: Sequence[str], bound: structlog.BoundLogger | None = None
    ) -> list[bytes] | None:
        """Vectors for `inputs`, or None when the endpoint has none (then FTS5 alone)."""
        model = self._settings.embedding_model
        if not model or not inputs or not self.embeddings_available():
            return None
        vectors: list[bytes] = []
        try:
            for start in range(0, len(inputs), EMBED_BATCH):
                batch = list(inputs[start : start + EMBED_BATCH])
                vectors.extend(to_blob(v) for v in await self._llm.embed(model, batch))
        except LLMError as error:
            if error.status in NO_EMBEDDINGS_STATUS:
                self._embeddings_off_until = time.monotonic() + EMBEDDINGS_RETRY_AFTER_SECONDS
            (bound or log).info(
                "documents.embeddings_unavailable", kind=error.kind.value, status=error.status
            )
            return None
        return vectors

    # --- Questions ------------------------------------------------------------------------------
    async def room_may_have_documents(self, room_id: str) -> bool:
        """Cheap: most rooms never see a file, and their questions skip all of this."""
        return await self.repository.room_may_have_documents(room_id)

    async def context_for(
        self,
        message: IncomingMessage,
        question: str,
        budget_tokens: int,
        *,
        is_direct: bool,
        last_exchange_ms: int | None,
    ) -> DocumentContext | None:
        """The passages this question should see, or a notice, or None (documents irrelevant)."""
        budget = min(budget_tokens, self._settings.document_context_tokens)
        if budget <= 0:
            return None
        focus: list[DocumentRecord] = []
        if message.reply_to_event_id is not None:
            replied = await self.repository.by_event(message.room_id, message.reply_to_event_id)
            if replied is not None:
                focus = [replied]
        elif is_direct:
            window_ms = int(self._settings.document_recent_minutes * 60_000)
            after = max(last_exchange_ms or 0, message.timestamp_ms - window_ms)
            focus = await self.repository.shared_between(
                message.room_id, after, message.timestamp_ms
            )
        if focus:
            return await self._focused(message, question, focus, budget)
        # A file shared just before may matter; a long OCR elsewhere must not hold the room.
        await self.wait_for_room(message.room_id, ROOM_WAIT_SECONDS)
        if not await self.repository.has_indexed(message.room_id):
            return None
        ranked = await self.search(message.room_id, question, self._settings.document_passages)
        if not ranked:
            return None
        passages = await self.repository.passages(message.room_id, ranked)
        return build_context(ranked, passages, budget, self._tokens, keep_order=False)

    async def _focused(
        self,
        message: IncomingMessage,
        question: str,
        documents: list[DocumentRecord],
        budget: int,
    ) -> DocumentContext:
        readable: list[DocumentRecord] = []
        for document in documents:
            current = await self.readable(document.room_id, document.event_id)
            if isinstance(current, DocumentRecord):
                readable.append(current)
            elif isinstance(current, str) and len(documents) == 1:
                return DocumentContext(notice=current)
        if not readable:
            return DocumentContext(notice=error_sentence("timeout", self._settings))
        share = budget // len(readable)
        chosen: list[StoredPassage] = []
        for document in readable:
            passages = await self.repository.passages_of(document.id)
            total = sum(self._tokens.count(p.text) for p in passages)
            if total <= share:
                chosen.extend(passages)
                continue
            ranked_ids = await self.search(
                message.room_id, question, SEARCH_DEPTH, document_ids=[document.id]
            )
            by_id = {p.id: p for p in passages}
            # The beginning first (title, summary), then what matches the question best.
            order = [passages[0].id, *ranked_ids, *(p.id for p in passages)]
            picked: list[StoredPassage] = []
            used = 0
            for passage_id in dict.fromkeys(order):
                passage = by_id.get(passage_id)
                if passage is None:
                    continue
                cost = self._tokens.count(passage.text) + 16
                if used + cost > share:
                    continue
                picked.append(passage)
                used += cost
            chosen.extend(sorted(picked, key=lambda p: p.position))
        ids = [p.id for p in chosen]
        known = {p.id: p for p in chosen if p.room_id == message.room_id}
        known = known or await self.repository.passages(message.room_id, ids)
        context = build_context(ids, known, budget, self._tokens, keep_order=True)
        return context or DocumentContext(notice=error_sentence("empty", self._settings))

    async def search(
        self,
        room_id: str,
        question: str,
        limit: int,
        document_ids: Sequence[int] | None = None,
    ) -> list[int]:
        """Passage IDs of this room by relevance: FTS5 and vectors fused (FTS5 alone without
        embeddings). Only passages that match the question's words or are close in meaning."""
        rankings: list[list[int]] = []
        common = await self.repository.frequent_words(query_words(question), COMMON_FRACTION)
        expression = fts_expression(question, common)
        if expression is not None:
            rankings.append(
                await self.repository.search_text(room_id, expression, SEARCH_DEPTH, document_ids)
            )
        vectors = await self._embed([question]) if question.strip() else None
        if vectors:
            rankings.append(
                await self.repository.search_vectors(
                    room_id,
                    vectors[0],
                    SEARCH_DEPTH,
                    self._settings.document_min_similarity,
                    document_ids,
                )
            )
        return reciprocal_rank_fusion(rankings)[:limit]
