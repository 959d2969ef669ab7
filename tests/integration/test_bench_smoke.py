"""`python -m bench --quick` produces every figure (the full benchmark is run by hand).

Only the shape is checked: every figure present and available, every value a finite
number. Speed is the benchmark's business, never an assertion here.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.__main__ import FIGURES

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.integration
def test_quick_benchmark_produces_every_figure(tmp_path: Path) -> None:
    out_json = tmp_path / "bench.json"
    out_md = tmp_path / "bench.md"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--quick",
            "--out-json",
            str(out_json),
            "--out-md",
            str(out_md),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    report = json.loads(out_json.read_text())
    assert set(report["figures"]) == set(FIGURES)
    # The recall figure needs a real model: without a key it must say it was skipped.
    optional = set() if os.environ.get("MISTRAL_API_KEY") else {"recall"}
    for key, figure in report["figures"].items():
        if key in optional:
            assert not figure["available"] and not figure["rows"]
            assert "skipped: MISTRAL_API_KEY is not set" in figure["notes"][0]
            continue
        assert figure["available"], (key, figure["notes"])
        assert figure["rows"], key
        for row in figure["rows"]:
            value = row["value"]
            assert isinstance(value, (int, float)) and math.isfinite(value), (key, row)
    for key in ("cpu_model", "cores", "ram_mb", "python", "packages"):
        assert report["machine"][key], key
    markdown = out_md.read_text()
    for figure in report["figures"].values():
        assert figure["title"] in markdown
