"""Metric names follow Prometheus conventions, and no metric counts what another one does; a
command's overhead is one sample (arrival → first send); a question's wait behind its room's
previous answer is its own stage (`queued`), paired with its `before_llm`."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY
from prometheus_client.metrics_core import Metric

from bot.answer.replies import Outbox
from bot.models import IncomingMessage, MessageKind
from bot.ops import metrics
from bot.store import Store
from tests.unit.test_withdrawal import ROOM, Directory, HeldModel, asked, router_for

UNITS = ("_seconds", "_bytes", "_tokens", "_total", "_ratio")


def _ours() -> list[Metric]:
    return [family for family in REGISTRY.collect() if family.name.startswith("tchapbot_")]


def test_names_follow_prometheus_conventions() -> None:
    families = _ours()
    assert len(families) >= 10
    for family in families:
        exposed = {sample.name for sample in family.samples} or {family.name}
        if family.type == "counter":
            assert family.name + "_total" in exposed or not family.samples, family.name
            assert not family.name.endswith("_total"), "prometheus_client adds _total"
        elif family.type == "histogram":
            assert family.name.endswith("_seconds"), f"{family.name}: durations in seconds"
        elif family.type == "gauge":
            assert not family.name.endswith("_total"), f"{family.name}: a gauge is no total"
            if "timestamp" in family.name or "lag" in family.name:
                assert family.name.endswith("_seconds"), family.name
        assert family.name == family.name.lower() and "__" not in family.name


def test_questions_commands_and_scheduled_runs_are_counted_apart_without_duplicates() -> None:
    names = [family.name for family in _ours()]
    assert len(names) == len(set(names))
    for wanted in ("tchapbot_questions", "tchapbot_commands", "tchapbot_scheduled_runs"):
        assert wanted in names, wanted
    helps = [family.documentation for family in _ours()]
    assert len(helps) == len(set(helps)), "two metrics describe the same thing"


class _Sender:
    def __init__(self) -> None:
        self.sent = 0

    async def send_event(
        self, room_id: str, content: dict[str, Any], txn_id: str, event_type: str = ""
    ) -> str:
        self.sent += 1
        return f"$sent{self.sent}"

    async def set_typing(self, room_id: str, typing: bool) -> None:
        return None

    async def redact(self, room_id: str, event_id: str, txn_id: str) -> bool:
        return True


def _trigger(event_id: str) -> IncomingMessage:
    return IncomingMessage(
        room_id="!salon:localhost",
        event_id=event_id,
        sender="@alice:localhost",
        sender_name="Alice",
        kind=MessageKind.TEXT,
        body="!aide",
        timestamp_ms=1,
    )


async def test_a_command_is_measured_once_from_its_arrival_to_its_first_send() -> None:
    outbox = Outbox(_Sender())
    metrics.RAW_OVERHEAD_SAMPLES = []
    try:
        outbox.track("$commande", measure_from=time.perf_counter())
        outbox.track("$question")  # not a command: its stages are measured elsewhere
        await outbox.reply(_trigger("$commande"), "Première réponse")
        await outbox.reply(_trigger("$commande"), "Deuxième réponse", purpose="suite")
        await outbox.reply(_trigger("$question"), "Réponse")
        samples = list(metrics.RAW_OVERHEAD_SAMPLES)
    finally:
        metrics.RAW_OVERHEAD_SAMPLES = None
    assert [stage for stage, *_ in samples] == ["command"]
    assert samples[0][1] >= 0


async def test_a_question_waiting_behind_the_rooms_previous_answer_is_measured_as_queued(
    tmp_path: Path,
) -> None:
    """Through the real router: each question's `before_llm` comes with one `queued`, observed
    in the room's task; the second question of a room, received while the model still holds
    the first's answer, waits (`queued`) until that answer is sent."""
    store = await Store.open(tmp_path / "bot.sqlite3")
    model = HeldModel()
    router, _ = router_for(store, model)
    room = Directory().room_context(ROOM)
    metrics.RAW_OVERHEAD_SAMPLES = []
    try:
        await router.on_message(asked("Première question", "$q1"), room, True)
        await model.called.wait()  # the first question is at the model, held there
        await router.on_message(asked("Deuxième question", "$q2"), room, True)
        second_received_by = time.perf_counter()  # its `received_at` is earlier
        model.release.set()
        assert await router.workers.drain(5)
        samples = list(metrics.RAW_OVERHEAD_SAMPLES)
    finally:
        metrics.RAW_OVERHEAD_SAMPLES = None
        await router._conversation.close()
        await store.close()

    assert len(model.asked) == 2
    assert [stage for stage, *_ in samples] == [
        "queued",
        "before_llm",
        "after_llm",
        "queued",
        "before_llm",
        "after_llm",
    ]
    assert {task for _, _, task, _ in samples} == {f"room-{ROOM}"}
    (_, queued_1, _, _), (_, before_1, _, _), (_, _, _, first_sent_at) = samples[:3]
    (_, queued_2, _, _), (_, before_2, _, _) = samples[3:5]
    assert 0 <= queued_1 <= before_1
    assert queued_2 <= before_2
    # The second question's job started once the first answer had been handed over to be sent.
    assert queued_2 >= first_sent_at - second_received_by > 0
