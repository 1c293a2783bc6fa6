"""`judge --dry-run` at scale: each distinct text written once, rows naming it by id; the requests
read back whole; each distinct image decoded once; progress on stderr unless --quiet."""

from __future__ import annotations

import errno
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from pixeljury.rubric import resolve_rubric
from pixeljury.runs import dryrun as dryrun_module
from pixeljury.runs import requests_file
from pixeljury.runs.dryrun import dry_run
from pixeljury.runs.faults import CannotWrite
from pixeljury.runs.judge import JudgeConfig
from pixeljury.runs.requests_file import RequestsFileError, expand, read_requests, texts_path

from pj_testpaths import CHECKLIST_FIXTURE, subprocess_env

DIMS = ["Quality", "Aesthetics"]


def _input(tmp_path: Path, rows: int, images: int = 3, prompts: int | None = None) -> Path:
    (tmp_path / "imgs").mkdir(exist_ok=True)
    for i in range(images):
        Image.new("RGB", (30 + i, 20), (i * 40, 90, 10)).save(tmp_path / "imgs" / f"{i}.png")
    prompts = prompts or rows
    inp = tmp_path / "in.jsonl"
    inp.write_text("".join(json.dumps({"prompt": f"prompt {r % prompts}", "image_path": f"imgs/{r % images}.png",
                                       "model": f"m{r}"}) + "\n" for r in range(rows)), encoding="utf-8")
    return inp


def _dry(tmp_path: Path, inp: Path, **kw) -> tuple[Path, int, int]:
    dest = tmp_path / "dry" / "requests.jsonl"
    config = JudgeConfig(input=inp, out=dest.parent, rubric_file=CHECKLIST_FIXTURE, dimensions=DIMS, quiet=True, **kw)
    written, skipped = dry_run(config, None, None, dest)
    return dest, written, skipped


def _lines(path: Path) -> list[dict]:
    return [json.loads(l) for l in path.read_text(encoding="utf-8").splitlines()]


def test_each_distinct_text_is_written_once_and_requests_read_back_whole(tmp_path):
    inp = _input(tmp_path, rows=40, images=3, prompts=10)
    dest, written, skipped = _dry(tmp_path, inp)
    assert (written, skipped) == (80, 0)
    lines = _lines(dest)
    assert len(lines) == 80 and set(lines[0]) == {"row", "ID", "model", "dimension", "system_id", "user"}
    texts = _lines(texts_path(dest))
    # One system prompt, one text per prompt before the image, one per dimension after it.
    assert len(texts) == 1 + 10 + len(DIMS)
    assert len({t["text_id"] for t in texts}) == len(texts)
    for t in texts:
        assert hashlib.sha256(t["text"].encode()).hexdigest()[:16] == t["text_id"]

    rubric = resolve_rubric("official", str(CHECKLIST_FIXTURE))
    requests = list(read_requests(dest))
    assert [(r["row"], r["dimension"]) for r in requests] == [(row, d) for row in range(40) for d in DIMS]
    for r in requests:
        before, after = rubric.user_parts(f"prompt {r['row'] % 10}", r["dimension"])
        assert set(r) == {"row", "ID", "model", "dimension", "system", "user"}
        assert r["system"] == rubric.system_prompt and r["model"] == f"m{r['row']}" and r["ID"] is None
        text1, image, text2 = r["user"]
        assert text1 == {"type": "text", "text": before} and text2 == {"type": "text", "text": after}
        assert image["type"] == "image" and (image["width"], image["height"]) == (30 + r["row"] % 3, 20)
        assert image["sha256"] == hashlib.sha256((tmp_path / "imgs" / f"{r['row'] % 3}.png").read_bytes()).hexdigest()
        # Expanded, it is the line earlier versions wrote, key order included.
        assert requests_file.expanded_line(r) == json.dumps(
            {"row": r["row"], "ID": None, "model": r["model"], "dimension": r["dimension"],
             "system": rubric.system_prompt,
             "user": [{"type": "text", "text": before}, {"type": "image", "sha256": image["sha256"],
                                                         "width": image["width"], "height": image["height"]},
                      {"type": "text", "text": after}]}, ensure_ascii=False) + "\n"
    assert not list(dest.parent.glob("*.tmp"))


def test_the_files_grow_with_distinct_texts_not_with_rows_times_rubric(tmp_path):
    sizes = {}
    for rows in (50, 500):
        folder = tmp_path / str(rows)
        folder.mkdir()
        dest, written, _ = _dry(folder, _input(folder, rows=rows, prompts=5))
        sizes[rows] = (dest.stat().st_size, texts_path(dest).stat().st_size, written)
    assert sizes[50][1] == sizes[500][1]  # the same distinct texts
    per_request = sizes[500][0] / sizes[500][2]
    rubric_text = max(len(t["text"]) for t in _lines(texts_path(tmp_path / "500" / "dry" / "requests.jsonl")))
    assert per_request < 400 < rubric_text  # a line names its texts; it does not repeat them


def test_each_distinct_image_is_decoded_once(tmp_path, monkeypatch):
    calls: list[Path] = []
    real = dryrun_module.load_for_judge

    def counting(path, **kw):
        calls.append(path)
        return real(path, **kw)

    monkeypatch.setattr(dryrun_module, "load_for_judge", counting)
    _, written, _ = _dry(tmp_path, _input(tmp_path, rows=60, images=4))
    assert written == 120 and len(calls) == 4


def test_unreadable_and_duplicate_rows_are_skipped_as_before(tmp_path):
    inp = _input(tmp_path, rows=3, images=3)
    (tmp_path / "imgs" / "1.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    rows = _lines(inp) + [{"prompt": "prompt 0", "image_path": "imgs/0.png", "model": "m0"},  # duplicate of row 0
                          {"prompt": "x", "image_path": "imgs/missing.png", "model": "m"}]
    inp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    dest, written, skipped = _dry(tmp_path, inp)
    assert (written, skipped) == (4, 3)
    assert sorted({r["row"] for r in read_requests(dest)}) == [0, 2]


def test_a_disk_that_refuses_writes_is_one_error_and_the_earlier_files_stay(tmp_path, monkeypatch):
    inp = _input(tmp_path, rows=4)
    dest, _, _ = _dry(tmp_path, inp)
    before = dest.read_bytes(), texts_path(dest).read_bytes()

    def full(self, **kw):
        raise OSError(errno.ENOSPC, "No space left on device", str(dest) + ".123.tmp")

    monkeypatch.setattr(requests_file.RequestWriter, "write", full)
    with pytest.raises(CannotWrite) as caught:
        _dry(tmp_path, inp)
    assert (caught.value.path, caught.value.reason, caught.value.full) == (dest, "no space left on device", True)
    assert (dest.read_bytes(), texts_path(dest).read_bytes()) == before
    assert sorted(p.name for p in dest.parent.iterdir()) == ["request_texts.jsonl", "requests.jsonl"]


@pytest.mark.slow
def test_a_full_disk_in_a_dry_run_process_is_one_line_and_exit_3(tmp_path):
    inp = _input(tmp_path, rows=2)
    res = subprocess.run([sys.executable, "-m", "pixeljury", "judge", str(inp), "--out", str(tmp_path / "dry"),
                          "--rubric-file", str(CHECKLIST_FIXTURE), "--dry-run", "--quiet"], capture_output=True,
                         text=True, env={**subprocess_env(), "PIXELJURY_FAULT": "ENOSPC@request_texts.jsonl.*"},
                         timeout=120)
    said = [line for line in res.stderr.splitlines() if line.strip()]
    assert res.returncode == 3 and len(said) == 1 and "Traceback" not in res.stderr, res.stderr
    assert f"cannot write {tmp_path / 'dry' / 'request_texts.jsonl'}: no space left on device" in said[0]
    assert not list((tmp_path / "dry").iterdir())


def test_temporaries_of_a_killed_dry_run_are_removed_by_the_next(tmp_path):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a process that no longer exists
    (tmp_path / "dry").mkdir()
    stale = tmp_path / "dry" / f"requests.jsonl.{gone.pid}.tmp"
    stale.write_text("half a file")
    _dry(tmp_path, _input(tmp_path, rows=2))
    assert not stale.exists()


def test_texts_are_checked_against_their_ids_and_missing_texts_are_named(tmp_path):
    dest, _, _ = _dry(tmp_path, _input(tmp_path, rows=2))
    texts = texts_path(dest)
    original = texts.read_text(encoding="utf-8")
    texts.write_text(original.replace("# Prompt", "# Prompt!", 1), encoding="utf-8")
    with pytest.raises(RequestsFileError, match="does not match its id"):
        list(read_requests(dest))
    texts.write_text("".join(l + "\n" for l in original.splitlines()[1:]), encoding="utf-8")
    with pytest.raises(RequestsFileError, match="is not in request_texts.jsonl"):
        list(read_requests(dest))
    texts.unlink()
    with pytest.raises(RequestsFileError, match="request_texts.jsonl is missing"):
        list(read_requests(dest))


def test_older_self_contained_files_are_read_as_they_are(tmp_path):
    old = {"row": 0, "ID": 3, "model": "m", "dimension": "Quality", "system": "sys",
           "user": [{"type": "text", "text": "a"}, {"type": "image", "sha256": "0" * 64, "width": 1, "height": 1},
                    {"type": "text", "text": "b"}]}
    path = tmp_path / "requests.jsonl"
    path.write_text(json.dumps(old, ensure_ascii=False) + "\n", encoding="utf-8")
    assert list(read_requests(path)) == [old]


def test_ids_that_share_their_first_digits_fall_back_to_the_full_hash(tmp_path, monkeypatch):
    monkeypatch.setattr(requests_file, "SHORT_ID", 1)  # 16 possible short ids: collisions are certain
    inp = _input(tmp_path, rows=40)
    dest, _, _ = _dry(tmp_path, inp)
    ids = [t["text_id"] for t in _lines(texts_path(dest))]
    assert len(set(ids)) == len(ids) and any(len(i) == 64 for i in ids)
    assert [r["user"][0]["text"] for r in read_requests(dest)][::2] == [
        resolve_rubric("official", str(CHECKLIST_FIXTURE)).user_parts(f"prompt {i}", "Quality")[0] for i in range(40)]


@pytest.mark.slow
def test_the_cli_shows_progress_on_stderr_unless_quiet_and_expands_byte_for_byte(tmp_path):
    inp = _input(tmp_path, rows=5)
    cmd = [sys.executable, "-m", "pixeljury", "judge", str(inp), "--rubric-file", str(CHECKLIST_FIXTURE),
           "--dimensions", ",".join(DIMS), "--dry-run"]
    loud = subprocess.run(cmd + ["--out", str(tmp_path / "a")], capture_output=True, text=True,
                          env=subprocess_env(), timeout=120)
    assert loud.returncode == 0, loud.stderr
    assert "dry run: rows" in loud.stderr and "5/5" in loud.stderr and "10 requests" in loud.stderr
    quiet = subprocess.run(cmd + ["--out", str(tmp_path / "b"), "--quiet"], capture_output=True, text=True,
                           env=subprocess_env(), timeout=120)
    assert quiet.returncode == 0 and quiet.stderr == ""
    assert "10 requests written" in quiet.stdout
    full = subprocess.run([sys.executable, "-m", "pixeljury.runs.requests_file",
                           str(tmp_path / "b" / "requests.jsonl")], capture_output=True, env=subprocess_env(), timeout=120)
    assert full.returncode == 0
    with open(tmp_path / "expanded.jsonl", "w", encoding="utf-8") as fh:
        expand(tmp_path / "b" / "requests.jsonl", fh)
    assert full.stdout == (tmp_path / "expanded.jsonl").read_bytes()
    assert full.stdout == "".join(json.dumps(r, ensure_ascii=False) + "\n"
                                  for r in read_requests(tmp_path / "b" / "requests.jsonl")).encode()
