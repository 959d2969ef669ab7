"""What a question gets from the room's documents: passages as one numbered block within its
token budget, and the footer citing the sources its answer used, with links to the files.

Pure: the passages come from the store already; the service decides which and in what order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import quote

from bot import texts
from bot.answer.tokens import TokenCounter
from bot.store.documents import StoredPassage


@dataclass(frozen=True)
class Source:
    number: int
    document_name: str
    label: str
    room_id: str
    event_id: str

    @property
    def link(self) -> str:
        return (
            f"https://matrix.to/#/{quote(self.room_id, safe='!:')}/{quote(self.event_id, safe='$')}"
        )


@dataclass
class DocumentContext:
    """What a question gets from the room's documents."""

    block: str = ""  # goes before the question, as data
    sources: list[Source] = field(default_factory=list)
    notice: str | None = None  # say this instead of asking the model (unreadable document)
    tokens: int = 0

    def footer(self, answer: str) -> str:
        """The sources the answer cites ([n]); all of them when it cites none."""
        if not self.sources:
            return ""
        cited = {s for s in self.sources if f"[{s.number}]" in answer} or set(self.sources)
        lines = [
            texts.DOCUMENT_SOURCE_LINE.format(
                number=source.number,
                name=_markdown_label(source.document_name),
                label=source.label,
                link=source.link,
            )
            for source in sorted(cited, key=lambda s: s.number)
        ]
        return "\n\n" + texts.DOCUMENT_SOURCES_HEADER + "\n" + "\n".join(lines)


def _markdown_label(name: str) -> str:
    return "".join(f"\\{char}" if char in "[]()*_`<>#|\\" else char for char in name)


def build_context(
    ids: Sequence[int],
    passages: Mapping[int, StoredPassage],
    budget: int,
    tokens: TokenCounter,
    *,
    keep_order: bool,
) -> DocumentContext | None:
    """The passages `ids` (in that order) that fit `budget`, one number per page or section.
    `keep_order` skips a passage too big and goes on (a document read in order); otherwise the
    first that does not fit ends the list (a ranking: what follows matters less). None if
    nothing fits."""
    context = DocumentContext()
    numbers: dict[tuple[int, str], Source] = {}
    parts: list[str] = []
    for passage_id in ids:
        passage = passages.get(passage_id)
        if passage is None:
            continue
        key = (passage.document_id, passage.label)
        source = numbers.get(key)
        if source is None:
            source = Source(
                number=len(numbers) + 1,
                document_name=passage.document_name,
                label=passage.label,
                room_id=passage.room_id,
                event_id=passage.event_id,
            )
        part = texts.DOCUMENT_PASSAGE.format(
            number=source.number,
            name=passage.document_name,
            label=passage.label,
            text=passage.text,
        )
        cost = tokens.count(part)
        if context.tokens + cost > budget:
            if keep_order:
                continue
            break
        if key not in numbers:
            numbers[key] = source
            context.sources.append(source)
        parts.append(part)
        context.tokens += cost
    if not parts:
        return None
    context.block = texts.DOCUMENT_CONTEXT_HEADER + "\n\n" + "\n\n".join(parts)
    return context
