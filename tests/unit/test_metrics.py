"""Metric names follow Prometheus conventions, and no metric counts what another one does; a
command's overhead is one sample (arrival → first send)."""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import REGISTRY
from prometheus_client.metrics_core import Metric

from bot.answer.replies import Outbox
from bot.models import IncomingMessage, MessageKind
from bot.ops import metrics

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
