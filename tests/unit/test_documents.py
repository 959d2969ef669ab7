"""Documents without a homeserver: extraction, passages, the FTS5/vector index, retrieval."""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from bot.documents.chunk import OVERLAP_CHARS, PASSAGE_CHARS, chunk_sections
from bot.documents.errors import DocumentError, DocumentErrorReason
from bot.documents.extract import Limits, Section, extract_document
from bot.documents.pool import ExtractionPool
from bot.documents.retrieval import fts_expression, query_words, reciprocal_rank_fusion
from bot.store import Store
from bot.store.documents import NewPassage, to_blob
from sandbox.fake_mistral import fake_embedding
from tests.support.documents import (
    corrupt,
    long_report,
    make_docx,
    make_encrypted_pdf,
    make_odt,
    make_pdf,
    make_protected_docx,
    make_zip_bomb,
)

LIMITS = Limits()


# --- Extraction ----------------------------------------------------------------------------------
def test_pdf_pages_and_scanned_pages() -> None:
    result = extract_document(
        make_pdf(["Première page du rapport.", None, "Troisième page, élevée."]),
        "r.pdf",
        "application/pdf",
        LIMITS,
    )
    assert result.format == "pdf" and result.pages == 3
    assert [(s.label, s.page) for s in result.sections] == [("page 1", 1), ("page 3", 3)]
    assert result.sections[1].text == "Troisième page, élevée."
    assert result.scanned_pages == [2]


def test_docx_keeps_headings_paragraphs_and_tables_in_order() -> None:
    data = make_docx(
        [("Contexte", "Premier paragraphe.\n\nDeuxième."), ("Décision", "Adoptée.")],
        table=[["Service", "Effectif"], ["DINUM", "12"]],
    )
    result = extract_document(data, "note.docx", None, LIMITS)
    assert [s.label for s in result.sections] == ["section « Contexte »", "section « Décision »"]
    assert result.sections[1].text == "Décision\nAdoptée.\nService | Effectif\nDINUM | 12"


def test_odt_html_markdown_and_csv() -> None:
    odt = extract_document(make_odt([("Titre", "Corps du texte.")]), "a.odt", None, LIMITS)
    assert odt.sections[0].text == "Titre\nCorps du texte."
    html = extract_document(
        b"<html><head><script>alert(1)</script></head><body><h2>Ordre</h2><p>Un &amp; deux"
        b"</p></body></html>",
        "page.html",
        "text/html",
        LIMITS,
    )
    assert html.sections[0].text == "Ordre\nUn & deux" and "alert" not in html.sections[0].text
    markdown = extract_document(b"# A\nun\n## B\ndeux", "n.md", None, LIMITS)
    assert [s.label for s in markdown.sections] == ["section « A »", "section « B »"]
    csv = extract_document("nom;ville\nJosé;Brest".encode("cp1252"), "t.csv", None, LIMITS)
    assert csv.sections[0].text == "nom | ville\nJosé | Brest"


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("x.pdf", make_encrypted_pdf("Texte protégé par mot de passe."), "protected"),
        ("x.docx", make_protected_docx(), "protected"),
        ("x.docx", make_zip_bomb("docx", 150), "too_large"),
        ("x.odt", make_zip_bomb("odt", 150), "too_large"),
        ("x.pdf", corrupt(make_pdf(["Un texte assez long pour la page."])), "corrupt"),
        ("x.docx", corrupt(make_docx([("a", "b")])), "corrupt"),
        ("x.pdf", b"not a pdf at all", "corrupt"),
        ("x.txt", b"  \n\n ", "empty"),
        ("x.bin", b"\x00\x01\x02", "unsupported"),
        ("x.xlsx", b"PK\x03\x04junk", "unsupported"),
        ("x.doc", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 600, "unsupported"),
    ],
)
def test_bad_inputs_are_typed_errors(name: str, data: bytes, reason: str) -> None:
    with pytest.raises(DocumentError) as error:
        extract_document(data, name, None, LIMITS)
    assert error.value.reason is DocumentErrorReason(reason)


def test_page_cap() -> None:
    with pytest.raises(DocumentError) as error:
        extract_document(make_pdf(["Page."] * 5), "x.pdf", None, Limits(max_pages=4))
    assert error.value.reason is DocumentErrorReason.TOO_MANY_PAGES


async def test_pool_reads_off_the_loop_and_survives_a_timeout() -> None:
    pool = ExtractionPool(workers=1, timeout_seconds=0.01)
    try:
        with pytest.raises(DocumentError) as error:  # spawning alone takes longer
            await pool.extract(make_pdf(long_report(50)), "x.pdf", None, LIMITS)
        assert error.value.reason is DocumentErrorReason.TIMEOUT
        pool._timeout = 60
        result = await pool.extract(make_pdf(long_report(3)), "x.pdf", None, LIMITS)
        assert result.pages == 3
        with pytest.raises(DocumentError) as bomb:  # errors cross the process boundary typed
            await pool.extract(make_zip_bomb(), "x.docx", None, LIMITS)
        assert bomb.value.reason is DocumentErrorReason.TOO_LARGE
    finally:
        await pool.close()


# --- Passages ------------------------------------------------------------------------------------
def test_passages_overlap_and_stay_within_their_section() -> None:
    text = " ".join(f"Phrase numéro {i} du rapport." for i in range(400))
    passages = chunk_sections([Section("page 1", text, 1), Section("page 2", "Court.", 2)])
    first_page = [p for p in passages if p.page == 1]
    assert len(first_page) > 3
    assert all(len(p.text) <= PASSAGE_CHARS for p in passages)
    for before, after in itertools.pairwise(first_page):
        shared = after.text[:50]
        assert shared in before.text, "consecutive passages overlap"
        assert len(after.text) > OVERLAP_CHARS
    assert passages[-1].text == "Court." and passages[-1].label == "page 2"
    assert [p.position for p in passages] == list(range(len(passages)))


# --- Retrieval helpers ---------------------------------------------------------------------------
def test_query_words_drop_stopwords_and_hostile_syntax() -> None:
    assert query_words("Quel est le budget de la DINUM ?") == ["budget", "dinum"]
    expression = fts_expression('budget" OR room_token:x NEAR( * AND ) "')
    assert expression is not None
    # Every term is quoted: nothing of the user's text acts as an FTS5 operator or column.
    for term in expression.split(" OR "):
        assert term.startswith('"') and term.rstrip("*").endswith('"')
    assert fts_expression("le la les ?") is None


def test_reciprocal_rank_fusion() -> None:
    assert reciprocal_rank_fusion([[1, 2, 3], [3, 1]]) == [1, 3, 2]
    assert reciprocal_rank_fusion([[], [5]]) == [5]


# --- Index ---------------------------------------------------------------------------------------
def _extension_capable_sqlite() -> ModuleType:
    """The official Docker image's Python loads SQLite extensions, so production searches
    vectors with sqlite-vec's SQL; pyenv's Python (this machine's) cannot, and `pysqlite3`
    (the same DB-API over its own SQLite build) stands in for it there."""
    if hasattr(sqlite3.Connection, "enable_load_extension"):
        return sqlite3
    import pysqlite3.dbapi2  # the test extra installs it

    return pysqlite3.dbapi2


# Both ways the bot searches vectors: numpy over the room's matrix, or sqlite-vec in SQL.
VECTOR_SEARCHES = ["numpy", "sqlite-vec"]


async def _open_store(tmp_path: Path, vector_search: str = "numpy") -> Store:
    if vector_search == "numpy":
        return await Store.open(tmp_path / "db.sqlite3")
    store = await Store.open(tmp_path / "db.sqlite3", _extension_capable_sqlite())
    if not await store.documents.load_sqlite_vec():
        await store.close()  # or its thread keeps the test process alive
        pytest.fail("sqlite-vec did not load")
    return store


async def _add_document(
    store: Store, room_id: str, index: int, text: str, embedding: bytes | None
) -> int:
    """One shared PDF of one passage, indexed (with its embedding, if given)."""
    document_id = await store.documents.register(
        room_id=room_id,
        event_id=f"$doc-{room_id}-{index}",
        sender="@alice:localhost",
        sender_name="Alice",
        name=f"doc{index}.pdf",
        mimetype="application/pdf",
        size=10,
        thread_root_id=None,
        timestamp_ms=1000 + index,
        source={},
    )
    assert document_id is not None
    await store.documents.save_indexed(
        document_id,
        room_id=room_id,
        format="pdf",
        pages=1,
        ocr_pages=0,
        passages=[NewPassage(position=0, label="page 1", page=1, text=text)],
        embeddings=None if embedding is None else [embedding],
    )
    return document_id


async def _store_with(
    tmp_path: Path, rooms: dict[str, list[str]], embed: bool, vector_search: str = "numpy"
) -> Store:
    store = await _open_store(tmp_path, vector_search)
    for room_id, texts in rooms.items():
        for index, text in enumerate(texts):
            embedding = to_blob(fake_embedding(text)) if embed else None
            await _add_document(store, room_id, index, text, embedding)
    return store


@pytest.mark.parametrize("vector_search", VECTOR_SEARCHES)
async def test_search_is_per_room_and_vectors_rank_by_meaning(
    tmp_path: Path, vector_search: str
) -> None:
    store = await _store_with(
        tmp_path,
        {
            "!a:localhost": ["Le budget de la direction augmente.", "La cantine ferme en août."],
            "!b:localhost": ["Le budget secret de l'autre salon."],
        },
        embed=True,
        vector_search=vector_search,
    )
    try:
        repo = store.documents
        expression = fts_expression("budget")
        assert expression is not None
        found = await repo.passages(
            "!a:localhost", await repo.search_text("!a:localhost", expression, 10)
        )
        assert [p.text for p in found.values()] == ["Le budget de la direction augmente."]
        query = to_blob(fake_embedding("Quand la cantine ferme-t-elle ?"))
        by_meaning = await repo.search_vectors("!a:localhost", query, 10, 0.3)
        texts = [(await repo.passages("!a:localhost", by_meaning))[i].text for i in by_meaning]
        # Another room's IDs never come back, even if asked for by ID.
        other = await repo.search_text("!b:localhost", expression, 10)
        assert other and await repo.passages("!a:localhost", other) == {}
        assert texts == ["La cantine ferme en août."]
        assert await repo.search_vectors("!c:localhost", query, 10, -1.0) == []
    finally:
        await store.close()


@pytest.mark.parametrize("vector_search", VECTOR_SEARCHES)
async def test_deleting_a_document_removes_its_passages_index_and_vectors(
    tmp_path: Path, vector_search: str
) -> None:
    store = await _store_with(
        tmp_path, {"!a:localhost": ["Le budget augmente."]}, embed=True, vector_search=vector_search
    )
    try:
        repo = store.documents
        query = to_blob(fake_embedding("budget"))
        assert await repo.search_vectors("!a:localhost", query, 5, 0.1)  # cached now
        await store.messages.delete_event("!a:localhost", "$doc-!a:localhost-0")  # redaction
        assert await repo.in_room("!a:localhost") == []
        assert await repo.search_text("!a:localhost", '"budget"', 5) == []
        assert await repo.search_vectors("!a:localhost", query, 5, 0.1) == []
        for table in ("document_passages", "document_passages_fts"):
            row = await store.db.fetchone(f"SELECT count(*) FROM {table}")
            assert row is not None and row[0] == 0, table
    finally:
        await store.close()


async def test_sqlite_vec_and_numpy_find_the_same_passages_in_the_same_order(
    tmp_path: Path,
) -> None:
    """The same room, searched both ways: same IDs, same order, same threshold, same
    restriction to chosen documents, and nothing from another room."""
    generator = np.random.default_rng(17)
    rooms = {"!a:localhost": 40, "!b:localhost": 5}
    vectors = {room: generator.normal(size=(count, 64)) for room, count in rooms.items()}
    queries = [to_blob(query.tolist()) for query in generator.normal(size=(5, 64))]
    found: dict[str, list[list[int]]] = {}
    for vector_search in VECTOR_SEARCHES:
        store = await _open_store(tmp_path / vector_search, vector_search)
        try:
            documents: list[int] = []
            for room_id, matrix in vectors.items():
                for index, vector in enumerate(matrix):
                    embedding = to_blob(vector.tolist())
                    document_id = await _add_document(store, room_id, index, f"t{index}", embedding)
                    if room_id == "!a:localhost":
                        documents.append(document_id)
            repo = store.documents
            runs = []
            for blob in queries:
                runs.append(await repo.search_vectors("!a:localhost", blob, 8, -1.0))
                runs.append(await repo.search_vectors("!a:localhost", blob, 40, 0.1))
                runs.append(
                    await repo.search_vectors("!a:localhost", blob, 5, -1.0, documents[::3])
                )
                runs.append(await repo.search_vectors("!b:localhost", blob, 40, -1.0))
            found[vector_search] = runs
        finally:
            await store.close()
    assert found["sqlite-vec"] == found["numpy"]
    assert all(len(run) == 8 for run in found["numpy"][0::4])
    assert any(0 < len(run) < 40 for run in found["numpy"][1::4]), "threshold never cut"
    a_ids = {i for run in found["numpy"][0::4] for i in run}
    assert a_ids.isdisjoint({i for run in found["numpy"][3::4] for i in run})


def test_blob_layout_is_sqlite_vec_float32() -> None:
    blob = to_blob([3.0, 4.0])
    assert np.frombuffer(blob, dtype="<f4").tolist() == pytest.approx([0.6, 0.8])
    assert len(blob) == 8


def test_extraction_runs_in_a_thread_too() -> None:
    """The pool is the bot's path; the function itself is plain and thread-safe for tests."""
    result = asyncio.run(
        asyncio.to_thread(
            extract_document, make_pdf(["Bonjour à tous."] * 2), "a.pdf", None, LIMITS
        )
    )
    assert len(result.sections) == 2


async def test_a_document_interrupted_by_a_stop_is_read_at_the_next_start(tmp_path: Path) -> None:
    from bot.answer.llm import LLMClient
    from bot.answer.tokens import MistralTokenCounter
    from bot.attachments import Attachment, AttachmentKind
    from bot.documents.service import DocumentService
    from config.settings import load_settings
    from sandbox.fake_mistral import FakeMistral

    pdf = make_pdf(["Texte du document repris après un redémarrage."])

    class Downloads:
        calls = 0

        async def download_attachment(
            self, attachment: Attachment, max_bytes: int | None = None
        ) -> bytes:
            Downloads.calls += 1
            assert attachment.url == "mxc://localhost/abc"
            return pdf

    async with FakeMistral() as fake:
        settings = load_settings(
            None,
            homeserver="http://127.0.0.1:1",
            user_id="@bot:localhost",
            password="x",
            data_dir=tmp_path,
            mistral_api_key="k",
            mistral_server_url=fake.base_url,
        )
        store = await Store.open(settings.database_path)
        attachment = Attachment(
            kind=AttachmentKind.FILE, name="a.pdf", url="mxc://localhost/abc", size=len(pdf)
        )
        # What a stop between "file seen" and "file read" leaves behind: a pending row.
        await store.documents.register(
            room_id="!r:localhost",
            event_id="$file",
            sender="@alice:localhost",
            sender_name="Alice",
            name="a.pdf",
            mimetype=None,
            size=len(pdf),
            thread_root_id=None,
            timestamp_ms=1,
            source=attachment.model_dump(mode="json"),
        )
        llm = LLMClient(
            api_key="k",
            server_url=fake.base_url,
            timeout_seconds=10,
            max_retries=0,
            max_concurrency=2,
        )
        service = DocumentService(
            settings, store.documents, Downloads(), llm, MistralTokenCounter()
        )
        try:
            assert await service.resume_pending() == 1
            await service.wait_until_read("$file", 60)
            record = await store.documents.by_event("!r:localhost", "$file")
            assert record is not None and record.status == "indexed" and record.embedded == 1
            assert Downloads.calls == 1
            assert await store.documents.pending() == []  # the key material is dropped
            row = await store.db.fetchone("SELECT source FROM documents WHERE event_id = '$file'")
            assert row is not None and row[0] is None
        finally:
            await service.close()
            await llm.close()
            await store.close()


async def test_export_purge_and_leaving_cover_documents(tmp_path: Path) -> None:
    store = await _store_with(
        tmp_path,
        {"!a:localhost": ["Le budget augmente."], "!b:localhost": ["La cantine ferme."]},
        embed=False,
    )
    try:
        exported = await store.people.export("@alice:localhost")
        assert [(d["name"], d["text"]) for d in exported["documents"]] == [
            ("doc0.pdf", "Le budget augmente."),
            ("doc0.pdf", "La cantine ferme."),
        ]
        await store.rooms.forget("!b:localhost")  # the bot left room b
        assert await store.documents.in_room("!b:localhost") == []
        deleted = await store.people.purge("@alice:localhost")
        assert deleted.documents == 1
        row = await store.db.fetchone("SELECT count(*) FROM document_passages_fts")
        assert row is not None and row[0] == 0
    finally:
        await store.close()


async def test_only_rooms_that_got_a_file_take_the_document_path(tmp_path: Path) -> None:
    store = await _store_with(tmp_path, {"!a:localhost": ["Le budget."]}, embed=False)
    try:
        assert await store.documents.room_may_have_documents("!a:localhost")
        assert not await store.documents.room_may_have_documents("!b:localhost")
        await store.documents.register(
            room_id="!b:localhost",
            event_id="$late",
            sender="@alice:localhost",
            sender_name="Alice",
            name="note.txt",
            mimetype="text/plain",
            size=5,
            thread_root_id=None,
            timestamp_ms=5000,
            source={},
        )
        assert await store.documents.room_may_have_documents("!b:localhost")
    finally:
        await store.close()
    reopened = await Store.open(tmp_path / "db.sqlite3")  # known again after a restart
    try:
        assert await reopened.documents.room_may_have_documents("!b:localhost")
        assert not await reopened.documents.room_may_have_documents("!c:localhost")
    finally:
        await reopened.close()
