"""manifest.json always describes the outputs beside it: a rerun with other settings that is killed
leaves the earlier run's manifest and outputs together; its own manifest waits in
manifest.running.json, and comes in (marked interrupted) only with outputs built from its plan."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from _fault_scenarios import DRIVER
from pj_testpaths import CHECKLIST_FIXTURE, stored_results, subprocess_env

pytestmark = pytest.mark.slow

N = 12


def _setup(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "driver.py").write_text(DRIVER)
    rows = []
    for i in range(N):
        Image.new("RGB", (20, 20), (i, i, 9)).save(tmp_path / f"{i}.png")
        rows.append({"prompt": f"p{i}", "image_path": f"{i}.png", "model": "M"})
    inp = tmp_path / "in.jsonl"
    inp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return inp, tmp_path / "run"


def _args(tmp_path: Path, inp: Path, run: Path, dims: str) -> list[str]:
    return [sys.executable, str(tmp_path / "driver.py"), "judge", str(inp), "--model", "x", "--out", str(run),
            "--rubric-file", str(CHECKLIST_FIXTURE), "--dimensions", dims, "--quiet"]


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, env=env or subprocess_env(), timeout=120)


def _digests(run: Path) -> dict[str, str]:
    return {str(p.relative_to(run)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(run.rglob("*"))
            if p.is_file() and p.suffix in (".json", ".jsonl", ".csv") and p.parent.name != "manifests"
            and p.name != "manifest.running.json"}


def _kill_run_b(tmp_path: Path, inp: Path, run: Path, signum: int) -> None:
    env = {**subprocess_env(), "PJ_SLEEP": "0.15"}
    proc = subprocess.Popen(_args(tmp_path, inp, run, "Alignment"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    deadline = time.monotonic() + 60
    while stored_results(run / "results.sqlite") < N + 3 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.kill(proc.pid, signum)
    proc.communicate(timeout=60)
    assert N + 3 <= stored_results(run / "results.sqlite") < 2 * N


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_a_killed_rerun_with_other_settings_leaves_manifest_and_outputs_of_the_earlier_run(tmp_path, signum):
    inp, run = _setup(tmp_path)
    a = _cli(*_args(tmp_path, inp, run, "Quality"))
    assert a.returncode == 0, a.stderr
    manifest_a = (run / "manifest.json").read_bytes()
    outputs_a = _digests(run)

    _kill_run_b(tmp_path, inp, run, signum)
    assert (run / "manifest.json").read_bytes() == manifest_a
    assert _digests(run) == outputs_a
    records = [json.loads(line) for line in (run / "per_image.jsonl").read_text().splitlines()]
    assert all(list(r["dimensions"]) == ["Quality"] for r in records)  # what manifest.json's config says
    running = json.loads((run / "manifest.running.json").read_text())
    assert running["config"]["dimensions"] == ["Alignment"]
    assert running["status"] == ("running" if signum == signal.SIGKILL else "interrupted")

    # An export now writes the outputs from the killed run's plan, so its manifest comes with them.
    exported = _cli(sys.executable, "-m", "pixeljury", "export", str(run), "--format", "jsonl")
    assert exported.returncode == 0, exported.stderr
    manifest_b = json.loads((run / "manifest.json").read_text())
    assert manifest_b["status"] == "interrupted" and manifest_b["config"]["dimensions"] == ["Alignment"]
    assert (run / manifest_b["previous_manifest"]).read_bytes() == manifest_a
    assert not (run / "manifest.running.json").exists()
    report = _cli(sys.executable, "-m", "pixeljury", "report", str(run), "--out", str(tmp_path / "r.html"),
                  "--bootstrap", "0")
    assert report.returncode == 0, report.stderr
    assert "unfinished run: interrupted before the end" in " ".join(report.stdout.split())
    assert "unfinished run: interrupted before the end" in (tmp_path / "r.html").read_text()

    # The rerun finishes B; every manifest stays in manifests/.
    b = _cli(*_args(tmp_path, inp, run, "Alignment"))
    assert b.returncode == 0, b.stderr
    final = json.loads((run / "manifest.json").read_text())
    assert final["status"] == "complete" and final["config"]["dimensions"] == ["Alignment"]
    assert json.loads((run / final["previous_manifest"]).read_text())["status"] == "interrupted"
    assert len(list((run / "manifests").glob("*.json"))) == 2


def test_a_rerun_after_a_kill_archives_the_killed_runs_manifest(tmp_path):
    inp, run = _setup(tmp_path)
    assert _cli(*_args(tmp_path, inp, run, "Quality")).returncode == 0
    manifest_a = (run / "manifest.json").read_bytes()
    _kill_run_b(tmp_path, inp, run, signal.SIGKILL)
    b = _cli(*_args(tmp_path, inp, run, "Alignment"))
    assert b.returncode == 0, b.stderr
    final = json.loads((run / "manifest.json").read_text())
    assert final["status"] == "complete" and (run / final["previous_manifest"]).read_bytes() == manifest_a
    archived = [json.loads(p.read_text()) for p in sorted((run / "manifests").glob("*.json"))]
    assert sorted(m["status"] for m in archived if "status" in m) == ["complete", "interrupted"]
    assert not (run / "manifest.running.json").exists()
