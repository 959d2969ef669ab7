"""`python -m bench.documents`: the documents figures (issue 14), written into docs/benchmarks.md.

python -m bench.documents           # ~2-3 min on 2 cores → the documents section of docs/benchmarks.md
python -m bench.documents --quick   # smoke run (small sizes) → stdout only

Figures: extraction time per page (text PDF, DOCX, ODT) and the library comparison behind the
choice; file bytes → indexed; retrieval p99 over 10,000 passages in one room and with 1,000
rooms; event-loop lag while a 100-page PDF is read; resident memory with a large corpus
indexed; the context a question about a 100-page document sends, against pasting it whole.
Reports only, never asserts. Test files are generated (tests/support/documents.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.looplag import LoopLag
from bench.stats import percentile

REPO = Path(__file__).resolve().parents[1]
REPORT = REPO / "docs" / "benchmarks.md"
START, END = "<!-- documents:start -->", "<!-- documents:end -->"
WORDS = [
    "budget",
    "crédits",
    "agents",
    "service",
    "numérique",
    "direction",
    "rapport",
    "mesure",
    "projet",
    "santé",
    "école",
    "transport",
    "logement",
    "sécurité",
    "formation",
    "marché",
    "contrat",
    "audit",
    "calendrier",
    "décision",
    "réunion",
    "ministère",
    "préfecture",
    "commune",
    "région",
    "données",
    "réseau",
    "logiciel",
    "migration",
    "poste",
    "télétravail",
]


def _vocabulary(size: int = 20_000, seed: int = 5) -> list[str]:
    """Pseudo-French words, drawn Zipf-like below: a realistic spread of rare and common terms
    (a corpus of thirty words would make every passage match every question)."""
    rng = random.Random(seed)
    consonants, vowels = "bcdflmnprstv", "aeiou"
    syllables = [consonant + vowel for consonant in consonants for vowel in vowels]
    return [
        "".join(rng.choice(syllables) for _ in range(rng.randint(2, 4))) for _ in range(size)
    ] + WORDS


VOCABULARY = _vocabulary()
_WEIGHTS = [1.0 / (rank + 1) for rank in range(len(VOCABULARY))]


def sentence(rng: random.Random, words: int) -> str:
    return " ".join(rng.choices(VOCABULARY, weights=_WEIGHTS, k=words))


def rss_mb() -> float:
    for line in Path(f"/proc/{os.getpid()}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


# --- Library comparison, each in a fresh process (peak RSS is per process) -----------------------
_CHILD = r"""
import io, json, sys, time, zipfile
def hwm():  # peak RSS of this process (ru_maxrss would include the parent's, kept over exec)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
kind, path = sys.argv[1], sys.argv[2]
data = open(path, "rb").read()
base_mb = hwm()
started = time.perf_counter()
if kind == "pypdfium2":
    import pypdfium2 as pdfium
elif kind == "pypdf":
    from pypdf import PdfReader
elif kind == "python-docx":
    import docx
elif kind == "odfpy":
    from odf import teletype
    from odf.opendocument import load
else:
    from xml.etree import ElementTree
imported = time.perf_counter()
if kind == "pypdfium2":
    doc = pdfium.PdfDocument(data)
    text = "".join(doc[i].get_textpage().get_text_bounded() for i in range(len(doc)))
elif kind == "pypdf":
    text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages)
elif kind == "python-docx":
    text = "\n".join(p.text for p in docx.Document(io.BytesIO(data)).paragraphs)
elif kind == "odfpy":
    text = teletype.extractText(load(io.BytesIO(data)).text)
else:
    member = "word/document.xml" if kind == "stdlib-docx" else "content.xml"
    text = "".join(ElementTree.fromstring(zipfile.ZipFile(io.BytesIO(data)).read(member)).itertext())
done = time.perf_counter()
print(json.dumps({"seconds": done - imported, "import_seconds": imported - started,
                  "chars": len(text), "peak_mb": hwm() - base_mb}))
"""


def _child(kind: str, path: Path) -> dict[str, Any]:
    best: dict[str, Any] | None = None
    for _ in range(3):  # best of three: the machine is shared
        run = subprocess.run(
            [sys.executable, "-c", _CHILD, kind, str(path)],
            capture_output=True,
            text=True,
            check=True,
        )
        result = json.loads(run.stdout)
        if best is None or result["seconds"] < best["seconds"]:
            best = result
    assert best is not None
    return best


def _paragraphs(count: int, seed: int = 1) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(60)) + "." for _ in range(count)]


def libraries(
    work: Path, pages: int
) -> tuple[list[tuple[str, str, str, str, str]], dict[str, float]]:
    from tests.support.documents import long_report, make_docx, make_odt, make_pdf

    pdf = work / "a.pdf"
    pdf.write_bytes(make_pdf(long_report(pages)))
    sections = [(f"Partie {i}", "\n\n".join(_paragraphs(5, i))) for i in range(pages)]
    docx = work / "a.docx"
    docx.write_bytes(make_docx(sections))
    odt = work / "a.odt"
    odt.write_bytes(make_odt(sections))
    rows = []
    per_page: dict[str, float] = {}
    for label, kind, path in (
        ("PDF", "pypdfium2", pdf),
        ("PDF", "pypdf", pdf),
        ("DOCX", "python-docx", docx),
        ("DOCX", "stdlib-docx", docx),
        ("ODT", "odfpy", odt),
        ("ODT", "stdlib-odt", odt),
    ):
        result = _child(kind, path)
        ms_page = result["seconds"] * 1000 / pages
        per_page[kind] = ms_page
        rows.append(
            (
                label,
                kind,
                f"{ms_page:.2f} ms",
                f"{result['import_seconds'] * 1000:.0f} ms",
                f"+{result['peak_mb']:.0f} MB",
            )
        )
    return rows, per_page


# --- The bot's own pipeline ----------------------------------------------------------------------
async def pipeline(work: Path, quick: bool) -> dict[str, Any]:
    from bot.answer.tokens import MistralTokenCounter
    from bot.documents.chunk import chunk_sections
    from bot.documents.extract import Limits
    from bot.documents.pool import ExtractionPool
    from tests.support.documents import long_report, make_docx, make_odt, make_pdf

    out: dict[str, Any] = {}
    pages = 20 if quick else 100
    pool = ExtractionPool(workers=1, timeout_seconds=120)
    try:
        await pool.extract(
            make_pdf(["Mise en route du processus de lecture."]), "w.pdf", None, Limits()
        )
        inputs = {
            "PDF (text layer)": ("r.pdf", make_pdf(long_report(pages))),
            "DOCX": (
                "r.docx",
                make_docx([(f"Partie {i}", "\n\n".join(_paragraphs(5, i))) for i in range(pages)]),
            ),
            "ODT": (
                "r.odt",
                make_odt([(f"Partie {i}", "\n\n".join(_paragraphs(5, i))) for i in range(pages)]),
            ),
        }
        for label, (name, data) in inputs.items():
            samples = []
            for _ in range(3):
                started = time.perf_counter()
                extracted = await pool.extract(data, name, None, Limits())
                samples.append(time.perf_counter() - started)
            out[f"extract {label}"] = min(samples) * 1000 / pages
        # Event-loop lag while the 100-page PDF is read (a 5 ms ticker measures its delays).
        name, data = inputs["PDF (text layer)"]
        async with LoopLag(tick=0.005) as lag:
            extracted = await pool.extract(data, name, None, Limits())
            passages = await asyncio.to_thread(chunk_sections, extracted.sections)
        out["loop lag max"] = max(lag.delays) * 1000
        out["loop lag p99"] = percentile(lag.delays, 99) * 1000
        # Same work on the loop itself, for comparison (what the pool avoids).
        from bot.documents.extract import extract_document

        async with LoopLag(tick=0.005) as inline:
            await asyncio.sleep(0.02)
            extract_document(data, name, None, Limits())
            await asyncio.sleep(0.02)
        out["loop lag max (inline, for comparison)"] = max(inline.delays) * 1000
        tokens = MistralTokenCounter()
        await asyncio.to_thread(tokens.count, "warm")
        counts = [tokens.count(p.text) for p in passages]
        out["passage tokens mean"] = sum(counts) / len(counts)
        out["document tokens"] = sum(tokens.count(s.text) for s in extracted.sections)
        out["pages"] = pages
    finally:
        await pool.close()
    return out


async def indexed_and_context(work: Path, quick: bool) -> dict[str, Any]:
    """File bytes → indexed (pool, chunks, embeddings over HTTP, SQLite), and the context a
    question about a 100-page document gets (DocumentService, real tokenizer)."""
    from bot.answer.llm import LLMClient
    from bot.answer.tokens import MistralTokenCounter
    from bot.attachments import Attachment, AttachmentKind
    from bot.documents.service import DocumentService
    from bot.models import IncomingMessage, MessageKind
    from bot.store import Store
    from config.settings import load_settings
    from sandbox.fake_mistral import FakeMistral
    from tests.support.documents import long_report, make_pdf

    pages = 20 if quick else 100
    pdf = make_pdf(
        long_report(pages, marker_page=pages - 3, marker="Le seuil d'alerte est fixé à 37 %.")
    )

    class Bytes:
        async def download_attachment(
            self, attachment: Attachment, max_bytes: int | None = None
        ) -> bytes:
            return pdf

    out: dict[str, Any] = {}
    async with FakeMistral() as fake:
        settings = load_settings(
            None,
            homeserver="http://127.0.0.1:1",
            user_id="@bot:localhost",
            password="x",
            data_dir=work / "idx",
            mistral_api_key="k",
            mistral_server_url=fake.base_url,
        )
        store = await Store.open(settings.database_path)
        llm = LLMClient(
            api_key="k",
            server_url=fake.base_url,
            timeout_seconds=30,
            max_retries=0,
            max_concurrency=4,
        )
        tokens = MistralTokenCounter()
        service = DocumentService(settings, store.documents, Bytes(), llm, tokens)
        try:
            attachment = Attachment(
                kind=AttachmentKind.FILE,
                name="rapport.pdf",
                mimetype="application/pdf",
                size=len(pdf),
                url="mxc://localhost/abc",
            )
            samples = []
            for run in range(3):
                message = IncomingMessage(
                    room_id="!r:localhost",
                    event_id=f"$e{run}",
                    sender="@a:localhost",
                    sender_name="A",
                    kind=MessageKind.ATTACHMENT,
                    body="rapport.pdf",
                    timestamp_ms=1000 + run,
                    attachment=attachment,
                )
                started = time.perf_counter()
                await service.on_attachment(message)
                await service.wait_until_read(message.event_id, 300)
                samples.append(time.perf_counter() - started)
            out["indexed seconds"] = min(samples)
            out["indexed pages"] = pages
            question = IncomingMessage(
                room_id="!r:localhost",
                event_id="$q",
                sender="@a:localhost",
                sender_name="A",
                kind=MessageKind.TEXT,
                body="Quel est le seuil d'alerte ?",
                timestamp_ms=5000,
                reply_to_event_id="$e0",
            )
            budget = settings.context_token_budget - settings.max_answer_tokens - 600
            context = await service.context_for(
                question, question.body, budget, is_direct=False, last_exchange_ms=None
            )
            assert context is not None and context.block
            out["context tokens"] = tokens.count(context.block)
            out["context has answer"] = "37 %" in context.block
            record = await store.documents.by_event("!r:localhost", "$e0")
            assert record is not None
            whole = "\n\n".join(p.text for p in await store.documents.passages_of(record.id))
            out["whole tokens"] = tokens.count(whole)
        finally:
            await service.close()
            await llm.close()
            await store.close()
    return out


async def retrieval(work: Path, quick: bool) -> dict[str, Any]:
    """p99 of one question's search (FTS5 + vectors + fusion) in a room of 10,000 passages, and
    in one room among 1,000 rooms (10 passages each); vectors ranked by numpy here (this
    Python's sqlite3 cannot load extensions; see the notes)."""
    import numpy as np

    from bot.documents.retrieval import fts_expression, query_words, reciprocal_rank_fusion
    from bot.documents.service import COMMON_FRACTION
    from bot.store import Store
    from bot.store.documents import NewPassage, to_blob

    big = 1_000 if quick else 10_000
    rooms = 100 if quick else 1_000
    rng = np.random.default_rng(7)
    text_rng = random.Random(3)
    store = await Store.open(work / "retrieval.sqlite3")
    out: dict[str, Any] = {}
    try:
        repo = store.documents

        async def add_room(room_id: str, count: int, per_doc: int) -> None:
            for start in range(0, count, per_doc):
                document_id = await repo.register(
                    room_id=room_id,
                    event_id=f"${room_id}-{start}",
                    sender="@a:l",
                    sender_name="A",
                    name="d.pdf",
                    mimetype=None,
                    size=None,
                    thread_root_id=None,
                    timestamp_ms=1,
                    source={},
                )
                assert document_id is not None
                passages = [
                    NewPassage(
                        position=i, label=f"page {i + 1}", page=i + 1, text=sentence(text_rng, 300)
                    )
                    for i in range(min(per_doc, count - start))
                ]
                vectors = [to_blob(v) for v in rng.standard_normal((len(passages), 1024))]
                await repo.save_indexed(
                    document_id,
                    room_id=room_id,
                    format="pdf",
                    pages=len(passages),
                    ocr_pages=0,
                    passages=passages,
                    embeddings=vectors,
                )

        started = time.perf_counter()
        await add_room("!big:l", big, 100)
        for index in range(rooms):
            await add_room(f"!room{index}:l", 10, 10)
        out["setup seconds"] = time.perf_counter() - started
        out["passages total"] = big + rooms * 10
        out["big room passages"] = big
        out["rooms"] = rooms + 1

        async def one_search(room_id: str) -> float:
            question = sentence(text_rng, 8)
            query = to_blob(rng.standard_normal(1024))
            started = time.perf_counter()
            common = await repo.frequent_words(query_words(question), COMMON_FRACTION)
            expression = fts_expression(question, common)
            assert expression is not None
            text_hits = await repo.search_text(room_id, expression, 30)
            vector_hits = await repo.search_vectors(room_id, query, 30, -1.0)
            ranked = reciprocal_rank_fusion([text_hits, vector_hits])[:6]
            await repo.passages(room_id, ranked)
            return time.perf_counter() - started

        await one_search("!big:l")  # the room's vectors are loaded once, then cached
        samples = [await one_search("!big:l") for _ in range(100 if quick else 300)]
        out["big room p50"] = percentile(samples, 50) * 1000
        out["big room p99"] = percentile(samples, 99) * 1000
        samples = [
            await one_search(f"!room{text_rng.randrange(rooms)}:l")
            for _ in range(100 if quick else 300)
        ]
        out["many rooms p50"] = percentile(samples, 50) * 1000
        out["many rooms p99"] = percentile(samples, 99) * 1000
        fts_only = []
        for _ in range(100 if quick else 300):
            question = sentence(text_rng, 8)
            started = time.perf_counter()
            common = await repo.frequent_words(query_words(question), COMMON_FRACTION)
            expression = fts_expression(question, common)
            assert expression is not None
            await repo.search_text("!big:l", expression, 30)
            fts_only.append(time.perf_counter() - started)
        out["big room FTS5 only p99"] = percentile(fts_only, 99) * 1000
        out["database MB"] = (work / "retrieval.sqlite3").stat().st_size / 1e6
    finally:
        await store.close()
    return out


_MEMORY_CHILD = r"""
import asyncio, json, os, random, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[3])
def rss():
    for line in Path(f"/proc/{os.getpid()}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
async def main():
    import numpy as np
    import bot.app  # the bot's imports, as in production
    from bot.store import Store
    from bot.store.documents import NewPassage, to_blob
    target_mb, path = float(sys.argv[1]), Path(sys.argv[2])
    store = await Store.open(path)
    repo = store.documents
    words = "budget crédits agents service numérique direction rapport mesure projet".split()
    rng = random.Random(1); vrng = np.random.default_rng(1)
    text_mb, doc, before = 0.0, 0, rss()
    while text_mb < target_mb:
        room = f"!room{doc % 200}:l"
        did = await repo.register(room_id=room, event_id=f"$d{doc}", sender="@a:l", sender_name="A",
            name="d.pdf", mimetype=None, size=None, thread_root_id=None, timestamp_ms=1, source={})
        passages = [NewPassage(position=i, label=f"page {i+1}", page=i+1,
            text=" ".join(rng.choice(words) for _ in range(280))) for i in range(50)]
        vectors = [to_blob(v) for v in vrng.standard_normal((50, 1024))]
        await repo.save_indexed(did, room_id=room, format="pdf", pages=50, ocr_pages=0,
            passages=passages, embeddings=vectors)
        text_mb += sum(len(p.text.encode()) for p in passages) / 1e6
        doc += 1
    await repo.search_text("!room1:l", '"budget"', 30)
    await repo.search_vectors("!room1:l", to_blob(vrng.standard_normal(1024)), 30, -1.0)
    print(json.dumps({"text_mb": text_mb, "documents": doc, "rss_before": before, "rss_after": rss(),
                      "db_mb": path.stat().st_size / 1e6}))
    await store.close()
asyncio.run(main())
"""


def memory(work: Path, quick: bool) -> dict[str, Any]:
    target = 20.0 if quick else 200.0
    run = subprocess.run(
        [sys.executable, "-c", _MEMORY_CHILD, str(target), str(work / "memory.sqlite3"), str(REPO)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(run.stdout)


def render(results: dict[str, Any], command: str) -> str:
    lib_rows, _ = results["libraries"]
    p = results["pipeline"]
    i = results["indexed"]
    r = results["retrieval"]
    m = results["memory"]
    lines = [
        START,
        "## Documents (issue 14)",
        "",
        f"- Command: `{command}` (its own run; the figures above come from `python -m bench`)",
        f"- Date: {time.strftime('%Y-%m-%dT%H:%M:%S%z')}; generated test files (tests/support/documents.py); "
        "the machine was shared with other work, each timing is the best of three; load average "
        f"{results['load'][0]:.1f} at start, {os.getloadavg()[0]:.1f} at end (2 cores)",
        "",
        "| Metric | Value |",
        "| --- | ---: |",
        f"| extraction per page, text PDF ({p['pages']} pages, worker process) | {p['extract PDF (text layer)']:.2f} ms |",
        f"| extraction per section, DOCX ({p['pages']} sections of 5 paragraphs) | {p['extract DOCX']:.2f} ms |",
        f"| extraction per section, ODT ({p['pages']} sections of 5 paragraphs) | {p['extract ODT']:.2f} ms |",
        f"| file bytes → indexed, {i['indexed pages']}-page PDF (extraction, passages, embeddings over HTTP, SQLite) | {i['indexed seconds']:.2f} s |",
        f"| retrieval p50 / p99, one room of {r['big room passages']:,} passages (FTS5 + vectors + fusion) | {r['big room p50']:.1f} / {r['big room p99']:.1f} ms |",
        f"| retrieval p99, same room, FTS5 alone | {r['big room FTS5 only p99']:.1f} ms |",
        f"| retrieval p50 / p99, one room among {r['rooms']:,} rooms ({r['passages total']:,} passages in the database) | {r['many rooms p50']:.1f} / {r['many rooms p99']:.1f} ms |",
        f"| event-loop lag while a {p['pages']}-page PDF is read in the pool, max (p99) | {p['loop lag max']:.1f} ms ({p['loop lag p99']:.1f} ms) |",
        f"| same extraction on the loop, for comparison: max lag | {p['loop lag max (inline, for comparison)']:.0f} ms |",
        f"| resident memory with {m['text_mb']:.0f} MB of document text indexed ({m['documents']:,} documents, {m['db_mb']:.0f} MB database with vectors) | {m['rss_after']:.0f} MB (empty: {m['rss_before']:.0f} MB) |",
        f"| context sent for a question about a {p['pages']}-page document | {i['context tokens']:,} tokens (answer passage included: {'yes' if i['context has answer'] else 'no'}) |",
        f"| the same document pasted whole | {i['whole tokens']:,} tokens |",
        f"| mean passage size (passages never cross a page: one per page of this report) | {p['passage tokens mean']:.0f} tokens |",
        "",
        "Library choice (one fresh process each, best of three, same generated files):",
        "",
        "| Format | Library | Time per page/section | Import | Peak RSS added (import + extraction) |",
        "| --- | --- | ---: | ---: | ---: |",
        *[f"| {a} | {b} | {c} | {d} | {e} |" for a, b, c, d, e in lib_rows],
        "",
        "- Memory: passages, their FTS5 index and vectors live in SQLite on disk; the process keeps "
        "only the vectors of the 16 most recently searched rooms. The 1 GB corpus of the issue was "
        f"scaled to {m['text_mb']:.0f} MB of extracted text to keep the run short on a shared machine: "
        "resident memory does not grow with the corpus (compare with the empty figure).",
        "- Vectors were ranked with numpy: this machine's Python (pyenv build) has no SQLite "
        "extension loading, so sqlite-vec's `vec_distance_cosine` is used only where it loads "
        "(e.g. Debian's or the Docker image's Python).",
        END,
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.documents")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    command = "python -m bench.documents" + (" --quick" if args.quick else "")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        results: dict[str, Any] = {"load": os.getloadavg()}
        started = time.perf_counter()
        results["libraries"] = libraries(work, 20 if args.quick else 100)
        results["pipeline"] = asyncio.run(pipeline(work, args.quick))
        results["indexed"] = asyncio.run(indexed_and_context(work, args.quick))
        results["retrieval"] = asyncio.run(retrieval(work, args.quick))
        results["memory"] = memory(work, args.quick)
        section = render(results, command)
    print(section)
    print(f"({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    if not args.quick:
        report = REPORT.read_text(encoding="utf-8") if REPORT.exists() else ""
        if START in report and END in report:
            report = (
                report[: report.index(START)] + section + report[report.index(END) + len(END) + 1 :]
            )
        else:
            report = report.rstrip("\n") + "\n\n" + section
        REPORT.write_text(report, encoding="utf-8")
        print(f"wrote {REPORT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
