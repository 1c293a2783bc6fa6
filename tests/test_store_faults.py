"""A damaged or empty store never costs the outputs already written, and says what to do."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

import pixeljury
from pixeljury.engines.replay import ReplayEngine
from pixeljury.rubric.taxonomy import TREE
from pixeljury.runs.atomic import remove_stale_temporaries
from pixeljury.runs.exports import EmptyStore, write_run_outputs
from pixeljury.runs.store import ResultStore, StoreDamaged

from pj_testpaths import CHECKLIST_FIXTURE, subprocess_env


def _answer(req) -> str:
    dim = req.request_id.split(":", 1)[0]
    return json.dumps({l2: {l3: {"score": 2} for l3 in l3s} for l2, l3s in TREE[dim].items()})


def _finished_run(tmp_path: Path) -> tuple[Path, Path, dict[str, bytes]]:
    Image.new("RGB", (30, 20), (1, 2, 3)).save(tmp_path / "a.png")
    inp = tmp_path / "in.jsonl"
    inp.write_text(json.dumps({"prompt": "p", "image_path": "a.png", "model": "M"}) + "\n")
    run = tmp_path / "run"
    pixeljury.judge(inp, out=run, engine=ReplayEngine(_answer), rubric_file=CHECKLIST_FIXTURE,
                    dimensions=["Quality"], retry_wait=0.0)
    outputs = {p.name: p.read_bytes() for p in [run / "per_image.jsonl", run / "summary.csv",
                                                 *sorted((run / "bench").glob("*.json"))]}
    return inp, run, outputs


def _unchanged(run: Path, outputs: dict[str, bytes]) -> bool:
    now = {p.name: p.read_bytes() for p in [run / "per_image.jsonl", run / "summary.csv",
                                             *sorted((run / "bench").glob("*.json"))]}
    return now == outputs


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pixeljury", *args], capture_output=True, text=True,
                          env=subprocess_env(), timeout=120)


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_damaged_store_is_one_clear_error_and_outputs_stay(tmp_path, damage):
    inp, run, outputs = _finished_run(tmp_path)
    db = run / "results.sqlite"
    for extra in ("results.sqlite-wal", "results.sqlite-shm"):
        (run / extra).unlink(missing_ok=True)
    data = db.read_bytes()
    db.write_bytes(b"this is not a database" * 200 if damage == "garbage" else data[: len(data) // 2])
    with pytest.raises(StoreDamaged, match="damaged or not a pixeljury store"):
        ResultStore.in_dir(run)
    for command in (["export", str(run)],
                    ["judge", str(inp), "--model", "x", "--engine", "replay", "--out", str(run), "--rubric-file",
                     str(CHECKLIST_FIXTURE), "--dimensions", "Quality"]):
        res = _cli(*command)
        said = " ".join(res.stderr.split())
        assert res.returncode == 2, res.stderr
        assert "Traceback" not in res.stderr and "is damaged or not a pixeljury store" in said and "mv " in said
    assert _unchanged(run, outputs)


def test_an_empty_store_never_overwrites_outputs_that_hold_rows(tmp_path):
    _, run, outputs = _finished_run(tmp_path)
    (run / "results.sqlite").unlink()
    for extra in ("results.sqlite-wal", "results.sqlite-shm"):
        (run / extra).unlink(missing_ok=True)
    with ResultStore.in_dir(run) as empty, pytest.raises(EmptyStore, match="holds no rows"):
        write_run_outputs(run, empty, ("jsonl",))
    assert _unchanged(run, outputs)
    assert not list(run.glob("*.tmp"))
    res = _cli("export", str(run))
    assert res.returncode == 2 and "holds no rows" in " ".join(res.stderr.split())
    assert _unchanged(run, outputs)


def test_temporary_files_of_a_killed_export_are_removed_next_time(tmp_path):
    _, run, _ = _finished_run(tmp_path)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    leftovers = [run / f"per_image.jsonl.{dead.pid}.tmp", run / f"manifest.json.{dead.pid}.tmp",
                 run / "bench" / f"M.json.{dead.pid}.tmp"]
    for path in leftovers:
        path.write_text("half written")
    res = _cli("export", str(run), "--format", "jsonl")
    assert res.returncode == 0, res.stderr
    assert not any(p.exists() for p in leftovers)
    assert remove_stale_temporaries(run) == []
