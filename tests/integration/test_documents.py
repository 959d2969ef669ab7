"""Documents shared in rooms, end to end: real Synapse, real nio users, the real SDK against
the fake Mistral server (chat, embeddings, OCR).

A user shares a file (clear or encrypted room); the bot reads it in the background; questions
that reply to it, DM questions right after it, `!resume` on it and later questions in the room
get its passages, and the answer cites them with a link to the file's event.
"""

from __future__ import annotations

import re
from typing import Any

import nio
import pytest

from bot import texts
from sandbox.fake_mistral import FakeMistral, message_text
from tests.integration.conftest import StartBot
from tests.support.bot_helpers import ask, bot_replies, replies_to, room_with_bot
from tests.support.documents import (
    long_report,
    make_docx,
    make_encrypted_pdf,
    make_odt,
    make_pdf,
    make_protected_docx,
    make_zip_bomb,
)
from tests.support.matrix_client import send_file

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
    bot = await start_bot()
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
