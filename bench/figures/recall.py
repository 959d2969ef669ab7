"""Figure 8: recall of a real model's summary of a team's week (optional, needs a real endpoint).

The generated corpus of `bench/team_week.py` (a week of a ministry team: decisions, actions with
owners and due dates, open questions, chatter) is summarised by the bot's own Summarizer —
numbered transcript, map-reduce, the real prompts — against the endpoint named by
`MISTRAL_API_KEY` (and `MISTRAL_SERVER_URL`, `MISTRAL_MODEL` if set). The summary is scored
against what the corpus is known to contain. Without `MISTRAL_API_KEY` the figure is skipped
and says so: the fake model cannot judge a summary.
"""

from __future__ import annotations

import os
import time

from bench import team_week
from bench.harness import Bench
from bench.results import Figure, Row
from bot.answer.llm import LLMClient
from bot.answer.summary import Summarizer
from bot.answer.tokens import MistralTokenCounter
from bot.store.database import StoredMessage
from config.settings import Settings

TITLE = "8. Summary recall (real model)"
DESCRIPTION = (
    "`!resume depuis lundi` over a generated week of a team (bench/team_week.py: "
    "{decisions} decisions, {actions} actions with owners and due dates, {questions} open "
    "questions, chatter; {messages} messages), summarised by a real model through the bot's "
    "Summarizer; share of the known items found in the right section."
)
SKIPPED = (
    "skipped: MISTRAL_API_KEY is not set. This figure needs a real Mistral-compatible "
    "endpoint (MISTRAL_API_KEY, optionally MISTRAL_SERVER_URL and MISTRAL_MODEL); the fake "
    "model cannot judge a summary."
)


def _settings(api_key: str) -> Settings:
    return Settings(
        homeserver="http://127.0.0.1:1",
        user_id="@bench:localhost",
        password="unused",
        mistral_api_key=api_key,
        mistral_server_url=os.environ.get("MISTRAL_SERVER_URL", "https://api.mistral.ai"),
        model=os.environ.get("MISTRAL_MODEL", "mistral-small-latest"),
        temperature=0.2,
        max_answer_tokens=1500,
    )


def _description(corpus: list[team_week.CorpusMessage]) -> str:
    expected = team_week.known(corpus)
    kinds = [item.kind for item in expected]
    return DESCRIPTION.format(
        decisions=kinds.count("décision"),
        actions=kinds.count("action"),
        questions=kinds.count("question"),
        messages=len(corpus),
    )


async def run(bench: Bench) -> list[Figure]:
    corpus = team_week.build()
    api_key = os.environ.get("MISTRAL_API_KEY", "")
    if not api_key:
        print(f"recall: {SKIPPED}", flush=True)
        return [Figure("recall", TITLE, _description(corpus), available=False, notes=[SKIPPED])]
    settings = _settings(api_key)
    llm = LLMClient(
        api_key=api_key,
        server_url=settings.mistral_server_url,
        timeout_seconds=120,
        max_retries=3,
        max_concurrency=2,
    )
    messages = [
        StoredMessage(
            event_id=m.event_id,
            room_id="!semaine:localhost",
            sender=m.sender,
            sender_name=m.sender_name,
            body=m.body,
            timestamp_ms=m.timestamp_ms,
        )
        for m in corpus
    ]
    expected = team_week.known(corpus)
    scores: list[team_week.Score] = []
    seconds: list[float] = []
    try:
        summarizer = Summarizer(llm, MistralTokenCounter(), settings)
        for _ in range(bench.scale.summary_runs):
            started = time.perf_counter()
            result = await summarizer.summarize(
                messages,
                room_name="Refonte du portail",
                language="français",
                instructions="",
                model=settings.model,
            )
            seconds.append(time.perf_counter() - started)
            scores.append(team_week.score(result.text, expected))
    finally:
        await llm.close()

    def mean(values: list[float]) -> float:
        return sum(values) / len(values)

    rows = [
        Row("decisions recalled", 100 * mean([s.decisions for s in scores]), "%"),
        Row("actions recalled", 100 * mean([s.actions for s in scores]), "%"),
        Row("right owner (found actions)", 100 * mean([s.owners for s in scores]), "%"),
        Row("due date kept (found actions)", 100 * mean([s.due_dates for s in scores]), "%"),
        Row("open questions recalled", 100 * mean([s.questions for s in scores]), "%"),
        Row("found items citing their own message", 100 * mean([s.cited for s in scores]), "%"),
        Row("summary wall time", mean(seconds), "s"),
    ]
    return [
        Figure(
            "recall",
            TITLE,
            _description(corpus),
            rows=rows,
            data={"model": settings.model, "runs": len(scores)},
            notes=[
                f"model {settings.model} at {settings.mistral_server_url}, {len(scores)} run(s)"
            ],
        )
    ]
