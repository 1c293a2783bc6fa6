"""A full disk or a read-only output directory: one line naming the path and what to do, exit 3, no
traceback, and nothing already computed lost (outputs not truncated, stored results kept).

Each case runs real processes twice where it can: on a real tiny tmpfs (full, or remounted read-only)
inside a user namespace, and with the fault-injection hook (docs/runs.md) that CI without user
namespaces falls back on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from _fault_scenarios import modes, one_line, run_scenario
from pj_testpaths import CHECKLIST_FIXTURE

pytestmark = pytest.mark.slow


def _inputs(tmp_path: Path, n: int) -> Path:
    rows = []
    for i in range(n):
        Image.new("RGB", (24, 16), (i, 2 * i, 3)).save(tmp_path / f"{i}.png")
        rows.append({"prompt": f"a picture number {i} " + "with words " * 20, "image_path": f"{i}.png", "model": "M"})
    inp = tmp_path / "in.jsonl"
    inp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return inp


def _judge(inp: Path, run: str, *extra: str) -> list[str]:
    return ["judge", str(inp), "--model", "x", "--out", run, "--rubric-file", str(CHECKLIST_FIXTURE), "--quiet", *extra]


def _outputs(snapshot: dict) -> dict:
    """The outputs and the manifest (not the store): what must never be truncated or switched half."""
    return {k: v for k, v in snapshot["files"].items() if not k.startswith("manifests/")}


@pytest.mark.parametrize("mode", modes())
def test_a_disk_that_fills_during_a_run_keeps_every_saved_result_and_the_earlier_outputs(tmp_path, mode):
    inp = _inputs(tmp_path, 6)
    run = str(tmp_path / "disk" / "run")
    steps = [
        {"run": _judge(inp, run, "--dimensions", "Quality")},  # run A, finished
        {"snapshot": "A"},
        # run B (other settings): the disk fills at its third request
        {"run": _judge(inp, run, "--dimensions", "Alignment"), "env": {"PJ_FILL_AT": "3"},
         "hook": "ENOSPC@results.sqlite#7"},
        {"snapshot": "after"},
        {"unfill": True},
        {"run": _judge(inp, run, "--dimensions", "Alignment")},
        {"snapshot": "final"},
    ]
    a, snap_a, full, after, again, final = run_scenario(tmp_path, mode, steps)
    assert a["rc"] == 0, a["stderr"]
    said = one_line(full["stderr"])
    assert full["rc"] == 3
    assert said.startswith(f"error: cannot write {run}/results.sqlite: no space left on device.")
    saved = int(said.split(". ", 1)[1].split(" results are saved")[0]) - 6  # the store also holds run A's 6
    assert 1 <= saved < 6
    assert f"results are saved in {run}/results.sqlite; the outputs from before this run are unchanged." in said
    assert "Free space on the disk holding" in said and "then rerun the same command to continue" in said
    assert _outputs(after) == {**_outputs(snap_a), "manifest.running.json": after["files"]["manifest.running.json"]}
    assert after["manifest"] == snap_a["manifest"]  # manifest.json still describes the outputs there
    # Space again: the rerun computes only what the full disk interrupted.
    assert again["rc"] == 0, again["stderr"]
    assert f"requests: 6 (reused {saved}, computed {6 - saved}" in again["stdout"]
    assert final["manifest"]["status"] == "complete" and final["manifest"]["config"]["dimensions"] == ["Alignment"]
    assert not any(name.endswith(".tmp") for name in final["files"])


@pytest.mark.parametrize("mode", modes())
def test_a_full_disk_during_an_export_leaves_the_outputs_whole_and_no_temporary_files(tmp_path, mode):
    inp = _inputs(tmp_path, 40)
    run = str(tmp_path / "disk" / "run")
    steps = [
        {"run": _judge(inp, run, "--dimensions", "Quality")},
        {"snapshot": "A"},
        {"fill": 48 * 1024},  # room for the store's own files, not for the outputs
        {"run": ["export", run, "--format", "jsonl,csv,parquet,xlsx"], "hook": "ENOSPC@per_image.csv.*"},
        {"snapshot": "after"},
    ]
    a, snap_a, export, after = run_scenario(tmp_path, mode, steps, size_kib=8192)
    assert a["rc"] == 0, a["stderr"]
    said = one_line(export["stderr"])
    assert export["rc"] == 3
    assert said.startswith(f"error: cannot write {run}") and "no space left on device; the outputs are as they were." in said
    assert f"then run `pixeljury export {run}` again." in said
    assert after["files"] == snap_a["files"]  # byte for byte, and no temporary file left behind


def test_a_run_whose_outputs_cannot_be_written_says_every_result_is_saved(tmp_path):
    inp = _inputs(tmp_path, 4)
    run = str(tmp_path / "disk" / "run")
    steps = [
        {"run": _judge(inp, run, "--dimensions", "Quality")},
        {"snapshot": "A"},
        {"run": _judge(inp, run, "--dimensions", "Alignment"), "hook": "ENOSPC@per_image.jsonl.*"},
        {"snapshot": "after"},
        {"run": _judge(inp, run, "--dimensions", "Alignment")},
        {"snapshot": "final"},
    ]
    _, snap_a, full, after, again, final = run_scenario(tmp_path, "hook", steps)
    said = one_line(full["stderr"])
    assert full["rc"] == 3
    assert said.startswith(f"error: cannot write {run}/per_image.jsonl: no space left on device. The run finished:")
    assert f"The run finished: all 8 results are saved in {run}/results.sqlite" in said  # run A's 4 and these 4
    assert f"then run `pixeljury export {run}` (or rerun the same command)." in said
    assert _outputs(after) == {**_outputs(snap_a), "manifest.running.json": after["files"]["manifest.running.json"]}
    assert again["rc"] == 0 and "requests: 4 (reused 4, computed 0" in again["stdout"]
    assert final["manifest"]["config"]["dimensions"] == ["Alignment"] and "manifest.running.json" not in final["files"]


@pytest.mark.parametrize("mode", modes())
def test_a_read_only_run_directory_changes_nothing_and_says_what_to_do(tmp_path, mode):
    inp = _inputs(tmp_path, 3)
    run = str(tmp_path / "disk" / "run")
    report = str(tmp_path / "disk" / "report.html")
    steps = [
        {"run": _judge(inp, run, "--dimensions", "Quality")},
        {"snapshot": "A"},
        {"ro": True},
        {"run": _judge(inp, run, "--dimensions", "Alignment"), "hook": "EROFS@*"},
        {"run": ["export", run], "hook": "EROFS@*"},
        {"run": ["report", run, "--out", report, "--bootstrap", "0"], "hook": "EROFS@*"},
        {"snapshot": "after"},
    ]
    _, snap_a, judge, export, report_res, after = run_scenario(tmp_path, mode, steps)
    said = one_line(judge["stderr"])
    assert judge["rc"] == 3
    assert said == (f"error: cannot write {run}/.lock: read-only file system; nothing was changed. Make {run} "
                    "writable (or use another output directory), then rerun the same command.")
    said = one_line(export["stderr"])
    assert export["rc"] == 3 and said.startswith(f"error: cannot write {run}/.lock: read-only file system; the "
                                                 "outputs are as they were.")
    said = one_line(report_res["stderr"])
    assert report_res["rc"] == 3 and "read-only file system" in said and f"{report} was not written" in said
    assert after["files"] == snap_a["files"]


def test_a_read_only_parent_of_a_new_run_directory_is_one_line(tmp_path):
    inp = _inputs(tmp_path, 1)
    run = str(tmp_path / "disk" / "new" / "run")
    steps = [{"run": _judge(inp, run, "--dimensions", "Quality"), "hook": "EROFS@.lock"}]
    (res,) = run_scenario(tmp_path, "hook", steps)
    assert res["rc"] == 3
    assert one_line(res["stderr"]).startswith(f"error: cannot write {run}/.lock: read-only file system; nothing")
