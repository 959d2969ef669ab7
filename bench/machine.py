"""What the figures were measured on, and how busy the machine was meanwhile.

Figures from a 2-core machine shared with other work are only comparable when the run says
how much CPU went to processes the benchmark did not start.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = (
    "matrix-nio",
    "vodozemac",
    "matrix-synapse",
    "mistralai",
    "mistral-common",
    "aiosqlite",
    "aiohttp",
    "pydantic",
)
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_total_mb() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    except OSError:
        pass
    return 0


def _git_commit(repo: Path) -> str:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=repo,
            capture_output=True,
            text=True,
            check=True,
            timeout=5,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=repo,
            capture_output=True,
            text=True,
            check=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("+uncommitted changes" if dirty else "")


def machine_info(repo: Path) -> dict[str, Any]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    return {
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count() or 0,
        "cores_usable": len(os.sched_getaffinity(0)),
        "ram_mb": _mem_total_mb(),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "packages": versions,
        "commit": _git_commit(repo),
    }


def machine_busy_seconds() -> float:
    """CPU-seconds every core spent busy since boot (all processes), from /proc/stat."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


def own_cpu_seconds() -> float:
    """CPU-seconds of this process and of every child it has reaped (Synapse, bots, peers)."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def core_speed_probe(tries: int = 5) -> list[float]:
    """Milliseconds a fixed pure-Python loop takes, `tries` times. Other processes' CPU does
    not show a virtual machine that its host slows down (seen here: the same loop 340 to
    540 ms from one second to the next); this does."""
    timings = []
    for _ in range(tries):
        started = time.perf_counter()
        total = 0
        for number in range(1_000_000):
            total += number * number
        timings.append((time.perf_counter() - started) * 1000)
    return timings


@dataclass
class LoadMeter:
    """CPU used by processes this benchmark did not start, over the run."""

    busy_start: float = 0.0
    own_start: float = 0.0
    wall_start: float = 0.0
    load_start: tuple[float, float, float] = (0.0, 0.0, 0.0)
    speed_start: list[float] = field(default_factory=list)

    @classmethod
    def start(cls, wall: float) -> LoadMeter:
        speed = core_speed_probe()
        return cls(machine_busy_seconds(), own_cpu_seconds(), wall, os.getloadavg(), speed)

    def finish(self, wall: float) -> dict[str, Any]:
        busy = machine_busy_seconds() - self.busy_start
        own = own_cpu_seconds() - self.own_start
        duration = max(wall - self.wall_start, 1e-9)
        foreign = max(0.0, busy - own)
        return {
            "duration_s": duration,
            "cpu_busy_core_s": busy,
            "cpu_benchmark_core_s": own,
            "cpu_foreign_core_s": foreign,
            "cpu_foreign_cores_avg": foreign / duration,
            "loadavg_start": list(self.load_start),
            "loadavg_end": list(os.getloadavg()),
            "core_speed_ms_start": self.speed_start,
            "core_speed_ms_end": core_speed_probe(),
        }
