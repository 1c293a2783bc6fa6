"""`pixeljury score` runs as `pixeljury judge` does: a locked run directory, a manifest that switches
with its tables, resume after a stop, progress as events, a full disk as CannotWrite."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from pixeljury.engines.base import EngineError
from pixeljury.engines.replay import ReplayEngine
from pixeljury.metrics import run as metric_run
from pixeljury.metrics.run import score_file
from pixeljury.runs import events as ev
from pixeljury.runs.faults import CannotWrite
from pixeljury.runs.lock import RunLock, RunLocked
from pixeljury.runs.runner import RunnerSettings
from pixeljury.runs.store import ResultStore

CONVENTION = "unifiedreward@2.0-mean-1-5"


def _answer(a: int) -> str:
    return f"Alignment Score (1-5): {a}\nCoherence Score (1-5): {a}\nStyle Score (1-5): {a}"


def _input(tmp_path, n=3):
    lines = []
    for i in range(n):
        Image.new("RGB", (8, 8), (i * 60, 10, 0)).save(tmp_path / f"{i}.png")
        lines.append(json.dumps({"prompt": f"prompt {i}", "image_path": f"{i}.png"}))
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(lines))
    return path


def _score(inp, out, engine, **kw):
    return score_file(inp, out, ["unifiedreward"], metric_kwargs={"unifiedreward": {"engine": engine}}, **kw)


def test_a_score_run_has_a_manifest_and_resumes(tmp_path, capsys):
    inp, out = _input(tmp_path), tmp_path / "run"
    heard = ev.Collect()
    [summary] = _score(inp, out, ReplayEngine.constant(_answer(4)), on_event=heard)
    assert capsys.readouterr() == ("", "")  # the library prints nothing
    assert (summary.scored, summary.skipped, summary.failed) == (3, 0, [])
    assert heard.of(ev.WorkStarted) == [ev.WorkStarted(CONVENTION, 3, "items")]
    assert sum(a.n for a in heard.of(ev.Advanced)) == 3 and heard.of(ev.WorkFinished) == [ev.WorkFinished(CONVENTION)]
    manifest = json.loads((out / "manifest.json").read_text())
    assert (manifest["job"], manifest["status"], manifest["rows"]) == ("score", "complete", 3)
    assert (manifest["scored"], manifest["reused"], manifest["failed"]) == (3, 0, 0)
    assert manifest["metrics"][0]["convention"] == CONVENTION and manifest["metrics"][0]["weights"] == "replay@unpinned"
    assert manifest["finished_at"] and not (out / "manifest.running.json").exists()

    again = ev.Collect()
    engine = ReplayEngine.constant(_answer(1))
    [summary] = _score(inp, out, engine, on_event=again)
    assert (summary.scored, summary.skipped, engine.calls) == (0, 3, 0)
    assert again.of(ev.Resuming) == [ev.Resuming(str(out), 3)]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["reused"] == 3 and manifest["previous_manifest"].startswith("manifests/")
    values = [json.loads(line)[CONVENTION] for line in (out / "scores.jsonl").read_text().splitlines()]
    assert values == [4.0, 4.0, 4.0]  # stored values, not the second engine's


def test_a_run_directory_in_use_is_refused(tmp_path):
    inp, out = _input(tmp_path), tmp_path / "run"
    out.mkdir()
    with RunLock(out), pytest.raises(RunLocked, match="in use"):
        _score(inp, out, ReplayEngine.constant(_answer(4)))
    assert not (out / ResultStore.FILENAME).exists()


def test_an_interrupted_score_run_keeps_what_it_committed_and_resumes(tmp_path, monkeypatch):
    monkeypatch.setattr(metric_run, "LOAD_CHUNK", 1)  # one item per commit
    inp, out = _input(tmp_path), tmp_path / "run"
    answered = []

    def stop_at_the_second(_req):
        if answered:
            raise KeyboardInterrupt
        answered.append(1)
        return _answer(5)

    with pytest.raises(KeyboardInterrupt):
        _score(inp, out, ReplayEngine(stop_at_the_second))
    running = json.loads((out / "manifest.running.json").read_text())
    assert running["status"] == "interrupted" and not (out / "scores.jsonl").exists()
    with ResultStore.in_dir(out) as store:
        assert store.count() == 1
    [summary] = _score(inp, out, ReplayEngine.constant(_answer(2)))
    assert (summary.scored, summary.skipped) == (2, 1)
    values = [json.loads(line)[CONVENTION] for line in (out / "scores.jsonl").read_text().splitlines()]
    assert values == [5.0, 2.0, 2.0]
    assert json.loads((out / "manifest.json").read_text())["status"] == "complete"


def test_a_full_disk_at_the_tables_is_cannot_write_and_keeps_the_old_tables(tmp_path, monkeypatch):
    inp, out = _input(tmp_path), tmp_path / "run"
    _score(inp, out, ReplayEngine.constant(_answer(4)))
    before = (out / "scores.csv").read_bytes(), (out / "manifest.json").read_bytes()
    monkeypatch.setenv("PIXELJURY_FAULT", "ENOSPC@scores.csv*")
    with pytest.raises(CannotWrite) as caught:
        _score(inp, out, ReplayEngine.constant(_answer(1)))
    assert caught.value.saved == 3
    assert ((out / "scores.csv").read_bytes(), (out / "manifest.json").read_bytes()) == before
    assert not [p.name for p in out.iterdir() if ".tmp" in p.name]


def test_failed_items_make_the_run_incomplete(tmp_path):
    inp, out = _input(tmp_path), tmp_path / "run"
    [summary] = _score(inp, out, ReplayEngine.constant("no ratings here"))
    assert summary.scored == 0 and [i for i, _ in summary.failed] == [0, 1, 2]
    manifest = json.loads((out / "manifest.json").read_text())
    assert (manifest["status"], manifest["failed"]) == ("incomplete", 3)


def test_an_engine_that_refuses_stops_the_run_and_its_manifest_says_why(tmp_path):
    inp, out = _input(tmp_path), tmp_path / "run"

    def refuse(_req):
        raise EngineError("401: bad credentials", retryable=False)

    heard = ev.Collect()
    [summary] = _score(inp, out, ReplayEngine(refuse), settings=RunnerSettings(retry_wait=0.0), on_event=heard)
    assert summary.scored == 0 and [i for i, _ in summary.failed] == [0, 1, 2]
    assert summary.stopped.endswith("401: bad credentials") and heard.of(ev.RunStopped)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "stopped" and manifest["stopped"].endswith("401: bad credentials")
    with ResultStore.in_dir(out) as store:
        assert {f["stage"] for f in store.failures()} == {"metric:unifiedreward"}
        assert store.failures()[0]["message"] == "row 0: 401: bad credentials"


def test_a_crash_inside_the_job_marks_the_running_manifest_stopped(tmp_path, monkeypatch):
    inp, out = _input(tmp_path), tmp_path / "run"

    def broken_tables(*_a, **_k):
        raise RuntimeError("tables broke")

    monkeypatch.setattr(metric_run, "write_tables", broken_tables)
    with pytest.raises(RuntimeError):
        _score(inp, out, ReplayEngine.constant(_answer(3)))
    running = json.loads((out / "manifest.running.json").read_text())
    assert running["status"] == "stopped" and running["stopped"] == "RuntimeError: tables broke"


def test_a_metric_that_breaks_outside_an_item_stops_the_run_at_once(tmp_path):
    inp, out = _input(tmp_path), tmp_path / "run"
    calls = []

    def broken(_req):
        calls.append(1)
        raise RuntimeError("CUDA error: an illegal memory access")

    heard = ev.Collect()
    [summary] = _score(inp, out, ReplayEngine(broken), settings=RunnerSettings(retry_wait=0.0), on_event=heard)
    assert len(calls) == 1  # not retried: every chunk would fail the same way
    assert "RuntimeError: CUDA error" in summary.stopped and [i for i, _ in summary.failed] == [0, 1, 2]
    assert json.loads((out / "manifest.json").read_text())["status"] == "stopped"
