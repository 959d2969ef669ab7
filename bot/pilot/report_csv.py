"""`--csv DOSSIER`: every table of the report as one CSV file (same figures, same masking)."""

from __future__ import annotations

import csv
from pathlib import Path

from bot.pilot.report import Report


def write_csv(report: Report, folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for section in report.sections:
        path = folder / f"{section.key}.csv"
        with path.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(section.table.columns)
            for row in section.table.rows:
                writer.writerow("" if value is None else value for value in row)
        written.append(path)
    return written
