"""The generated week of a team and the recall score of the benchmark (exact, no model)."""

from __future__ import annotations

from bench import team_week


def test_the_week_is_deterministic_and_knows_what_it_contains() -> None:
    corpus = team_week.build()
    assert corpus == team_week.build()
    assert len({m.event_id for m in corpus}) == len(corpus) == len(team_week.SCRIPT) + 5 * 6
    assert [m.timestamp_ms for m in corpus] == sorted(m.timestamp_ms for m in corpus)
    kinds = [item.kind for item in team_week.known(corpus)]
    assert (kinds.count("décision"), kinds.count("action"), kinds.count("question")) == (6, 7, 3)
    assert {m.sender_name for m in corpus} == {p.name for p in team_week.TEAM}


def perfect_summary(corpus: list[team_week.CorpusMessage]) -> str:
    expected = team_week.known(corpus)
    lines = {"décision": ["### Décisions"], "action": ["### Actions"], "question": []}
    lines["question"].append("### Questions ouvertes")
    for item in expected:
        text = corpus[item.index].body
        if item.kind == "action":
            assert item.owner is not None
            first = item.owner.name.split()[0]
            text = f"**{first}** : {text} (échéance : {item.due})"
        lines[item.kind].append(f"- {text} [{item.index + 1}]")
    return "\n".join(line for group in lines.values() for line in group)


def test_a_perfect_summary_scores_everything() -> None:
    corpus = team_week.build()
    score = team_week.score(perfect_summary(corpus), team_week.known(corpus))
    assert score == team_week.Score(1.0, 1.0, 1.0, 1.0, 1.0, 1.0)


def test_an_empty_or_misplaced_summary_scores_nothing() -> None:
    corpus = team_week.build()
    expected = team_week.known(corpus)
    assert team_week.score("", expected) == team_week.Score(0, 0, 0, 0, 0, 0)
    # Everything said, but under the wrong headings: not recalled where it belongs.
    shuffled = (
        perfect_summary(corpus)
        .replace("### Décisions", "### Tmp")
        .replace("### Actions", "### Décisions")
        .replace("### Tmp", "### Points clés")
    )
    score = team_week.score(shuffled, expected)
    assert (score.decisions, score.actions) == (0, 0)


def test_keywords_count_without_citation_and_owner_and_due_are_checked() -> None:
    corpus = team_week.build()
    expected = [k for k in team_week.known(corpus) if k.kind == "action"][:1]
    item = expected[0]
    assert item.owner is not None
    assert item.keywords == ("plan de recette",)
    line = "- **David** : rédiger le plan de recette"  # wrong person, no date, no citation
    score = team_week.score(f"### Actions\n{line}", expected)
    assert (score.actions, score.owners, score.due_dates, score.cited) == (1.0, 0.0, 0.0, 0.0)
