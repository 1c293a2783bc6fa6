from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from metrics_tiny import random_images, save_tiny_clip
from pixeljury.metrics.registry import load_metric
from pixeljury.runs.store import ResultStore

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def _input_file(tmp_path: Path) -> Path:
    paths = []
    for i, img in enumerate(random_images(4, seed=9)):
        paths.append(tmp_path / f"img{i}.png")
        img.save(paths[-1])
    rows = [
        {"prompt": "a red cube", "image_path": "img0.png", "model": "A"},
        {"prompt": "a red cube", "image_path": "img1.png", "model": "B"},
        {"prompt": "two cats", "image_path": "img2.png", "model": "A"},
        {"prompt": "two cats", "image_path": "missing.png", "model": "B"},
        {"prompt": "two cats", "image_path": "img3.png", "model": "C"},
    ]
    path = tmp_path / "input.csv"
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["prompt", "image_path", "model"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_score_command_writes_the_run_store_and_skips_on_rerun(tmp_path):
    clip_dir = save_tiny_clip(tmp_path / "clip", seed=1)
    input_path = _input_file(tmp_path)
    out = tmp_path / "run"
    args = ["score", str(input_path), "--metric", "clipscore,pickscore", "--out", str(out), "--device", "cpu",
            "--batch-size", "2", "--weights", f"clipscore={clip_dir}", "--weights", f"pickscore={clip_dir}"]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run([sys.executable, "-m", "pixeljury", *args], capture_output=True, text=True, env=env)
    assert proc.returncode == 1, proc.stderr  # one row failed
    assert "clipscore@hessel-2.5x: 4 scored, 0 already stored, 1 failed" in proc.stdout
    assert "row 3: image file " in proc.stderr and "missing.png does not exist" in proc.stderr

    with ResultStore.in_dir(out) as store:
        records = list(store.iter_results("metric:pickscore"))
        assert len(records) == 4 and {r.dimension for r in records} == {"pickscore@x-logit-scale"}
        fields = records[0].key_fields
        assert {"image_sha256", "prompt", "metric", "convention", "weights"} <= set(fields)
        assert fields["weights"].startswith("local:")
        assert any(f["row_index"] == 3 for f in store.failures())

    lines = [json.loads(line) for line in (out / "scores.jsonl").read_text().splitlines()]
    assert lines[3]["clipscore@hessel-2.5x"] is None and lines[3]["image_sha256"] is None
    direct = load_metric("clipscore", weights=str(clip_dir), device="cpu")
    expected = direct.score(["a red cube", "a red cube", "two cats", "two cats"],
                            [tmp_path / f"img{i}.png" for i in range(4)])
    got = [lines[i]["clipscore@hessel-2.5x"] for i in (0, 1, 2, 4)]
    np.testing.assert_allclose(got, [r.value for r in expected], rtol=1e-5)
    cats = [lines[i]["pickscore@probability"] for i in (2, 4)]
    assert sum(cats) == pytest.approx(1.0)
    assert (out / "scores.csv").read_text().startswith("row,ID,model,prompt,image_path,image_sha256,")

    from pixeljury.cli import app

    rerun = CliRunner().invoke(app, args)
    assert "clipscore@hessel-2.5x: 0 scored, 4 already stored, 1 failed" in rerun.stdout
    with ResultStore.in_dir(out) as store:
        assert store.count() == 8


def test_score_command_rejects_unknown_metrics_and_set_metrics(tmp_path):
    from pixeljury.cli import app

    input_path = _input_file(tmp_path)
    result = CliRunner().invoke(app, ["score", str(input_path), "--metric", "nope", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "unknown metric 'nope'" in result.output
    result = CliRunner().invoke(app, ["score", str(input_path), "--metric", "fid", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "compares image sets" in result.output


def test_score_stores_shows_and_exports_prompt_truncation(tmp_path):
    """The tiny CLIP takes 24 tokens; 30 one-letter words are 32, so 8 are dropped for that row."""
    from pixeljury.cli import app

    clip_dir = save_tiny_clip(tmp_path / "clip", seed=1)
    long_prompt = " ".join("abcdefghijklmnopqrstuvwxyz"[i % 26] for i in range(30))
    prompts = ["a red cube", long_prompt, "two cats"]
    lines = []
    for i, img in enumerate(random_images(3, seed=2)):
        img.save(tmp_path / f"{i}.png")
        lines.append(json.dumps({"prompt": prompts[i], "image_path": f"{i}.png"}))
    (tmp_path / "in.jsonl").write_text("\n".join(lines))
    out = tmp_path / "run"
    args = ["score", str(tmp_path / "in.jsonl"), "--metric", "clip", "--out", str(out), "--device", "cpu",
            "--weights", f"clip={clip_dir}"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "clip@raw-cos: 1 of 3 prompts truncated to 24 tokens (up to 8 tokens dropped)" in result.stdout

    with ResultStore.in_dir(out) as store:
        stored = {r.prompt: r.parsed for r in store.iter_results("metric:clip")}
    assert {p: (v["tokens_dropped"], v["token_limit"]) for p, v in stored.items()} == {
        "a red cube": (0, 24), long_prompt: (8, 24), "two cats": (0, 24)}
    rows = [json.loads(line) for line in (out / "scores.jsonl").read_text().splitlines()]
    assert [row["clip@raw-cos:tokens_dropped"] for row in rows] == [0, 8, 0]
    header = (out / "scores.csv").read_text().splitlines()[0].split(",")
    assert header[-2:] == ["clip@raw-cos", "clip@raw-cos:tokens_dropped"]

    rerun = CliRunner().invoke(app, args)  # the count comes from the store, so a rerun shows it too
    assert "clip@raw-cos: 0 scored, 3 already stored, 0 failed" in rerun.stdout
    assert "clip@raw-cos: 1 of 3 prompts truncated to 24 tokens (up to 8 tokens dropped)" in rerun.stdout
