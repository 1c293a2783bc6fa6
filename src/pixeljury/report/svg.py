"""Inline SVG charts for the HTML report: an L1 radar per model and score heatmaps. Plain strings, no
plotting library, so the report stays one self-contained file. Every label is XML-escaped here."""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

PALETTE = ("#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed", "#db2777", "#0891b2", "#65a30d")
# Score colour scale 0 -> 60 -> 100 (the three facet verdicts): red, amber, green.
_STOPS = ((0.0, (215, 48, 39)), (60.0, (254, 224, 139)), (100.0, (26, 152, 80)))


def score_colour(value: float | None) -> str:
    if value is None:
        return "#e5e7eb"
    v = min(100.0, max(0.0, value))
    for (x0, c0), (x1, c1) in zip(_STOPS, _STOPS[1:]):
        if v <= x1:
            t = (v - x0) / (x1 - x0)
            r, g, b = (round(a + (b_ - a) * t) for a, b_ in zip(c0, c1))
            return f"#{r:02x}{g:02x}{b:02x}"
    return "#1a9850"


def _text_colour(value: float | None) -> str:
    return "#ffffff" if value is not None and (value < 25 or value > 85) else "#111827"


def radar(axes: Sequence[str], values: Sequence[float | None], *, colour: str = PALETTE[0], size: int = 230,
          title: str = "") -> str:
    """One model's L1 means on axes from the centre (0) to the rim (100). A missing value sits at 0 and
    its label says "n/a", so a gap is never drawn as a score."""
    n = len(axes)
    if n < 3:
        raise ValueError(f"a radar needs at least 3 axes, got {n}")
    # Wider than tall: the L1 names sit left and right of the chart and must not be clipped.
    width, height = size + 150, size
    cx, cy = width / 2, size / 2 + 4
    radius = size / 2 - 44
    parts = [f'<svg class="radar" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">']
    if title:
        parts.append(f'<title>{escape(title)}</title>')

    def point(i: int, r: float) -> tuple[float, float]:
        angle = -math.pi / 2 + 2 * math.pi * i / n
        return cx + r * math.cos(angle), cy + r * math.sin(angle)

    for level in (20, 40, 60, 80, 100):
        ring = " ".join(f"{x:.1f},{y:.1f}" for x, y in (point(i, radius * level / 100) for i in range(n)))
        parts.append(f'<polygon points="{ring}" fill="none" stroke="#d1d5db" stroke-width="{1.2 if level == 100 else 0.6}"/>')
    for i, axis in enumerate(axes):
        x, y = point(i, radius)
        parts.append(f'<line x1="{cx}" y1="{cy}" x2="{x:.1f}" y2="{y:.1f}" stroke="#d1d5db" stroke-width="0.6"/>')
        lx, ly = point(i, radius + 12)
        anchor = "middle" if abs(lx - cx) < 8 else ("start" if lx > cx else "end")
        v = values[i]
        top = ly - 12 if ly < cy - radius * 0.5 else ly + (8 if ly > cy + radius * 0.5 else -2)
        parts.append(f'<text x="{lx:.1f}" y="{top:.1f}" font-size="10" text-anchor="{anchor}" fill="#374151">'
                     f'<tspan x="{lx:.1f}">{escape(axis)}</tspan>'
                     f'<tspan x="{lx:.1f}" dy="12" font-weight="600">{"n/a" if v is None else f"{v:.1f}"}</tspan></text>')
    shape = " ".join(f"{x:.1f},{y:.1f}" for x, y in (point(i, radius * (v or 0.0) / 100) for i, v in enumerate(values)))
    parts.append(f'<polygon class="radar-shape" points="{shape}" fill="{colour}" fill-opacity="0.25" stroke="{colour}" stroke-width="2"/>')
    for i, v in enumerate(values):
        if v is not None:
            x, y = point(i, radius * v / 100)
            parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{colour}"/>')
    parts.append("</svg>")
    return "".join(parts)


def heatmap(row_labels: Sequence[tuple[str, str]], column_labels: Sequence[str],
            values: Sequence[Sequence[float | None]], *, title: str = "", cell_w: int = 64, cell_h: int = 20) -> str:
    """Rows are (group, name) pairs, e.g. (L1, L2); a group label is drawn where the group changes.
    Columns are models. Cells show the score and are coloured on the 0-60-100 scale; empty cells are grey."""
    label_w, group_w, head_h = 210, 120, 92
    width = group_w + label_w + cell_w * len(column_labels) + 60  # rotated model names lean right
    height = head_h + cell_h * len(row_labels) + 8
    parts = [f'<svg class="heatmap" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">']
    if title:
        parts.append(f'<title>{escape(title)}</title>')
    for j, col in enumerate(column_labels):
        x = group_w + label_w + cell_w * j + cell_w / 2
        parts.append(f'<text transform="translate({x:.1f},{head_h - 6}) rotate(-40)" font-size="11" fill="#111827">{escape(col)}</text>')
    previous_group = None
    for i, (group, name) in enumerate(row_labels):
        y = head_h + cell_h * i
        if group != previous_group:
            parts.append(f'<line x1="0" y1="{y}" x2="{width}" y2="{y}" stroke="#9ca3af" stroke-width="0.8"/>')
            parts.append(f'<text x="2" y="{y + cell_h * 0.7:.1f}" font-size="11" font-weight="600" fill="#111827">{escape(group)}</text>')
            previous_group = group
        parts.append(f'<text x="{group_w + label_w - 6}" y="{y + cell_h * 0.7:.1f}" font-size="11" text-anchor="end" fill="#374151">{escape(name)}</text>')
        for j, v in enumerate(values[i]):
            x = group_w + label_w + cell_w * j
            tip = f"{name} / {column_labels[j]}: {'no data' if v is None else f'{v:.1f}'}"
            parts.append(f'<rect x="{x}" y="{y}" width="{cell_w - 2}" height="{cell_h - 2}" fill="{score_colour(v)}"><title>{escape(tip)}</title></rect>')
            text = "–" if v is None else f"{v:.1f}"
            parts.append(f'<text x="{x + (cell_w - 2) / 2:.1f}" y="{y + cell_h * 0.68:.1f}" font-size="10" text-anchor="middle" fill="{_text_colour(v)}">{text}</text>')
    parts.append("</svg>")
    return "".join(parts)
