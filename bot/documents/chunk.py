"""Sections → overlapping passages of about `PASSAGE_CHARS` characters (~500 tokens).

Cuts fall on paragraph ends, else sentence ends, else spaces; consecutive passages share
`OVERLAP_CHARS` so a sentence straddling a cut is whole in one of them. A passage never
crosses a section (page or titled section), so each one cites one place.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot.documents.extract import Section

PASSAGE_CHARS = 2_700  # ~500 tokens of French with Mistral's tokenizer (docs/benchmarks.md)
OVERLAP_CHARS = 400
_SENTENCE_END = re.compile(r"[.!?…;:]\s")


@dataclass(frozen=True)
class Passage:
    position: int
    label: str
    page: int | None
    text: str


def _cut_at(text: str, limit: int) -> int:
    """Where to end a passage starting at 0: the last good boundary before `limit`."""
    if len(text) <= limit:
        return len(text)
    window = text[:limit]
    floor = limit // 2
    for boundary in ("\n\n", "\n"):
        at = window.rfind(boundary)
        if at >= floor:
            return at + len(boundary)
    ends = [m.end() for m in _SENTENCE_END.finditer(window) if m.end() >= floor]
    if ends:
        return ends[-1]
    at = window.rfind(" ")
    return at + 1 if at >= floor else limit


def _start_after_overlap(text: str, end: int, overlap: int) -> int:
    """Next passage starts `overlap` chars before `end`, moved forward to a word start."""
    start = max(0, end - overlap)
    if start == 0:
        return end
    space = text.find(" ", start, end)
    return space + 1 if space >= 0 else start


def chunk_sections(
    sections: list[Section], size: int = PASSAGE_CHARS, overlap: int = OVERLAP_CHARS
) -> list[Passage]:
    passages: list[Passage] = []
    for section in sections:
        text = section.text
        start = 0
        while start < len(text):
            end = start + _cut_at(text[start:], size)
            piece = text[start:end].strip()
            if piece:
                passages.append(Passage(len(passages), section.label, section.page, piece))
            if end >= len(text):
                break
            start = max(start + 1, _start_after_overlap(text, end, overlap))
    return passages
