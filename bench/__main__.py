"""`python -m bench`: run the benchmark and write the report.

python -m bench                   # full run (~10 min on 2 cores) → docs/benchmarks.{md,json}
python -m bench --quick           # smoke run (seconds) → a temp dir, never docs/
python -m bench --only e2e,cost   # some figures only
python -m bench --profile DIR     # also profile figure 1's load with pyinstrument
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import shlex
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.figures import concurrency, e2e, overhead, power, recall, scale, streaming, summary
from bench.harness import FULL, QUICK, REPO, Bench
from bench.machine import LoadMeter, machine_busy_seconds, machine_info, own_cpu_seconds
from bench.prodenv import production_python
from bench.results import Figure, Row, markdown, write_json

# Figure keys in report order, and the routine producing each (e2e also produces cost).
FIGURES = (
    "overhead",
    "e2e",
    "cost",
    "concurrency",
    "scale",
    "summary",
    "streaming",
    "recall",
    "power",
)
TITLES = {
    "overhead": "1. Bot overhead per question",
    "e2e": "2. End to end with an instant LLM",
    "cost": "3. Cost per answer",
    "concurrency": "4. Concurrency",
    "scale": "5. Scale",
    "summary": "6. Summaries",
    "streaming": "7. Streaming",
    "recall": recall.TITLE,
    "power": power.TITLE,
}
Routine = Callable[[Bench], Awaitable[list[Figure]]]
ROUTINES: list[tuple[tuple[str, ...], Routine]] = [
    (("overhead",), overhead.run),
    (("e2e", "cost"), e2e.run),
    (("summary",), summary.run),
    (("streaming",), streaming.run),
    (("concurrency",), concurrency.run),
    (("scale",), scale.run),
    (("recall",), recall.run),
    (("power",), power.run),
]
ANALYSIS = Path(__file__).with_name("analysis.md")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny sample counts")
    parser.add_argument("--out-json", type=Path, help="default docs/benchmarks.json")
    parser.add_argument("--out-md", type=Path, help="default docs/benchmarks.md")
    parser.add_argument(
        "--only", help=f"comma-separated figures among: {', '.join(FIGURES)}", default=""
    )
    parser.add_argument("--profile", type=Path, help="write pyinstrument profiles here")
    parser.add_argument(
        "--synapse-dir", type=Path, help="parent dir of Synapse's data (default: /dev/shm)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work dir (bot logs)")
    parser.add_argument(
        "--bot-python",
        help="interpreter of the measured bot (default: a venv of requirements.lock alone, "
        "built once, as the Docker image has; the current one with --quick)",
    )
    parser.add_argument(
        "--render-from",
        type=Path,
        metavar="JSON",
        help="only rewrite the Markdown report from a JSON report (e.g. after editing "
        "bench/analysis.md)",
    )
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="first wait up to this long for other processes to leave the CPU idle",
    )
    return parser


async def wait_for_quiet(limit_s: float, threshold_cores: float = 0.2) -> float:
    """Foreign CPU load (cores) over the last second once quiet or at the deadline."""
    deadline = time.monotonic() + limit_s
    while True:
        busy, own = machine_busy_seconds(), own_cpu_seconds()
        await asyncio.sleep(1.0)
        foreign = (machine_busy_seconds() - busy) - (own_cpu_seconds() - own)
        if foreign <= threshold_cores or time.monotonic() >= deadline:
            return foreign
        print(f"waiting for a quiet machine (other load: {foreign:.2f} cores)", flush=True)


async def run(args: argparse.Namespace) -> int:
    selected = [key.strip() for key in args.only.split(",") if key.strip()] or list(FIGURES)
    unknown = sorted(set(selected) - set(FIGURES))
    if unknown:
        print(f"unknown figure(s): {', '.join(unknown)}; choose among {', '.join(FIGURES)}")
        return 2
    default_dir = Path(tempfile.gettempdir()) / "tchap-bench-quick" if args.quick else REPO / "docs"
    out_md = args.out_md or default_dir / "benchmarks.md"
    out_json = args.out_json or default_dir / "benchmarks.json"
    if args.render_from is not None:
        return render_from(args.render_from, out_md)
    if args.wait_quiet > 0:
        await wait_for_quiet(args.wait_quiet)

    logging.getLogger("nio").setLevel(logging.ERROR)  # the asker's "missing session" chatter
    bench = Bench(QUICK if args.quick else FULL, args.synapse_dir, None)
    bench.profile_dir = args.profile
    if args.bot_python:
        bench.bot_python = args.bot_python
    elif not args.quick:
        bench.bot_python = production_python()
    started_at = datetime.now(UTC).replace(microsecond=0).isoformat()
    meter = LoadMeter.start(time.perf_counter())
    figures: dict[str, Figure] = {}
    try:
        await bench.start()
        for keys, routine in ROUTINES:
            if not set(keys) & set(selected):
                continue
            print(f"figure {', '.join(keys)}…", flush=True)
            began = time.perf_counter()
            try:
                produced = await routine(bench)
            except Exception as error:
                traceback.print_exc()
                produced = [
                    Figure(key, TITLES[key], "", available=False, notes=[f"failed: {error!r}"])
                    for key in keys
                ]
            elapsed = time.perf_counter() - began
            for figure in produced:
                figure.wall_seconds = elapsed
                figures[figure.key] = figure
                print(_console(figure), flush=True)
    finally:
        with contextlib.suppress(Exception):
            await bench.close()
        if not args.keep:
            bench.cleanup_work_dir()
    load = meter.finish(time.perf_counter())
    ordered = [figures[key] for key in FIGURES if key in figures]
    command = "python -m bench" + "".join(f" {shlex.quote(arg)}" for arg in sys.argv[1:])
    report: dict[str, Any] = {
        "command": command,
        "started_at": started_at,
        "quick": bool(args.quick),
        "machine": machine_info(REPO),
        "load": load,
        "synapse_on_tmpfs": bench.synapse_on_tmpfs,
        "floor": bench.floor,
        "figures": {figure.key: figure.as_dict() for figure in ordered},
    }
    analysis = ANALYSIS.read_text(encoding="utf-8") if not args.quick and ANALYSIS.exists() else ""
    write_json(out_json, report)
    out_md.parent.mkdir(parents=True, exist_ok=True)
    out_md.write_text(markdown(report, ordered, analysis), encoding="utf-8")
    print(f"wrote {out_md} and {out_json} ({load['duration_s']:.0f} s)")
    return 0


def render_from(source: Path, out_md: Path) -> int:
    """Rebuild the Markdown report of a finished run (figures and data unchanged)."""
    report = json.loads(source.read_text(encoding="utf-8"))
    figures = []
    for key, data in report["figures"].items():
        figure = Figure(
            key,
            data["title"],
            data["description"],
            rows=[
                Row(
                    row["metric"],
                    math.nan if row["value"] is None else float(row["value"]),
                    row["unit"],
                    row["target"],
                    row["passed"],
                )
                for row in data["rows"]
            ],
            data=data["data"],
            notes=list(data["notes"]),
            available=bool(data["available"]),
            wall_seconds=float(data["wall_seconds"]),
        )
        figures.append(figure)
    quick = report.get("quick") or not ANALYSIS.exists()
    analysis = "" if quick else ANALYSIS.read_text(encoding="utf-8")
    out_md.parent.mkdir(parents=True, exist_ok=True)
    out_md.write_text(markdown(report, figures, analysis), encoding="utf-8")
    print(f"wrote {out_md} from {source}")
    return 0


def _console(figure: Figure) -> str:
    from bench.results import format_value, verdict

    lines = [f"== {figure.title}" + ("" if figure.available else " (not available)")]
    for row in figure.rows:
        target = f"  [{row.target}: {verdict(row).strip('*')}]" if row.target else ""
        lines.append(f"   {row.metric}: {format_value(row.value, row.unit)}{target}")
    lines += [f"   note: {note}" for note in figure.notes]
    return "\n".join(lines)


def main() -> int:
    return asyncio.run(run(_parser().parse_args()))


if __name__ == "__main__":
    raise SystemExit(main())
