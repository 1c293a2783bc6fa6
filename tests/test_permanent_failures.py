"""Exit 1 means "rerun to retry" only when a rerun can help. Images no decoder reads and requests the
engine refuses as such are recorded as permanent; a run missing only those exits 4 and names the rows
to fix."""

from __future__ import annotations

import json
import sqlite3
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from PIL import Image

import pixeljury
from pixeljury.engines.base import Generation
from pixeljury.engines.replay import ReplayEngine
from pixeljury.runs.store import ResultStore

from _fault_scenarios import DRIVER
from pj_testpaths import CHECKLIST_FIXTURE, subprocess_env
from test_pipeline import answer_for


def _png_bomb(path: Path) -> None:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b""))


def _inputs(tmp_path: Path, extra: list[dict] | None = None) -> Path:
    Image.new("RGB", (20, 20), (1, 2, 3)).save(tmp_path / "good.png")
    (tmp_path / "empty.png").write_bytes(b"")
    _png_bomb(tmp_path / "bomb.png")
    (tmp_path / "notes.png").write_text("not an image at all\n")
    rows = [{"prompt": "fine", "image_path": "good.png"}, {"prompt": "empty", "image_path": "empty.png"},
            {"prompt": "bomb", "image_path": "bomb.png"}, {"prompt": "text", "image_path": "notes.png"},
            *(extra or [])]
    inp = tmp_path / "in.jsonl"
    inp.write_text("".join(json.dumps({**r, "model": "M"}) + "\n" for r in rows))
    return inp


def _cli(tmp_path: Path, inp: Path, *extra: str) -> subprocess.CompletedProcess:
    (tmp_path / "driver.py").write_text(DRIVER)
    args = [sys.executable, str(tmp_path / "driver.py"), "judge", str(inp), "--model", "x", "--out",
            str(tmp_path / "run"), "--rubric-file", str(CHECKLIST_FIXTURE), "--dimensions", "Quality", "--quiet", *extra]
    return subprocess.run(args, capture_output=True, text=True, env=subprocess_env(), timeout=120)


@pytest.mark.slow
def test_unreadable_images_are_permanent_and_the_run_exits_4_naming_the_rows(tmp_path):
    inp = _inputs(tmp_path)
    res = _cli(tmp_path, inp)
    assert res.returncode == 4, res.stdout + res.stderr
    said = " ".join(res.stdout.split())
    assert ("3 requests have no result, and rerunning cannot give them one: their input cannot be judged as it is "
            "(rows 1, 2, 3;") in said
    assert "Fix or remove those rows" in said and "rerun the same command to retry" not in said
    records = pixeljury.load_images(tmp_path / "run")
    errors = [r["dimensions"]["Quality"] for r in records[1:]]
    assert [e["permanent"] for e in errors] == [True, True, True]
    assert "not an image format Pillow can read" in errors[0]["error"]
    assert "decompression bomb" in errors[1]["error"] and "not an image format" in errors[2]["error"]
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert (manifest["status"], manifest["failed_requests"], manifest["permanent_failures"]) == \
        ("permanent_failures", 3, 3)
    with ResultStore.in_dir(tmp_path / "run") as store:
        assert [f["permanent"] for f in store.failures()] == [True, True, True]
    # A rerun tries them again (a decode: cheap) and ends the same way; nothing else is recomputed.
    again = _cli(tmp_path, inp)
    assert again.returncode == 4 and "requests: 4 (reused 1, computed 0, without result 3)" in again.stdout


@pytest.mark.slow
def test_a_retryable_failure_beside_permanent_ones_still_asks_for_a_rerun(tmp_path):
    inp = _inputs(tmp_path)
    replay = tmp_path / "answers.jsonl"
    replay.write_text("")  # no recorded answer for the good image: an engine error a rerun may fix
    args = ["judge", str(inp), "--model", "replay", "--engine", "replay", "--replay-file", str(replay),
            "--out", str(tmp_path / "run"), "--rubric-file", str(CHECKLIST_FIXTURE), "--dimensions", "Quality", "-q"]
    res = subprocess.run([sys.executable, "-m", "pixeljury", *args], capture_output=True, text=True,
                         env=subprocess_env(), timeout=120)
    assert res.returncode == 1, res.stdout + res.stderr
    said = " ".join(res.stdout.split())
    assert ("4 requests have no result (see the errors in per_image.jsonl); rerun the same command to retry them; "
            "3 of them cannot succeed as they are (rows 1, 2, 3): fix those rows") in said
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["status"] == "incomplete" and manifest["permanent_failures"] == 3


class RefusesLongPrompts(ReplayEngine):
    """Refuses a request the way an engine marks one longer than its context: retryable=False."""

    def generate(self, requests, params):
        gens = super().generate(requests, params)
        return [Generation(g.request_id, "", "error", error="request is longer than the model's context",
                           retryable=False) if "LONG" in req.user[0].text else g for g, req in zip(gens, requests)]


def test_a_request_the_engine_refuses_as_such_is_permanent_and_does_not_stop_the_run(tmp_path):
    Image.new("RGB", (20, 20), (1, 2, 3)).save(tmp_path / "a.png")
    rows = [{"prompt": "LONG " * 3 + str(i), "image_path": "a.png"} for i in range(4)]
    rows.append({"prompt": "short", "image_path": "a.png"})
    inp = tmp_path / "in.jsonl"
    inp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    engine = RefusesLongPrompts(answer_for, batch_size=1)
    s = pixeljury.judge(inp, out=tmp_path / "run", engine=engine, rubric_file=CHECKLIST_FIXTURE,
                        dimensions=["Quality"], retry_wait=0.0, max_failed_batches=2)
    # Four refused batches in a row, yet the engine is fine: the run goes on to the last row.
    assert s.stopped is None and (s.computed, s.failed, s.permanent) == (1, 4, 4)
    assert s.status == "permanent_failures" and s.permanent_rows == [0, 1, 2, 3]
    from typer.testing import CliRunner

    from pixeljury.cli import app
    from pixeljury.engines import factory

    original = factory.create_engine
    factory.create_engine = lambda spec: RefusesLongPrompts(answer_for, batch_size=1)
    try:
        res = CliRunner().invoke(app, ["judge", str(inp), "--model", "x", "--out", str(tmp_path / "cli"),
                                       "--rubric-file", str(CHECKLIST_FIXTURE), "--dimensions", "Quality", "-q"])
    finally:
        factory.create_engine = original
    assert res.exit_code == 4, res.output
    assert "rows 0, 1, 2, 3" in res.output


def test_an_image_deleted_after_planning_is_not_permanent(tmp_path, monkeypatch):
    from pixeljury.protocols import qjudger_evaluator as judge_module  # the Q-Judger loader lives there

    Image.new("RGB", (20, 20), (1, 2, 3)).save(tmp_path / "a.png")
    inp = tmp_path / "in.jsonl"
    inp.write_text(json.dumps({"prompt": "p", "image_path": "a.png"}) + "\n")
    real = judge_module.load_for_judge

    def vanish(path, **kw):
        Path(path).unlink()
        return real(path, **kw)

    monkeypatch.setattr(judge_module, "load_for_judge", vanish)
    s = pixeljury.judge(inp, out=tmp_path / "run", engine=ReplayEngine(answer_for), rubric_file=CHECKLIST_FIXTURE,
                        dimensions=["Quality"], retry_wait=0.0)
    assert (s.failed, s.permanent, s.status) == (1, 0, "incomplete")
    assert pixeljury.load_images(tmp_path / "run")[0]["dimensions"]["Quality"]["permanent"] is False


def test_a_store_from_before_permanence_gains_the_column(tmp_path):
    db = tmp_path / "results.sqlite"
    with sqlite3.connect(db) as conn:  # the failures table as pixeljury wrote it with schema version 1
        conn.executescript("""
            CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
            INSERT INTO meta VALUES ('schema_version', '1');
            CREATE TABLE failures (id INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT, row_index INTEGER,
                stage TEXT NOT NULL, message TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 1,
                created_at REAL NOT NULL);
            INSERT INTO failures(key, row_index, stage, message, created_at) VALUES ('k', 0, 'image', 'old', 1.0);
        """)
    with ResultStore(db) as store:
        assert store.latest_failure_states(["k"]) == {"k": ("old", False)}
        store.record_failure("image", "new", key="k", permanent=True)
        assert store.latest_failure_states(["k"]) == {"k": ("new", True)}
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT value FROM meta WHERE name = 'schema_version'").fetchone() == ("2",)
