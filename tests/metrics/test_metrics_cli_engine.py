"""`pixeljury score --metric unifiedreward` builds an engine from the command line (OpenAI-compatible here)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from PIL import Image

from pixeljury.metrics.unifiedreward import POINTWISE_TEMPLATE
from pixeljury.testing.fake_openai import FakeOpenAIServer, Reply

ROOT = Path(__file__).resolve().parents[2]


def test_score_unifiedreward_through_an_openai_compatible_endpoint(tmp_path):
    for i in range(2):
        Image.new("RGB", (16, 12), (200 * i, 30, 60)).save(tmp_path / f"{i}.png")
    rows = [{"prompt": "a red cube", "image_path": "0.png"}, {"prompt": "two cats", "image_path": "1.png"}]
    (tmp_path / "in.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    good = "Alignment Score (1-5): 5\nCoherence Score (1-5): 4\nStyle Score (1-5): 2.5"
    scripts = {POINTWISE_TEMPLATE.format(prompt="a red cube"): [Reply(content=good)]}
    with FakeOpenAIServer(scripts, default=Reply(content="I like it.")) as server:
        proc = subprocess.run(
            [sys.executable, "-m", "pixeljury", "score", str(tmp_path / "in.jsonl"), "--metric", "unifiedreward",
             "--out", str(tmp_path / "run"), "--engine", "openai", "--endpoint", server.url,
             "--judge-model", "UnifiedReward"],
            capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT / "src")}, timeout=120,
        )
    assert proc.returncode == 1, proc.stderr  # one row's answer has no ratings: recorded as a failure
    assert "1 scored, 0 already stored, 1 failed" in proc.stdout
    assert "row 1:" in proc.stderr and "no 'Alignment Score" in proc.stderr
    assert {body["model"] for body in server.bodies} == {"UnifiedReward"}
    lines = [json.loads(x) for x in (tmp_path / "run" / "scores.jsonl").read_text().splitlines()]
    assert [line["unifiedreward@2.0-mean-1-5"] for line in lines] == [(5 + 4 + 2.5) / 3, None]


def test_openai_engine_without_endpoint_is_a_clear_error(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "0.png")
    (tmp_path / "in.jsonl").write_text(json.dumps({"prompt": "p", "image_path": "0.png"}))
    proc = subprocess.run(
        [sys.executable, "-m", "pixeljury", "score", str(tmp_path / "in.jsonl"), "--metric", "unifiedreward",
         "--out", str(tmp_path / "run"), "--engine", "openai"],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT / "src")}, timeout=120,
    )
    assert proc.returncode == 2 and "needs --endpoint" in proc.stderr
