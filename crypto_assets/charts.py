"""Small SVG charts for the reports people open from the UI: no plotting library, no script, any browser.

``evaluation_chart`` draws an evaluation's two pictures: the walk-forward gate metric by day for the
candidate, every baseline and the champion, and each gate comparison's interval against its margin.
"""

from __future__ import annotations

import math
from html import escape

COLORS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2"]
WIDTH, PANEL, PAD = 760, 260, 48


def _finite(values) -> list[float]:
    return [v for v in values if v is not None and math.isfinite(v)]


def _line_panel(top: int, title: str, days: list[str], series: dict[str, list[float | None]]) -> list[str]:
    values = _finite(v for line in series.values() for v in line)
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    low, high = max(0.0, low - 0.05), min(1.0, high + 0.05) if high > low else high + 0.1
    width, height = WIDTH - 2 * PAD - 120, PANEL - 2 * PAD

    def x(i: int) -> float:
        return PAD + (width * i / max(1, len(days) - 1))

    def y(v: float) -> float:
        return top + PAD + height * (1 - (v - low) / (high - low))

    out = [f'<text x="{PAD}" y="{top + 24}" font-size="15" font-weight="bold">{escape(title)}</text>']
    for k in range(5):
        v = low + (high - low) * k / 4
        out.append(f'<line x1="{PAD}" x2="{PAD + width}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#e5e7eb"/>')
        out.append(f'<text x="{PAD - 6}" y="{y(v) + 4:.1f}" font-size="11" text-anchor="end">{v:.2f}</text>')
    for i, day in enumerate(days):
        out.append(
            f'<text x="{x(i):.1f}" y="{top + PANEL - PAD + 16}" font-size="10" '
            f'text-anchor="middle">{escape(day[5:])}</text>'
        )
    for n, (name, line) in enumerate(series.items()):
        color = COLORS[n % len(COLORS)]
        points = [(x(i), y(v)) for i, v in enumerate(line) if v is not None and math.isfinite(v)]
        if len(points) > 1:
            path = " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
            out.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
        out += [f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3" fill="{color}"/>' for px, py in points]
        legend_y = top + PAD + 16 * n
        out.append(f'<rect x="{PAD + width + 16}" y="{legend_y - 9}" width="10" height="10" fill="{color}"/>')
        out.append(f'<text x="{PAD + width + 32}" y="{legend_y}" font-size="12">{escape(name)}</text>')
    return out


def _interval_panel(top: int, title: str, intervals: list[dict]) -> list[str]:
    bounds = _finite(v for i in intervals for v in (i["low"], i["high"], i["margin"], i["point"]))
    low, high = (min(bounds), max(bounds)) if bounds else (-0.1, 0.1)
    span = (high - low) or 0.1
    low, high = low - 0.1 * span, high + 0.1 * span
    left, width = PAD + 150, WIDTH - 2 * PAD - 150

    def x(v: float) -> float:
        return left + width * (v - low) / (high - low)

    out = [f'<text x="{PAD}" y="{top + 24}" font-size="15" font-weight="bold">{escape(title)}</text>']
    out.append(f'<line x1="{x(0):.1f}" x2="{x(0):.1f}" y1="{top + 36}" y2="{top + PANEL - 20}" stroke="#9ca3af"/>')
    for n, item in enumerate(intervals):
        row = top + 52 + 34 * n
        color = {"passed": "#16a34a", "failed": "#dc2626"}.get(item["outcome"], "#ca8a04")
        out.append(f'<text x="{PAD}" y="{row + 4}" font-size="12">{escape(item["label"])}</text>')
        if _finite([item["low"], item["high"]]) and len(_finite([item["low"], item["high"]])) == 2:
            out.append(f'<line x1="{x(item["low"]):.1f}" x2="{x(item["high"]):.1f}" y1="{row}" y2="{row}" '
                       f'stroke="{color}" stroke-width="6" stroke-linecap="round"/>')  # fmt: skip
        else:
            out.append(
                f'<text x="{left}" y="{row + 4}" font-size="12" fill="{color}">no interval: '
                f"{escape(item['outcome'])}</text>"
            )
        if item["point"] is not None and math.isfinite(item["point"]):
            out.append(f'<circle cx="{x(item["point"]):.1f}" cy="{row}" r="4" fill="#111827"/>')
        out.append(f'<line x1="{x(item["margin"]):.1f}" x2="{x(item["margin"]):.1f}" y1="{row - 11}" y2="{row + 11}" '
                   'stroke="#111827" stroke-dasharray="3,2"/>')  # fmt: skip
        out.append(f'<text x="{WIDTH - PAD}" y="{row + 4}" font-size="11" text-anchor="end" fill="{color}">'
                   f"{escape(item['outcome'])}</text>")  # fmt: skip
    out.append(f'<text x="{left}" y="{top + PANEL - 6}" font-size="11">bar: interval of the difference; '
               "dot: the difference; dashed: the margin its lower end must clear</text>")  # fmt: skip
    return out


def evaluation_chart(title: str, days: list[str], by_day: dict[str, list[float | None]], intervals: list[dict]) -> str:
    """An SVG with two panels: ``by_day`` (role -> metric per day) and ``intervals`` (label, low, high, point, "
    "margin, outcome)."""
    height = 2 * PANEL + 40 + max(0, len(intervals) - 5) * 34
    body = [
        f'<text x="{PAD}" y="22" font-size="17" font-weight="bold">{escape(title)}</text>',
        *_line_panel(30, "Walk-forward PR-AUC by day (each day predicted by fits on the days before it)", days, by_day),
        *_interval_panel(
            30 + PANEL, "Gate comparisons: candidate minus comparator, with the bootstrap interval", intervals
        ),
    ]
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="sans-serif">'
        f'<rect width="100%" height="100%" fill="white"/>{"".join(body)}</svg>'
    )
