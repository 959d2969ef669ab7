"""Exact percentiles over raw samples (no histogram buckets, no sampling)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def percentile(samples: Sequence[float], p: float) -> float:
    """Linear interpolation between closest ranks (NumPy's default method)."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    rank = (len(ordered) - 1) * p / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary(samples: Sequence[float], scale: float = 1.0) -> dict[str, Any]:
    """n, median, p90, p99, min, max and mean, each multiplied by `scale` (e.g. 1000 for ms)."""
    if not samples:
        nan = math.nan
        return {"n": 0, "median": nan, "p90": nan, "p99": nan, "min": nan, "max": nan, "mean": nan}
    return {
        "n": len(samples),
        "median": percentile(samples, 50) * scale,
        "p90": percentile(samples, 90) * scale,
        "p99": percentile(samples, 99) * scale,
        "min": min(samples) * scale,
        "max": max(samples) * scale,
        "mean": sum(samples) / len(samples) * scale,
    }
