"""A generated French corpus: one team's working week in a Tchap room, with what is known in it.

Four agents of a ministry team work on the redesign of a public-service portal from Monday to
Friday: they take decisions, assign actions with due dates, ask questions (some answered later,
some left open) and chat. Every decision, action and open question is known, with the message
that carries it, so summaries can be scored: the unit tests check windows, numbering and
permalinks exactly with the fake model; `python -m bench --only recall` measures a real model's
recall of the decisions and actions (skipped without `MISTRAL_API_KEY`).

Deterministic: the chatter is drawn with a seeded generator; the same week gives the same corpus.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from bot.answer.citations import cited_numbers, section_of
from bot.french import PARIS, fold

WEEK = date(2026, 11, 9)  # the Monday the script's dates ("jeudi 12/11", "20/11") refer to
SERVER = "agent.dinum.tchap.gouv.fr"


@dataclass(frozen=True)
class Person:
    user_id: str
    name: str


ALICE = Person(f"@alice.martin-dinum.fr:{SERVER}", "Alice Martin [DINUM]")
BRUNO = Person(f"@bruno.durand-dinum.fr:{SERVER}", "Bruno Durand [DINUM]")
CHLOE = Person(f"@chloe.petit-dinum.fr:{SERVER}", "Chloé Petit [DINUM]")
DAVID = Person(f"@david.leroy-dinum.fr:{SERVER}", "David Leroy [DINUM]")
TEAM = (ALICE, BRUNO, CHLOE, DAVID)


@dataclass(frozen=True)
class Line:
    """One message as written: day of the week (0 = Monday), time, author, text."""

    day: int
    hour: int
    minute: int
    author: Person
    text: str
    decision: tuple[str, ...] = ()  # keywords of the decision it states
    action: tuple[Person, tuple[str, ...], str] | None = None  # owner, keywords, due date
    open_question: tuple[str, ...] = ()  # keywords of a question nobody answered


@dataclass(frozen=True)
class CorpusMessage:
    event_id: str
    sender: str
    sender_name: str
    body: str
    timestamp_ms: int
    line: Line


@dataclass(frozen=True)
class Known:
    """A decision, action or open question and the index (0-based) of its message."""

    kind: str  # "décision", "action", "question"
    index: int
    keywords: tuple[str, ...]
    owner: Person | None = None
    due: str = ""


# The week's substance. Decisions, actions (owner, due date) and open questions are marked.
SCRIPT: tuple[Line, ...] = (
    Line(0, 9, 2, ALICE, "Bonjour à tous ! Point d'équipe à 10h comme chaque lundi."),
    Line(
        0,
        10,
        5,
        ALICE,
        "Ordre du jour : calendrier de la refonte du portail, accessibilité, recette.",
    ),
    Line(
        0,
        10,
        12,
        BRUNO,
        "Pour le calendrier, je propose de viser une mise en production le 4 décembre.",
    ),
    Line(
        0, 10, 15, CHLOE, "Le 4 décembre me paraît tenable si la recette commence le 23 novembre."
    ),
    Line(
        0,
        10,
        18,
        ALICE,
        "Décidé : mise en production du nouveau portail le 4 décembre.",
        decision=("production", "4 decembre"),
    ),
    Line(
        0,
        10,
        22,
        ALICE,
        "Chloé, tu peux rédiger le plan de recette pour jeudi ?",
        action=(CHLOE, ("plan de recette",), "jeudi 12/11"),
    ),
    Line(0, 10, 23, CHLOE, "Oui, je m'en occupe, plan de recette pour jeudi."),
    Line(
        0,
        10,
        30,
        DAVID,
        "Qui valide la charte graphique côté ministère, le SIG ou la DICOM ?",
        open_question=("charte graphique",),
    ),
    Line(0, 11, 40, BRUNO, "Je pars déjeuner, quelqu'un vient ?"),
    Line(
        0,
        14,
        5,
        DAVID,
        "L'audit d'accessibilité de la version actuelle donne 62 % de conformité RGAA.",
    ),
    Line(
        0,
        14,
        20,
        ALICE,
        "On retient l'objectif de 100 % de conformité RGAA pour les pages de démarches.",
        decision=("rgaa", "100"),
    ),
    Line(
        0,
        14,
        26,
        ALICE,
        "David, corrige les contrastes et les libellés de formulaires d'ici vendredi.",
        action=(DAVID, ("contraste",), "vendredi 13/11"),
    ),
    Line(0, 16, 50, CHLOE, "Le café de l'étage est encore en panne…"),
    Line(
        1,
        9,
        10,
        BRUNO,
        "Bonjour ! Le serveur de préproduction a redémarré cette nuit, tout va bien.",
    ),
    Line(1, 9, 40, DAVID, "Est-ce qu'on garde l'ancien moteur de recherche ?"),
    Line(
        1, 9, 52, BRUNO, "Non, on passe au moteur de recherche interministériel, c'est plus simple."
    ),
    Line(
        1,
        10,
        3,
        ALICE,
        "D'accord : on abandonne l'ancien moteur au profit du moteur de recherche interministériel.",
        decision=("moteur de recherche",),
    ),
    Line(
        1,
        10,
        10,
        ALICE,
        "Bruno, prépare la migration des index de recherche pour le 20 novembre.",
        action=(BRUNO, ("index",), "20/11"),
    ),
    Line(1, 11, 0, CHLOE, "Quelqu'un a le lien vers la maquette Figma à jour ?"),
    Line(1, 11, 4, DAVID, "Je te l'envoie en privé."),
    Line(1, 15, 30, BRUNO, "Réunion avec la sécurité demain 14h, qui vient ?"),
    Line(1, 15, 33, ALICE, "Moi."),
    Line(2, 9, 5, CHLOE, "Bonjour ! Il pleut des cordes à la Défense."),
    Line(
        2,
        14,
        10,
        BRUNO,
        "Retour de la réunion sécurité : l'homologation exige un test d'intrusion.",
    ),
    Line(
        2,
        14,
        18,
        ALICE,
        "Décision : on commande le test d'intrusion à l'ANSSI avant la mise en production.",
        decision=("intrusion", "anssi"),
    ),
    Line(
        2,
        14,
        25,
        ALICE,
        "Je me charge d'envoyer le bon de commande du test d'intrusion lundi.",
        action=(ALICE, ("bon de commande",), "lundi 16/11"),
    ),
    Line(
        2,
        14,
        40,
        BRUNO,
        "Combien de temps faut-il garder les journaux de connexion, six mois ou un an ?",
        open_question=("journaux",),
    ),
    Line(2, 17, 30, DAVID, "Bonne soirée, je file."),
    Line(3, 9, 15, CHLOE, "Le plan de recette est en ligne dans le dossier partagé."),
    Line(3, 9, 20, ALICE, "Merci Chloé, je le relis ce matin."),
    Line(3, 10, 0, DAVID, "Faut-il traduire le portail en anglais pour la mise en ligne ?"),
    Line(3, 10, 8, ALICE, "Non, l'anglais viendra en 2027, pas pour cette version."),
    Line(
        3,
        10,
        12,
        ALICE,
        "Décidé : pas de version anglaise au lancement, elle est reportée à 2027.",
        decision=("anglais", "2027"),
    ),
    Line(
        3,
        11,
        30,
        ALICE,
        "Chloé, organise la session de recette avec les agents des préfectures le 23 novembre.",
        action=(CHLOE, ("session de recette", "prefectures"), "23/11"),
    ),
    Line(3, 12, 0, BRUNO, "Pizza ce midi ?"),
    Line(
        3,
        16,
        0,
        DAVID,
        "Le formulaire de contact doit-il passer par le nouveau service de messagerie sécurisée ?",
        open_question=("formulaire de contact",),
    ),
    Line(4, 9, 0, ALICE, "Dernier jour de la semaine, on fait le point à 11h."),
    Line(
        4,
        9,
        30,
        DAVID,
        "Contrastes corrigés sur toutes les pages de démarches, il reste les libellés.",
    ),
    Line(4, 11, 5, ALICE, "Point : calendrier tenu, recette prête, accessibilité en bonne voie."),
    Line(
        4,
        11,
        12,
        ALICE,
        "On arrête le gel des fonctionnalités au 27 novembre.",
        decision=("gel", "27 novembre"),
    ),
    Line(
        4,
        11,
        15,
        ALICE,
        "David, rédige la note de mise en production pour la direction avant le 1er décembre.",
        action=(DAVID, ("note de mise en production",), "1er décembre"),
    ),
    Line(
        4,
        11,
        20,
        ALICE,
        "Bruno, mets à jour la page de statut du service mardi prochain.",
        action=(BRUNO, ("page de statut",), "mardi 17/11"),
    ),
    Line(4, 16, 45, CHLOE, "Bon week-end à tous !"),
)

CHATTER = (
    "Quelqu'un a vu mon badge ?",
    "Le wifi de la salle B est lent aujourd'hui.",
    "Je suis en visio jusqu'à midi.",
    "Merci pour le compte rendu !",
    "Je reprends mes mails et je reviens vers vous.",
    "La salle de réunion est réservée jusqu'à 15h.",
    "Super, merci.",
    "Je serai en télétravail demain.",
    "Qui a laissé un gâteau à la cuisine ? Merci !",
    "Rappel : pensez à remplir vos congés de fin d'année.",
)


def script_with_chatter(seed: int = 7, per_day: int = 6) -> list[Line]:
    """The script plus `per_day` chatter messages a day at random times, sorted by time."""
    rng = random.Random(seed)
    lines = list(SCRIPT)
    taken = {(line.day, line.hour, line.minute) for line in lines}
    for day in range(5):
        added = 0
        while added < per_day:
            slot = (day, rng.randint(9, 17), rng.randint(0, 59))
            if slot in taken:
                continue
            taken.add(slot)
            lines.append(Line(*slot, rng.choice(TEAM), rng.choice(CHATTER)))
            added += 1
    return sorted(lines, key=lambda line: (line.day, line.hour, line.minute))


def build(monday: date = WEEK, *, seed: int = 7, per_day: int = 6) -> list[CorpusMessage]:
    """The week starting on `monday` as stored messages (Paris time)."""
    messages = []
    for index, line in enumerate(script_with_chatter(seed, per_day)):
        moment = datetime.combine(
            monday + timedelta(days=line.day), time(line.hour, line.minute), tzinfo=PARIS
        )
        messages.append(
            CorpusMessage(
                event_id=f"$semaine{index:03d}",
                sender=line.author.user_id,
                sender_name=line.author.name,
                body=line.text,
                timestamp_ms=int(moment.timestamp() * 1000),
                line=line,
            )
        )
    return messages


def known(messages: list[CorpusMessage]) -> list[Known]:
    """What a good summary of `messages` must contain, with the message carrying each."""
    found = []
    for index, message in enumerate(messages):
        line = message.line
        if line.decision:
            found.append(Known("décision", index, line.decision))
        if line.action is not None:
            owner, keywords, due = line.action
            found.append(Known("action", index, keywords, owner=owner, due=due))
        if line.open_question:
            found.append(Known("question", index, line.open_question))
    return found


@dataclass(frozen=True)
class Score:
    decisions: float  # share of the known decisions found in the "Décisions" section
    actions: float  # share of the known actions found in the "Actions" section
    owners: float  # share of the found actions whose line names the right person
    due_dates: float  # share of the found actions whose line keeps the due date
    questions: float  # share of the open questions found in "Questions ouvertes"
    cited: float  # share of the found items whose line cites the item's own message


def score(summary: str, expected: list[Known]) -> Score:
    """How much of `expected` a model's summary (its raw text, citations as `[n]`, message n =
    index n - 1) recalls. An item is found in its section when a line cites its message or
    names all its keywords."""
    sections: dict[str, list[str]] = {}
    current: list[str] = []
    for line in summary.splitlines():
        name = section_of(line)
        if name is not None:
            current = sections.setdefault(name, [])
        elif line.strip():
            current.append(line)
    where = {"décision": "Décisions", "action": "Actions", "question": "Questions ouvertes"}

    def lines_for(item: Known) -> list[tuple[str, bool]]:
        found = []
        for line in sections.get(where[item.kind], []):
            cites = item.index + 1 in cited_numbers(line)
            if cites or all(keyword in fold(line) for keyword in item.keywords):
                found.append((line, cites))
        return found

    def share(items: list[Known], test: Callable[[Known, list[tuple[str, bool]]], bool]) -> float:
        return sum(1 for item in items if test(item, lines_for(item))) / len(items) if items else 0

    decisions = [k for k in expected if k.kind == "décision"]
    actions = [k for k in expected if k.kind == "action"]
    questions = [k for k in expected if k.kind == "question"]
    found_actions = [k for k in actions if lines_for(k)]
    found = [k for k in expected if lines_for(k)]

    def owner_named(item: Known, lines: list[tuple[str, bool]]) -> bool:
        assert item.owner is not None
        first = fold(item.owner.name.split()[0])
        return any(first in fold(line) for line, _ in lines)

    def due_kept(item: Known, lines: list[tuple[str, bool]]) -> bool:
        tokens = [t for t in fold(item.due).split() if any(c.isdigit() for c in t) or len(t) > 3]
        return any(any(t in fold(line) for t in tokens) for line, _ in lines)

    return Score(
        decisions=share(decisions, lambda _, lines: bool(lines)),
        actions=share(actions, lambda _, lines: bool(lines)),
        owners=share(found_actions, owner_named),
        due_dates=share(found_actions, due_kept),
        questions=share(questions, lambda _, lines: bool(lines)),
        cited=share(found, lambda _, lines: any(cites for _, cites in lines)),
    )
