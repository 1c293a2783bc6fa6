"""Inputs that used to hang or crash a run: named pipes and devices as images, NUL bytes in paths,
JSON and rubric files nested too deeply. Each is one row's error (or a clear error for the file)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from PIL import Image

import pixeljury
from pixeljury.data.images import ImageLoadError, open_image, sha256_file
from pixeljury.data.inputs import InputError, read_rows
from pixeljury.engines.replay import ReplayEngine
from pixeljury.rubric import RubricError
from pixeljury.rubric.official import read_checklist_file
from pixeljury.rubric.taxonomy import TREE

from pj_testpaths import CHECKLIST_FIXTURE, subprocess_env

needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes need a POSIX system")


def _answer(req) -> str:
    dim = req.request_id.split(":", 1)[0]
    return json.dumps({l2: {l3: {"score": 1} for l3 in l3s} for l2, l3s in TREE[dim].items()})


def _rows(tmp_path: Path, bad_path: str) -> Path:
    Image.new("RGB", (30, 20), (9, 9, 9)).save(tmp_path / "good.png")
    rows = [{"prompt": "bad", "image_path": bad_path, "model": "M"},
            {"prompt": "good", "image_path": "good.png", "model": "M"}]
    inp = tmp_path / "in.jsonl"
    inp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return inp


def _judge_within(seconds: float, inp: Path, out: Path):
    """Run the judge in a thread; a hang fails the test instead of blocking the suite."""
    result: dict = {}

    def target():
        try:
            result["summary"] = pixeljury.judge(inp, out=out, engine=ReplayEngine(_answer), rubric_file=CHECKLIST_FIXTURE,
                                                dimensions=["Quality"], retry_wait=0.0)
        except BaseException as exc:  # noqa: BLE001 - handed to the test below
            result["error"] = exc

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), f"the run did not finish within {seconds} s"
    if "error" in result:
        raise result["error"]
    return result["summary"], [json.loads(l) for l in (out / "per_image.jsonl").read_text().splitlines()]


@needs_fifo
def test_a_named_pipe_is_a_row_error_and_nothing_blocks(tmp_path):
    os.mkfifo(tmp_path / "pipe.png")  # nobody ever writes to it: reading would block forever
    summary, records = _judge_within(60, _rows(tmp_path, "pipe.png"), tmp_path / "run")
    assert records[0]["status"] == "row_error"
    assert records[0]["errors"] == [f"image path {tmp_path / 'pipe.png'} is a named pipe, not a regular file"]
    assert records[1]["status"] == "ok" and records[1]["scores"]["total"] == 60.0
    assert summary.row_errors == 1


@needs_fifo
def test_a_named_pipe_in_a_dry_run_process_does_not_hang(tmp_path):
    os.mkfifo(tmp_path / "pipe.png")
    inp = _rows(tmp_path, "pipe.png")
    res = subprocess.run([sys.executable, "-m", "pixeljury", "judge", str(inp), "--out", str(tmp_path / "dry"),
                          "--rubric-file", str(CHECKLIST_FIXTURE), "--dimensions", "Quality", "--dry-run"],
                         capture_output=True, text=True, env=subprocess_env(), timeout=120)
    assert res.returncode == 0, res.stderr
    assert "1 requests written" in res.stdout and "(1 rows skipped)" in res.stdout
    assert "named pipe" in " ".join(res.stderr.split())


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
def test_a_device_is_refused_before_a_byte_is_read(tmp_path):
    with pytest.raises(ImageLoadError, match="is a character device, not a regular file"):
        sha256_file(Path("/dev/zero"))  # would hash without end
    with pytest.raises(ImageLoadError, match="character device"):
        open_image(Path("/dev/zero"))
    summary, records = _judge_within(60, _rows(tmp_path, "/dev/zero"), tmp_path / "run")
    assert records[0]["status"] == "row_error" and "character device" in records[0]["errors"][0]
    assert records[1]["scores"]["total"] == 60.0


def test_a_directory_is_a_row_error(tmp_path):
    (tmp_path / "folder.png").mkdir()
    _, records = _judge_within(60, _rows(tmp_path, "folder.png"), tmp_path / "run")
    assert records[0]["errors"] == [f"image path {tmp_path / 'folder.png'} is a directory, not a regular file"]


def test_a_nul_byte_in_a_path_is_a_row_error_naming_the_row(tmp_path):
    summary, records = _judge_within(60, _rows(tmp_path, "bad\x00name.png"), tmp_path / "run")
    assert records[0]["status"] == "row_error"
    assert records[0]["errors"] == ['image_path "bad\\u0000name.png" contains a NUL byte']
    assert records[1]["status"] == "ok" and records[1]["scores"]["total"] == 60.0


def test_json_input_nested_too_deeply_is_a_clear_error(tmp_path):
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(InputError, match="nests arrays or objects too deeply"):
        read_rows(deep)
    lines = tmp_path / "deep.jsonl"
    lines.write_text('{"prompt": "a", "image_path": "b"}\n' + '{"x": ' + "[" * 100_000 + "]" * 100_000 + "}\n")
    with pytest.raises(InputError, match="line 2 nests arrays or objects too deeply"):
        read_rows(lines)
    res = subprocess.run([sys.executable, "-m", "pixeljury", "judge", str(deep), "--dry-run", "--rubric-file",
                          str(CHECKLIST_FIXTURE), "--out",
                          str(tmp_path / "o")], capture_output=True, text=True, env=subprocess_env(), timeout=120)
    assert res.returncode == 2 and "Traceback" not in res.stderr and "too deeply" in res.stderr


def test_rubric_expressions_nested_too_deeply_are_a_rubric_error():
    long_chain = b"QUALITY_CHECKLIST = " + b" + ".join([b'"x"'] * 50_000) + b"\n"
    try:
        strings = read_checklist_file(long_chain)["strings"]
    except RubricError as exc:  # the parser itself may refuse the depth, with a clear message
        assert "too deeply" in str(exc)
    else:
        assert strings["QUALITY_CHECKLIST"] == "x" * 50_000  # read without recursion
    parens = b"QUALITY_CHECKLIST = " + b"(" * 100_000 + b'"x"' + b")" * 100_000 + b"\n"
    with pytest.raises(RubricError, match="too deeply|not valid Python"):
        read_checklist_file(parens)
    with pytest.raises(RubricError, match="not valid Python"):
        read_checklist_file(b'A = "x"\x00\n')


def test_image_paths_are_absolute_whatever_the_working_directory(tmp_path, monkeypatch):
    (tmp_path / "sub").mkdir()
    inp = tmp_path / "sub" / "in.jsonl"
    inp.write_text(json.dumps({"prompt": "p", "image_path": "imgs/a.png"}) + "\n")
    monkeypatch.chdir(tmp_path)
    (row,) = read_rows(Path("sub/in.jsonl"))
    assert row.image_path == tmp_path / "sub" / "imgs" / "a.png" and row.image_path.is_absolute()


@pytest.mark.parametrize("args, said", [
    (["--dimensions", ""], "--dimensions names no dimension"),
    (["--dimensions", " , "], "--dimensions names no dimension"),
    (["--out", "{file}"], "is an existing file, not a directory"),
])
def test_usage_errors_exit_2_with_one_line(tmp_path, args, said):
    inp = _rows(tmp_path, "good.png")
    existing = tmp_path / "a-file"
    existing.write_text("")
    args = [a.replace("{file}", str(existing)) for a in args]
    res = subprocess.run([sys.executable, "-m", "pixeljury", "judge", str(inp), "--dry-run", "--rubric-file",
                          str(CHECKLIST_FIXTURE), *(["--out", str(tmp_path / "o")] if "--out" not in args else []),
                          *args], capture_output=True, text=True, env=subprocess_env(), timeout=120)
    assert res.returncode == 2 and said in " ".join(res.stderr.split()) and "Traceback" not in res.stderr
