"""Acceptance: the report opened in headless Chromium (Playwright driving Debian's chromium).

Set-up: scripts/setup_browser.sh installs chromium with apt-get (`make test` runs it first);
Playwright comes from the `test` extra. No browser is downloaded by Playwright.

``PIXELJURY_DOCS_SCREENSHOTS=1`` also writes the demo report's screenshot to docs/img/demo-report.png.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from _analysis_helpers import REPO, run_cli
from test_report import golden_sample_images

from pixeljury.testing.rundir import sample_run

pytestmark = [pytest.mark.browser]


def _chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("no chromium on PATH: run scripts/setup_browser.sh (apt-get install chromium)")


@contextlib.contextmanager
def _report_page(sync_api, executable: str, report: Path) -> Iterator:
    """The report opened in headless Chromium; afterwards: no console error or warning, no page error,
    and nothing requested from outside the file (the report is self-contained)."""
    problems: list[str] = []
    requests: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type in ("error", "warning") else None)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(report.as_uri())
            page.wait_for_load_state("load")
            yield page
        finally:
            browser.close()
    assert problems == []
    assert all(u.startswith(("file:", "data:")) for u in requests), [u for u in requests if not u.startswith(("file:", "data:"))]


def test_report_renders_in_headless_chromium(tmp_path):
    """The sample run over the in-repo drawings (tests/fixtures/golden/images), opened in the browser."""
    executable = _chromium()
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')")
    run = sample_run(tmp_path / "run", golden_sample_images(tmp_path / "images"))
    report = tmp_path / "report.html"
    run_cli("report", str(run), "--out", str(report), "--bootstrap", "100")

    with _report_page(sync_api, executable, report) as page:

        assert page.locator("#leaderboard-table tr.lb-row").count() == 4
        first_models = page.locator("#leaderboard-table tr.lb-row td.name").all_inner_texts()
        assert first_models[0] == "DALLE3"
        # Charts drew something: the radar polygons and heatmap cells have a real size.
        radar_box = page.locator("svg.radar").first.bounding_box()
        shape_box = page.locator("svg.radar .radar-shape").first.bounding_box()
        assert radar_box and radar_box["width"] > 100 and shape_box and shape_box["width"] > 10
        assert page.locator("svg.heatmap rect").count() >= 4 * 10
        # Every gallery image decoded.
        widths = page.evaluate("Array.from(document.querySelectorAll('.gallery img')).map(i => i.complete ? i.naturalWidth : 0)")
        assert widths == [240] * 8  # the report's default thumbnail size (256) does not enlarge 240x240
        page.screenshot(path=str(tmp_path / "report.png"))

        # Sorting: the first click on "Total" sorts ascending, so the worst model comes first.
        page.locator("#leaderboard-table th", has_text="Total").first.click()
        assert page.locator("#leaderboard-table tr.lb-row td.name").first.inner_text() == "DeepFloyd"
        # Filters: one model, one dimension.
        page.select_option("#filter-model", "SDXL")
        assert page.locator(".gallery .card:visible").count() == 2
        page.select_option("#filter-model", "")
        page.select_option("#filter-dim", "Alignment")
        assert page.locator(".gallery .card:visible .dim:visible").count() == 8
        assert page.locator(".gallery .card:visible .dim[data-dim='Quality']:visible").count() == 0
        page.screenshot(path=str(tmp_path / "report-full.png"), full_page=True)
    assert (tmp_path / "report.png").stat().st_size > 10_000
    print(f"screenshots: {tmp_path / 'report.png'} {tmp_path / 'report-full.png'}")


NUMBER = re.compile(r"^\d+(\.\d+)?$")


@pytest.mark.slow
def test_demo_report_has_scores_in_every_section(tmp_path):
    """`pixeljury demo` with its tiny random judge (constrained decoding after a capped thinking):
    the report it writes has numbers everywhere -- leaderboard totals and dimensions, radars,
    heatmaps, a gallery with the judge's reasoning -- and says at the top that they are noise."""
    executable = _chromium()
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')")
    pytest.importorskip("torch")
    pytest.importorskip("llguidance", reason="constrained decoding needs llguidance (pip install -e '.[torch]')")
    out = tmp_path / "demo"
    proc = run_cli("demo", "--out", str(out), "--quiet")
    assert "random weights" in proc.stdout and "noise" in proc.stdout
    report = out / "run" / "report.html"
    manifest = json.loads((out / "run" / "manifest.json").read_text())
    assert manifest["constrained"] is True and manifest["config"]["params"]["thinking_budget"] is not None

    with _report_page(sync_api, executable, report) as page:

        assert "noise" in page.locator("h1").inner_text()
        # Leaderboard: both painters, every total and every L1 mean a number, no parse failures.
        rows = page.locator("#leaderboard-table tr.lb-row")
        assert rows.count() == 2
        assert sorted(rows.locator("td.name").all_inner_texts()[0::2]) == ["painter-faithful", "painter-sloppy"]
        for i in range(2):
            cells = rows.nth(i).locator("td").all_inner_texts()
            total, dims, parse_fail = cells[2], cells[4:9], cells[10]
            assert NUMBER.match(total.strip()), cells
            assert all(NUMBER.match(d.strip()) for d in dims), cells
            assert parse_fail.strip() == "0.0%", cells
        # Radar: one per model, each with a drawn shape.
        assert page.locator("svg.radar").count() == 2
        for i in range(2):
            shape = page.locator("svg.radar .radar-shape").nth(i).bounding_box()
            assert shape and shape["width"] > 10 and shape["height"] > 10
        # Heatmaps: L2 and L3, cells with numbers (a facet the judge called N/A everywhere has none).
        assert page.locator("svg.heatmap").count() >= 2
        tips = page.eval_on_selector_all("svg.heatmap rect title", "els => els.map(e => e.textContent)")
        assert len(tips) >= 2 * 20
        assert sum("no data" in t for t in tips) <= len(tips) // 10, tips
        # Gallery: 8 images, each decoded, each with five scored dimensions and the judge's reasoning.
        widths = page.evaluate("Array.from(document.querySelectorAll('.gallery img')).map(i => i.complete ? i.naturalWidth : 0)")
        assert len(widths) == 8 and all(w > 0 for w in widths)
        dims = page.locator(".gallery .card .dim")
        assert dims.count() == 40
        assert page.locator(".gallery .card .dim > .score").count() == 40
        assert page.locator(".gallery .card .dim details summary", has_text="Judge's reasoning").count() == 40
        page.screenshot(path=str(tmp_path / "demo-report.png"))
        page.screenshot(path=str(tmp_path / "demo-report-full.png"), full_page=True)
    if os.environ.get("PIXELJURY_DOCS_SCREENSHOTS"):
        shutil.copyfile(tmp_path / "demo-report.png", Path(REPO) / "docs" / "img" / "demo-report.png")
    print(f"screenshots: {tmp_path / 'demo-report.png'} {tmp_path / 'demo-report-full.png'}")
