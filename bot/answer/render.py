"""Markdown → sanitised Matrix HTML for everything the bot sends.

The model's answer is untrusted text: it is rendered with raw HTML disabled and the
result is sanitised again with nh3 against the tag list of the Matrix spec, so that no
script, event handler, image or dangerous URL can reach the reader's client.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from html import escape
from urllib.parse import urlsplit

import nh3
from markdown_it import MarkdownIt
from markdown_it.renderer import RendererHTML
from markdown_it.token import Token
from markdown_it.utils import EnvType, OptionsDict

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
