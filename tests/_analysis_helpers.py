"""Shared by the agreement / leaderboard / report tests: paths to shared data, running the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
TIFA = SHARED / "human" / "tifa_v1.0_human_annotations_with_scores.json"
T2V_IMAGES = SHARED / "images" / "t2v_metrics"

needs_tifa = pytest.mark.skipif(not TIFA.is_file(), reason=f"shared TIFA human data not found at {TIFA}")
needs_images = pytest.mark.skipif(not T2V_IMAGES.is_dir(), reason=f"shared images not found at {T2V_IMAGES}")


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
