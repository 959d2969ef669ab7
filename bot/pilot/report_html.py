"""The report as one self-contained HTML page: inline CSS, inline SVG charts, no network.

Every value is escaped; the page carries no script from elsewhere and no font or image URL.
"""

from __future__ import annotations

import math
from datetime import date
from html import escape

from bot import texts
from bot.french import french_number
from bot.pilot.report import MASK, Cell, Chart, Report, Section

WIDTH, HEIGHT = 640, 260
LEFT, RIGHT, TOP, BOTTOM = 56, 12, 14, 44
COLOURS = ("#000091", "#e1000f", "#009081", "#c3992a", "#6a6af4", "#a558a0", "#417dc4")

CSS = """
:root { color-scheme: light; }
body { font-family: "Marianne", "DejaVu Sans", Arial, sans-serif; margin: 0; color: #161616;
  background: #f6f6f6; }
header { background: #000091; color: #fff; padding: 20px 32px; }
header h1 { margin: 0 0 4px; font-size: 24px; }
main { padding: 16px 32px 40px; max-width: 1400px; }
.headline { display: flex; gap: 16px; flex-wrap: wrap; margin: 8px 0 24px; }
.headline div { background: #fff; border-left: 4px solid #000091; padding: 10px 16px; min-width: 160px; }
.headline b { display: block; font-size: 22px; }
section { background: #fff; margin: 0 0 20px; padding: 16px 20px; border-radius: 4px; }
section h2 { margin: 0 0 4px; font-size: 18px; }
section p.note { margin: 0 0 12px; color: #555; font-size: 14px; }
.pair { display: flex; gap: 24px; align-items: flex-start; flex-wrap: wrap; }
.pair svg { flex: 0 0 auto; width: 640px; max-width: 100%; height: auto; }
.table-wrap { flex: 1 1 360px; max-height: 300px; overflow: auto; }
table { border-collapse: collapse; font-size: 13px; width: 100%; }
th, td { border-bottom: 1px solid #ddd; padding: 3px 8px; text-align: right; }
th:first-child, td:first-child, td.text { text-align: left; }
th { position: sticky; top: 0; background: #eee; }
td.masked { color: #777; font-style: italic; }
.empty { background: #fff; padding: 32px; font-size: 18px; border-left: 4px solid #c3992a; }
.legend { font-size: 12px; }
footer { color: #666; font-size: 12px; padding: 0 32px 24px; }
"""

# Written into the page by the page itself: how many charts have a real size once laid out.
# A headless browser's --dump-dom then shows the browser's own measurement.
LAYOUT_PROBE = """
addEventListener("load", function () {
  var drawn = 0;
  document.querySelectorAll("svg.chart").forEach(function (svg) {
    var box = svg.getBoundingClientRect();
    if (box.width > 100 && box.height > 50 && svg.querySelector(".mark")) { drawn += 1; }
  });
  document.body.setAttribute("data-charts-drawn", String(drawn));
});
"""


def french_date(day: date) -> str:
    return f"{day.day} {texts.MONTHS[day.month - 1]} {day.year}"


def _cell(value: Cell) -> str:
    if value is None:
        return "<td>—</td>"
    if value == MASK:
        return f'<td class="masked" title="moins de 5 personnes">{escape(MASK)}</td>'
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"<td>{french_number(value)}</td>"
    return f'<td class="text">{escape(str(value))}</td>'


def render_table(section: Section) -> str:
    head = "".join(f"<th>{escape(column)}</th>" for column in section.table.columns)
    if not section.table.rows:
        body = f'<tr><td colspan="{len(section.table.columns)}">Rien sur la période.</td></tr>'
    else:
        body = "".join(
            "<tr>" + "".join(_cell(value) for value in row) + "</tr>" for row in section.table.rows
        )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    exponent = 10.0 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * exponent:
            return step * exponent
    return 10 * exponent


def _axis(max_value: float, unit: str) -> list[str]:
    parts = []
    plot_h = HEIGHT - TOP - BOTTOM
    for i in range(5):
        value = max_value * i / 4
        y = TOP + plot_h - plot_h * i / 4
        parts.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>'
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11">'
            f"{escape(french_number(value))}</text>"
        )
    if unit:
        parts.append(f'<text x="4" y="{TOP - 2}" font-size="11" fill="#555">{escape(unit)}</text>')
    return parts


def _x_labels(categories: list[str], step_width: float) -> list[str]:
    every = max(1, math.ceil(len(categories) / 12))
    parts = []
    for i, label in enumerate(categories):
        if i % every:
            continue
        x = LEFT + step_width * (i + 0.5)
        parts.append(
            f'<text x="{x:.1f}" y="{HEIGHT - BOTTOM + 14}" text-anchor="middle" font-size="11">'
            f"{escape(label)}</text>"
        )
    return parts


def _legend(chart: Chart) -> list[str]:
    parts = []
    x = float(LEFT)
    for index, series in enumerate(chart.series):
        colour = COLOURS[index % len(COLOURS)]
        parts.append(
            f'<rect x="{x:.1f}" y="{HEIGHT - 18}" width="10" height="10" fill="{colour}"/>'
            f'<text class="legend" x="{x + 14:.1f}" y="{HEIGHT - 9}" font-size="11">'
            f"{escape(series.name)}</text>"
        )
        x += 30 + 7.5 * len(series.name)
    return parts


def _stacked(chart: Chart) -> list[str]:
    count = max(1, len(chart.categories))
    step = (WIDTH - LEFT - RIGHT) / count
    totals = [sum(s.values[i] or 0.0 for s in chart.series) for i in range(len(chart.categories))]
    top = _nice_max(max(totals, default=0.0))
    plot_h = HEIGHT - TOP - BOTTOM
    parts = _axis(top, chart.unit)
    for i, category in enumerate(chart.categories):
        x = LEFT + step * i + step * 0.12
        width = max(1.0, step * 0.76)
        base = float(TOP + plot_h)
        if all(s.values[i] is None for s in chart.series) and chart.series:
            parts.append(
                f'<rect class="masked" x="{x:.1f}" y="{base - 4:.1f}" width="{width:.1f}" '
                f'height="4" fill="#bbb"><title>{escape(category)} : {MASK} personnes</title></rect>'
            )
            continue
        for index, series in enumerate(chart.series):
            value = series.values[i] or 0.0
            if value <= 0:
                continue
            height = plot_h * value / top
            base -= height
            parts.append(
                f'<rect class="mark" x="{x:.1f}" y="{base:.1f}" width="{width:.1f}" '
                f'height="{height:.1f}" fill="{COLOURS[index % len(COLOURS)]}">'
                f"<title>{escape(category)} — {escape(series.name)} : "
                f"{escape(french_number(value))}</title></rect>"
            )
    return parts + _x_labels(chart.categories, step) + _legend(chart)


def _lines(chart: Chart) -> list[str]:
    count = max(1, len(chart.categories))
    step = (WIDTH - LEFT - RIGHT) / count
    values = [v for s in chart.series for v in s.values if v is not None]
    top = chart.max_value or _nice_max(max(values, default=0.0))
    plot_h = HEIGHT - TOP - BOTTOM
    parts = _axis(top, chart.unit)
    for index, series in enumerate(chart.series):
        colour = COLOURS[index % len(COLOURS)]
        points = [
            (LEFT + step * (i + 0.5), TOP + plot_h - plot_h * min(v, top) / top)
            for i, v in enumerate(series.values)
            if v is not None
        ]
        if len(points) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
            parts.append(
                f'<polyline class="mark" fill="none" stroke="{colour}" stroke-width="2" '
                f'points="{path}"/>'
            )
        for (x, y), (i, v) in zip(
            points, [(i, v) for i, v in enumerate(series.values) if v is not None], strict=True
        ):
            parts.append(
                f'<circle class="mark" cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{colour}">'
                f"<title>{escape(chart.categories[i])} — {escape(series.name)} : "
                f"{escape(french_number(v))}</title></circle>"
            )
    return parts + _x_labels(chart.categories, step) + _legend(chart)


def _hbars(chart: Chart) -> list[str]:
    series = chart.series[0]
    values = [v for v in series.values if v is not None]
    top = chart.max_value or _nice_max(max(values, default=0.0))
    rows = max(1, len(chart.categories))
    label_w = 190
    row_h = min(28.0, (HEIGHT - TOP - 24) / rows)
    plot_w = WIDTH - label_w - RIGHT - 60
    parts = []
    for i, (category, value) in enumerate(zip(chart.categories, series.values, strict=True)):
        y = TOP + row_h * i
        short = category if len(category) <= 30 else category[:29] + "…"
        parts.append(
            f'<text x="{label_w - 6}" y="{y + row_h * 0.65:.1f}" text-anchor="end" '
            f'font-size="11">{escape(short)}</text>'
        )
        if value is None:
            parts.append(
                f'<rect class="masked" x="{label_w}" y="{y + 3:.1f}" width="4" '
                f'height="{row_h - 6:.1f}" fill="#bbb"><title>{escape(category)} : {MASK} '
                f'personnes</title></rect><text x="{label_w + 8}" y="{y + row_h * 0.65:.1f}" '
                f'font-size="11" fill="#777">{MASK}</text>'
            )
            continue
        width = max(1.0, plot_w * min(value, top) / top)
        parts.append(
            f'<rect class="mark" x="{label_w}" y="{y + 3:.1f}" width="{width:.1f}" '
            f'height="{row_h - 6:.1f}" fill="{COLOURS[0]}"><title>{escape(category)} : '
            f"{escape(french_number(value))}</title></rect>"
            f'<text x="{label_w + width + 4:.1f}" y="{y + row_h * 0.65:.1f}" font-size="11">'
            f"{escape(french_number(value))} {escape(chart.unit)}</text>"
        )
    return parts


def render_chart(section: Section) -> str:
    chart = section.chart
    if chart is None or not chart.categories:
        return ""
    drawers = {"stacked": _stacked, "lines": _lines, "hbars": _hbars}
    body = "".join(drawers[chart.kind](chart))
    return (
        f'<svg class="chart" data-chart="{escape(section.key)}" xmlns="http://www.w3.org/2000/svg" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" '
        f'aria-labelledby="title-{escape(section.key)}"><title id="title-{escape(section.key)}">'
        f"{escape(section.title)}</title>{body}</svg>"
    )


def render_section(section: Section) -> str:
    return (
        f'<section id="{escape(section.key)}"><h2>{escape(section.title)}</h2>'
        f'<p class="note">{escape(section.note)}</p><div class="pair">{render_chart(section)}'
        f'<div class="table-wrap">{render_table(section)}</div></div></section>'
    )


def render_html(report: Report) -> str:
    period = f"du {french_date(report.start)} au {french_date(report.end)} ({report.days} jours)"
    if report.empty:
        hint = (
            ""
            if report.recording
            else " Les statistiques ne sont enregistrées que lorsque TCHAP_BOT_PILOT_SECRET est défini."
        )
        content = (
            '<p class="empty" id="rien">Rien à montrer pour l\'instant : aucune utilisation '
            f"de l'assistant n'est enregistrée sur cette période.{escape(hint)}</p>"
        )
    else:
        headline = "".join(
            f"<div>{escape(label)}<b>{_headline(value)}</b></div>"
            for label, value in report.headline
        )
        content = f'<div class="headline">{headline}</div>' + "".join(
            render_section(section) for section in report.sections
        )
    return (
        '<!DOCTYPE html>\n<html lang="fr"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<title>Assistant IA Tchap — rapport du pilote</title>"
        f"<style>{CSS}</style></head><body>"
        f"<header><h1>Assistant IA Tchap — rapport du pilote</h1><div>{escape(period)}</div>"
        "</header>"
        f"<main>{content}</main>"
        f"<footer>Généré le {escape(report.generated)}. Aucun contenu de message ni "
        "identifiant de personne ; tout chiffre portant sur moins de 5 personnes est affiché "
        f"« &lt; 5 ».</footer><script>{LAYOUT_PROBE}</script></body></html>\n"
    )


def _headline(value: Cell) -> str:
    if value is None:
        return "—"
    if isinstance(value, int | float):
        return escape(french_number(value))
    return escape(str(value))
