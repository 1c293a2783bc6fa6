"""The HTML report as a file: self-contained, escaped, every section present."""

from __future__ import annotations

import re

from _analysis_helpers import T2V_IMAGES, needs_images, run_cli

from pixeljury.report.html import split_reasoning
from pixeljury.report.svg import heatmap, radar, score_colour
from pixeljury.testing.rundir import FakeImage, sample_run, write_run_dir


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


@needs_images
def test_report_is_self_contained_and_complete(tmp_path):
    run = sample_run(tmp_path / "run", T2V_IMAGES)
    out = tmp_path / "report.html"
    proc = run_cli("report", str(run), "--out", str(out), "--bootstrap", "100", "--thumb-size", "128")
    assert "4 models, 8 gallery images" in proc.stdout
    html = out.read_text()
    # No network: no external scripts, styles or images.
    assert not re.search(r'(src|href)="(https?:)?//', html)
    assert html.count("data:image/jpeg;base64,") == 8
    assert html.count('class="lb-row"') == 4
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
