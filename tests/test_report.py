"""The HTML report as a file: self-contained, escaped, every section present."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

from _analysis_helpers import run_cli
from PIL import Image

from pixeljury.report.html import split_reasoning
from pixeljury.report.svg import heatmap, radar, score_colour
from pixeljury.testing.rundir import T2V_MODELS, FakeImage, sample_run, write_run_dir

from pj_testpaths import GOLDEN_IMAGES


def golden_sample_images(folder: Path) -> Path:
    """The folder layout ``sample_run`` reads (``<prompt>/<model's file>``), filled with the in-repo drawings:
    prompt 0 gets the faithful painter's four, prompt 1 the sloppy painter's, each saved as PNG or JPEG
    as its file name says. Eight distinct 240x240 images, so a report needs no ../shared."""
    for p, painter in enumerate(("faithful", "sloppy")):
        (folder / str(p)).mkdir(parents=True)
        for i, (_, filename) in enumerate(T2V_MODELS):
            with Image.open(GOLDEN_IMAGES / f"painter-{painter}-{i}.png") as img:
                img.convert("RGB").save(folder / str(p) / filename)
    return folder


def test_split_reasoning():
    assert split_reasoning("<think>look</think>{\"a\": 1}") == ("look", '{"a": 1}')
    assert split_reasoning("no thinking") == ("", "no thinking")
    assert split_reasoning(None) == ("", "")


def test_svg_pieces_escape_labels_and_show_missing_values():
    svg = radar(["Q<1>", "B", "C"], [50.0, None, 100.0])
    assert "Q&lt;1&gt;" in svg and "n/a" in svg and svg.startswith("<svg")
    hm = heatmap([("Quality", "Realism")], ["M&M"], [[None]])
    assert "M&amp;M" in hm and "no data" in hm
    assert score_colour(0) == "#d73027" and score_colour(100) == "#1a9850" and score_colour(None) == "#e5e7eb"


def test_report_is_self_contained_and_complete(tmp_path):
    images = golden_sample_images(tmp_path / "images")
    run = sample_run(tmp_path / "run", images)
    out = tmp_path / "report.html"
    proc = run_cli("report", str(run), "--out", str(out), "--bootstrap", "100", "--thumb-size", "128")
    assert "4 models, 8 gallery images" in proc.stdout
    html = out.read_text()
    # No network: no external scripts, styles or images.
    assert not re.search(r'(src|href)="(https?:)?//', html)
    thumbs = re.findall(r'data:image/jpeg;base64,([A-Za-z0-9+/=]+)', html)
    assert len(thumbs) == 8
    # Each thumbnail is one of the eight drawings, shrunk to --thumb-size: 240x240 -> 128x128 JPEG, and
    # all eight differ (none reused, none blank).
    decoded = [Image.open(io.BytesIO(base64.b64decode(t))) for t in thumbs]
    assert {(im.format, im.size) for im in decoded} == {("JPEG", (128, 128))}
    assert len({im.convert("RGB").tobytes() for im in decoded}) == 8
    assert all(im.convert("L").getextrema()[0] < im.convert("L").getextrema()[1] for im in decoded)
    assert html.count('class="lb-row"') == 4
    # Ranked by total as the sample's verdicts are built: the strongest model first, the weakest last.
    ranked = re.findall(r'<tr class="lb-row">\s*<td data-value="\d+">(\d+)</td>\s*<td class="name">([^<]+)</td>', html)
    assert ranked == [("1", "DALLE3"), ("2", "Midjourney"), ("3", "SDXL"), ("4", "DeepFloyd")]
    assert html.count('<svg class="radar"') == 4 and html.count('<svg class="heatmap"') == 2
    assert "Looking at the DALLE3 image" in html  # the judge's reasoning
    assert "no JSON object after the thinking" in html  # the unreadable answer is shown, not hidden
    assert "test/judge" in html  # provenance from the manifest


def test_report_escapes_prompts_and_survives_missing_images(tmp_path):
    run = write_run_dir(tmp_path / "run", [
        FakeImage("M1", "<script>alert(1)</script>", tmp_path / "nope.png", {"Quality": {"Noise": 2}}),
        FakeImage("M2", "fine", None, {"Quality": {"Noise": 0}}),
    ])
    out = tmp_path / "r.html"
    proc = run_cli("report", str(run), "--out", str(out), "--bootstrap", "0")
    assert "2 images could not be shown" in proc.stdout
    html = out.read_text()
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "image unavailable" in html
