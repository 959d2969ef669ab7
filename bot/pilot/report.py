"""`tchap-bot rapport`: the pilot's figures over a period, as sections (chart + table).

Only aggregates leave the database: no message content, no user ID, no room ID. Any figure
about fewer than 5 people is replaced by "< 5" before it reaches a table, a chart or a CSV
file (`mask`). The HTML page (`report_html.py`) and the CSV files (`report_csv.py`) render the
same `Report`.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Literal

from bot.pilot.pseudonym import paris_today
from bot.pilot.service import FEW_PEOPLE
from bot.store.pilot import PilotRepository
from config.settings import Settings

MASK = "< 5"
MAX_PERIOD_DAYS = 3_660
COMMENTS_SHOWN = 20
Cell = int | float | str | None
ChartKind = Literal["stacked", "lines", "hbars"]

_PERIOD = re.compile(
    r"^\s*(\d{1,5})\s*(j|jours?|d|days?|s|sem|semaines?|w|weeks?|m|mois|months?)\s*$",
    re.IGNORECASE,
)
_UNIT_DAYS = {"j": 1, "d": 1, "s": 7, "w": 7, "m": 30}
# Matrix IDs (@user:server, also room/event IDs) and e-mail addresses, in free-text comments.
_IDENTIFIERS = re.compile(r"[@!$#+]?[\w.=\-/+]+(?:@|:)[\w\-]+(?:\.[\w\-]+)+(?::\d+)?")
IDENTIFIER_MASK = "[identifiant masqué]"


class PeriodError(ValueError):
    """A `--depuis` value that does not make sense."""


def parse_period(text: str, today: date) -> date:
    """`30j`, `2 semaines`, `6 mois`, or a date `2026-09-01` → the first day of the report."""
    value = text.strip()
    match = _PERIOD.match(value)
    if match:
        count = int(match.group(1))
        days = count * _UNIT_DAYS[match.group(2)[0].lower()]
        if not 1 <= days <= MAX_PERIOD_DAYS:
            raise PeriodError(value)
        return today - timedelta(days=days - 1)
    try:
        start = date.fromisoformat(value)
    except ValueError:
        raise PeriodError(value) from None
    if start > today or (today - start).days >= MAX_PERIOD_DAYS:
        raise PeriodError(value)
    return start


def scrub_identifiers(text: str) -> str:
    return _IDENTIFIERS.sub(IDENTIFIER_MASK, text)


def mask(value: Cell, people: int) -> Cell:
    """A figure about 1 to 4 people is shown as "< 5" (0 people: nobody to protect)."""
    return MASK if 0 < people < FEW_PEOPLE else value


@dataclass
class Series:
    name: str
    values: list[float | None]  # None: masked or absent


@dataclass
class Chart:
    kind: ChartKind
    categories: list[str]
    series: list[Series]
    unit: str = ""
    max_value: float | None = None


@dataclass
class Table:
    columns: list[str]
    rows: list[list[Cell]]


@dataclass
class Section:
    key: str
    title: str
    note: str
    table: Table
    chart: Chart | None = None


@dataclass
class Report:
    start: date
    end: date
    generated: str
    headline: list[tuple[str, Cell]] = field(default_factory=list)
    sections: list[Section] = field(default_factory=list)
    empty: bool = True
    recording: bool = True

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1


def _day_label(day: str) -> str:
    return f"{day[8:10]}/{day[5:7]}"


def _rate(part: int, whole: int) -> float | None:
    return round(100 * part / whole, 1) if whole else None


def _seconds(ms: float | None) -> float | None:
    return None if ms is None else round(ms / 1000, 2)


def _number(cell: Cell) -> float | None:
    return float(cell) if isinstance(cell, int | float) else None


async def build_report(
    repo: PilotRepository, settings: Settings, start: date, now_s: float, generated: str
) -> Report:
    end = paris_today(now_s)
    since = start.isoformat()
    days = [(start + timedelta(days=i)).isoformat() for i in range((end - start).days + 1)]
    report = Report(
        start=start, end=end, generated=generated, recording=settings.pilot_secret is not None
    )
    daily = {row["day"]: row for row in await repo.daily(since)}
    satisfaction = await repo.satisfaction(since)
    comments = await repo.latest_comments(since, COMMENTS_SHOWN)
    report.empty = not daily and not satisfaction and not comments
    if report.empty:
        return report

    people_total = await repo.people(since)
    events_total = sum(int(row["events"]) for row in daily.values())
    homeservers = await repo.by_homeserver(since)
    positive = sum(int(row["positive"]) for row in satisfaction)
    reactions = sum(int(row["reactions"]) for row in satisfaction)
    reacting = await repo.reacting_people(since)
    report.headline = [
        ("Demandes traitées", mask(events_total, people_total)),
        ("Personnes actives", mask(people_total, people_total)),
        ("Serveurs (ministères)", mask(len(homeservers), people_total)),
        (
            "Satisfaction (👍 ÷ réactions)",
            mask(f"{_rate(positive, reactions)} %", reacting) if reactions else "—",
        ),
    ]
    labels = [_day_label(day) for day in days]

    # Activity per day.
    activity_rows: list[list[Cell]] = []
    people_rows: list[list[Cell]] = []
    rate_rows: list[list[Cell]] = []
    for day in days:
        row = daily.get(day)
        people = int(row["people"]) if row else 0
        values = (
            [int(row[k]) for k in ("questions", "summaries", "commands", "documents")]
            if row
            else [0, 0, 0, 0]
        )
        activity_rows.append([day, *(mask(v, people) for v in values)])
        rooms = int(row["rooms"]) if row else 0
        people_rows.append([day, mask(people, people), mask(rooms, people)])
        events = int(row["events"]) if row else 0
        errors = int(row["errors"]) if row else 0
        refusals = int(row["refusals"]) if row else 0
        rate_rows.append(
            [
                day,
                mask(events, people),
                mask(_rate(errors, events), people),
                mask(_rate(refusals, events), people),
            ]
        )
    report.sections.append(
        Section(
            "activite",
            "Questions, résumés et commandes par jour",
            "Demandes adressées à l'assistant, par type (heure de Paris).",
            Table(["Jour", "Questions", "Résumés", "Commandes", "Documents"], activity_rows),
            Chart(
                "stacked",
                labels,
                [
                    Series(name, [_number(r[i + 1]) for r in activity_rows])
                    for i, name in enumerate(("Questions", "Résumés", "Commandes", "Documents"))
                ],
            ),
        )
    )
    report.sections.append(
        Section(
            "personnes",
            "Personnes et salons actifs par jour",
            "Nombre de personnes distinctes et de salons distincts ayant utilisé l'assistant.",
            Table(["Jour", "Personnes actives", "Salons actifs"], people_rows),
            Chart(
                "lines",
                labels,
                [
                    Series("Personnes", [_number(r[1]) for r in people_rows]),
                    Series("Salons", [_number(r[2]) for r in people_rows]),
                ],
            ),
        )
    )

    # Use per homeserver (ministry).
    server_rows: list[list[Cell]] = []
    for row in homeservers:
        people = int(row["people"])
        server_rows.append(
            [
                row["homeserver"],
                *(
                    mask(int(row[k] or 0), people)
                    for k in ("events", "questions", "people", "rooms", "tokens")
                ),
            ]
        )
    report.sections.append(
        Section(
            "serveurs",
            "Utilisation par serveur Tchap (ministère)",
            "Le serveur est celui de la personne qui demande.",
            Table(
                ["Serveur", "Demandes", "Questions", "Personnes", "Salons", "Jetons"], server_rows
            ),
            Chart(
                "hbars",
                [str(r[0]) for r in server_rows],
                [Series("Demandes", [_number(r[1]) for r in server_rows])],
            ),
        )
    )

    # Models and tokens per day.
    model_rows: list[list[Cell]] = []
    per_model: dict[str, dict[str, float | None]] = defaultdict(dict)
    for row in await repo.by_model(since):
        people = int(row["people"])
        prompt, completion = int(row["prompt_tokens"] or 0), int(row["completion_tokens"] or 0)
        cells = [mask(int(row["calls"]), people), mask(prompt, people), mask(completion, people)]
        model_rows.append([row["day"], row["model"], *cells])
        per_model[str(row["model"])][row["day"]] = (
            None if cells[1] == MASK else float(prompt + completion)
        )
    report.sections.append(
        Section(
            "modeles",
            "Modèles et jetons par jour",
            "Appels au modèle et jetons consommés (entrée et sortie) : le coût du service.",
            Table(["Jour", "Modèle", "Appels", "Jetons en entrée", "Jetons en sortie"], model_rows),
            Chart(
                "stacked",
                labels,
                [
                    Series(model, [values.get(day, 0.0) for day in days])
                    for model, values in sorted(per_model.items())
                ],
                unit="jetons",
            ),
        )
    )

    # Answer times.
    times = await repo.answer_times(since)
    time_rows: list[list[Cell]] = []
    for day in days:
        people = int(daily[day]["people"]) if day in daily else 0
        day_times = times.get(day)
        time_rows.append(
            [
                day,
                mask(_seconds(day_times.median_ms) if day_times else None, people),
                mask(_seconds(day_times.p95_ms) if day_times else None, people),
                mask(day_times.count if day_times else 0, people),
            ]
        )
    report.sections.append(
        Section(
            "temps",
            "Temps de réponse (médiane et 95e centile)",
            "De la réception du message à l'envoi complet de la réponse, en secondes.",
            Table(["Jour", "Médiane (s)", "95e centile (s)", "Réponses"], time_rows),
            Chart(
                "lines",
                labels,
                [
                    Series("Médiane", [_number(r[1]) for r in time_rows]),
                    Series("95e centile", [_number(r[2]) for r in time_rows]),
                ],
                unit="s",
            ),
        )
    )
    report.sections.append(
        Section(
            "taux",
            "Taux d'erreurs et de refus",
            "Erreurs : le modèle ou le bot a échoué. Refus : limite de débit ou quota atteint.",
            Table(["Jour", "Demandes", "Erreurs (%)", "Refus (%)"], rate_rows),
            Chart(
                "lines",
                labels,
                [
                    Series("Erreurs", [_number(r[2]) for r in rate_rows]),
                    Series("Refus", [_number(r[3]) for r in rate_rows]),
                ],
                unit="%",
            ),
        )
    )

    # Satisfaction per kind of answer.
    kind_names = {
        "question": "Questions",
        "summary": "Résumés",
        "document": "Documents",
        "custom": "Commandes du salon",
    }
    satisfaction_rows: list[list[Cell]] = []
    for row in satisfaction:
        people = int(row["people"])
        positive_k, total_k = int(row["positive"]), int(row["reactions"])
        satisfaction_rows.append(
            [
                kind_names.get(str(row["kind"]), str(row["kind"])),
                mask(positive_k, people),
                mask(total_k - positive_k, people),
                mask(total_k, people),
                mask(_rate(positive_k, total_k), people),
            ]
        )
    report.sections.append(
        Section(
            "satisfaction",
            "Satisfaction par type de réponse",
            "Part des 👍 parmi les réactions 👍 et 👎 aux réponses de l'assistant.",
            Table(["Type", "👍", "👎", "Réactions", "Satisfaction (%)"], satisfaction_rows),
            Chart(
                "hbars",
                [str(r[0]) for r in satisfaction_rows],
                [Series("Satisfaction", [_number(r[4]) for r in satisfaction_rows])],
                unit="%",
                max_value=100,
            ),
        )
    )

    server_people = {str(row["homeserver"]): int(row["people"]) for row in homeservers}
    report.sections.append(await _quotas(repo, settings, since, end.isoformat(), server_people))
    report.sections.append(
        Section(
            "avis",
            "Derniers avis (!avis)",
            "Les plus récents d'abord ; identifiants et adresses masqués.",
            Table(["Jour", "Avis"], [[day, scrub_identifiers(text)] for day, text in comments]),
        )
    )
    return report


async def _quotas(
    repo: PilotRepository, settings: Settings, since: str, today: str, server_people: dict[str, int]
) -> Section:
    """Each figure is masked by the people behind it: today's by today's, the peak by the peak
    day's, the counts over the period by the server's people over the period."""
    budget = settings.homeserver_daily_token_budget
    cap = settings.user_daily_question_cap
    per_server: dict[str, list[dict[str, object]]] = defaultdict(list)
    for row in await repo.homeserver_days(since):
        per_server[str(row["homeserver"])].append(row)
    rows: list[list[Cell]] = []
    for server, server_days in sorted(per_server.items()):
        people = server_people.get(server, 0)
        tokens = {str(d["day"]): int(str(d["tokens"] or 0)) for d in server_days}
        day_people = {str(d["day"]): int(str(d["people"])) for d in server_days}
        peak_day = max(tokens, key=lambda day: tokens[day])
        reached = sum(1 for t in tokens.values() if budget and t >= budget)
        refusals = sum(int(str(d["quota_refusals"] or 0)) for d in server_days)
        today_tokens, today_people = tokens.get(today, 0), day_people.get(today, 0)
        rows.append(
            [
                server,
                budget or "—",
                mask(today_tokens, today_people),
                mask(_rate(today_tokens, budget), today_people) if budget else "—",
                mask(tokens[peak_day], day_people[peak_day]),
                mask(reached, people) if budget else "—",
                mask(refusals, people),
            ]
        )
    note = (
        f"Budget quotidien par serveur : {budget} jetons. "
        if budget
        else "Pas de budget quotidien de jetons par serveur. "
    )
    if cap:
        at_cap = await repo.person_days_at_cap(since, cap)
        count = sum(int(r["people_at_cap"]) for r in at_cap)
        shown = mask(count, count)
        note += (
            f"Plafond : {cap} questions par personne et par jour ; "
            f"personnes-jours au plafond sur la période : {shown}."
        )
    else:
        note += "Pas de plafond de questions par personne."
    return Section(
        "quotas",
        "Consommation et quotas",
        note,
        Table(
            [
                "Serveur",
                "Budget/jour",
                "Aujourd'hui",
                "% du budget",
                "Pic/jour",
                "Jours au budget",
                "Refus",
            ],
            rows,
        ),
        Chart(
            "hbars",
            [str(r[0]) for r in rows],
            [
                Series(
                    "Aujourd'hui (% du budget)" if budget else "Pic journalier (jetons)",
                    [_number(r[3] if budget else r[4]) for r in rows],
                )
            ],
            unit="%" if budget else "jetons",
            max_value=100 if budget else None,
        ),
    )
