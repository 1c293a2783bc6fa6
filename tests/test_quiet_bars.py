"""`--quiet` silences the libraries' progress bars too: transformers' weight loading and
huggingface_hub's downloads print nothing on stderr."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from PIL import Image

from pj_testpaths import subprocess_env

pytestmark = pytest.mark.slow


def test_quiet_judge_prints_no_weight_loading_bars(tmp_path, tiny_model_dir):
    Image.new("RGB", (32, 24), (10, 200, 30)).save(tmp_path / "a.png")
    inp = tmp_path / "in.jsonl"
    inp.write_text(json.dumps({"prompt": "a green square", "image_path": "a.png"}) + "\n")
    args = [sys.executable, "-m", "pixeljury", "judge", str(inp), "--model", str(tiny_model_dir), "--out",
            str(tmp_path / "run"), "--rubric", "builtin", "--dimensions", "Quality", "--max-new-tokens", "4",
            "--device", "cpu", "--quiet"]
    res = subprocess.run(args, capture_output=True, text=True, env=subprocess_env(), timeout=300)
    assert res.returncode == 0, res.stderr
    for bar in ("Loading weights", "Loading checkpoint shards", "it/s]", "%|", "\r"):
        assert bar not in res.stderr, res.stderr
    assert "requests: 1 (reused 0, computed 1" in res.stdout


def test_library_bars_come_back_after_a_quiet_run():
    from huggingface_hub import utils as hub

    from pixeljury.runs.quiet import library_bars_off

    hub.enable_progress_bars()
    with library_bars_off(True):
        assert hub.are_progress_bars_disabled()
    assert not hub.are_progress_bars_disabled()
