"""Tests for bot.answer.render with cmark-gfm: each rendering rule, exact output, no text
dropped, and no memory kept by cmark across renders."""

from __future__ import annotations

import gc
import os
import re
from html.parser import HTMLParser

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.answer import render
from bot.answer.render import render_markdown
from tests.unit.test_formatting import _assert_safe, _tags

# ------------------------------------------------------------------------ raw HTML


@pytest.mark.parametrize(
    ("markdown", "expected"),
    [
        # A block's lines stay Markdown: only its "<" is shown, as if HTML did not exist.
        ("<div>\n**x**\n</div>", "<p>&lt;div&gt;<br>\n<strong>x</strong><br>\n&lt;/div&gt;</p>"),
        (
            "<details><summary>s</summary>\n\ncontenu **g**\n\n</details>",
            "<p>&lt;details&gt;&lt;summary&gt;s&lt;/summary&gt;</p>\n"
            "<p>contenu <strong>g</strong></p>\n<p>&lt;/details&gt;</p>",
        ),
        # An unclosed comment or <pre> would make cmark swallow the rest of the answer.
        ("<!-- note\n\n# Titre\n\n*fin*", "<p>&lt;!-- note</p>\n<h1>Titre</h1>\n<p><em>fin</em></p>"),
        ("<pre>\n\n**a**\n</pre>", "<p>&lt;pre&gt;</p>\n<p><strong>a</strong><br>\n&lt;/pre&gt;</p>"),
        ("<script>\nalert(1)\n</script>", "<p>&lt;script&gt;<br>\nalert(1)<br>\n&lt;/script&gt;</p>"),
        ("texte\n<div>\nbloc", "<p>texte<br>\n&lt;div&gt;<br>\nbloc</p>"),
        # Inside containers, after a tab, after multi-byte characters on earlier lines.
        (
            "> <div>bonjour</div>\n> suite",
            "<blockquote>\n<p>&lt;div&gt;bonjour&lt;/div&gt;<br>\nsuite</p>\n</blockquote>",
        ),
        ("-\t<div>x</div>", "<ul>\n<li>&lt;div&gt;x&lt;/div&gt;</li>\n</ul>"),
        ("é🎉\n\n<?php echo 1; ?>", "<p>é🎉</p>\n<p>&lt;?php echo 1; ?&gt;</p>"),
        # Inline HTML, in a table cell too.
        ("a <b>x</b> c", "<p>a &lt;b&gt;x&lt;/b&gt; c</p>"),
        ("| a |\n|---|\n| <br> |", "<table>\n<thead>\n<tr>\n<th>a</th>\n</tr>\n</thead>\n"
         "<tbody>\n<tr>\n<td>&lt;br&gt;</td>\n</tr>\n</tbody>\n</table>"),
        # What follows raw HTML is Markdown, as if the "<" were text: a comment over two
        # lines, a block swallowed into a code span, an indented block.
        ("a <!-- x\n*y* -->", "<p>a &lt;!-- x<br>\n<em>y</em> --&gt;</p>"),
        ("texte `code\n<script>\nfin` suite", "<p>texte <code>code &lt;script&gt; fin</code> suite</p>"),
        (" <div>\n*x*", "<p>&lt;div&gt;<br>\n<em>x</em></p>"),
        # cmark's column is short on indented continuation lines: the HTML is still found.
        ("a\n   b <i>c</i>", "<p>a<br>\nb &lt;i&gt;c&lt;/i&gt;</p>"),
        ("> a\n>   d <i>y</i>", "<blockquote>\n<p>a<br>\nd &lt;i&gt;y&lt;/i&gt;</p>\n</blockquote>"),
        # The stand-in for "<" is never one the text holds, and never makes an autolink.
        ("\u2e00 <b>x</b>", "<p>\u2e00 &lt;b&gt;x&lt;/b&gt;</p>"),
        ("<http://a.fr/<b>", "<p>&lt;http://a.fr/&lt;b&gt;</p>"),
        # Already text: escaped "<", code.
        ("\\<div>", "<p>&lt;div&gt;</p>"),
        ("`<div>`", "<p><code>&lt;div&gt;</code></p>"),
        ("    <div>indent", "<pre><code>&lt;div&gt;indent\n</code></pre>"),
    ],
)  # fmt: skip
def test_raw_html_is_shown_as_text(markdown: str, expected: str) -> None:
    assert render_markdown(markdown) == expected


def test_raw_html_is_never_a_comment_or_omitted() -> None:
    html = render_markdown("<div>\n\n<!-- caché -->\n\navant <span>milieu</span> après")
    assert "omitted" not in html
    assert "&lt;!-- caché --&gt;" in html
    assert "&lt;span&gt;milieu&lt;/span&gt;" in html
    assert [t for t, _ in _tags(html)] == ["p", "p", "p"]


def test_raw_html_block_fallback_shows_its_lines() -> None:
    """Raw HTML not found in the source (never seen) is shown as text, line by line."""
    source = b"<div>\n**x**\n</div>\n\ntexte"
    parser, root = render._parse(source)
    try:
        render._fix_tree(root, None)
        html = render._render_tree(parser, root)
    finally:
        render._LIB.cmark_node_free(root)
        render._LIB.cmark_parser_free(parser)
    assert render._CLEANER.clean(html).strip() == (
        "<p>&lt;div&gt;<br>\n**x**<br>\n&lt;/div&gt;</p>\n<p>texte</p>"
    )


# -------------------------------------------------------------------------- images


@pytest.mark.parametrize(
    ("markdown", "expected"),
    [
        (
            "![**Mari** `anne`](https://e.x/p.png)",  # the alt, without its markup
            '<p><a href="https://e.x/p.png" rel="noopener noreferrer">Mari anne</a></p>',
        ),
        (
            "![](https://e.x/p.png)",  # no alt: the address
            '<p><a href="https://e.x/p.png" rel="noopener noreferrer">https://e.x/p.png</a></p>',
        ),
        (
            "![ <b>x</b> ](https://e.x/p.png)",  # raw HTML in the alt is text too
            '<p><a href="https://e.x/p.png" rel="noopener noreferrer">&lt;b&gt;x&lt;/b&gt;</a></p>',
        ),
        (
            "[![badge](https://i.x/a.png)](https://site.x)",  # an anchor cannot hold another
            '<p><a href="https://site.x" rel="noopener noreferrer">badge</a></p>',
        ),
        ("![x](javascript:alert(1))", "<p>![x](javascript:alert(1))</p>"),
        ("![*x*](/logo.png)", "<p>![<em>x</em>](/logo.png)</p>"),
        ("![]()", "<p>![]()</p>"),
    ],
)
def test_images_become_plain_links(markdown: str, expected: str) -> None:
    html = render_markdown(markdown)
    assert html == expected
    _assert_safe(html)


# --------------------------------------------------------------------------- links


@pytest.mark.parametrize(
    ("markdown", "expected"),
    [
        ("[clic](javascript:alert(1))", "<p>[clic](javascript:alert(1))</p>"),
        ("[clic](&#106;avascript:alert(1))", "<p>[clic](javascript:alert(1))</p>"),
        ('[clic](/rel "titre")', '<p>[clic](/rel "titre")</p>'),
        ("[**gras**](ftp://f.x)", "<p>[<strong>gras</strong>](ftp://f.x)</p>"),
        ("[a](<x y>)", "<p>[a](&lt;x y&gt;)</p>"),
        ("[a]()", "<p>[a]()</p>"),  # not an anchor without href
        ("<javascript:alert(1)>", "<p>&lt;javascript:alert(1)&gt;</p>"),
        # A reference to a forbidden destination shows it (its definition stays hidden).
        ("[clic][r]\n\n[r]: javascript:alert(1)", "<p>[clic](javascript:alert(1))</p>"),
    ],
)
def test_forbidden_destinations_stay_literal_text(markdown: str, expected: str) -> None:
    assert render_markdown(markdown) == expected


def test_allowed_destinations_become_links() -> None:
    html = render_markdown(
        '[a](HTTPS://X.FR) [b](https://x.fr/é?q=1&r=2 "t") [c](<https://x.fr/a b>) '
        "<mailto:agent@interieur.gouv.fr> <agent@interieur.gouv.fr> [d][r]\n\n[r]: http://r.fr"
    )
    assert [attrs["href"] for tag, attrs in _tags(html) if tag == "a"] == [
        "HTTPS://X.FR",
        "https://x.fr/%C3%A9?q=1&r=2",
        "https://x.fr/a%20b",
        "mailto:agent@interieur.gouv.fr",
        "mailto:agent@interieur.gouv.fr",
        "http://r.fr",
    ]
    assert "title" not in html
    _assert_safe(html)


def test_bare_urls_stay_text() -> None:
    html = render_markdown("Voir http://exemple.fr et www.service-public.fr ou agent@gouv.fr")
    assert html == "<p>Voir http://exemple.fr et www.service-public.fr ou agent@gouv.fr</p>"


# ------------------------------------------------------------------ the other rules


@pytest.mark.parametrize(
    ("markdown", "expected"),
    [
        ("a\nb\nc", "<p>a<br>\nb<br>\nc</p>"),
        ("a  \nb", "<p>a<br>\nb</p>"),
        ("a\\\nb", "<p>a<br>\nb</p>"),
        ("~x~ ~~y~~ ~~~z~~~", "<p>~x~ <del>y</del> ~~~z~~~</p>"),
        ('"guillemets" -- ... (c)', '<p>"guillemets" -- ... (c)</p>'),  # no typographer
        ("***gras ital***", "<p><em><strong>gras ital</strong></em></p>"),
        ("*a **b** c*", "<p><em>a <strong>b</strong> c</em></p>"),
        ("_a *b*_ **~~c~~**", "<p><em>a <em>b</em></em> <strong><del>c</del></strong></p>"),
        ("- a\n  - b", "<ul>\n<li>a\n<ul>\n<li>b</li>\n</ul>\n</li>\n</ul>"),
        (
            "# T\n\ntexte\n\n---\n\n> cite",
            "<h1>T</h1>\n<p>texte</p>\n<hr>\n<blockquote>\n<p>cite</p>\n</blockquote>",
        ),
        (
            "```bash\necho <é>\n```",
            '<pre><code class="language-bash">echo &lt;é&gt;\n</code></pre>',
        ),
        ("~~~c++ extra\nint a;\n~~~", '<pre><code class="language-c++">int a;\n</code></pre>'),
        ("- [ ] tâche", "<ul>\n<li>[ ] tâche</li>\n</ul>"),  # no task-list extension
        # No footnotes: a reference to a relative destination, shown as literal text.
        ("note[^1]\n\n[^1]: pied", "<p>note[^1](pied)</p>"),
        ("x\0y\r\nz\rw", "<p>x\ufffdy<br>\nz<br>\nw</p>"),
    ],
)
def test_rendering_rules(markdown: str, expected: str) -> None:
    assert render_markdown(markdown) == expected


def test_table_cells_keep_inline_markdown() -> None:
    html = render_markdown(
        "| **Service** | Lien |\n|:--|--:|\n| `code` | [site](https://x.fr) |\n| ~~vieux~~ | |"
    )
    assert "<th><strong>Service</strong></th>" in html
    assert "<td><code>code</code></td>" in html
    assert '<td><a href="https://x.fr" rel="noopener noreferrer">site</a></td>' in html
    assert "<td><del>vieux</del></td>" in html
    assert "align" not in html and "style" not in html
    _assert_safe(html)


def test_100_kb_of_hostile_markdown_renders_and_is_cleaned() -> None:
    chunk = (
        "## Partie {i}\n\nDu **gras** {i}, `<code>`, <b onclick=x()>html</b> et "
        "[lien](https://ok.fr/{i}) [js](javascript:alert({i})) ![img](https://evil.example/{i}.png)\n"
        "<div>\nbloc {i}\n</div>\n\n| a | b |\n|---|---|\n| <img src=x> | ~~{i}~~ |\n\n"
        "```python\nprint('<script>{i}')\n```\n\n"
    )
    text = "".join(chunk.format(i=i) for i in range(400))
    assert len(text.encode()) >= 100_000
    html = render_markdown(text)
    _assert_safe(html)
    assert html.count("<h2>") == 400
    assert html.count('<a href="https://ok.fr/') == 400
    assert html.count('<a href="https://evil.example/') == 400
    assert html.count("[js](javascript:alert(") == 400
    assert html.count("&lt;div&gt;<br>\nbloc ") == 400
    assert html.count("<td>&lt;img src=x&gt;</td>") == 400
    assert html.count("&lt;script&gt;") == 400


# -------------------------------------------------------------- nothing is dropped


class _Visible(HTMLParser):
    """What a reader can see or follow: text and link destinations."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_data(self, data: str) -> None:
        self.parts.append(data)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.parts.extend(value or "" for name, value in attrs if name == "href")


def _visible(html: str) -> str:
    parser = _Visible()
    parser.feed(html)
    parser.close()
    return " ".join(parser.parts)


_WORDS = st.text(alphabet="abcdefghijklmnopqrstuvwxyzé", min_size=3, max_size=8)
_SYNTAX = st.sampled_from(
    [
        " ", "\n", "\n\n", "\t", "    ", "> ", "- ", "1. ", "# ", "*", "**", "~~", "`", "\\",
        "<", ">", "<div>", "</div>", "<b>", "<script>", "<pre>", "<!--", "-->", "<?", "<![CDATA[",
        "<!DOCTYPE ", "![", "](", ")", "]", "(", "javascript:", "https://x.fr/", "/", "\"",
    ]
)  # fmt: skip


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pieces=st.lists(st.one_of(_WORDS.map(lambda w: f"w{w}"), _SYNTAX), max_size=60))
def test_property_every_word_stays_visible(pieces: list[str]) -> None:
    """Whatever HTML, images or links the text holds, each word remains for the reader."""
    text = "".join(pieces)
    html = render_markdown(text)
    _assert_safe(html)
    visible = _visible(html)
    # A code fence's info string is its language (a class, dropped unless plain ASCII).
    info_strings = " ".join(re.findall(r"(?m)^[ \t>*+\-\d.]*(?:`{3,}|~{3,})(.*)$", text))
    for piece in pieces:
        if piece.startswith("w") and piece not in info_strings:
            assert piece in visible, (pieces, html)


# ------------------------------------------------------------------------- memory


def _resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_cmark_memory_is_freed_across_thousands_of_renders() -> None:
    """Every tree, parser, rewritten node and rendered buffer cmark allocates is freed."""
    # Every path: a plain render, an HTML block parsed again, nodes replaced and freed.
    prose = "Une phrase avec du **gras** et un [lien](https://x.fr). " * 40
    hostile = "<b>x</b> ![i](https://x.fr/i.png) [j](javascript:x) <javascript:y> " * 10
    table = "| a | b |\n|---|---|\n| 1 | 2 |\n"
    text = f"# Titre\n\n{prose}\n\n<div>\nbloc\n</div>\n\n{hostile}\n\n{table}"
    for _ in range(200):
        render._render_html(text)
    gc.collect()
    before = _resident_bytes()
    for _ in range(1_500):
        render._render_html(text)
    gc.collect()
    grown = _resident_bytes() - before
    # A leaked tree and buffer would be tens of kB a render: tens of MB here.
    assert grown < 2 * 1024 * 1024, f"resident memory grew by {grown / 1e6:.1f} MB"
