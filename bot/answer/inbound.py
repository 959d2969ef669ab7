"""What people send, read back: reply fallbacks removed and pills (mentions) found.

Inbound HTML comes from any client and any member: it is parsed, never trusted, and links
count as mentions only in the two pill shapes Tchap and Element produce.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from urllib.parse import unquote, urlsplit

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
