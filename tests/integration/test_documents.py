"""Documents shared in rooms, end to end: real Synapse, real nio users, the real SDK against
the fake Mistral server (chat, embeddings, OCR).

A user shares a file (clear or encrypted room); the bot reads it in the background; questions
that reply to it, DM questions right after it, `!resume` on it and later questions in the room
get its passages, and the answer cites them with a link to the file's event.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
from pathlib import Path
from typing import Any

import nio
import pytest

from bot import texts
from sandbox.fake_mistral import FakeMistral
from sandbox.mistral_wire import message_text
from tests.integration.conftest import StartBot
from tests.integration.test_pilot import SECRET, rows
from tests.support.bot_helpers import ask, bot_replies, eventually, replies_to, room_with_bot
from tests.support.documents import (
    long_report,
    make_docx,
    make_encrypted_pdf,
    make_odt,
    make_pdf,
    make_protected_docx,
    make_zip_bomb,
)
from tests.support.matrix_client import join_room, send_file, send_text, wait_for_event

pytestmark = pytest.mark.integration

PDF = "application/pdf"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
ODT = "application/vnd.oasis.opendocument.text"
BUDGET_LINE = "Le budget numérique de la direction atteint 4,2 millions d'euros en 2026."


def user_text(body: dict[str, Any]) -> str:
    return "\n".join(message_text(m) for m in body["messages"] if m["role"] == "user")


def prompt_of(fake: FakeMistral, question: str) -> str:
    """The user part of the chat request that carried `question`."""
    matching = [body for body in fake.requests if question in user_text(body)]
    assert matching, f"no chat request carried {question!r}"
    return user_text(matching[-1])


@pytest.mark.parametrize("encrypted", [False, True], ids=["clear", "encrypted"])
async def test_question_replying_to_a_pdf_gets_its_text_and_cites_it(
    start_bot: StartBot, user_client: Any, fake_llm: FakeMistral, encrypted: bool
) -> None:
    bot = await start_bot()
    alice: nio.AsyncClient = await user_client("alice", encryption=encrypted)
    room_id = await room_with_bot(alice, bot.user_id, encrypted=encrypted)
    pdf = make_pdf(["Rapport annuel de la direction du numérique.", BUDGET_LINE])
    file_event = await send_file(alice, room_id, pdf, "Rapport 2026.pdf", PDF)

    def cite_budget_page(body: dict[str, Any]) -> str:
        number = re.search(r"\[(\d+)\] « Rapport 2026\.pdf », page 2", user_text(body))
        return (
            f"D'après le rapport, le budget est de 4,2 M€ [{number.group(1) if number else '?'}]."
        )

    fake_llm.responder = cite_budget_page

    answer = await ask(
        alice,
        room_id,
        bot.user_id,
        "Assistant, quel est le budget ?",
        mentions=[bot.user_id],
        reply_to=file_event,
    )

    prompt = prompt_of(fake_llm, "quel est le budget")
    assert BUDGET_LINE in prompt and "« Rapport 2026.pdf », page 2" in prompt
    body = answer["content"]["body"]
    assert "4,2 M€ [2]" in body
    assert "Sources" in body and "Rapport 2026.pdf, page 2" in body
    assert "page 1" not in body  # only what the answer cites is listed
    assert f"https://matrix.to/#/{room_id}/{file_event}" in body
    # Nobody asked about the file itself: the bot did not reply to it.
    assert not [e for e in bot_replies(alice, room_id, bot.user_id) if replies_to(file_event)(e)]


@pytest.mark.parametrize("encrypted", [False, True], ids=["clear", "encrypted"])
async def test_dm_question_right_after_a_document_is_about_it(
    start_bot: StartBot, user_client: Any, fake_llm: FakeMistral, encrypted: bool
) -> None:
    bot = await start_bot(pilot_secret=SECRET)
    alice: nio.AsyncClient = await user_client("alice", encryption=encrypted)
    room_id = await room_with_bot(alice, bot.user_id, is_direct=True, encrypted=encrypted)
    docx = make_docx(
        [("Objet", "Note sur le télétravail des agents."), ("Décision", "Deux jours par semaine.")],
        table=[["Service", "Jours"], ["DINUM", "2"]],
    )
    await send_file(alice, room_id, docx, "note.docx", DOCX)

    await ask(alice, room_id, bot.user_id, "Résume ce document.")

    prompt = prompt_of(fake_llm, "Résume ce document.")
    assert "Deux jours par semaine." in prompt and "DINUM | 2" in prompt
    assert "« note.docx », section « Décision »" in prompt
    # The pilot's report counts answers about documents as their own kind.
    await eventually(lambda: ("document",) in rows(bot, "SELECT kind FROM usage_events"))


async def test_resume_replying_to_a_long_document_is_map_reduced(
    start_bot: StartBot, user_client: Any, fake_llm: FakeMistral
) -> None:
    bot = await start_bot(context_token_budget=3000, max_answer_tokens=300)
    alice: nio.AsyncClient = await user_client("alice")
    room_id = await room_with_bot(alice, bot.user_id)
    pdf = make_pdf(long_report(12, marker_page=9, marker="La conclusion recommande un audit."))
    file_event = await send_file(alice, room_id, pdf, "long.pdf", PDF)

    answer = await ask(
        alice, room_id, bot.user_id, "!resume", mentions=[bot.user_id], reply_to=file_event
    )

    body = answer["content"]["body"]
    assert "Résumé de « long.pdf »" in body and "12 page(s)" in body
    systems = [message_text(b["messages"][0]) for b in fake_llm.requests]
    parts = [s for s in systems if "Voici une partie d'un document" in s]
    merges = [s for s in systems if "résumés successifs" in s]
    assert len(parts) >= 2 and len(merges) >= 1, "map (parts) then reduce (merge)"
    assert len(fake_llm.requests) == len(parts) + len(merges)
    assert any("La conclusion recommande un audit." in user_text(b) for b in fake_llm.requests)


async def test_later_question_finds_the_passage_in_the_room_documents(
    start_bot: StartBot, user_client: Any, fake_llm: FakeMistral
) -> None:
    bot = await start_bot()
    alice: nio.AsyncClient = await user_client("alice")
    room_id = await room_with_bot(alice, bot.user_id)
    odt = make_odt(
        [
            ("Calendrier", "La migration des postes de travail commence en mars."),
            ("Cantine", "Le restaurant administratif ferme en août."),
        ]
    )
    odt_event = await send_file(alice, room_id, odt, "plan.odt", ODT)
    await send_file(alice, room_id, make_pdf([BUDGET_LINE]), "budget.pdf", PDF)
    # The room's documents are read before this unrelated question is answered.
    await ask(alice, room_id, bot.user_id, "!documents", mentions=[bot.user_id])

    answer = await ask(
        alice,
        room_id,
        bot.user_id,
        "Assistant, quand ferme le restaurant administratif ?",
        mentions=[bot.user_id],
    )

    prompt = prompt_of(fake_llm, "quand ferme le restaurant")
    assert "Le restaurant administratif ferme en août." in prompt
    assert "4,2 millions" not in prompt  # the budget PDF does not match this question
    assert f"https://matrix.to/#/{room_id}/{odt_event}" in answer["content"]["body"]

    unrelated = await ask(
        alice, room_id, bot.user_id, "Assistant, bonjour !", mentions=[bot.user_id]
    )
    assert "Sources" not in unrelated["content"]["body"]
    assert "Extraits de documents" not in prompt_of(fake_llm, "bonjour !")


async def test_bad_files_get_one_clear_sentence_and_block_nothing(
    start_bot: StartBot, user_client: Any, fake_llm: FakeMistral
) -> None:
    bot = await start_bot(attachment_max_mb=1, ocr_model="")
    alice: nio.AsyncClient = await user_client("alice")
    room_id = await room_with_bot(alice, bot.user_id)
    cases = [
        ("protege.pdf", PDF, make_encrypted_pdf("Texte secret du document protégé."), "protected"),
        ("protege.docx", DOCX, make_protected_docx(), "protected"),
        ("bombe.docx", DOCX, make_zip_bomb("docx", 200), "too_large"),
        ("abime.pdf", PDF, b"%PDF-1.7\n" + bytes(range(256)) * 4, "corrupt"),
        ("scan.pdf", PDF, make_pdf([None, None]), "scanned"),
        ("vide.txt", "text/plain", b"   \n\n  ", "empty"),
        ("tableur.xlsx", "application/vnd.ms-excel", b"PK\x03\x04rest", "unsupported"),
        ("enorme.pdf", PDF, b"%PDF-1.7\n" + b"0" * 1_200_000, "attachment:too_large"),
    ]
    events = {}
    for name, mimetype, data, reason in cases:
        events[name] = (await send_file(alice, room_id, data, name, mimetype), reason)
    asked = 0
    for name, (event_id, reason) in events.items():
        answer = await ask(
            alice,
            room_id,
            bot.user_id,
            "Assistant, résume.",
            mentions=[bot.user_id],
            reply_to=event_id,
        )
        expected = texts.DOCUMENT_ERRORS[reason].format(max_mb="1", max_pages=300)
        assert answer["content"]["body"] == expected, name
        asked += 1
    assert asked == len(cases)
    assert not fake_llm.requests, "no question about a broken file reached the model"
    # The room still works.
    fine = await ask(alice, room_id, bot.user_id, "Assistant, ça va ?", mentions=[bot.user_id])
    assert fine["content"]["body"].startswith("Réponse simulée")


def document_rows(path: Path, room_id: str) -> dict[str, int]:
    """Rows the bot keeps about the room's documents (read straight from its database)."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        return {
            "documents": db.execute(
                "SELECT count(*) FROM documents WHERE room_id = ?", (room_id,)
            ).fetchone()[0],
            "passages": db.execute(
                "SELECT count(*) FROM document_passages WHERE room_id = ?", (room_id,)
            ).fetchone()[0],
            "fts": db.execute("SELECT count(*) FROM document_passages_fts").fetchone()[0],
            "vectors": db.execute(
                "SELECT count(*) FROM document_passages WHERE room_id = ? AND embedding IS NOT NULL",
                (room_id,),
            ).fetchone()[0],
        }


async def test_documents_command_lists_and_forgets_with_the_right_people(
    start_bot: StartBot, user_client: Any, fake_llm: FakeMistral
) -> None:
    bot = await start_bot()
    alice: nio.AsyncClient = await user_client("alice")
    bob: nio.AsyncClient = await user_client("bob")
    room_id = await room_with_bot(alice, bot.user_id)
    await alice.room_invite(room_id, bob.user_id)
    await join_room(bob, room_id)
    await send_file(alice, room_id, make_pdf([BUDGET_LINE, "Annexe."]), "budget.pdf", PDF)
    await send_file(bob, room_id, make_docx([("Note", "Texte de Bob.")]), "bob.docx", DOCX)

    listing = (await ask(alice, room_id, bot.user_id, "!documents"))["content"]["body"]
    assert "1. **budget.pdf** — partagé par alice" in listing and "2 page(s)" in listing
    assert "2. **bob.docx** — partagé par bob" in listing

    # Bob (level 0) cannot remove Alice's document; he can remove his own.
    refused = await ask(bob, room_id, bot.user_id, "!documents oublier 1")
    assert refused["content"]["body"] == texts.DOCUMENTS_FORGET_REFUSED
    own = await ask(bob, room_id, bot.user_id, "!documents oublier 2")
    assert "« bob.docx » est retiré" in own["content"]["body"]
    # Alice created the room (highest power): she may remove anything.
    await ask(alice, room_id, bot.user_id, "!documents oublier 1")
    assert document_rows(bot.settings.database_path, room_id) == {
        "documents": 0,
        "passages": 0,
        "fts": 0,
        "vectors": 0,
    }
    later = await ask(
        alice, room_id, bot.user_id, "Assistant, quel budget ?", mentions=[bot.user_id]
    )
    assert "Sources" not in later["content"]["body"]
    assert "4,2 millions" not in prompt_of(fake_llm, "quel budget")


async def test_redaction_forget_all_and_forget_me_delete_document_text(
    start_bot: StartBot, user_client: Any
) -> None:
    bot = await start_bot()
    alice: nio.AsyncClient = await user_client("alice")
    room_id = await room_with_bot(alice, bot.user_id)
    path = bot.settings.database_path
    first = await send_file(alice, room_id, make_pdf([BUDGET_LINE]), "a.pdf", PDF)
    await send_file(alice, room_id, make_odt([("Plan", "Migration en mars.")]), "b.odt", ODT)
    await ask(alice, room_id, bot.user_id, "!documents")
    assert document_rows(path, room_id)["documents"] == 2
    assert document_rows(path, room_id)["vectors"] == 2

    await alice.room_redact(room_id, first, reason="partagé par erreur")
    await ask(alice, room_id, bot.user_id, "!documents")  # handled after the redaction
    assert document_rows(path, room_id)["documents"] == 1

    await ask(alice, room_id, bot.user_id, "!oublie tout")
    assert document_rows(path, room_id) == {"documents": 0, "passages": 0, "fts": 0, "vectors": 0}

    await send_file(alice, room_id, make_pdf([BUDGET_LINE]), "c.pdf", PDF)
    await ask(alice, room_id, bot.user_id, "!documents")
    forgot = await ask(alice, room_id, bot.user_id, "!oublie-moi")
    assert "1 document(s) partagé(s)" in forgot["content"]["body"]
    assert document_rows(path, room_id)["passages"] == 0


async def test_scanned_pages_are_read_by_ocr(
    start_bot: StartBot, user_client: Any, fake_llm: FakeMistral
) -> None:
    bot = await start_bot()
    alice: nio.AsyncClient = await user_client("alice")
    room_id = await room_with_bot(alice, bot.user_id, is_direct=True)
    fake_llm.ocr_responder = lambda index: f"Arrêté préfectoral numérisé, page {index + 1}."
    await send_file(alice, room_id, make_pdf(["Page de garde du dossier.", None]), "scan.pdf", PDF)

    await ask(alice, room_id, bot.user_id, "Que dit ce courrier ?")

    assert [r["pages"] for r in fake_llm.ocr_requests] == [[1]]  # only the scanned page
    assert fake_llm.ocr_requests[0]["model"] == "mistral-ocr-latest"
    assert fake_llm.ocr_requests[0]["document"]["document_url"].startswith(
        "data:application/pdf;base64,"
    )
    prompt = prompt_of(fake_llm, "Que dit ce courrier ?")
    assert "Arrêté préfectoral numérisé, page 2." in prompt
    assert "Page de garde du dossier." in prompt
    listing = (await ask(alice, room_id, bot.user_id, "!documents"))["content"]["body"]
    assert "dont 1 lue(s) par reconnaissance de caractères" in listing


async def test_without_embeddings_retrieval_falls_back_to_full_text_silently(
    start_bot: StartBot, user_client: Any, fake_llm: FakeMistral
) -> None:
    fake_llm.embeddings_enabled = False  # a local model: no /v1/embeddings
    fake_llm.ocr_enabled = False
    bot = await start_bot()
    alice: nio.AsyncClient = await user_client("alice")
    room_id = await room_with_bot(alice, bot.user_id)
    event = await send_file(alice, room_id, make_pdf([BUDGET_LINE]), "budget.pdf", PDF)
    scan = await send_file(alice, room_id, make_pdf([None]), "scan.pdf", PDF)

    answer = await ask(
        alice,
        room_id,
        bot.user_id,
        "Assistant, quel est le budget numérique ?",
        mentions=[bot.user_id],
    )

    assert BUDGET_LINE in prompt_of(fake_llm, "quel est le budget numérique")
    assert f"https://matrix.to/#/{room_id}/{event}" in answer["content"]["body"]
    assert document_rows(bot.settings.database_path, room_id)["vectors"] == 0
    # The OCR endpoint is missing too: the scan gets the "no readable text" sentence.
    reply = await ask(
        alice, room_id, bot.user_id, "Assistant, lis ça", mentions=[bot.user_id], reply_to=scan
    )
    assert reply["content"]["body"] == texts.DOCUMENT_ERRORS["scanned"]


async def test_streamed_answer_ends_with_the_sources(
    start_bot: StartBot, user_client: Any, fake_llm: FakeMistral
) -> None:
    bot = await start_bot(streaming=True, stream_edit_interval_seconds=0.2)
    alice: nio.AsyncClient = await user_client("alice")
    room_id = await room_with_bot(alice, bot.user_id, is_direct=True)
    event = await send_file(alice, room_id, make_pdf([BUDGET_LINE]), "budget.pdf", PDF)
    fake_llm.responder = lambda body: "Le budget est de 4,2 millions d'euros [1]."

    question = await send_text(alice, room_id, "Quel est le budget ?")
    final = await wait_for_event(
        alice,
        room_id,
        lambda e: (
            e["sender"] == bot.user_id
            and "Sources" in e["content"].get("m.new_content", e["content"])["body"]
        ),
    )

    body = final["content"].get("m.new_content", final["content"])["body"]
    assert body.startswith("Le budget est de 4,2 millions d'euros [1].")
    assert f"https://matrix.to/#/{room_id}/{event}" in body
    first = final
    if "m.new_content" in final["content"]:  # the final edit of a message sent earlier
        original = final["content"]["m.relates_to"]["event_id"]
        first = await wait_for_event(alice, room_id, lambda e: e["event_id"] == original)
    assert replies_to(question)(first)
