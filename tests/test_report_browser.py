"""Acceptance: the report opened in headless Chromium (Playwright driving Debian's chromium).

Set-up: scripts/setup_browser.sh installs chromium with apt-get (`make test` runs it first);
Playwright comes from the `test` extra. No browser is downloaded by Playwright.
"""

from __future__ import annotations

import shutil

import pytest
from _analysis_helpers import T2V_IMAGES, needs_images, run_cli

from pixeljury.testing.rundir import sample_run

pytestmark = [pytest.mark.browser, needs_images]


def _chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("no chromium on PATH: run scripts/setup_browser.sh (apt-get install chromium)")


def test_report_renders_in_headless_chromium(tmp_path):
    executable = _chromium()
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')")
    run = sample_run(tmp_path / "run", T2V_IMAGES)
    report = tmp_path / "report.html"
    run_cli("report", str(run), "--out", str(report), "--bootstrap", "100")

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
            assert len(widths) == 8 and all(w > 0 for w in widths)
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
        finally:
            browser.close()
    assert problems == []
    assert all(u.startswith(("file:", "data:")) for u in requests), [u for u in requests if not u.startswith(("file:", "data:"))]
    assert (tmp_path / "report.png").stat().st_size > 10_000
    print(f"screenshots: {tmp_path / 'report.png'} {tmp_path / 'report-full.png'}")
