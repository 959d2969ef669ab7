"""Cutting long answers into parts that each fit one Matrix event and render on their own."""

from __future__ import annotations

import json
import re
import unicodedata
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass

from bot.answer.render import render_markdown

#: Hard limit of the Matrix spec for a whole event (JSON, signatures included).
MATRIX_EVENT_MAX_BYTES = 65_536

# ---------------------------------------------------------------------- splitting

_FENCE_OPEN_RE = re.compile(r"(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>.*)")
_FENCE_CLOSE_RE = re.compile(r"[ \t]*(?P<fence>`{3,}|~{3,})[ \t]*")
_SENTENCE_END_RE = re.compile(r"[.!?…][\"'»”’)\]]*[ \t]+")
_SPACES_RE = re.compile(r"[ \t]+")
_NON_SPACE_RE = re.compile(r"\S")
_MIN_SPLIT_BYTES = 16
_MIN_MATRIX_LIMIT = 1024


def _is_fence_line(line: str) -> bool:
    """Would CommonMark (loosely: any indentation) read this line as a fence?"""
    match = _FENCE_OPEN_RE.fullmatch(line.rstrip("\r"))
    return match is not None and not (match["fence"][0] == "`" and "`" in match["info"])


def _utf8_len(char: str) -> int:
    code = ord(char)
    return 1 if code < 0x80 else 2 if code < 0x800 else 3 if code < 0x10000 else 4


def _is_extender(char: str) -> bool:
    """Characters that belong to the grapheme before them (approximation of UAX #29)."""
    code = ord(char)
    return (
        unicodedata.category(char) in ("Mn", "Me", "Mc")
        or code == 0x200D
        or 0xFE00 <= code <= 0xFE0F
        or 0x1F3FB <= code <= 0x1F3FF
        or 0xE0020 <= code <= 0xE007F
    )


def _is_regional_indicator(char: str) -> bool:
    return 0x1F1E6 <= ord(char) <= 0x1F1FF


@dataclass(frozen=True, slots=True)
class _Fence:
    """A fenced code block of the text, by character offsets."""

    open_start: int  # start of the opening fence line
    content_start: int  # just after the opening fence line
    close_start: int  # start of the closing fence line (len(text) if unclosed)
    close_end: int  # just after the closing fence line
    opener: str  # opening line as written (indent, fence, info string)
    closer: str  # indent + fence characters, to close it artificially

    @property
    def overhead(self) -> int:
        """Bytes added to a part when the block is closed and reopened around a cut."""
        return len(self.opener.encode()) + len(self.closer.encode()) + 2


class _Splitter:
    """Greedy splitter: each part is as long as allowed, cut at the best boundary."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.size = len(text)
        offsets = [0]
        total = 0
        for char in text:
            total += _utf8_len(char)
            offsets.append(total)
        self.byte_offsets = offsets
        self.fences = self._scan_fences()
        self.content_starts = [f.content_start for f in self.fences]
        self.open_starts = [f.open_start for f in self.fences]
        self.block_edges = {f.open_start for f in self.fences} | {f.close_end for f in self.fences}
        self.forbidden_line_cuts = {f.content_start for f in self.fences} | {
            f.close_start for f in self.fences
        }

    def _scan_fences(self) -> list[_Fence]:
        fences: list[_Fence] = []
        current: tuple[int, int, str, str] | None = None
        pos = 0
        for line in self.text.split("\n"):  # not splitlines(): \x0b, \u2028… aren't EOLs
            end = min(pos + len(line) + 1, self.size)
            stripped = line.rstrip("\r")
            if current is None:
                if _is_fence_line(stripped):
                    match = _FENCE_OPEN_RE.fullmatch(stripped)
                    assert match is not None
                    current = (pos, end, stripped, match["indent"] + match["fence"])
            else:
                match = _FENCE_CLOSE_RE.fullmatch(stripped)
                fence = current[3].lstrip(" \t")
                if (
                    match is not None
                    and match["fence"][0] == fence[0]
                    and len(match["fence"]) >= len(fence)
                ):
                    fences.append(_Fence(current[0], current[1], pos, end, current[2], current[3]))
                    current = None
            pos = end
        if current is not None:
            fences.append(
                _Fence(current[0], current[1], self.size, self.size, current[2], current[3])
            )
        return fences

    # -- fence lookups

    def _fence_inside(self, pos: int) -> _Fence | None:
        """Fence whose content a part boundary at ``pos`` falls in."""
        idx = bisect_right(self.content_starts, pos) - 1
        if idx >= 0 and pos <= self.fences[idx].close_start:
            return self.fences[idx]
        return None

    def _in_fence_line(self, pos: int) -> bool:
        """Is ``pos`` strictly inside an opening or closing fence line?"""
        idx = bisect_right(self.open_starts, pos) - 1
        if idx < 0:
            return False
        fence = self.fences[idx]
        return fence.open_start < pos < fence.content_start or (
            fence.close_start < pos < fence.close_end
        )

    # -- positions

    def _first_visible(self, pos: int) -> int:
        match = _NON_SPACE_RE.search(self.text, pos)
        return match.start() if match else self.size

    def _skip_blank(self, pos: int) -> int:
        """Start of the next part: drop blank lines and spaces, keep indentation."""
        first = self._first_visible(pos)
        if first == self.size:
            return self.size
        newline = self.text.rfind("\n", pos, first)
        if newline != -1:
            return newline + 1
        if pos == 0 or self.text[pos - 1] == "\n":
            return pos
        return first

    def _window_end(self, start: int, budget: int) -> int:
        """Largest end such that text[start:end] fits in ``budget`` bytes."""
        limit = self.byte_offsets[start] + budget
        return min(bisect_right(self.byte_offsets, limit) - 1, self.size)

    # -- cut choice

    def _line_cut_level(self, cut: int) -> int | None:
        """Quality of a cut at a line start: 0 block, 1 line, 2 inside a table, None never."""
        if cut in self.forbidden_line_cuts:
            return None
        if cut in self.block_edges:
            return 0
        if self._fence_inside(cut) is not None:
            return 1
        prev_start = self.text.rfind("\n", 0, cut - 1) + 1
        previous = self.text[prev_start : cut - 1]
        if not previous.strip():
            return 0
        next_end = self.text.find("\n", cut)
        following = self.text[cut : next_end if next_end != -1 else self.size]
        if previous.lstrip().startswith("|") and following.lstrip().startswith("|"):
            return 2
        return 1

    def _mid_line_ok(self, start: int, cut: int) -> bool:
        """A cut inside a line must not create or break a fence line in either part."""
        if self._in_fence_line(cut):
            return False
        line_start = max(self.text.rfind("\n", 0, cut) + 1, start)
        if _is_fence_line(self.text[line_start:cut].rstrip()):
            return False
        first = self._first_visible(cut)
        if "\n" in self.text[cut:first]:
            return True
        return not self.text.startswith(("```", "~~~"), first)

    def _is_grapheme_break(self, pos: int) -> bool:
        before, after = self.text[pos - 1], self.text[pos]
        if (before == "\r" and after == "\n") or before == "\u200d" or _is_extender(after):
            return False
        if _is_regional_indicator(before) and _is_regional_indicator(after):
            run = 0
            while pos - run - 1 >= 0 and _is_regional_indicator(self.text[pos - run - 1]):
                run += 1
            return run % 2 == 0
        return True

    def _best_cut(self, start: int, first: int, end: int) -> int:
        """Best cut in (first, end]: block > line > table row > sentence > space > char."""
        low = max(first + 1, start + (end - start) // 2)
        best_by_level: dict[int, int] = {}
        newline = self.text.rfind("\n", low - 1, end)
        while newline != -1 and newline + 1 > first:
            level = self._line_cut_level(newline + 1)
            if level == 0:
                return newline + 1
            if level is not None:
                best_by_level.setdefault(level, newline + 1)
            newline = self.text.rfind("\n", low - 1, newline)
        for level in (1, 2):
            if level in best_by_level:
                return best_by_level[level]
        for pattern in (_SENTENCE_END_RE, _SPACES_RE):
            best = -1
            for match in pattern.finditer(self.text, max(first, low - 64), end):
                cut = match.end()
                if cut >= low and self._mid_line_ok(start, cut):
                    best = cut
            if best != -1:
                return best
        for cut in range(end, first, -1):
            if self._is_grapheme_break(cut) and (
                self.text[cut - 1] == "\n" or self._mid_line_ok(start, cut)
            ):
                return cut
        return end

    # -- driver

    def split(self, limit: int, measure: Callable[[str], int], first_guess: float) -> list[str]:
        """Cut the text into parts with ``measure(part) <= limit``.

        ``first_guess`` is the initial body budget as a fraction of ``limit``; it is
        lowered part by part until the measure fits.
        """
        parts: list[str] = []
        pos = self._skip_blank(0)
        while pos < self.size:
            part, pos = self._next_part(pos, limit, measure, first_guess)
            parts.append(part)
            pos = self._skip_blank(pos)
        return parts

    def _repairable(self, fence: _Fence | None, limit: int) -> _Fence | None:
        """Fences too long to repeat in a small part are split without repair."""
        return fence if fence is not None and fence.overhead <= limit // 4 else None

    def _next_part(
        self, start: int, limit: int, measure: Callable[[str], int], first_guess: float
    ) -> tuple[str, int]:
        open_fence = self._repairable(self._fence_inside(start), limit)
        prefix = open_fence.opener + "\n" if open_fence else ""
        budget = int(limit * first_guess) - len(prefix.encode())
        while True:
            first = self._first_visible(start)
            end = self._window_end(start, budget)
            if end <= first and start < first:
                start = first  # indentation alone would not fit: drop it
                continue
            end = max(end, first + 1)
            cut = self.size if end >= self.size else self._best_cut(start, first, end)
            content = self.text[start:cut].rstrip()
            close = self._repairable(self._fence_inside(cut), limit) if cut < self.size else None
            part = prefix + content + ("\n" + close.closer if close else "")
            size = measure(part)
            if size <= limit:
                return part, cut
            content_bytes = len(content.encode())
            budget = min(budget - 1, content_bytes - 1, content_bytes * limit // size)
            if budget < 4:
                raise ValueError("a fragment of the message cannot fit in the size limit")


def _utf8_size(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def _json_size(text: str) -> int:
    """Bytes the string takes inside the event's (canonical, UTF-8) JSON, quotes excluded."""
    return _utf8_size(json.dumps(text, ensure_ascii=False)) - 2


def split_markdown(
    text: str, limit: int, measure: Callable[[str], int] = _utf8_size, first_guess: float = 1.0
) -> list[str]:
    """Split Markdown into non-empty parts whose `measure` is at most `limit`.

    Cuts prefer paragraph/block boundaries, then lines, sentences, spaces and finally
    grapheme boundaries. A fenced code block cut in two is closed at the end of one
    part and reopened, with its info string, at the start of the next, so that each
    part renders on its own. Whitespace at the cuts is dropped; blank text gives ``[]``.
    `first_guess` is the expected ratio of characters to measured size (speeds the search).
    """
    if limit < _MIN_SPLIT_BYTES:
        raise ValueError(f"limit must be at least {_MIN_SPLIT_BYTES}")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _Splitter(text).split(limit, measure, first_guess)


def split_for_matrix(text: str, limit_bytes: int = 60_000) -> list[tuple[str, str]]:
    """Split an answer into ``(body, formatted_body)`` pairs that each fit one event.

    Both fields count towards Matrix's 65,536-byte event limit, so a part is
    shortened until body and HTML together take at most ``limit_bytes`` once
    JSON-escaped (newlines and quotes grow in the event; this also bounds their raw
    UTF-8 size). The default leaves room for the envelope, relations and signatures.
    """
    if limit_bytes < _MIN_MATRIX_LIMIT:
        raise ValueError(f"limit_bytes must be at least {_MIN_MATRIX_LIMIT}")
    rendered: dict[str, str] = {}

    def measure(part: str) -> int:
        html = render_markdown(part)
        rendered[part] = html
        return _json_size(part) + _json_size(html)

    parts = split_markdown(text, limit_bytes, measure, 0.5)
    return [(part, rendered[part]) for part in parts]
