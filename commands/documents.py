"""`!documents`: the room's documents; `!documents oublier N` removes one from the bot's memory.

Removing is for the person who shared the document and for the room's moderators (checked on
the room's real power levels at the time of the command).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import structlog

from bot import texts
from bot.answer.conversation import error_text
from bot.answer.llm_failures import LLMError
from bot.documents.summary import DocumentSummarizer
from bot.french import PARIS, fold
from bot.store.documents import DocumentRecord
from commands.base import Command, CommandContext, UsageError

log = structlog.get_logger(__name__)
LISTING_WAIT_SECONDS = 15.0
_FORGET_WORDS = {"oublier", "oublie", "retirer", "supprimer", "forget", "remove", "delete"}


@dataclass(frozen=True)
class DocumentsArgs:
    forget: int | None = None  # 1-based number in the list


def parse(text: str) -> DocumentsArgs:
    words = text.split()
    if not words:
        return DocumentsArgs()
    if len(words) == 2 and fold(words[0]) in _FORGET_WORDS:
        number = words[1].lstrip("n°#")
        if number.isdigit() and 0 < int(number) < 100_000:
            return DocumentsArgs(forget=int(number))
        raise UsageError("le numéro du document doit être un entier positif")
    raise UsageError("argument inconnu")


def _date(timestamp_ms: int) -> str:
    moment = datetime.fromtimestamp(timestamp_ms / 1000, PARIS)
    return (
        f"{moment.day} {texts.MONTHS[moment.month - 1]} {moment.year} à {moment.strftime('%H:%M')}"
    )


def _escape(name: str) -> str:
    return "".join(f"\\{char}" if char in "[]()*_`<>#|\\" else char for char in name)


async def run(ctx: CommandContext, args: DocumentsArgs) -> None:
    if ctx.documents is None:
        await ctx.reply(texts.DOCUMENTS_NONE)
        return
    room_id = ctx.message.room_id
    await ctx.documents.wait_for_room(room_id, LISTING_WAIT_SECONDS)  # a file shared just now
    documents = await ctx.documents.repository.in_room(room_id)
    if args.forget is None:
        if not documents:
            await ctx.reply(texts.DOCUMENTS_NONE)
            return
        lines = []
        for number, document in enumerate(documents, start=1):
            details = ""
            if document.pages:
                details += texts.DOCUMENTS_LINE_PAGES.format(pages=document.pages)
            if document.ocr_pages:
                details += texts.DOCUMENTS_LINE_OCR.format(count=document.ocr_pages)
            if document.status == "pending":
                details += texts.DOCUMENTS_LINE_PENDING
            elif document.status == "failed":
                details += texts.DOCUMENTS_LINE_FAILED
            lines.append(
                texts.DOCUMENTS_LINE.format(
                    number=number,
                    name=_escape(document.name),
                    sender=_escape(document.sender_name),
                    date=_date(document.timestamp_ms),
                    details=details,
                )
            )
        header = texts.DOCUMENTS_HEADER.format(count=len(documents))
        footer = texts.DOCUMENTS_FOOTER.format(prefix=ctx.prefix)
        await ctx.reply(f"{header}\n\n" + "\n".join(lines) + f"\n\n{footer}")
        return
    if args.forget > len(documents):
        await ctx.reply(texts.DOCUMENTS_NO_SUCH.format(number=args.forget, prefix=ctx.prefix))
        return
    document = documents[args.forget - 1]
    if document.sender != ctx.message.sender and not await ctx.sender_is_moderator():
        await ctx.reply(texts.DOCUMENTS_FORGET_REFUSED)
        return
    await ctx.documents.repository.delete(room_id, document.id)
    log.info("command.document_forgotten", room_id=room_id, document_id=document.id)
    await ctx.reply(texts.DOCUMENTS_FORGOTTEN.format(name=_escape(document.name)))


async def summarize_document(ctx: CommandContext, event_id: str) -> bool:
    """`!resume` replying to a file: summarise the document. False if it is no document."""
    assert ctx.documents is not None
    document = await ctx.documents.readable(ctx.message.room_id, event_id)
    if document is None:
        return False
    if not isinstance(document, DocumentRecord):
        await ctx.reply(document)
        return True
    passages = await ctx.documents.repository.passages_of(document.id)
    settings = ctx.settings
    summarizer = DocumentSummarizer(
        ctx.llm,
        ctx.conversation.tokens,
        context_budget=settings.context_token_budget,
        max_answer_tokens=settings.max_answer_tokens,
        max_parallel=max(1, settings.llm_max_concurrency // 2),
    )
    try:
        summary = await summarizer.summarize(
            passages,
            instructions=ctx.conversation.system_prompt(ctx.room, ctx.room_settings),
            language=ctx.room_settings.langue,
            model=ctx.room_settings.modele or settings.model,
            temperature=ctx.room_settings.temperature
            if ctx.room_settings.temperature is not None
            else settings.temperature,
        )
    except LLMError as error:
        log.warning("document_summary.failed", room_id=ctx.message.room_id, kind=error.kind.value)
        await ctx.reply(error_text(error))
        return True
    size = (
        texts.DOCUMENT_SUMMARY_PAGES.format(count=document.pages)
        if document.pages
        else texts.DOCUMENT_SUMMARY_PASSAGES.format(count=document.passages)
    )
    header = texts.DOCUMENT_SUMMARY_HEADER.format(name=_escape(document.name), pages=size)
    await ctx.reply(f"{header}\n\n{summary.text}", notice=False)
    await ctx.store.usage.record(
        ctx.message.room_id, summary.prompt_tokens, summary.completion_tokens
    )
    log.info(
        "document_summary.done",
        room_id=ctx.message.room_id,
        document_id=document.id,
        parts=summary.parts,
        calls=summary.calls,
    )
    return True


COMMAND: Command[DocumentsArgs] = Command(
    name="documents",
    aliases=("docs", "fichiers"),
    summary="Liste les documents du salon que l'assistant a lus ; en retire un.",
    usage="documents [oublier N]",
    parse=parse,
    run=run,
    details=(
        "Sans argument : les documents partagés dans ce salon et lus par l'assistant (nom, qui "
        "l'a partagé, quand, nombre de pages).\n"
        "`documents oublier N` : retire le document N (son texte, ses passages et leur index). "
        "Réservé à la personne qui l'a partagé et aux modérateurs du salon.\n"
        "Pour interroger un document, répondez à son message en me mentionnant ; en message "
        "privé, posez votre question juste après l'avoir envoyé. `resume` en réponse à un "
        "document le résume."
    ),
)
