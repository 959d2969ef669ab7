"""Markdown → Matrix HTML, reply-fallback stripping, message splitting and pill parsing.

The model's answer is untrusted text: it is rendered with raw HTML disabled and the
result is sanitised again with nh3 against the tag list of the Matrix spec, so that no
script, event handler, image or dangerous URL can reach the reader's client.
"""

from __future__ import annotations

import json
import re
import unicodedata
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape
from html.parser import HTMLParser
from urllib.parse import unquote, urlsplit

import nh3
from markdown_it import MarkdownIt
from markdown_it.renderer import RendererHTML
from markdown_it.token import Token
from markdown_it.utils import EnvType, OptionsDict

__all__ = [
    "MATRIX_EVENT_MAX_BYTES",
    "extract_user_links",
    "plain_from_html",
    "render_markdown",
    "split_for_matrix",
    "split_message",
    "strip_reply_fallback",
]

#: Hard limit of the Matrix spec for a whole event (JSON, signatures included).
MATRIX_EVENT_MAX_BYTES = 65_536

# --------------------------------------------------------------------------- rendering

#: Tags a Matrix client is expected to render (spec, m.room.message msgtype m.text),
#: minus ``img``: remote images chosen by the model would leak the reader's IP address.
_ALLOWED_TAGS: frozenset[str] = frozenset(
    {
        "font", "del", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "p", "a",
        "ul", "ol", "sup", "sub", "li", "b", "i", "u", "strong", "em", "strike",
        "code", "hr", "br", "div", "table", "thead", "tbody", "tr", "th", "td",
        "caption", "pre", "span", "details", "summary",
    }
)  # fmt: skip
_ALLOWED_ATTRIBUTES: dict[str, set[str]] = {
    "*": set(),  # replaces ammonia's default generic attributes (title, lang)
    "a": {"href"},
    "code": {"class"},
    "ol": {"start"},
}
_ALLOWED_ATTRIBUTE_VALUES: dict[str, dict[str, set[str]]] = {"a": {"target": {"_blank"}}}
_URL_SCHEMES: frozenset[str] = frozenset({"http", "https", "mailto"})
_CODE_CLASS_RE = re.compile(r"language-[A-Za-z0-9_+#.\-]{1,64}")


def _filter_attribute(tag: str, attribute: str, value: str) -> str | None:
    """Keep only ``class="language-…"`` on ``code`` (the one class Matrix defines)."""
    if attribute == "class":
        return value if tag == "code" and _CODE_CLASS_RE.fullmatch(value) else None
    return value


_CLEANER = nh3.Cleaner(
    tags=set(_ALLOWED_TAGS),
    clean_content_tags={"script", "style"},
    attributes=_ALLOWED_ATTRIBUTES,
    attribute_filter=_filter_attribute,
    tag_attribute_values=_ALLOWED_ATTRIBUTE_VALUES,
    url_schemes=set(_URL_SCHEMES),
    url_relative="deny",  # a relative link means nothing in a chat client
    link_rel="noopener noreferrer",
    strip_comments=True,
)


class _MatrixRenderer(RendererHTML):
    """markdown-it renderer emitting only tags that Matrix clients know."""

    def s_open(self, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType) -> str:
        """``~~x~~``: Matrix lists ``del``/``strike``, not ``s``."""
        return "<del>"

    def s_close(self, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType) -> str:
        """Close the ``del`` opened by :meth:`s_open`."""
        return "</del>"

    def image(self, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType) -> str:
        """Render an image as a plain link: never load remote content for the reader."""
        token = tokens[idx]
        src = str(token.attrGet("src") or "")
        alt = self.renderInlineAsText(token.children, options, env).strip()
        label = escape(alt or src or "image", quote=False)
        if not src:
            return label
        return f'<a href="{escape(src)}">{label}</a>'


class _MatrixMarkdown(MarkdownIt):
    """CommonMark parser that only turns http(s)/mailto destinations into links."""

    def validateLink(self, url: str) -> bool:
        """Leave other destinations as literal text instead of href-less anchors."""
        try:
            scheme = urlsplit(url.strip()).scheme.lower()
        except ValueError:
            return False
        return scheme in _URL_SCHEMES and super().validateLink(url)


_MARKDOWN = _MatrixMarkdown(
    "commonmark",
    # breaks: a single newline is a line break, as in Element's own Markdown rendering.
    {"html": False, "breaks": True, "linkify": False, "typographer": False},
    renderer_cls=_MatrixRenderer,
).enable(["table", "strikethrough"])


def render_markdown(text: str) -> str:
    """Render the model's Markdown to sanitised ``org.matrix.custom.html``.

    Raw HTML in the Markdown is escaped (``html=False``) and the output is cleaned
    by nh3 anyway, so a bug in one layer does not open an XSS hole.
    """
    html = _MARKDOWN.render(text)
    return _CLEANER.clean(html).strip()


# ----------------------------------------------------------------- reply fallbacks

_FALLBACK_FIRST_LINE_RE = re.compile(r"> (?:\* )?<[^<>\n]+>")
_MX_REPLY_TAG_RE = re.compile(r"<(/?)mx-reply(?=[\s/>])[^>]*>", re.IGNORECASE)


def strip_reply_fallback(body: str, formatted_body: str | None) -> tuple[str, str | None]:
    """Remove the quoted original that clients prepend to a reply.

    Only a *leading* quote whose first line names a sender (``> <@alice:srv> …``)
    is a fallback; a quote anywhere else, or a leading quote without the sender
    marker (clients following Matrix v1.13 send no fallback), is the user's own text.
    The returned ``formatted_body`` is ``None`` when nothing is left of it.
    """
    lines = body.split("\n")
    if _FALLBACK_FIRST_LINE_RE.match(lines[0]):
        i = 0
        while i < len(lines) and (lines[i].startswith("> ") or lines[i].rstrip() == ">"):
            i += 1
        if i < len(lines) and not lines[i].strip():
            i += 1
        body = "\n".join(lines[i:])
    return body, _strip_mx_reply(formatted_body)


def _strip_mx_reply(formatted_body: str | None) -> str | None:
    """Drop a leading ``<mx-reply>`` element, nested ones included."""
    if formatted_body is None:
        return None
    stripped = formatted_body.lstrip()
    first = _MX_REPLY_TAG_RE.match(stripped)
    if first is None or first.group(1):
        return formatted_body
    depth = 0
    rest = ""  # an unclosed <mx-reply> swallows everything, as in an HTML parser
    for match in _MX_REPLY_TAG_RE.finditer(stripped):
        depth += -1 if match.group(1) else 1
        if depth == 0:
            rest = stripped[match.end() :]
            break
    return rest if rest.strip() else None


# ------------------------------------------------------------------ HTML inspection

_SKIPPED_TAGS: frozenset[str] = frozenset({"mx-reply", "script", "style"})
_VOID_TAGS: frozenset[str] = frozenset({"br", "hr", "img", "input", "meta", "link", "wbr"})


class _SkippingParser(HTMLParser):
    """Base parser that ignores reply fallbacks and script/style content."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self._skip_depth = 0

    def _enter(self, tag: str) -> bool:
        """Track skipped elements; return True when the tag is in visible content."""
        if tag in _SKIPPED_TAGS:
            self._skip_depth += 1
        return self._skip_depth == 0

    def _leave(self, tag: str) -> bool:
        if tag in _SKIPPED_TAGS and self._skip_depth:
            self._skip_depth -= 1
            return False
        return self._skip_depth == 0


class _TextExtractor(_SkippingParser):
    _PARAGRAPH_TAGS: frozenset[str] = frozenset(
        {"p", "pre", "blockquote", "table", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6"}
    )
    _LINE_TAGS: frozenset[str] = frozenset(
        {"li", "tr", "div", "caption", "thead", "tbody", "hr", "details", "summary"}
    )

    def __init__(self) -> None:
        super().__init__()
        self._out: list[str] = []
        self._pending_breaks = 0
        self._pending_space = False
        self._pre = 0
        self._row_cells = 0
        self._lists: list[int | None] = []  # next number of each open <ol>, None for <ul>

    def _break(self, count: int) -> None:
        self._pending_breaks = max(self._pending_breaks, count)
        self._pending_space = False

    def _emit(self, text: str) -> None:
        if self._pending_breaks and self._out:
            self._out.append("\n" * self._pending_breaks)
        self._pending_breaks = 0
        self._pending_space = False
        self._out.append(text)

    def _at_line_start(self) -> bool:
        return not self._out or self._pending_breaks > 0 or self._out[-1].endswith("\n")

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if not self._enter(tag):
            return
        if tag == "br":
            self._emit("\n")
        elif tag in ("td", "th"):
            if self._row_cells:
                self._emit(" | ")
            self._row_cells += 1
        elif tag in ("ul", "ol"):
            self._break(1 if self._lists else 2)
            start = dict(attrs).get("start") or "1"
            self._lists.append((int(start) if start.isdigit() else 1) if tag == "ol" else None)
        elif tag == "li":
            self._break(1)
            number = self._lists[-1] if self._lists else None
            marker = "- " if number is None else f"{number}. "
            if self._lists and number is not None:
                self._lists[-1] = number + 1
            self._emit("  " * max(len(self._lists) - 1, 0) + marker)
        elif tag in self._PARAGRAPH_TAGS:
            self._break(2)
            if tag == "pre":
                self._pre += 1
        elif tag in self._LINE_TAGS:
            self._break(1)
            if tag == "tr":
                self._row_cells = 0

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in _VOID_TAGS:
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self._leave(tag):
            return
        if tag in ("ul", "ol"):
            if self._lists:
                self._lists.pop()
            self._break(1 if self._lists else 2)
        elif tag in self._PARAGRAPH_TAGS:
            if tag == "pre" and self._pre:
                self._pre -= 1
                if self._out:
                    self._out[-1] = self._out[-1].rstrip("\n")
            self._break(2)
        elif tag in self._LINE_TAGS:
            self._break(1)

    def handle_data(self, data: str) -> None:
        if self._skip_depth:
            return
        if self._pre:
            self._emit(data)
            return
        # Whitespace is kept only between two pieces of text: markdown-it puts
        # newlines between tags, which must not leak into lines or table cells.
        data = re.sub(r"[ \t\r\n\f]+", " ", data)
        leading_space = data.startswith(" ") or self._pending_space
        content = data.strip(" ")
        if content:
            self._emit((" " if leading_space and not self._at_line_start() else "") + content)
        self._pending_space = data.endswith(" ") or (not content and leading_space)

    def text(self) -> str:
        lines = "".join(self._out).split("\n")
        return "\n".join(line.rstrip() for line in lines).strip("\n")


def plain_from_html(html: str) -> str:
    """Readable text of a ``formatted_body``, for events whose ``body`` is unusable.

    Blocks become line breaks, list items get ``- ``/``1.``, table cells `` | ``;
    the reply fallback (``<mx-reply>``) is not part of the user's message and is skipped.
    """
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    return parser.text()


_USER_ID_RE = re.compile(
    r"@[\x21-\x39\x3b-\x7e]{1,255}:(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-]+)(?::[0-9]{1,5})?"
)
_MATRIX_TO_HOSTS: frozenset[str] = frozenset({"matrix.to"})
_TCHAP_HOSTS: frozenset[str] = frozenset({"tchap.gouv.fr", "www.tchap.gouv.fr"})


def _user_from_href(href: str) -> str | None:
    """User ID of a pill link, or None if the link is anything else."""
    try:
        parts = urlsplit(href.strip())
        host = (parts.hostname or "").lower()
    except ValueError:
        return None
    if parts.scheme.lower() not in ("https", "http"):
        return None
    fragment = parts.fragment.lstrip("/")
    if host in _MATRIX_TO_HOSTS:
        path = fragment
    elif host in _TCHAP_HOSTS and fragment.startswith("user/"):
        path = fragment[len("user/") :]
    else:
        return None
    identifier = unquote(path.split("?", 1)[0].split("/", 1)[0])
    return identifier if _USER_ID_RE.fullmatch(identifier) else None


class _PillExtractor(_SkippingParser):
    def __init__(self) -> None:
        super().__init__()
        self.users: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if not self._enter(tag) or tag != "a":
            return
        for name, value in attrs:
            if name == "href" and value:
                user = _user_from_href(value)
                if user is not None and user not in self.users:
                    self.users.append(user)
                return

    def handle_endtag(self, tag: str) -> None:
        self._leave(tag)


def extract_user_links(html: str) -> list[str]:
    """User IDs mentioned as pills (matrix.to or Tchap links), in order, without duplicates.

    Links inside the reply fallback are ignored: they name the replied-to sender,
    not someone the user mentioned.
    """
    parser = _PillExtractor()
    parser.feed(html)
    parser.close()
    return parser.users


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


def split_message(text: str, max_bytes: int) -> list[str]:
    """Split Markdown into non-empty parts of at most ``max_bytes`` UTF-8 bytes.

    Cuts prefer paragraph/block boundaries, then lines, sentences, spaces and finally
    grapheme boundaries. A fenced code block cut in two is closed at the end of one
    part and reopened, with its info string, at the start of the next, so that each
    part renders on its own. Whitespace at the cuts is dropped; blank text gives ``[]``.
    """
    if max_bytes < _MIN_SPLIT_BYTES:
        raise ValueError(f"max_bytes must be at least {_MIN_SPLIT_BYTES}")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _Splitter(text).split(max_bytes, _utf8_size, 1.0)


def split_for_matrix(text: str, limit_bytes: int = 60_000) -> list[tuple[str, str]]:
    """Split an answer into ``(body, formatted_body)`` pairs that each fit one event.

    Both fields count towards Matrix's 65,536-byte event limit, so a part is
    shortened until body and HTML together take at most ``limit_bytes`` once
    JSON-escaped (newlines and quotes grow in the event; this also bounds their raw
    UTF-8 size). The default leaves room for the envelope, relations and signatures.
    """
    if limit_bytes < _MIN_MATRIX_LIMIT:
        raise ValueError(f"limit_bytes must be at least {_MIN_MATRIX_LIMIT}")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    # The usual case, one part, rendered once: the text as the splitter would cut it whole
    # (leading blank lines and trailing spaces dropped, indentation kept).
    first = _NON_SPACE_RE.search(text)
    if first is None:
        return []
    whole = text[text.rfind("\n", 0, first.start()) + 1 :].rstrip()
    html = render_markdown(whole)
    if _json_size(whole) + _json_size(html) <= limit_bytes:
        return [(whole, html)]
    rendered: dict[str, str] = {}

    def measure(part: str) -> int:
        html = render_markdown(part)
        rendered[part] = html
        return _json_size(part) + _json_size(html)

    parts = _Splitter(text).split(limit_bytes, measure, 0.5)
    return [(part, rendered[part]) for part in parts]
