"""Tests for bot.answer render, inbound and split: rendering safety, reply fallbacks, pills and splitting."""

from __future__ import annotations

import json
import random
import re
from html.parser import HTMLParser
from urllib.parse import urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.answer import render
from bot.answer.inbound import extract_user_links, strip_reply_fallback
from bot.answer.render import render_markdown
from bot.answer.split import MATRIX_EVENT_MAX_BYTES, split_for_matrix, split_markdown

MATRIX_TAGS = {
    "font", "del", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "p", "a", "ul",
    "ol", "sup", "sub", "li", "b", "i", "u", "strong", "em", "strike", "code", "hr",
    "br", "div", "table", "thead", "tbody", "tr", "th", "td", "caption", "pre",
    "span", "details", "summary",
}  # fmt: skip
ALLOWED_ATTRS = {"a": {"href", "rel", "target"}, "code": {"class"}, "ol": {"start"}}


class _TagCollector(HTMLParser):
    """Parses rendered HTML the way a browser would tokenise it."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def _tags(html: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = _TagCollector()
    parser.feed(html)
    parser.close()
    return parser.tags


def _assert_safe(html: str) -> None:
    """Only Matrix tags, only whitelisted attributes, only safe link schemes."""
    for tag, attrs in _tags(html):
        assert tag in MATRIX_TAGS, (tag, html)
        assert set(attrs) <= ALLOWED_ATTRS.get(tag, set()), (tag, attrs, html)
        href = attrs.get("href")
        if href is not None:
            assert urlsplit(href).scheme.lower() in {"http", "https", "mailto"}, html
        if tag == "code" and "class" in attrs:
            assert re.fullmatch(r"language-[\w+#.-]+", attrs["class"] or ""), html
    lowered = html.lower()
    assert "<script" not in lowered
    assert "<img" not in lowered
    assert "<iframe" not in lowered
    assert "<svg" not in lowered


# --------------------------------------------------------------------------- rendering


def test_render_basic_markdown() -> None:
    html = render_markdown("# Titre\n\nDu **gras**, de l'*italique* et ~~barré~~.")
    assert "<h1>Titre</h1>" in html
    assert "<strong>gras</strong>" in html
    assert "<em>italique</em>" in html
    assert "<del>barré</del>" in html  # Matrix knows del/strike, not s
    assert "<s>" not in html
    _assert_safe(html)


def test_render_single_newline_is_a_line_break() -> None:
    assert render_markdown("Ligne 1\nLigne 2") == "<p>Ligne 1<br>\nLigne 2</p>"


def test_render_french_accents_and_emoji_untouched() -> None:
    text = "Élodie a reçu l'accord : « ça marche » 🎉👍🏽 — à bientôt… 🇫🇷"
    html = render_markdown(text)
    assert html == f"<p>{text}</p>"


def test_render_table_without_style() -> None:
    md = "| Service | Délai |\n|:--|--:|\n| État civil | 3 jours |\n| Impôts | 1 semaine |"
    html = render_markdown(md)
    assert [t for t, _ in _tags(html)] == [
        "table", "thead", "tr", "th", "th", "tbody", "tr", "td", "td", "tr", "td", "td",
    ]  # fmt: skip
    assert "<td>État civil</td>" in html
    assert "style" not in html
    _assert_safe(html)


def test_render_code_block_with_language_and_escaping() -> None:
    md = '```python\nif a < b and c > d:\n    print("<script>")\n```'
    html = render_markdown(md)
    assert html.startswith('<pre><code class="language-python">')
    assert "if a &lt; b and c &gt; d:\n    print(" in html
    assert "&lt;script&gt;" in html
    _assert_safe(html)


def test_render_inline_code() -> None:
    html = render_markdown("Lancez `rm -rf <dossier>` prudemment")
    assert "<code>rm -rf &lt;dossier&gt;</code>" in html


def test_render_ordered_list_keeps_start() -> None:
    html = render_markdown("3. trois\n4. quatre")
    assert html.startswith('<ol start="3">')
    assert html.count("<li>") == 2


def test_code_info_string_cannot_inject_attributes() -> None:
    html = render_markdown('```python" onmouseover="alert(1)\nx\n```')
    _assert_safe(html)
    assert "onmouseover" not in html
    assert "class=" not in html  # not a clean language-* class: dropped


def test_links_get_rel_and_safe_schemes_survive() -> None:
    html = render_markdown(
        "[site](https://www.service-public.fr) [mail](mailto:agent@interieur.gouv.fr) "
        "[pill](https://matrix.to/#/@alice:agent.tchap.gouv.fr) <http://exemple.fr>"
    )
    anchors = [attrs for tag, attrs in _tags(html) if tag == "a"]
    assert [a["href"] for a in anchors] == [
        "https://www.service-public.fr",
        "mailto:agent@interieur.gouv.fr",
        "https://matrix.to/#/@alice:agent.tchap.gouv.fr",
        "http://exemple.fr",
    ]
    assert all(a["rel"] == "noopener noreferrer" for a in anchors)


XSS_VECTORS = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "<svg onload=alert(1)>",
    "<iframe src='https://evil.example'></iframe>",
    "<details open ontoggle=alert(1)>x</details>",
    '<a href="javascript:alert(1)">clic</a>',
    "[clic](javascript:alert(1))",
    "[clic](JaVaScRiPt:alert(1))",
    "[clic](&#106;avascript:alert(1))",
    "[clic](javascript&#58;alert(1))",
    "[clic](&#x6A;&#x61;&#x76;&#x61;script:alert(1))",
    "[clic](<javascript:alert(1)>)",
    "[clic](vbscript:msgbox(1))",
    "[clic](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "[clic](data:image/png;base64,iVBORw0KGgo=)",
    "<javascript:alert(1)>",
    "[clic][ref]\n\n[ref]: javascript:alert(1)",
    "[clic][ref]\n\n[ref]: <data:text/html,<script>alert(1)</script>>",
    "![x](javascript:alert(1))",
    "![x](https://evil.example/a.png)",
    '[clic](https://ok.fr "titre\\" onmouseover=\\"alert(1)")',
    "&lt;script&gt;alert(1)&lt;/script&gt;",
    "&#60;img src=x onerror=alert(1)&#62;",
    "`<script>alert(1)</script>`",
    "```html\n<script>alert(1)</script>\n```",
    "**<script>alert(1)</script>**",
    "| a |\n|---|\n| <img src=x onerror=alert(1)> |",
    "> <script>alert(1)</script>",
    "<!-- <script>alert(1)</script> -->",
    "<style>body{display:none}</style>",
    "[clic](//evil.example/path)",
    "[clic](/relative/path)",
]


@pytest.mark.parametrize("vector", XSS_VECTORS)
def test_model_xss_vectors_are_neutralised(vector: str) -> None:
    html = render_markdown(f"Voici la réponse : {vector} fin.")
    _assert_safe(html)
    for _, attrs in _tags(html):
        for name, value in attrs.items():
            assert not name.startswith("on")
            assert "javascript" not in (value or "").lower()
            assert not (value or "").lower().startswith(("data:", "vbscript:"))


@pytest.mark.parametrize(
    "vector",
    [
        "[clic](javascript:alert(1))",
        "[clic](data:text/html;base64,PHNjcmlwdD4=)",
        "[clic](vbscript:msgbox(1))",
        "[clic](&#106;avascript:alert(1))",
        "[clic][r]\n\n[r]: javascript:alert(1)",
        "[clic](data:image/png;base64,iVBORw0KGgo=)",
        "[clic](/relatif)",
        "[clic](//evil.example/x)",
        "[clic](ftp://files.example/x)",
    ],
)
def test_dangerous_links_do_not_become_anchors(vector: str) -> None:
    html = render_markdown(vector)
    assert "<a" not in html
    assert "clic" in html


def test_images_are_never_rendered() -> None:
    html = render_markdown("Logo : ![Marianne](https://evil.example/pixel.png?u=1)")
    _assert_safe(html)
    assert "<img" not in html
    # Shown as a link the reader may choose to open, never fetched automatically.
    assert [(t, a.get("href")) for t, a in _tags(html)] == [
        ("p", None),
        ("a", "https://evil.example/pixel.png?u=1"),
    ]
    assert ">Marianne</a>" in html


def test_raw_html_from_the_model_is_shown_as_text() -> None:
    html = render_markdown('<b onclick="x()">gras</b> <img src="https://evil.example/a.png">')
    assert [t for t, _ in _tags(html)] == ["p"]
    assert "&lt;b onclick=" in html
    assert "&lt;img src=" in html


def test_sanitizer_layer_alone_strips_hostile_html() -> None:
    """Defence in depth: even if Markdown let HTML through, nh3 would clean it."""
    dirty = (
        '<p style="color:red" onclick="x()">t</p><script>alert(1)</script>'
        '<img src="https://evil.example/a.png" onerror="alert(1)">'
        '<a href="javascript:alert(1)">j</a><a href="data:text/html,x">d</a>'
        '<a href="https://ok.fr" target="_blank" title="t">ok</a>'
        '<a href="/rel">r</a><code class="language-py evil">c</code>'
        '<ol start="2" type="a"><li>x</li></ol><font color="red">f</font>'
        "<iframe src=https://evil.example></iframe><mx-reply>q</mx-reply>"
    )
    clean = render._CLEANER.clean(dirty)
    _assert_safe(clean)
    assert "alert" not in clean
    assert '<a href="https://ok.fr" target="_blank" rel="noopener noreferrer">ok</a>' in clean
    assert "<code>c</code>" in clean
    assert '<ol start="2">' in clean
    assert "/rel" not in clean
    assert "data:" not in clean


# --------------------------------------------------------------------- reply fallback


ELEMENT_FORMATTED = (
    '<mx-reply><blockquote><a href="https://matrix.to/#/!room:server/$event">In reply to</a> '
    '<a href="https://matrix.to/#/@alice:server">@alice:server</a><br>question ?'
    "</blockquote></mx-reply>my reply"
)


def test_strip_element_reply_fallback() -> None:
    body, formatted = strip_reply_fallback(
        "> <@alice:server> question ?\n\nmy reply", ELEMENT_FORMATTED
    )
    assert body == "my reply"
    assert formatted == "my reply"


def test_strip_multiline_fallback_keeps_later_quotes() -> None:
    body = (
        "> <@alice:server> première ligne\n> \n>\n> dernière ligne\n\n"
        "Ma réponse\n\n> une citation à moi\n\nsuite"
    )
    stripped, _ = strip_reply_fallback(body, None)
    assert stripped == "Ma réponse\n\n> une citation à moi\n\nsuite"


def test_strip_emote_fallback() -> None:
    body, _ = strip_reply_fallback("> * <@alice:server> fait coucou\n\nbonjour", None)
    assert body == "bonjour"


def test_strip_fallback_without_blank_line() -> None:
    body, _ = strip_reply_fallback("> <@alice:server> q\nréponse", None)
    assert body == "réponse"


def test_leading_quote_without_sender_is_the_users_text() -> None:
    text = "> Article 3 du décret\n\nQue signifie cet article ?"
    assert strip_reply_fallback(text, None) == (text, None)


def test_no_fallback_leaves_message_untouched() -> None:
    formatted = "<p>Bonjour <strong>à tous</strong></p>"
    assert strip_reply_fallback("Bonjour **à tous**", formatted) == (
        "Bonjour **à tous**",
        formatted,
    )


def test_mx_reply_must_be_leading() -> None:
    formatted = "<p>avant</p><mx-reply>x</mx-reply>"
    assert strip_reply_fallback("avant", formatted)[1] == formatted


def test_nested_mx_reply_is_removed_entirely() -> None:
    formatted = (
        "  <mx-reply><blockquote><mx-reply>vieux</mx-reply>q</blockquote></mx-reply><p>réponse</p>"
    )
    assert strip_reply_fallback("réponse", formatted)[1] == "<p>réponse</p>"


def test_formatted_body_that_is_only_a_fallback_becomes_none() -> None:
    assert strip_reply_fallback("x", "<mx-reply><blockquote>q</blockquote></mx-reply>")[1] is None
    assert strip_reply_fallback("x", "<MX-REPLY>q")[1] is None  # unclosed: all fallback


# ------------------------------------------------------------------ HTML inspection


def test_extract_user_links_both_url_shapes() -> None:
    html = (
        '<a href="https://matrix.to/#/@alice:agent.tchap.gouv.fr">Alice</a>, '
        "<a href='https://matrix.to/#/%40bob%3Aagent.tchap.gouv.fr?via=agent.tchap.gouv.fr'>"
        "Bob</a>, "
        '<a href="https://tchap.gouv.fr/#/user/@carole:agent.finances.tchap.gouv.fr">C</a> '
        "<a href=https://www.tchap.gouv.fr/#/user/%40dan%3Aagent.tchap.gouv.fr>D</a> "
        '<a href="HTTPS://Matrix.To/#/@eve:example.org:8448">E</a>'
    )
    assert extract_user_links(html) == [
        "@alice:agent.tchap.gouv.fr",
        "@bob:agent.tchap.gouv.fr",
        "@carole:agent.finances.tchap.gouv.fr",
        "@dan:agent.tchap.gouv.fr",
        "@eve:example.org:8448",
    ]


def test_extract_user_links_ignores_non_pills() -> None:
    html = (
        '<a href="https://matrix.to/#/!room:server">salon</a>'
        '<a href="https://matrix.to/#/#alias:server">alias</a>'
        '<a href="https://evil.example/#/@alice:server">faux</a>'
        '<a href="https://tchap.gouv.fr/#/room/!r:server">salon</a>'
        "<a href=\"javascript:alert('@x:y')\">js</a>"
        '<a href="https://www.service-public.fr">@alice:server</a>'
        '<a href="https://matrix.to/#/@pas-de-serveur">?</a>'
        "<p>@texte:server brut</p>"
    )
    assert extract_user_links(html) == []


def test_extract_user_links_dedupes_and_skips_reply_fallback() -> None:
    html = ELEMENT_FORMATTED + (
        '<a href="https://matrix.to/#/@bot:server">bot</a> et '
        '<a href="https://matrix.to/#/%40bot%3Aserver">encore</a>'
    )
    assert extract_user_links(html) == ["@bot:server"]


def test_extract_user_links_on_broken_html() -> None:
    html = '<p><a href="https://matrix.to/#/@a:b.fr">a<b><a href="https://matrix.to/#/@c:d.fr'
    assert extract_user_links(html) == ["@a:b.fr"]


# ----------------------------------------------------------------------- splitting

_FENCE_RE = re.compile(r"^[ \t]*(`{3,}|~{3,})(.*)$")


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


def _assert_content_preserved(text: str, parts: list[str]) -> None:
    """Parts == text, modulo whitespace and fence lines inserted at part edges."""
    target = _squash(text)
    reachable = {0}
    for part in parts:
        lines = part.split("\n")
        first = len(lines) > 1 and bool(_FENCE_RE.match(lines[0]))
        last = len(lines) > 1 and bool(_FENCE_RE.match(lines[-1]))
        options = {_squash(part)}
        if first:
            options.add(_squash("\n".join(lines[1:])))
        if last:
            options.add(_squash("\n".join(lines[:-1])))
        if first and last and len(lines) > 2:
            options.add(_squash("\n".join(lines[1:-1])))
        reachable = {
            pos + len(opt) for pos in reachable for opt in options if target.startswith(opt, pos)
        }
        assert reachable, f"part does not continue the text: {part[:80]!r}"
    assert len(target) in reachable


def _unclosed_fence(part: str) -> str | None:
    """CommonMark fence tracking (column-0 style): the opener left open, if any."""
    opener: str | None = None
    for line in part.split("\n"):
        match = _FENCE_RE.match(line)
        if match is None:
            continue
        fence, info = match.group(1), match.group(2)
        if opener is None:
            if not (fence[0] == "`" and "`" in info):
                opener = line
        else:
            open_fence = _FENCE_RE.match(opener)
            assert open_fence is not None
            if (
                not info.strip()
                and fence[0] == open_fence.group(1)[0]
                and len(fence) >= len(open_fence.group(1))
            ):
                opener = None
    return opener


def _json_size(text: str) -> int:
    return len(json.dumps(text, ensure_ascii=False).encode()) - 2


def test_split_short_text_is_one_part() -> None:
    assert split_markdown("Bonjour 👋", 100) == ["Bonjour 👋"]
    assert split_for_matrix("Bonjour **à tous**") == [
        ("Bonjour **à tous**", "<p>Bonjour <strong>à tous</strong></p>")
    ]


def test_split_blank_text_gives_no_part() -> None:
    assert split_markdown("  \n\n \t", 100) == []
    assert split_for_matrix("") == []


def test_split_rejects_absurd_limits() -> None:
    with pytest.raises(ValueError):
        split_markdown("abc", 3)
    with pytest.raises(ValueError):
        split_for_matrix("abc", 100)


def test_split_prefers_paragraph_boundaries() -> None:
    paragraphs = [
        "\n".join(f"Paragraphe {i}, ligne {j} : une phrase assez longue." for j in range(3))
        for i in range(6)
    ]
    text = "\n\n".join(paragraphs)
    para_bytes = len(paragraphs[0].encode()) + 2
    # Room for two paragraphs and most of a third: the cut still goes between paragraphs.
    parts = split_markdown(text, para_bytes * 2 + para_bytes * 2 // 3)
    assert parts == ["\n\n".join(paragraphs[i : i + 2]) for i in (0, 2, 4)]


def test_split_avoids_cutting_inside_a_table() -> None:
    intro = "\n".join(f"Ligne d'introduction numéro {i}." for i in range(4))
    table = "| n | valeur |\n|---|---|\n" + "\n".join(f"| {i} | v{i} |" for i in range(20))
    text = f"{intro}\n{table}"
    parts = split_markdown(text, len(intro.encode()) + 60)  # intro + a few rows would fit
    assert parts[0] == intro
    assert parts[1].startswith("| n | valeur |\n|---|---|\n| 0 |")


def test_split_falls_back_to_lines_then_sentences_then_spaces() -> None:
    lines = "\n".join(f"ligne numéro {i}" for i in range(20))
    parts = split_markdown(lines, 60)
    assert all(len(p.encode()) <= 60 for p in parts)
    assert all(re.fullmatch(r"(ligne numéro \d+\n?)+", p) for p in parts), parts

    sentences = " ".join(f"Phrase {i} terminée." for i in range(20))
    parts = split_markdown(sentences, 70)
    assert all(p.endswith("terminée.") for p in parts), parts

    words = " ".join(f"mot{i}" for i in range(50))
    parts = split_markdown(words, 30)
    assert all(re.fullmatch(r"mot\d+( mot\d+)*", p) for p in parts), parts
    _assert_content_preserved(words, parts)


def test_split_hard_cut_respects_utf8_and_graphemes() -> None:
    word = "é" * 100
    parts = split_markdown(word, 17)
    assert all(len(p.encode()) <= 17 for p in parts)
    assert "".join(parts) == word

    family = "👨‍👩‍👧‍👦" * 10  # 25 bytes per grapheme cluster
    parts = split_markdown(family, 60)
    assert "".join(parts) == family
    assert all(len(p.encode()) <= 60 for p in parts)
    assert all(p == "👨‍👩‍👧‍👦" * (len(p) // 7) for p in parts), parts

    flags = "🇫🇷" * 20  # two 4-byte regional indicators per flag
    parts = split_markdown(flags, 20)
    assert "".join(parts) == flags
    assert all(len(p) % 2 == 0 and p.startswith("🇫") for p in parts)

    accents = "e\u0301" * 30  # e + combining acute
    parts = split_markdown(accents, 16)
    assert all(p.startswith("e") and p.endswith("\u0301") for p in parts)


def test_split_closes_and_reopens_code_blocks() -> None:
    code = "\n".join(f"    print('ligne {i} é')" for i in range(60))
    text = f"Voici le script :\n\n```python\n{code}\n```\n\nEt voilà."
    parts = split_markdown(text, 400)
    assert len(parts) > 3
    for i, part in enumerate(parts):
        assert len(part.encode()) <= 400
        assert _unclosed_fence(part) is None, part
        if 0 < i < len(parts) - 1:
            assert part.startswith("```python\n"), part
            assert part.endswith("\n```"), part
    _assert_content_preserved(text, parts)
    rendered = [render_markdown(p) for p in parts[1:-1]]
    assert all(h.startswith('<pre><code class="language-python">') for h in rendered)


def test_split_tilde_and_long_fences() -> None:
    inner = "```\nnot a closer inside a 4-backtick fence\n```"
    text = (
        "````markdown\n"
        + "\n".join([inner] * 20)
        + "\n````\n\n~~~ bash\n"
        + ("echo é\n" * 50)
        + "~~~"
    )
    parts = split_markdown(text, 200)
    for part in parts:
        assert len(part.encode()) <= 200
        assert _unclosed_fence(part) is None, part
        first = part.split("\n", 1)[0]
        if _FENCE_RE.match(first):
            assert first in ("````markdown", "~~~ bash", "```"), first
    _assert_content_preserved(text, parts)


@pytest.mark.parametrize(
    "text",
    [
        "début " + "x " * 30 + "``` pas une clôture ``` " + "y " * 30,
        "a" * 40 + " ```" + "b" * 40 + " fin",  # the only space is right before ```
        "a" * 40 + " ~~~" + "b" * 40 + " fin",
        "c" * 40 + " ```python " + "d" * 40,
    ],
)
def test_split_never_creates_a_fence_from_inline_backticks(text: str) -> None:
    parts = split_markdown(text, 60)
    assert len(parts) > 1
    for part in parts:
        assert _unclosed_fence(part) is None, parts
    _assert_content_preserved(text, parts)


def _long_answer(seed: int, target_bytes: int) -> str:
    rng = random.Random(seed)
    sentence = (
        "Bonjour l'administration française gère les congés été à Noël 🎉 déjà œuvre "
        "délai préfecture arrêté <balise> & « guillemets » Voilà ! Pourquoi ? Fin."
    )
    words = sentence.split(" ")
    blocks: list[str] = []
    size = 0
    while size < target_bytes:
        kind = rng.random()
        if kind < 0.25:
            lang = rng.choice(["python", "bash", "json", ""])
            body = "\n".join(
                f'    valeur_{i} = "é" if {i} < 3 and x & y else None  # 🎉'
                for i in range(rng.randint(3, 600))
            )
            block = f"```{lang}\n{body}\n```"
        elif kind < 0.35:
            rows = "\n".join(f"| {i} | cellule é{i} |" for i in range(rng.randint(2, 80)))
            block = "| n | texte |\n|---|---|\n" + rows
        elif kind < 0.45:
            block = "\n".join(f"- point **{i}** : {rng.choice(words)}" for i in range(10))
        else:
            block = " ".join(rng.choice(words) for _ in range(rng.randint(5, 400)))
        blocks.append(block)
        size += len(block.encode()) + 2
    return "\n\n".join(blocks)


def test_split_200kb_answer_for_matrix() -> None:
    text = _long_answer(seed=7, target_bytes=200_000)
    assert len(text.encode()) >= 200_000
    pairs = split_for_matrix(text)
    assert len(pairs) >= 4
    for body, html in pairs:
        assert body.strip()
        assert len(body.encode()) + len(html.encode()) <= 60_000
        assert _unclosed_fence(body) is None
        assert html == render_markdown(body)
        _assert_safe(html)
        event = {
            "type": "m.room.message",
            "room_id": "!abcdefghijklmnop:agent.tchap.gouv.fr",
            "sender": "@assistant-ia:agent.tchap.gouv.fr",
            "event_id": "$" + "x" * 43,
            "content": {
                "msgtype": "m.notice",
                "body": body,
                "format": "org.matrix.custom.html",
                "formatted_body": html,
                "m.relates_to": {"m.in_reply_to": {"event_id": "$" + "y" * 43}},
            },
        }
        assert len(json.dumps(event, ensure_ascii=False).encode()) < MATRIX_EVENT_MAX_BYTES
    bodies = [body for body, _ in pairs]
    _assert_content_preserved(text, bodies)
    original_fences = {line for line in text.split("\n") if _FENCE_RE.match(line)}
    for body in bodies:
        for line in body.split("\n"):
            if _FENCE_RE.match(line):
                assert line in original_fences  # reopened with the same info string
    # Parts are reasonably full, not a flood of tiny messages.
    assert len(pairs) <= 2 * (len(text.encode()) * 2.3 // 60_000 + 1)


def test_split_for_matrix_counts_html_escaping() -> None:
    text = '&<>"' * 5_000  # HTML escaping multiplies the size
    pairs = split_for_matrix(text, 10_000)
    assert len(pairs) > 2
    for body, html in pairs:
        assert _json_size(body) + _json_size(html) <= 10_000
    assert "".join(body for body, _ in pairs) == text


# ------------------------------------------------------------------- property tests

_texts = st.lists(
    st.one_of(
        st.text(max_size=80),
        st.sampled_from(["\n", "\n\n", " ", "```", "~~~", "```py\n", "|", ". ", "é", "🎉"]),
    ),
    max_size=400,
).map("".join)
# Hypothesis favours small lists; repeating them makes sure texts really get split.
_long_texts = st.tuples(_texts, st.integers(min_value=1, max_value=30)).map(
    lambda pair: pair[0] * pair[1]
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=_long_texts, limit=st.integers(min_value=1_024, max_value=4_096))
def test_property_split_for_matrix_fits_and_preserves(text: str, limit: int) -> None:
    pairs = split_for_matrix(text, limit)
    for body, html in pairs:
        assert body.strip()
        assert len(body.encode()) + len(html.encode()) <= limit
        assert _json_size(body) + _json_size(html) <= limit
        _assert_safe(html)
    _assert_content_preserved(text, [body for body, _ in pairs])


@settings(max_examples=150, deadline=None)
@given(text=_texts, max_bytes=st.integers(min_value=16, max_value=600))
def test_property_split_markdown_fits_and_preserves(text: str, max_bytes: int) -> None:
    parts = split_markdown(text, max_bytes)
    assert all(part.strip() for part in parts)
    assert all(len(part.encode()) <= max_bytes for part in parts)
    _assert_content_preserved(text, parts)


_word = st.text(alphabet="abcdeéèàçôœ🎉<&>*_", min_size=1, max_size=12)
_paragraph = st.lists(_word, min_size=1, max_size=60).map(" ".join)
_code_line = st.text(alphabet="abc é<&>=(){}[];#🎉 \t", max_size=60)
_code_block = st.tuples(
    st.sampled_from(["```", "```python", "~~~", "~~~ bash", "````json"]),
    st.lists(_code_line, max_size=150),
).map(lambda b: "\n".join([b[0], *b[1], b[0].rstrip("abcdefghijklmnopqrstuvwxyz ")]))
_markdown_doc = st.tuples(
    st.lists(st.one_of(_paragraph, _code_block), min_size=1, max_size=20),
    st.integers(min_value=1, max_value=8),
).map(lambda pair: "\n\n".join(pair[0] * pair[1]))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=_markdown_doc, limit=st.integers(min_value=1_024, max_value=3_000))
def test_property_code_fences_stay_balanced(text: str, limit: int) -> None:
    pairs = split_for_matrix(text, limit)
    original_fences = {line for line in text.split("\n") if _FENCE_RE.match(line)}
    for body, html in pairs:
        assert len(body.encode()) + len(html.encode()) <= limit
        assert _unclosed_fence(body) is None, body
        for line in body.split("\n"):
            if _FENCE_RE.match(line):
                assert line in original_fences
    _assert_content_preserved(text, [body for body, _ in pairs])
