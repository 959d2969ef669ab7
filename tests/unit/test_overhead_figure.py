"""Figure 1 (bench/figures/overhead.py) pairs a room's raw overhead samples by order: each
question's `queued` goes with its own `before_llm`, `after_llm` and request at the LLM."""

from __future__ import annotations

from typing import Any

import pytest

from bench.figures.overhead import STAGES, per_question
from bench.harness import question_text

ROOMS = ["!a:localhost", "!b:localhost"]
Sample = tuple[str, float, str, float]


def _question(
    index: int, start: float, queued: float, before: float, after: float
) -> tuple[list[Sample], dict[str, Any]]:
    """One question's samples in its room's task, and its request in the LLM's timeline
    (arrived 1 ms after `before_llm`, answered 2 ms later)."""
    task = f"room-{ROOMS[index % len(ROOMS)]}"
    called = start + before
    samples = [
        ("queued", queued, task, called),
        ("before_llm", before, task, called),
        ("after_llm", after, task, called + 0.003 + after),
    ]
    request = {"arrived": called + 0.001, "done": called + 0.003, "key": question_text(index)}
    return samples, request


def test_each_queued_pairs_with_its_own_questions_before_llm_per_room() -> None:
    # Room a's second question waited 0.5 s behind its first; room b's never waited. The
    # rooms' samples interleave as their tasks ran.
    first_a, request_1 = _question(0, 10.0, queued=0.001, before=0.002, after=0.0005)
    first_b, request_2 = _question(1, 10.1, queued=0.0002, before=0.0012, after=0.0004)
    second_a, request_3 = _question(2, 10.2, queued=0.5, before=0.5015, after=0.0006)
    second_b, request_4 = _question(3, 10.9, queued=0.0003, before=0.0013, after=0.0007)
    samples = [*first_a[:2], *first_b, first_a[2], *second_a[:2], *second_b, second_a[2]]
    timeline = [request_4, request_2, request_1, request_3]  # sorted by arrival inside

    questions = per_question(samples, timeline, ROOMS)

    assert len(questions) == 4
    assert all(set(question) == set(STAGES) for question in questions)
    by_queued = {round(q["queued"], 6): q for q in questions}
    waited = by_queued[0.5]
    assert waited["before_llm"] == pytest.approx(0.5015)
    assert waited["own_before_llm"] == pytest.approx(0.0015)
    assert waited["after_llm"] == pytest.approx(0.0006)
    assert waited["request_side"] == pytest.approx(0.001)
    for queued, before in ((0.001, 0.002), (0.0002, 0.0012), (0.0003, 0.0013)):
        question = by_queued[queued]
        assert question["before_llm"] == pytest.approx(before)
        assert question["own_before_llm"] == pytest.approx(before - queued)
    assert all(
        q["instrumented"] == pytest.approx(q["before_llm"] + q["after_llm"]) for q in questions
    )
