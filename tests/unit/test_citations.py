"""Numbered transcripts, citations → permalinks, model links dropped, sections, pills (tables)."""

from __future__ import annotations

import pytest

from bot.answer.citations import (
    Speaker,
    cited_numbers,
    drop_model_links,
    link_citations,
    number_lines,
    permalink,
    pill_owners,
    render,
    structure,
    urls_in,
)

ROOM = "!salon:agent.dinum.tchap.gouv.fr"
SERVER = "agent.dinum.tchap.gouv.fr"
EVENTS = {1: "$un", 2: "$deux", 3: "$trois", 4: "$quatre"}


def link(n: int) -> str:
    return f"[{n}](https://matrix.to/#/{ROOM}/{EVENTS[n]}?via={SERVER})"


def test_numbering_starts_where_asked() -> None:
    assert number_lines(["09:00 A : x", "09:01 B : y"]) == ["[1] 09:00 A : x", "[2] 09:01 B : y"]
    assert number_lines(["z"], start=7) == ["[7] z"]


def test_permalinks_carry_the_event_and_a_via() -> None:
    assert (
        permalink("!r:s.fr", "$ab+c/d", "s.fr")
        == "https://matrix.to/#/!r:s.fr/$ab%2Bc%2Fd?via=s.fr"
    )


@pytest.mark.parametrize(
    ("text", "numbers"),
    [
        ("a [2]", [2]),
        ("a [2, 3] b [1]", [2, 3, 1]),
        ("a [1-3]", [1, 2, 3]),
        ("a [1–3]", [1, 2, 3]),
        ("a [#2; #4]", [2, 4]),
        ("a [2 et 4]", [2, 4]),
        ("a [3] [3]", [3]),
        ("le [12/11] et [x]", []),
        ("a [1-5000]", [1, 5000]),  # a range too long to mean anything: its ends only
    ],
)
def test_cited_numbers(text: str, numbers: list[int]) -> None:
    assert cited_numbers(text) == numbers


@pytest.mark.parametrize(
    ("text", "linked"),
    [
        ("On livre vendredi [2]", f"On livre vendredi ({link(2)})"),
        ("Budget [1, 3]", f"Budget ({link(1)}, {link(3)})"),
        ("Budget [1-3]", f"Budget ({link(1)}, {link(2)}, {link(3)})"),
        ("Budget [3, 3]", f"Budget ({link(3)})"),
        ("Inventé [9]", "Inventé"),  # no message 9: no link, no bracket left
        ("Mixte [9, 4]", f"Mixte ({link(4)})"),
        ("- a [1]\n- b [2]", f"- a ({link(1)})\n- b ({link(2)})"),
        ("Date [12/11] gardée", "Date [12/11] gardée"),
    ],
)
def test_citations_become_permalinks(text: str, linked: str) -> None:
    assert link_citations(text, EVENTS, ROOM, SERVER) == linked


@pytest.mark.parametrize(
    ("text", "allowed", "cleaned"),
    [
        ("voir [le compte rendu](https://evil.example/x)", (), "voir le compte rendu"),
        ("voir [ici](https://matrix.to/#/!r:s/$faux)", (), "voir ici"),
        ("![image](https://evil.example/i.png)", (), "image"),
        ("voir <https://evil.example>", (), "voir "),
        ('voir <a href="https://evil.example">ici</a>', (), "voir ici"),
        ("voir https://evil.example/x.", (), "voir ."),
        (
            "doc : https://grist.numerique.gouv.fr/d",
            ("https://grist.numerique.gouv.fr/d",),
            "doc : https://grist.numerique.gouv.fr/d",
        ),
    ],
)
def test_links_written_by_the_model_are_dropped(
    text: str, allowed: tuple[str, ...], cleaned: str
) -> None:
    assert drop_model_links(text, frozenset(allowed)) == cleaned


def test_urls_of_the_window_are_the_only_bare_urls_kept() -> None:
    assert urls_in(["le doc https://grist.numerique.gouv.fr/d ok", "rien"]) == frozenset(
        {"https://grist.numerique.gouv.fr/d"}
    )
    # Whatever their case: the quick test that skips messages without links must not miss one.
    shouting = ["VOIR WWW.Service-Public.fr.", "Lien : HTTPS://Tchap.gouv.fr/x, merci", "http:// "]
    assert urls_in(shouting) == frozenset({"WWW.Service-Public.fr", "HTTPS://Tchap.gouv.fr/x"})


SPEAKERS = [
    Speaker("@bob-dinum.fr:agent.dinum.tchap.gouv.fr", "Bob Martin [DINUM]"),
    Speaker("@alice-dinum.fr:agent.dinum.tchap.gouv.fr", "Alice Durand [DINUM]"),
    Speaker("@alice.b-dinum.fr:agent.dinum.tchap.gouv.fr", "Alice Bernard [DINUM]"),
]
BOB = "https://matrix.to/#/@bob-dinum.fr:agent.dinum.tchap.gouv.fr"
ALICE_D = "https://matrix.to/#/@alice-dinum.fr:agent.dinum.tchap.gouv.fr"


@pytest.mark.parametrize(
    ("line", "pilled"),
    [
        ("- **Bob** : prépare la note [3]", f"- [Bob]({BOB}) : prépare la note [3]"),
        ("- **Bob Martin** : note", f"- [Bob Martin]({BOB}) : note"),
        ("* **Bob Martin [DINUM]** : note", f"* [Bob Martin (DINUM)]({BOB}) : note"),
        ("1. **@Bob** : note", f"1. [Bob]({BOB}) : note"),
        ("- **Alice Durand** : budget", f"- [Alice Durand]({ALICE_D}) : budget"),
        ("- **Alice** : budget", "- **Alice** : budget"),  # two Alices: no guess
        ("- **Chloé** : budget", "- **Chloé** : budget"),  # not in the window
        ("Bob : sans puce", "Bob : sans puce"),
    ],
)
def test_action_owners_become_pills(line: str, pilled: str) -> None:
    assert pill_owners(line, SPEAKERS) == pilled


def test_sections_are_ordered_titled_and_empty_ones_left_out() -> None:
    text = (
        "Semaine chargée.\n\n"
        "**Actions :**\n- **Bob** : note (échéance : vendredi 20/11) [3]\n\n"
        "## Points clés\n- Livraison avancée [1]\n\n"
        "### Décisions\n- Aucune.\n\n"
        "### Questions ouvertes\n- Aucune question ouverte\n"
    )
    assert structure(text, SPEAKERS) == (
        "Semaine chargée.\n\n"
        "### Points clés\n- Livraison avancée [1]\n\n"
        f"### Actions\n- [Bob]({BOB}) : note (échéance : vendredi 20/11) [3]"
    )


@pytest.mark.parametrize(
    ("heading", "section"),
    [
        ("### Décisions", "Décisions"),
        ("# DECISIONS", "Décisions"),
        ("**Décisions**", "Décisions"),
        ("**Décisions :**", "Décisions"),
        ("### Actions à suivre", "Actions"),
        ("### Points clés", "Points clés"),
        ("### Questions", "Questions ouvertes"),
    ],
)
def test_headings_are_recognised(heading: str, section: str) -> None:
    assert structure(f"{heading}\n- x [1]") == f"### {section}\n- x [1]"


def test_a_point_citing_a_message_is_never_taken_for_an_empty_section() -> None:
    text = "### Décisions\n- Aucun report du comité [2]"
    assert structure(text) == text


def test_render_keeps_only_the_bots_links() -> None:
    text = (
        "### Décisions\n- Livraison vendredi [2] ([source](https://matrix.to/#/!r:s/$faux))\n"
        "### Actions\n- **Bob** : note [3, 9]\n"
        "### Questions ouvertes\n- Néant\n"
    )
    rendered = render(text, event_ids=EVENTS, room_id=ROOM, server=SERVER, speakers=SPEAKERS)
    assert rendered == (
        f"### Décisions\n- Livraison vendredi ({link(2)}) (source)\n\n"
        f"### Actions\n- [Bob]({BOB}) : note ({link(3)})"
    )
    assert "$faux" not in rendered


def test_room_names_cannot_inject_markdown() -> None:
    from bot.answer.render import render_markdown
    from bot.answer.untrusted import as_code

    name = "Salon [clic](https://evil.example) **gras** <b>x</b>\n\n# Titre"
    html = render_markdown(f"**Résumé de {as_code(name)}**")
    assert "href" not in html and "<b>x</b>" not in html and "<strong>gras</strong>" not in html
    assert "[clic](https://evil.example)" in html
