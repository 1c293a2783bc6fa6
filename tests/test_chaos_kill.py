"""The chaos run (bench/chaos_kill.py): a real `pixeljury judge` process SIGKILLed at 10 random moments,
some during the exports, rerun after each kill, ends with the outputs of an uninterrupted run."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from pj_testpaths import REPO, subprocess_env

SCRIPT = REPO / "bench" / "chaos_kill.py"


def _chaos_module():
    spec = importlib.util.spec_from_file_location("chaos_kill", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    sys.modules["chaos_kill"] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_ten_kills_including_exports_leave_the_outputs_of_an_uninterrupted_run(tmp_path):
    res = subprocess.run([sys.executable, str(SCRIPT), "--kills", "10", "--rows", "200", "--seed", "20240610",
                          "--workdir", str(tmp_path / "chaos")], capture_output=True, text=True,
                         env=subprocess_env(), timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    out = res.stdout
    assert "seed: 20240610" in out and "kills survived: 10 " in out
    assert "outputs identical to the uninterrupted run's, byte for byte" in out
    landed = re.findall(r"^kill +\d+: .* -> landed in (.*?);", out, flags=re.M)
    assert len(landed) == 10 and "exports" in landed and "planning/judging" in landed
    for name in ("per_image.jsonl", "summary.csv", "per_image.parquet", "scores.xlsx", "bench/alpha.json"):
        assert name in out  # among the files compared


def test_the_comparison_sees_a_changed_byte_a_leftover_temporary_and_ignores_only_times(tmp_path):
    chaos = _chaos_module()
    ref, got = tmp_path / "ref", tmp_path / "got"
    for d, created in ((ref, "2024-01-01"), (got, "2025-02-02")):
        (d / "bench").mkdir(parents=True)
        (d / "per_image.jsonl").write_text('{"row": 0}\n')
        (d / "bench" / "m.json").write_text('{"total": 1.0}')
        (d / "manifest.json").write_text(f'{{"started_at": "{created}"}}')  # times: not compared
        (d / "results.sqlite").write_bytes(created.encode())
        with zipfile.ZipFile(d / "scores.xlsx", "w") as z:
            z.writestr("xl/worksheets/sheet1.xml", "<sheet>1</sheet>")
            z.writestr("docProps/core.xml", f"<created>{created}</created>")
    compared, diffs = chaos.compare_runs(ref, got)
    assert compared == ["bench/m.json", "per_image.jsonl", "scores.xlsx"] and diffs == []

    (got / "bench" / "m.json").write_text('{"total": 1.5}')
    (got / "per_image.jsonl.4242.tmp").write_text("half")
    with zipfile.ZipFile(got / "scores.xlsx", "a") as z:
        z.writestr("xl/extra.xml", "<x/>")
    _, diffs = chaos.compare_runs(ref, got)
    assert diffs == ["per_image.jsonl.4242.tmp: only in the killed-and-resumed run",
                     "bench/m.json: bytes differ (14 vs 14 bytes)",
                     "scores.xlsx: zip members differ: xl/extra.xml"]
