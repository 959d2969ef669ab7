"""`python -m bench.documents --quick` runs and reports every documents figure (shape only)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_quick_documents_benchmark_reports_every_figure() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "bench.documents", "--quick"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    out = run.stdout
    for label in (
        "extraction per page, text PDF",
        "extraction per section, DOCX",
        "extraction per section, ODT",
        "file bytes → indexed",
        "retrieval p50 / p99, one room of",
        "retrieval p50 / p99, one room among",
        "event-loop lag while",
        "resident memory with",
        "context sent for a question",
        "pasted whole",
        "| PDF | pypdfium2 |",
        "| DOCX | python-docx |",
        "| ODT | odfpy |",
    ):
        line = next((line for line in out.splitlines() if label in line), None)
        assert line is not None, label
        assert re.search(r"\d", line.rsplit("|", 2)[-2]), line
    assert "answer passage included: yes" in out
