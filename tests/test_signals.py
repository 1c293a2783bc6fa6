"""SIGINT and SIGTERM stop `pixeljury judge` with one line: how much is saved, and how to resume."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest
from PIL import Image

from pj_testpaths import CHECKLIST_FIXTURE, stored_results, subprocess_env

pytestmark = pytest.mark.slow

# A CLI process whose engine answers slowly (0.2 s a request, one request a batch): the test can
# signal it while it is generating.
DRIVER = '''
import json, sys, time
from pixeljury.engines import factory
from pixeljury.engines.replay import ReplayEngine
from pixeljury.rubric.taxonomy import TREE

def answer(req):
    time.sleep(0.2)
    dim = req.request_id.split(":", 1)[0]
    return json.dumps({l2: {l3: {"score": 2} for l3 in l3s} for l2, l3s in TREE[dim].items()})

factory.create_engine = lambda spec: ReplayEngine(answer, batch_size=1)
from pixeljury.cli import main
sys.argv = ["pixeljury", *sys.argv[1:]]
main()
'''


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_the_run_with_one_line_and_the_rerun_resumes(tmp_path, signum):
    (tmp_path / "driver.py").write_text(DRIVER)
    rows = []
    for i in range(30):
        Image.new("RGB", (20, 20), (i, i, i)).save(tmp_path / f"{i}.png")
        rows.append({"prompt": f"p{i}", "image_path": f"{i}.png", "model": "M"})
    inp = tmp_path / "in.jsonl"
    inp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    run = tmp_path / "run"
    args = [sys.executable, str(tmp_path / "driver.py"), "judge", str(inp), "--model", "slow", "--out", str(run),
            "--rubric-file", str(CHECKLIST_FIXTURE), "--dimensions", "Quality", "--quiet"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=subprocess_env())
    deadline = time.monotonic() + 60
    while stored_results(run / "results.sqlite") < 2 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signum, stderr
    lines = [l for l in stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    saved = stored_results(run / "results.sqlite")
    assert 2 <= saved < 30
    name = signal.Signals(signum).name
    assert lines[0].startswith(f"stopped by {name}: {saved} results are saved in {run / 'results.sqlite'}")
    assert "resume with the same command: pixeljury judge " in lines[0] and str(inp) in lines[0]
    # The lock is released and the rerun computes only what is missing.
    res = subprocess.run(args, capture_output=True, text=True, env=subprocess_env(), timeout=120)
    assert res.returncode == 0, res.stderr
    assert f"requests: 30 (reused {saved}, computed {30 - saved}" in res.stdout
