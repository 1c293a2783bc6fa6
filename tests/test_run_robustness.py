"""A run keeps going, and keeps what it has, when one answer, one file or the engine misbehaves;
and it starts generating before every file of a large input is hashed."""

from __future__ import annotations

import json
import os
import sqlite3
import warnings
from pathlib import Path

import pytest
from PIL import Image

import pixeljury
from pixeljury.engines.base import EngineError, Generation
from pixeljury.engines.replay import ReplayEngine
from pixeljury.runs import plan as plan_module

from pj_testpaths import CHECKLIST_FIXTURE
from test_pipeline import answer_for, judge, make_images, write_jsonl


def rows_file(tmp_path: Path, n: int, **extra) -> Path:
    names = make_images(tmp_path / "imgs", n)
    return write_jsonl(tmp_path / "in.jsonl", [{"prompt": f"p{i}", "image_path": p, **extra} for i, p in enumerate(names)])


def test_an_answer_the_parser_chokes_on_is_recorded_and_the_batch_kept(tmp_path, monkeypatch):
    from pixeljury.protocols import qjudger

    real_parse = qjudger.parse

    def parse(gen, dim):
        if "p1" in gen.text:
            raise RecursionError("maximum recursion depth exceeded")
        return real_parse(gen, dim)

    monkeypatch.setattr(qjudger, "parse", parse)
    inp = rows_file(tmp_path, 3)
    engine = ReplayEngine(lambda r: answer_for(r) + (" p1" if "p1" in r.user[0].text else ""), batch_size=8)
    s = judge(inp, tmp_path / "run", engine, dimensions=["Quality"])
    assert (s.computed, s.failed) == (2, 1)
    images = pixeljury.load_images(tmp_path / "run")
    assert [r["scores"]["total"] for r in images] == [60.0, None, 60.0]
    error = images[1]["dimensions"]["Quality"]["error"]
    assert error.startswith("row 1 Quality: pixeljury could not process the answer (RecursionError")


def test_lone_surrogates_in_an_answer_are_stored_visibly(tmp_path):
    inp = rows_file(tmp_path, 2)
    text = '<think>odd \ud800 bytes</think>{"Detail": {"Noise": {"score": "\udfff"}}}'
    s = judge(inp, tmp_path / "run", ReplayEngine.constant(text), dimensions=["Quality"])
    assert (s.computed, s.failed) == (2, 0)
    rec = pixeljury.load_images(tmp_path / "run")[0]["dimensions"]["Quality"]
    assert rec["raw_text"] == '<think>odd \ufffd bytes</think>{"Detail": {"Noise": {"score": "\ufffd"}}}'
    assert rec["invalid"] == [{"l2": "Detail", "l3": "Noise", "value": "\ufffd"}] and rec["n_scored"] == 0


def test_lone_surrogate_in_an_input_field_is_a_row_error_not_a_crash(tmp_path):
    names = make_images(tmp_path / "imgs", 2)
    inp = tmp_path / "in.jsonl"
    inp.write_text(json.dumps({"prompt": "cat \ud83d", "image_path": names[0]}) + "\n"
                   + json.dumps({"prompt": "dog", "image_path": names[1]}) + "\n", encoding="utf-8")
    s = judge(inp, tmp_path / "run", ReplayEngine(answer_for), dimensions=["Quality"])
    assert (s.computed, s.failed, s.row_errors) == (1, 0, 1)
    bad = pixeljury.load_images(tmp_path / "run")[0]
    assert bad["status"] == "row_error" and bad["prompt"] == "cat \ufffd"
    assert bad["errors"][0].startswith("field(s) 'prompt' hold unpaired UTF-16 surrogates")


class RefusingEngine(ReplayEngine):
    def __init__(self, error: EngineError):
        super().__init__(answer_for, batch_size=1)
        self.error, self.attempts = error, 0

    def generate(self, requests, params):
        self.attempts += 1
        raise self.error


def test_a_refusal_that_retrying_cannot_fix_stops_the_run_keeping_its_rows(tmp_path):
    inp = rows_file(tmp_path, 5)
    engine = RefusingEngine(EngineError("HTTP 401: bad key", retryable=False))
    s = judge(inp, tmp_path / "run", engine, dimensions=["Quality"], retries=3)
    assert engine.attempts == 1  # neither retried nor tried on the next batch
    assert s.stopped and "HTTP 401: bad key" in s.stopped and not s.complete
    # Rows beyond the planning frontier are not hashed after the stop: the engine must be fixed first.
    assert s.computed == 0 and s.failed == s.requests and 1 <= s.requests < 5
    images = pixeljury.load_images(tmp_path / "run")
    assert len(images) == s.requests  # one request per row here
    assert "HTTP 401" in images[0]["dimensions"]["Quality"]["error"]
    assert all(r["dimensions"]["Quality"]["error"] == "not computed" for r in images[1:])
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["stopped"] == s.stopped and manifest["failed_requests"] == s.failed
    assert manifest["rows_planned"] == len(images) and manifest["rows"] == 5
    healed = ReplayEngine(answer_for)
    again = judge(inp, tmp_path / "run", healed, dimensions=["Quality"])
    assert again.complete and healed.calls == 5 and len(pixeljury.load_images(tmp_path / "run")) == 5


def test_a_run_stops_after_max_failed_batches_in_a_row(tmp_path):
    inp = rows_file(tmp_path, 6)
    engine = RefusingEngine(EngineError("connection refused"))
    s = judge(inp, tmp_path / "run", engine, dimensions=["Quality"], retries=1, max_failed_batches=3)
    assert engine.attempts == 3 * 2 and s.stopped.startswith("3 batches in a row failed")
    healed = ReplayEngine(answer_for)
    again = judge(inp, tmp_path / "run", healed, dimensions=["Quality"])
    assert healed.calls == 6 and again.complete and again.failed == 0


def test_an_image_rewritten_after_hashing_is_not_stored_under_the_old_key(tmp_path, monkeypatch):
    inp = rows_file(tmp_path, 2)
    target = tmp_path / "imgs" / "img1.png"
    from pixeljury.protocols import qjudger_evaluator as judge_module  # the Q-Judger loader lives there

    real_load = judge_module.load_for_judge

    def load(path, **kw):
        if Path(path) == target:
            Image.new("RGB", (9, 9), (1, 2, 3)).save(target)  # rewritten between hashing and decoding
        return real_load(path, **kw)

    monkeypatch.setattr(judge_module, "load_for_judge", load)
    s = judge(inp, tmp_path / "run", ReplayEngine(answer_for), dimensions=["Quality"])
    assert (s.computed, s.failed) == (1, 1)
    error = pixeljury.load_images(tmp_path / "run")[1]["dimensions"]["Quality"]["error"]
    assert "changed during the run" in error


def test_generation_starts_before_every_file_is_hashed(tmp_path, monkeypatch):
    n = 700
    inp = rows_file(tmp_path, n)
    hashed: list[str] = []
    real = plan_module._stat_and_hash

    def counting(path):
        hashed.append(str(path))
        return real(path)

    monkeypatch.setattr(plan_module, "_stat_and_hash", counting)
    seen_at_first_call: list[int] = []

    class Watching(ReplayEngine):
        def generate(self, requests, params):
            if not seen_at_first_call:
                seen_at_first_call.append(len(hashed))
            return super().generate(requests, params)

    s = judge(inp, tmp_path / "run", Watching(answer_for, batch_size=4), dimensions=["Quality"])
    assert s.computed == n and len(hashed) == n
    assert seen_at_first_call[0] <= 512 + 32 < n  # the planner's lookahead and two batches, not the whole input
    # the rerun reads the hash cache instead of the files
    hashed.clear()
    again = judge(inp, tmp_path / "run", ReplayEngine(answer_for), dimensions=["Quality"])
    assert again.reused == n and hashed == []


def test_unknown_export_format_fails_before_any_work(tmp_path):
    inp = rows_file(tmp_path, 1)
    engine = ReplayEngine(answer_for)
    with pytest.raises(ValueError, match="unknown export format"):
        judge(inp, tmp_path / "run", engine, export_formats=("csv", "pdf"))
    assert engine.calls == 0


def test_image_loading_leaves_warning_filters_alone_and_refuses_over_pillows_limit(tmp_path):
    import struct
    import zlib

    from pixeljury.data.images import ImageLoadError, open_image

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    path = tmp_path / "big.png"
    ihdr = struct.pack(">IIBBBBB", 9500, 9500, 8, 2, 0, 0, 0)  # 90.25M pixels: over Pillow's 89.5M
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b""))
    before = list(warnings.filters)
    with pytest.raises(ImageLoadError, match=r"claims 9500x9500 pixels \(over 89,478,485\)"), \
            pytest.warns(Image.DecompressionBombWarning):  # Pillow's own warning, before our refusal
        open_image(path)
    with pytest.raises(ImageLoadError, match="over 1,000"):
        open_image(tmp_path / "imgs" / "img0.png" if (tmp_path / "imgs").exists() else _small(tmp_path), max_pixels=1000)
    assert warnings.filters == before


def _small(tmp_path: Path) -> Path:
    p = tmp_path / "small.png"
    Image.new("RGB", (40, 30)).save(p)
    return p


def test_cli_exit_code_is_1_when_requests_lack_results(tmp_path):
    from typer.testing import CliRunner

    from pixeljury.cli import app

    inp = rows_file(tmp_path, 2)
    replay = tmp_path / "answers.jsonl"
    replay.write_text("")  # no recorded answers: every request ends without a result
    args = ["judge", str(inp), "--model", "replay", "--engine", "replay", "--replay-file", str(replay),
            "--rubric-file", str(CHECKLIST_FIXTURE), "--dimensions", "Quality", "--out", str(tmp_path / "run"), "-q"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 1, res.output
    assert "2 requests have no result" in res.output
    assert (tmp_path / "run" / "per_image.jsonl").is_file()


def test_export_reads_results_of_an_older_parser_again_without_the_model(tmp_path):
    inp = rows_file(tmp_path, 1)
    answer = '<think>x</think>{"Detail": {"Noise": {"score": "high"}}}'
    judge(inp, tmp_path / "run", ReplayEngine.constant(answer), dimensions=["Quality"])
    db = tmp_path / "run" / "results.sqlite"
    with sqlite3.connect(db) as conn:  # what parser version 1 stored: no version field, "all_na"
        conn.execute("""UPDATE results SET parsed = '{"status": "all_na", "n_na": 0, "invalid": []}'""")
    from typer.testing import CliRunner

    from pixeljury.cli import app

    res = CliRunner().invoke(app, ["export", str(tmp_path / "run"), "--format", "jsonl"])
    assert res.exit_code == 0, res.output
    dim = pixeljury.load_images(tmp_path / "run")[0]["dimensions"]["Quality"]
    assert dim["status"] == "parse_failure" and dim["error"].startswith("no valid score values: 1 invalid")
    bench = pixeljury.load_bench(tmp_path / "run")["in"]
    assert bench["counts"]["Quality"]["parse_failures"] == 1


def test_a_rerun_keeps_the_earlier_runs_manifest(tmp_path):
    inp = rows_file(tmp_path, 2)
    run = tmp_path / "run"
    judge(inp, run, ReplayEngine(answer_for, model_id="judge-a"), dimensions=["Quality"])
    first = json.loads((run / "manifest.json").read_text())
    judge(inp, run, ReplayEngine(answer_for, model_id="judge-a"), dimensions=["Quality"])
    second = json.loads((run / "manifest.json").read_text())
    archived = json.loads((run / second["previous_manifest"]).read_text())
    assert archived == first and second["previous_manifest"].startswith("manifests/manifest-")
    assert (second["reused"], second["computed"]) == (2, 0) and (first["reused"], first["computed"]) == (0, 2)


def test_batches_whose_every_request_errors_count_as_failed_batches(tmp_path):
    """A remote engine reports an unreachable server per request, not by raising."""
    inp = rows_file(tmp_path, 12)
    engine = ReplayEngine(lambda r: None, batch_size=2)  # every request: "no recorded answer"
    s = judge(inp, tmp_path / "run", engine, dimensions=["Quality"], max_failed_batches=2)
    assert engine.calls == 4 and s.stopped.startswith("2 batches in a row failed; last error: no recorded answer")


def test_an_interrupted_run_stops_hashing_and_keeps_the_hashes_it_made(tmp_path):
    import threading

    from pixeljury.runs.store import ResultStore

    inp = rows_file(tmp_path, 40)

    class Interrupting(ReplayEngine):
        def generate(self, requests, params):
            if self.calls >= 8:
                raise KeyboardInterrupt
            return super().generate(requests, params)

    with pytest.raises(KeyboardInterrupt):
        judge(inp, tmp_path / "run", Interrupting(answer_for, batch_size=4), dimensions=["Quality"])
    assert not [t for t in threading.enumerate() if t.name.startswith("pixeljury-hash")]
    with ResultStore.in_dir(tmp_path / "run") as store:
        cached, stored = store.cached_hashes(), store.count()
        rows = list(store.iter_rows())
    assert stored == 8 and [r["row"] for r in rows] == list(range(len(rows))) and 12 <= len(rows) < 40
    assert len(cached) >= len(rows)  # every planned row's hash, and those finished ahead of the plan


def test_a_shorter_interrupted_rerun_keeps_the_earlier_plans_tail_until_planning_completes(tmp_path):
    from pixeljury.runs.store import ResultStore

    inp = rows_file(tmp_path, 10)
    judge(inp, tmp_path / "run", ReplayEngine(answer_for), dimensions=["Quality"])
    rows = [json.loads(line) for line in inp.read_text().splitlines()][:6]
    write_jsonl(inp, rows)
    judge(inp, tmp_path / "run", ReplayEngine(answer_for), dimensions=["Quality"])
    with ResultStore.in_dir(tmp_path / "run") as store:
        assert [r["row"] for r in store.iter_rows()] == list(range(6))


def test_each_file_is_hashed_once_however_many_rows_use_it(tmp_path, monkeypatch):
    names = make_images(tmp_path / "imgs", 2)
    inp = write_jsonl(tmp_path / "in.jsonl", [{"prompt": f"p{i}", "image_path": names[i % 2]} for i in range(50)])
    hashed: list[str] = []
    real = plan_module._stat_and_hash
    monkeypatch.setattr(plan_module, "_stat_and_hash", lambda p: hashed.append(str(p)) or real(p))
    s = judge(inp, tmp_path / "run", ReplayEngine(answer_for), dimensions=["Quality"])
    assert s.computed == 50 and sorted(hashed) == sorted(str(tmp_path / n) for n in names)


def test_a_stale_cached_hash_is_corrected_so_the_next_run_judges_the_new_file(tmp_path):
    target = tmp_path / "img.bmp"  # BMP: same size on disk for any content of the same dimensions
    Image.new("RGB", (40, 30), (1, 1, 1)).save(target)
    inp = write_jsonl(tmp_path / "in.jsonl", [{"prompt": "p", "image_path": "img.bmp"}])
    judge(inp, tmp_path / "run", ReplayEngine(answer_for), dimensions=["Quality"])  # caches the hash
    st = os.stat(target)
    Image.new("RGB", (40, 30), (200, 9, 9)).save(target)
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size and mtime, as `cp -p` leaves it
    assert os.stat(target).st_size == st.st_size
    # A request not stored yet is decoded: the content no longer matches the cached hash.
    first = judge(inp, tmp_path / "run", ReplayEngine(answer_for), dimensions=["Alignment"])
    assert first.failed == 1
    assert "changed during the run" in pixeljury.load_images(tmp_path / "run")[0]["dimensions"]["Alignment"]["error"]
    second = judge(inp, tmp_path / "run", ReplayEngine(answer_for), dimensions=["Alignment"])
    assert second.complete and second.computed == 1
    from pixeljury.data.images import sha256_file

    assert pixeljury.load_images(tmp_path / "run")[0]["image_sha256"] == sha256_file(target)
