"""`pixeljury report` and `leaderboard` say plainly when a run is unfinished, and point to
`pixeljury export` when a directory has a store but no outputs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

import pixeljury
from pixeljury.analysis import leaderboard as lb
from pixeljury.analysis.rundir import load_run, run_state
from pixeljury.engines.base import EngineError
from pixeljury.engines.replay import ReplayEngine

from pj_testpaths import CHECKLIST_FIXTURE, subprocess_env
from test_pipeline import answer_for


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pixeljury", *args], capture_output=True, text=True,
                          env=subprocess_env(), timeout=120)


def _run(tmp_path: Path, name: str, engine, n: int = 4, **kw) -> Path:
    for i in range(n):
        Image.new("RGB", (20, 20), (i, 5, 5)).save(tmp_path / f"{i}.png")
    inp = tmp_path / "in.jsonl"
    inp.write_text("".join(json.dumps({"prompt": f"p{i}", "image_path": f"{i}.png", "model": name}) + "\n"
                           for i in range(n)))
    pixeljury.judge(inp, out=tmp_path / name, engine=engine, rubric_file=CHECKLIST_FIXTURE, dimensions=["Quality"],
                    retry_wait=0.0, **kw)
    return tmp_path / name


class Refusing(ReplayEngine):
    def generate(self, requests, params):
        raise EngineError("HTTP 401: bad key", retryable=False)


def test_report_of_a_directory_without_exports_points_to_export(tmp_path):
    run = _run(tmp_path, "done", ReplayEngine(answer_for))
    (run / "per_image.jsonl").unlink()
    res = _cli("report", str(run), "--out", str(tmp_path / "r.html"))
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert res.returncode == 2 and len(lines) == 1 and "Traceback" not in res.stderr
    assert lines[0] == (f"error: {run} has a result store but no per_image.jsonl: write its outputs with "
                        f"`pixeljury export {run}`, then run this again")
    empty = tmp_path / "empty"
    empty.mkdir()
    res = _cli("leaderboard", str(empty))
    assert res.returncode == 2 and "is not a run directory: it has neither per_image.jsonl nor results.sqlite" in \
        " ".join(res.stderr.split())


def test_reports_and_leaderboards_say_a_run_is_unfinished(tmp_path):
    done = _run(tmp_path, "done", ReplayEngine(answer_for))
    stopped = _run(tmp_path, "stopped", Refusing(answer_for, batch_size=1))
    partial = _run(tmp_path, "partial", ReplayEngine(lambda r: None if "p1" in r.user[0].text else answer_for(r)))
    assert [load_run(p).state.unfinished for p in (done, stopped, partial)] == [False, True, True]

    res = _cli("leaderboard", str(done), str(stopped), str(partial), "--bootstrap", "0",
               "--md", str(tmp_path / "lb.md"), "--json", str(tmp_path / "lb.json"), "--csv", str(tmp_path / "lb.csv"))
    assert res.returncode == 0, res.stderr
    said = " ".join(res.stdout.split())
    assert f"note: {stopped}: unfinished run: stopped early (the engine refused a batch with an error that " \
           "retrying cannot fix: HTTP 401: bad key)" in said
    assert f"note: {partial}: unfinished run: 1 of 4 requests have no result (errors a rerun may fix); rerun the " \
           "same `pixeljury judge` command to finish it" in said
    assert f"note: {done}" not in said
    md = (tmp_path / "lb.md").read_text()
    assert f"- `{partial}`: unfinished run: 1 of 4 requests have no result" in md
    models = {m["model"]: m for m in json.loads((tmp_path / "lb.json").read_text())["models"]}
    assert [models[m]["run_status"] for m in ("done", "stopped", "partial")] == ["complete", "stopped", "incomplete"]
    assert (tmp_path / "lb.csv").read_text().splitlines()[0].endswith(",run,run_status")

    res = _cli("report", str(done), str(partial), "--out", str(tmp_path / "r.html"), "--bootstrap", "0")
    assert res.returncode == 0, res.stderr
    html = (tmp_path / "r.html").read_text()
    assert 'class="notice unfinished"' in html and "unfinished run: 1 of 4 requests have no result" in html
    assert html.count('class="notice') == 1


@pytest.mark.parametrize("manifest, unfinished, words", [
    ({"started_at": "x", "finished_at": None}, True, "interrupted before the end (its manifest has no finish time)"),
    ({"finished_at": "y", "stopped": "engine down", "failed_requests": 3}, True, "stopped early (engine down)"),
    ({"finished_at": "y", "failed_requests": 2, "requests": 9}, True, "2 of 9 requests have no result"),
    ({"finished_at": "y", "failed_requests": 0}, False, None),
    ({"finished_at": "y", "status": "permanent_failures", "failed_requests": 2, "requests": 5}, False,
     "2 of 5 requests could not be judged: their input is unusable"),
])
def test_run_state_reads_old_and_new_manifests(manifest, unfinished, words):
    state = run_state(manifest)
    assert state.unfinished is unfinished
    assert (state.note is None) if words is None else (words in state.note)


def test_leaderboard_entries_carry_the_run_status(tmp_path):
    partial = _run(tmp_path, "partial", ReplayEngine(lambda r: None if "p1" in r.user[0].text else answer_for(r)))
    (entry,) = lb.build([load_run(partial)], n_boot=0)
    assert entry.run_status == "incomplete" and entry.run_note.startswith("unfinished run: 1 of 4")
