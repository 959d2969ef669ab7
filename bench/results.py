"""Figures and their rows, and the report: a Markdown table and a JSON file."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Row:
    metric: str
    value: float
    unit: str
    target: str | None = None
    passed: bool | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "value": _finite_or_none(self.value),
            "unit": self.unit,
            "target": self.target,
            "passed": self.passed,
        }


@dataclass
class Figure:
    key: str
    title: str
    description: str
    rows: list[Row] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    available: bool = True
    wall_seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "description": self.description,
            "available": self.available,
            "rows": [row.as_dict() for row in self.rows],
            "data": _jsonable(self.data),
            "notes": self.notes,
            "wall_seconds": self.wall_seconds,
        }


def _finite_or_none(value: float) -> float | None:
    return value if isinstance(value, (int, float)) and math.isfinite(value) else None


def _jsonable(value: Any) -> Any:
    if isinstance(value, float):
        return _finite_or_none(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _speed_line(load: dict[str, Any]) -> list[str]:
    """The core speed probe's spread (bench/machine.py), when the report has it."""
    start, end = load.get("core_speed_ms_start"), load.get("core_speed_ms_end")
    if not start or not end:
        return []
    return [
        f"- Speed of one core (a fixed Python loop, 5 tries; a wide spread means a host that "
        f"slows this virtual machine, and noisier figures): {min(start):.0f}–{max(start):.0f} ms "
        f"at start, {min(end):.0f}–{max(end):.0f} ms at end"
    ]


def format_value(value: float, unit: str) -> str:
    if not math.isfinite(value):
        return "n/a"
    if unit == "×":
        return f"{value:.2f}×"
    magnitude = abs(value)
    digits = 0 if magnitude >= 100 else 1 if magnitude >= 10 else 2 if magnitude >= 1 else 3
    if unit in ("", "tokens") and float(value).is_integer():
        digits = 0  # counts
    text = f"{value:,.{digits}f}".replace(",", " ")
    return f"{text} {unit}".strip()


def verdict(row: Row) -> str:
    if row.passed is None:
        return ""
    return "pass" if row.passed else "**miss**"


def write_json(path: Path, report: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_jsonable(report), ensure_ascii=False, indent=2) + "\n")


def markdown(report: dict[str, Any], figures: list[Figure], analysis: str) -> str:
    machine = report["machine"]
    load = report["load"]
    packages = ", ".join(f"{name} {version}" for name, version in machine["packages"].items())
    lines = [
        "# Benchmarks",
        "",
        "Measured by `bench/` against a real Synapse and a local Mistral-compatible server "
        "(sandbox/fake_mistral.py in its own process), with real Matrix clients (matrix-nio). "
        "The benchmark reports; it never asserts. Regenerate with the command below.",
        "",
        f"- Command: `{report['command']}`",
        f"- Date: {report['started_at']} (run took {load['duration_s']:.0f} s)",
        f"- Machine: {machine['cpu_model']}, {machine['cores']} cores, "
        f"{machine['ram_mb'] / 1024:.0f} GB RAM, Linux {machine['kernel']}, "
        f"Python {machine['python']}",
        f"- Versions: {packages}; tchap-bot {machine['commit']}",
        f"- Homeserver: Synapse with SQLite{' on tmpfs' if report['synapse_on_tmpfs'] else ''}, "
        "one server for the floor and the bot",
        f"- Other load on the machine during the run: {load['cpu_foreign_cores_avg']:.2f} core "
        f"on average (CPU not used by the benchmark's own processes); load average "
        f"{load['loadavg_start'][0]:.2f} at start, {load['loadavg_end'][0]:.2f} at end",
        *_speed_line(load),
        "",
        "## Summary",
        "",
        "| Figure | Metric | Value | Target | Result |",
        "| --- | --- | ---: | --- | --- |",
    ]
    for figure in figures:
        if not figure.available:
            lines.append(f"| {figure.title} | not available | — | — | — |")
            continue
        for row in figure.rows:
            if row.target is None:
                continue
            lines.append(
                f"| {figure.title} | {row.metric} | {format_value(row.value, row.unit)} | "
                f"{row.target} | {verdict(row)} |"
            )
    lines.append("")
    for figure in figures:
        lines += ["", f"## {figure.title}", "", figure.description, ""]
        if not figure.available:
            lines += ["Not available in this build.", ""]
        else:
            lines += ["| Metric | Value | Target | Result |", "| --- | ---: | --- | --- |"]
            for row in figure.rows:
                lines.append(
                    f"| {row.metric} | {format_value(row.value, row.unit)} | "
                    f"{row.target or ''} | {verdict(row)} |"
                )
            lines.append("")
        for note in figure.notes:
            lines.append(f"- {note}")
        if figure.notes:
            lines.append("")
        lines.append(f"_Figure wall time: {figure.wall_seconds:.0f} s._")
    if analysis.strip():
        lines += ["", analysis.strip()]
    return "\n".join(lines) + "\n"
