"""`judge --dry-run --save-images`: the images a run would send, without a model; and the parity flag."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

import pixeljury
from pixeljury.data import images as images_module
from pixeljury.data.images import PixelParity
from pixeljury.data.parity_patterns import pattern
from pixeljury.engines.replay import ReplayEngine
from pixeljury.rubric.taxonomy import TREE

from pj_testpaths import CHECKLIST_FIXTURE, GOLDEN_IMAGES, subprocess_env
from test_image_parity import GOLDEN_PILLOW_11_3


def _inputs(tmp_path: Path) -> Path:
    (tmp_path / "imgs").mkdir()
    pattern(1080, 1920).save(tmp_path / "imgs" / "portrait.png")
    # A transparent image: what is sent is its RGB conversion (over white), not the file.
    Image.new("RGBA", (40, 30), (10, 20, 30, 0)).save(tmp_path / "imgs" / "small.png")
    rows = [{"prompt": "a tall tower", "image_path": "imgs/portrait.png", "model": "m"},
            {"prompt": "a small thing", "image_path": "imgs/small.png", "model": "m"}]
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _said(res: subprocess.CompletedProcess) -> str:
    return " ".join(res.stderr.split())  # rich wraps long lines


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pixeljury", "judge", *args], capture_output=True, text=True,
                          env=subprocess_env(), timeout=120)


@pytest.mark.slow
def test_dry_run_saves_exactly_the_images_it_would_send_without_a_model(tmp_path):
    inp = _inputs(tmp_path)
    out, saved = tmp_path / "dry", tmp_path / "seen"
    res = _cli(str(inp), "--out", str(out), "--rubric-file", str(CHECKLIST_FIXTURE), "--dry-run",
               "--dimensions", "Quality,Real-world Fidelity", "--save-images", str(saved), "--quiet")
    assert res.returncode == 0, res.stderr
    names = sorted(p.name for p in saved.iterdir())
    assert names == ["row00000_Quality.png", "row00000_Real-world_Fidelity.png",
                     "row00001_Quality.png", "row00001_Real-world_Fidelity.png"]
    portrait = Image.open(saved / "row00000_Quality.png")
    assert portrait.format == "PNG" and portrait.mode == "RGB" and portrait.size == (1024, 1024)
    assert hashlib.sha256(portrait.tobytes()).hexdigest() == GOLDEN_PILLOW_11_3["1080x1920"]
    small = Image.open(saved / "row00001_Quality.png")
    assert small.mode == "RGB" and small.size == (40, 30)
    assert small.getpixel((0, 0)) == (255, 255, 255)  # transparent: composited over white, as sent
    lines = [json.loads(l) for l in (out / "requests.jsonl").read_text().splitlines()]
    assert [(l["row"], l["dimension"]) for l in lines] == [(0, "Quality"), (0, "Real-world Fidelity"),
                                                           (1, "Quality"), (1, "Real-world Fidelity")]
    assert lines[1]["user"][1]["saved_as"] == str(saved / "row00000_Real-world_Fidelity.png")
    assert "images as the judge would see them" in res.stdout


@pytest.mark.slow
def test_model_is_required_only_for_a_real_run_and_save_images_only_for_a_dry_run(tmp_path):
    inp = _inputs(tmp_path)
    res = _cli(str(inp), "--out", str(tmp_path / "o"), "--rubric-file", str(CHECKLIST_FIXTURE), "--quiet")
    assert res.returncode == 2 and "--model is required" in _said(res)
    res = _cli(str(inp), "--model", "x/y", "--out", str(tmp_path / "o"), "--save-images", str(tmp_path / "s"))
    assert res.returncode == 2 and "--save-images goes with --dry-run" in _said(res)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    res = _cli(str(inp), "--out", str(tmp_path / "o"), "--rubric-file", str(CHECKLIST_FIXTURE), "--dry-run",
               "--save-images", str(blocker))
    assert res.returncode == 2 and f"cannot write images to {blocker}" in _said(res)


def _answer(req) -> str:
    dim = req.request_id.split(":", 1)[0]
    return json.dumps({l2: {l3: {"score": 2} for l3 in l3s} for l2, l3s in TREE[dim].items()})


def _benchmark_run(tmp_path: Path, metadata_path: Path, out: Path):
    """One benchmark row (ID 101 of the in-repo metadata) on one in-repo drawing, judged by a replay engine."""
    (tmp_path / "imgs").mkdir(exist_ok=True)
    shutil.copyfile(GOLDEN_IMAGES / "painter-faithful-0.png", tmp_path / "imgs" / "a.png")
    inp = tmp_path / "bench.jsonl"
    inp.write_text(json.dumps({"ID": 101, "prompt": "A red circle above a blue square on a white background",
                               "image_path": "imgs/a.png", "model": "A"}) + "\n")
    return pixeljury.judge(inp, out=out, engine=ReplayEngine(_answer), metadata=metadata_path,
                           rubric_file=CHECKLIST_FIXTURE, retry_wait=0.0)


def _read(out: Path) -> tuple[dict, dict, dict]:
    record = json.loads((out / "per_image.jsonl").read_text().splitlines()[0])
    bench = json.loads(next((out / "bench").glob("*.json")).read_text())
    return record, bench, json.loads((out / "manifest.json").read_text())


def test_runs_are_marked_not_comparable_when_pixel_parity_fails(tmp_path, golden_metadata, monkeypatch):
    # With the fixture rubric the run is already not comparable; pretend it is the official one.
    import dataclasses

    from pixeljury.runs import judge as judge_module

    resolve = judge_module.resolve_rubric
    monkeypatch.setattr(judge_module, "resolve_rubric", lambda *a: dataclasses.replace(resolve(*a), comparable=True))
    _benchmark_run(tmp_path, golden_metadata, tmp_path / "ok")
    record, bench, manifest = _read(tmp_path / "ok")
    # The in-repo metadata was read: ID 101 asks for Alignment and Aesthetics only.
    assert record["ID"] == 101 and sorted(record["dimensions"]) == sorted(bench["level1"]) == ["Aesthetics", "Alignment"]
    assert record["image_sha256"] == hashlib.sha256((GOLDEN_IMAGES / "painter-faithful-0.png").read_bytes()).hexdigest()
    assert record["comparable"] is True and bench["comparable"] is True
    assert manifest["image_parity"]["ok"] is True and manifest["pillow"]

    broken = PixelParity(False, "99.0", "Pillow 99.0 resizes differently from Pillow 11.3.0")
    monkeypatch.setattr("pixeljury.runs.judge.pixel_parity", lambda: broken)
    _benchmark_run(tmp_path, golden_metadata, tmp_path / "broken")
    record, bench, manifest = _read(tmp_path / "broken")
    assert record["status"] == "ok" and sorted(record["dimensions"]) == ["Aesthetics", "Alignment"]
    assert record["comparable"] is False and bench["comparable"] is False
    assert manifest["image_parity"] == broken.as_dict()


def test_results_resized_the_old_way_are_not_reused():
    # The preprocessing name is part of every result key; it changed with the horizontal-first resize.
    from pixeljury.engines.base import GenerationParams
    from pixeljury.runs.plan import KeyContext

    ctx = KeyContext("m", None, "r" * 64, GenerationParams(), "rgb-lanczos-hfirst-1024-square")
    old = KeyContext("m", None, "r" * 64, GenerationParams(), "rgb-lanczos-1024-square")
    assert ctx.key_fields("s", "p", "Quality") != old.key_fields("s", "p", "Quality")
    assert images_module.pixel_parity().ok
