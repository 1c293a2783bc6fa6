"""``pixeljury demo``: the whole judge pipeline offline, on images pixeljury draws itself.

Without ``--model`` it judges with a tiny randomly initialised Qwen3-VL built on the spot, so every
stage runs (rendering, batching, generation, parsing, accounting, exports) — but its scores are noise.
"""

from __future__ import annotations

import csv
from pathlib import Path

from PIL import Image, ImageDraw

# (prompt, painter) -> drawing instructions: shapes as (kind, colour, box)
SCENES = [
    ("A red circle above a blue square on a white background",
     [("ellipse", "red", (70, 20, 150, 100)), ("rectangle", "blue", (70, 130, 150, 210))]),
    ("Three yellow stars in a dark night sky",
     [("star", "yellow", (30, 40, 70, 80)), ("star", "yellow", (110, 90, 150, 130)), ("star", "yellow", (170, 30, 210, 70))]),
    ("A green triangle to the left of an orange circle",
     [("triangle", "green", (20, 80, 100, 170)), ("ellipse", "orange", (130, 80, 210, 160))]),
    ("A small purple house with a grey roof on green grass",
     [("rectangle", "#2e8b57", (0, 170, 240, 240)), ("rectangle", "purple", (80, 100, 160, 170)),
      ("triangle", "grey", (70, 55, 170, 100))]),
]
PAINTERS = {
    "painter-faithful": {"background": "white", "shuffle": False},
    "painter-sloppy": {"background": "#f4e9d8", "shuffle": True},
}


def _draw(shapes, background: str, sloppy: bool, size: int = 240) -> Image.Image:
    img = Image.new("RGB", (size, size), "#101030" if "night" in str(shapes) else background)
    d = ImageDraw.Draw(img)
    for i, (kind, colour, (x0, y0, x1, y1)) in enumerate(shapes):
        if sloppy:  # the sloppy painter swaps colours and drifts shapes
            colour = shapes[(i + 1) % len(shapes)][1]
            x0, x1 = x0 + 25, x1 + 25
        if kind == "ellipse":
            d.ellipse((x0, y0, x1, y1), fill=colour)
        elif kind == "rectangle":
            d.rectangle((x0, y0, x1, y1), fill=colour)
        elif kind == "triangle":
            d.polygon([((x0 + x1) / 2, y0), (x0, y1), (x1, y1)], fill=colour)
        elif kind == "star":
            cx, cy, r = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2
            d.polygon([(cx, cy - r), (cx + r / 3, cy - r / 3), (cx + r, cy), (cx + r / 3, cy + r / 3), (cx, cy + r),
                       (cx - r / 3, cy + r / 3), (cx - r, cy), (cx - r / 3, cy - r / 3)], fill=colour)
    return img


def make_demo_inputs(folder: Path) -> Path:
    """Draw the demo images and write ``prompts.csv`` (prompt, image_path, model) beside them."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for painter, style in PAINTERS.items():
        for i, (prompt, shapes) in enumerate(SCENES):
            name = f"{painter}-{i}.png"
            _draw(shapes, style["background"], style["shuffle"]).save(folder / name)
            rows.append({"prompt": prompt, "image_path": name, "model": painter})
    path = folder / "prompts.csv"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["prompt", "image_path", "model"])
        writer.writeheader()
        writer.writerows(rows)
    return path
