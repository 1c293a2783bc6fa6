"""Shared by the agreement / leaderboard / report tests: paths to shared data, running the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pj_testpaths import REPO, SHARED_DATA

SHARED = SHARED_DATA  # $PIXELJURY_SHARED_DIR/data, else ../shared/data
TIFA = SHARED / "human" / "tifa_v1.0_human_annotations_with_scores.json"
T2V_IMAGES = SHARED / "images" / "t2v_metrics"


def _shared_data_test(path: Path, what: str):
    """A decorator: the ``shared_data`` marker, and a skip naming the path when it is absent."""
    skip = pytest.mark.skipif(not path.exists(), reason=f"shared {what} not found at {path}")

    def mark(test):
        return pytest.mark.shared_data(skip(test))

    return mark


needs_tifa = _shared_data_test(TIFA, "TIFA human data")  # parity with the TIFA paper's human ratings
needs_images = _shared_data_test(T2V_IMAGES, "images")


def run_cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "COLUMNS": "200"}
    proc = subprocess.run([sys.executable, "-m", "pixeljury", *args], capture_output=True, text=True, env=env, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"pixeljury {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def agree_results(out_json: Path, *args: str, check: bool = True) -> tuple[dict[tuple[str, str], dict], subprocess.CompletedProcess[str]]:
    """Run ``pixeljury agree ARGS --json OUT_JSON``; the results keyed by (column, level) come back with
    the process (empty when the command failed before writing)."""
    proc = run_cli("agree", *args, "--json", str(out_json), check=check)
    if not out_json.is_file():
        return {}, proc
    rows = json.loads(out_json.read_text())["results"]
    return {(r["column"], r["level"]): r for r in rows}, proc


def assert_agrees_with_scipy(rows: dict, records: list[dict], human_col: str, n: int) -> None:
    """Every column's SRCC, KRCC and PLCC equal scipy's on ``records`` (to 1e-12), over all ``n``
    rows, each statistic inside its bootstrap interval."""
    import numpy as np
    from scipy import stats

    human = np.array([d[human_col] for d in records])
    for column, row in rows.items():
        metric = np.array([d[column] for d in records])
        assert row["n"] == n and row["n_dropped"] == 0
        assert row["srcc"] == pytest.approx(stats.spearmanr(metric, human).statistic, abs=1e-12)
        assert row["krcc"] == pytest.approx(stats.kendalltau(metric, human, variant="b").statistic, abs=1e-12)
        assert row["plcc"] == pytest.approx(stats.pearsonr(metric, human).statistic, abs=1e-12)
        for stat in ("srcc", "krcc", "plcc", "ntire"):
            lo, hi = row["ci"][stat]
            assert lo <= row[stat] <= hi, (column, stat)


def assert_agreement_csv(path: Path, columns: int) -> None:
    """The agreement CSV: its leading header fields, CI columns, one line per column."""
    header = path.read_text().splitlines()[0].split(",")
    assert header[:4] == ["column", "level", "n", "n_dropped"] and "srcc_ci_low" in header
    assert len(path.read_text().splitlines()) == 1 + columns
