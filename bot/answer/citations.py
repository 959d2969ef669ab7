"""Numbered transcripts and the links a summary's points get to their source messages.

The model sees each message of the window as `[n] 09:14 Nom : texte` and cites the numbers it
used (`[12]`, `[12, 15]`, `[12-14]`). The bot, not the model, turns those numbers into
matrix.to permalinks to the real events, drops any link the model wrote itself (a transcript is
written by room members: a link in a summary must never come from them through the model),
keeps only the expected sections, and turns each action's owner into a pill. All pure.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import quote

from bot.french import fold

MAX_RANGE = 20  # `[1-5000]` is not a citation a reader can use

SECTIONS: tuple[str, ...] = ("Points clés", "Décisions", "Actions", "Questions ouvertes")
_SECTION_KEYS = {
    "points cles": "Points clés",
    "points importants": "Points clés",
    "decisions": "Décisions",
    "actions": "Actions",
    "actions a suivre": "Actions",
    "questions ouvertes": "Questions ouvertes",
    "questions": "Questions ouvertes",
}
_HEADING = re.compile(r"^\s*(?:#{1,6}\s*(.+?)\s*#*|\*\*(.+?)\*\*\s*:?|__(.+?)__\s*:?)\s*$")
# A line saying a section is empty ("Aucune décision.", "- néant"), folded; never one citing.
_NOTHING = re.compile(r"^[\s\-*•]*\(?\s*(?:aucune?s?\b|neant\b|rien\b|pas d|n/?a\b|-+\s*$)[^\[]*$")
_CITATION = re.compile(r"\[\s*(#?\d+(?:\s*(?:[-–,;]|et)\s*#?\d+)*)\s*\]")
_MD_LINK = re.compile(r"!?\[([^\]\n]*)\]\(\s*<?[^)\s>]*>?(?:\s+\"[^\"]*\")?\s*\)")
_AUTOLINK = re.compile(r"<((?:https?|mailto|matrix):[^>\s]*)>", re.IGNORECASE)
_HTML_LINK = re.compile(r"</?a\b[^>]*>", re.IGNORECASE)
_BARE_URL = re.compile(r"\b(?:https?://|www\.)[^\s<>()\[\]]*[^\s<>()\[\].,;:!?'\"»]", re.IGNORECASE)
_OWNER = re.compile(r"^(\s*(?:[-*•]|\d+[.)])\s+)\*\*([^*\n]+?)\*\*")


def permalink(room_id: str, event_id: str, server: str) -> str:
    """matrix.to link to one event, with a `via` so other servers' members can open it."""
    room = quote(room_id, safe="!:")
    event = quote(event_id, safe="$:")
    return f"https://matrix.to/#/{room}/{event}?via={quote(server, safe='')}"


def user_link(user_id: str) -> str:
    return f"https://matrix.to/#/{quote(user_id, safe='@:')}"


def server_of(identifier: str) -> str:
    return identifier.split(":", 1)[1] if ":" in identifier else ""


def number_lines(lines: Sequence[str], start: int = 1) -> list[str]:
    """`[n] line`, numbering from `start` (messages keep one number across chunks)."""
    return [f"[{n}] {line}" for n, line in enumerate(lines, start=start)]


def cited_numbers(text: str) -> list[int]:
    """Every number cited in `text`, in order of first citation."""
    found: list[int] = []
    for match in _CITATION.finditer(text):
        for number in _expand(match.group(1)):
            if number not in found:
                found.append(number)
    return found


def _expand(inner: str) -> list[int]:
    numbers: list[int] = []
    for piece in re.split(r"\s*(?:[,;]|\bet\b)\s*", inner):
        bounds = [
            int(part.strip().lstrip("#")) for part in re.split(r"[-–]", piece) if part.strip()
        ]
        if len(bounds) == 2 and 0 <= bounds[1] - bounds[0] < MAX_RANGE:
            numbers.extend(range(bounds[0], bounds[1] + 1))
        elif len(bounds) == 2:
            numbers.extend(bounds)
        elif bounds:
            numbers.append(bounds[0])
    return numbers


def drop_model_links(text: str, allowed_urls: frozenset[str] = frozenset()) -> str:
    """Links the model wrote lose their target: Markdown links keep their text, HTML anchors and
    autolinks go, and a bare URL stays only when it was written verbatim in the window."""
    text = _MD_LINK.sub(lambda m: m.group(1), text)
    text = _AUTOLINK.sub("", text)
    text = _HTML_LINK.sub("", text)
    return _BARE_URL.sub(lambda m: m.group(0) if m.group(0) in allowed_urls else "", text)


def link_citations(text: str, event_ids: Mapping[int, str], room_id: str, server: str) -> str:
    """Replace each `[n, m]` by permalinks `([n](…), [m](…))`; unknown numbers are dropped."""

    def replace(match: re.Match[str]) -> str:
        links = []
        for number in dict.fromkeys(_expand(match.group(1))):
            event_id = event_ids.get(number)
            if event_id is not None:
                links.append(f"[{number}]({permalink(room_id, event_id, server)})")
        return f"({', '.join(links)})" if links else ""

    linked = _CITATION.sub(replace, text)
    return re.sub(r"[ \t]+(?=\n|$)", "", re.sub(r" {2,}(?=\()", " ", linked))


@dataclass(frozen=True)
class Speaker:
    user_id: str
    name: str


def _name_keys(name: str) -> set[str]:
    folded = fold(name)
    short = re.sub(r"\s*\[[^\]]*\]\s*$", "", folded)  # Tchap's `Nom [Ministère]`
    return {folded, short, short.split(" ")[0]} if short else {folded}


def pill_owners(line: str, speakers: Sequence[Speaker]) -> str:
    """`- **Bob** : …` → `- [Bob](https://matrix.to/#/@bob:…) : …` when Bob spoke in the window.

    A first name matches only when no other speaker shares it; an unknown name stays text."""
    match = _OWNER.match(line)
    if match is None:
        return line
    wanted = fold(match.group(2)).lstrip("@")
    candidates = {s.user_id: s for s in speakers if wanted in _name_keys(s.name)}
    if len(candidates) != 1:
        exact = {s.user_id: s for s in speakers if fold(s.name) == wanted}
        if len(exact) != 1:
            return line
        candidates = exact
    speaker = next(iter(candidates.values()))
    label = match.group(2).strip().lstrip("@").replace("[", "(").replace("]", ")")
    return f"{match.group(1)}[{label}]({user_link(speaker.user_id)}){line[match.end() :]}"


def section_of(line: str) -> str | None:
    """The known section a heading line opens (`### Décisions`, `**Actions :**`), else None."""
    match = _HEADING.match(line)
    if match is None:
        return None
    title = next(group for group in match.groups() if group is not None)
    return _SECTION_KEYS.get(fold(title).rstrip(" :"))


def structure(text: str, speakers: Sequence[Speaker] = ()) -> str:
    """Keep the four sections in their order, as `### Titre`; drop empty ones and their
    "aucune" lines; give action owners their pill. Text before any section is kept as is."""
    preamble: list[str] = []
    sections: dict[str, list[str]] = {}
    current: list[str] = preamble
    for line in text.splitlines():
        name = section_of(line)
        if name is not None:
            current = sections.setdefault(name, [])
            continue
        if current is not preamble and _NOTHING.match(fold(line)) and line.strip():
            continue
        if current is sections.get("Actions"):
            line = pill_owners(line, speakers)
        current.append(line)
    parts = ["\n".join(preamble).strip()]
    for name in SECTIONS:
        body = "\n".join(sections.get(name, [])).strip()
        if body:
            parts.append(f"### {name}\n{body}")
    return "\n\n".join(part for part in parts if part)


def render(
    text: str,
    *,
    event_ids: Mapping[int, str],
    room_id: str,
    server: str,
    speakers: Sequence[Speaker] = (),
    allowed_urls: frozenset[str] = frozenset(),
) -> str:
    """The model's summary as users read it: sections, pills, and only the bot's own links."""
    cleaned = drop_model_links(text, allowed_urls)
    return link_citations(structure(cleaned, speakers), event_ids, room_id, server)


def urls_in(bodies: Sequence[str]) -> frozenset[str]:
    """Bare links in `bodies`. Most messages have none: a substring test skips them (the
    regex alone took 25 ms over `!resume 5000`'s messages, after the model's last answer)."""
    return frozenset(
        match.group(0)
        for body in bodies
        if "://" in body or "www." in body.lower()
        for match in _BARE_URL.finditer(body)
    )
