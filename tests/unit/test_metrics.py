"""Metric names follow Prometheus conventions, and no metric counts what another one does."""

from __future__ import annotations

from prometheus_client import REGISTRY
from prometheus_client.metrics_core import Metric

import bot.ops.metrics  # noqa: F401  (registers the metrics)

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
