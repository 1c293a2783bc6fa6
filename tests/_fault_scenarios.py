"""Scenarios of real `pixeljury` processes on a real small disk or a read-only file system.

A scenario is a list of steps run by one Python process (``SCENARIO`` below) that reports what
happened as JSON. With ``mode="tmpfs"`` it runs inside a user and mount namespace
(``unshare -rm``) with a fresh tmpfs of a few hundred KiB mounted on the run's folder: disks fill up
and file systems turn read-only for real. Where that is impossible (CI without user namespaces) the
same steps run with ``mode="hook"``: the documented fault-injection variable ``PIXELJURY_FAULT``
(docs/runs.md) makes the same writes fail with the same errors.

Steps (dicts): ``{"run": [args], "env": {...}, "hook": "ENOSPC@..."}`` runs ``pixeljury args`` (through
``driver.py``, whose replay engine can fill the disk at its N-th request when ``PJ_FILL_AT`` is set);
``hook`` is the fault in hook mode, the disk-filling env in tmpfs mode is in ``env``. ``{"fill": leave}``
fills the disk leaving ``leave`` bytes (tmpfs only), ``{"unfill": true}`` frees it, ``{"ro": true}``
remounts read-only (tmpfs only), ``{"snapshot": name}`` records every file of the run directory.
"""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
import sys
from pathlib import Path

from pj_testpaths import subprocess_env

DRIVER = '''
import json, os, sys, time
from pixeljury.engines import factory
from pixeljury.engines.replay import ReplayEngine
from pixeljury.rubric.taxonomy import TREE

FILL_AT = int(os.environ.get("PJ_FILL_AT", "0"))
FILLER = os.environ.get("PJ_FILLER", "")
calls = [0]

def fill(path):
    with open(path, "ab", buffering=0) as fh:
        try:
            while True:
                fh.write(b"\\0" * 4096)
        except OSError:
            pass

def answer(req):
    calls[0] += 1
    if FILL_AT and calls[0] == FILL_AT:
        fill(FILLER)  # the disk is full from this request on
    time.sleep(float(os.environ.get("PJ_SLEEP", "0")))
    dim = req.request_id.split(":", 1)[0]
    return json.dumps({l2: {l3: {"score": 2} for l3 in l3s} for l2, l3s in TREE[dim].items()})

factory.create_engine = lambda spec: ReplayEngine(answer, model_id=os.environ.get("PJ_JUDGE", "judge-a"),
                                                  batch_size=1)
from pixeljury.cli import main
sys.argv = ["pixeljury", *sys.argv[1:]]
main()
'''

SCENARIO = r'''
import hashlib, json, os, subprocess, sys
from pathlib import Path

spec = json.loads(Path(sys.argv[1]).read_text())
mode, mount, run, driver = spec["mode"], Path(spec["mount"]), Path(spec["run"]), spec["driver"]
filler = mount / "filler.bin"
report = []

def fill(leave):
    with open(filler, "ab", buffering=0) as fh:
        try:
            while True:
                fh.write(b"\0" * 4096)
        except OSError:
            pass
    os.truncate(filler, max(0, filler.stat().st_size - leave))

for step in spec["steps"]:
    if "run" in step:
        env = dict(os.environ, **step.get("env", {}))
        if mode == "hook":
            env.pop("PJ_FILL_AT", None)
            if step.get("hook"):
                env["PIXELJURY_FAULT"] = step["hook"]
        else:
            env["PJ_FILLER"] = str(filler)
        res = subprocess.run([sys.executable, driver, *step["run"]], capture_output=True, text=True, env=env,
                             timeout=120)
        report.append({"rc": res.returncode, "stdout": res.stdout, "stderr": res.stderr})
    elif "fill" in step:
        if mode == "tmpfs":
            fill(step["fill"])
    elif "unfill" in step:
        filler.unlink(missing_ok=True)
    elif "ro" in step:
        if mode == "tmpfs":
            subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
    elif "snapshot" in step:
        files = {}
        if run.is_dir():
            for p in sorted(run.rglob("*")):
                if p.is_file() and not p.name.startswith("results.sqlite") and p.name != ".lock":
                    files[str(p.relative_to(run))] = hashlib.sha256(p.read_bytes()).hexdigest()
        manifest = run / "manifest.json"
        report.append({"snapshot": step["snapshot"], "files": files,
                       "manifest": json.loads(manifest.read_text()) if manifest.is_file() else None})
Path(spec["report"]).write_text(json.dumps(report))
'''


@functools.lru_cache(maxsize=1)
def tmpfs_unavailable() -> str | None:
    """Why a tmpfs cannot be mounted in a user namespace here (None when it can)."""
    if shutil.which("unshare") is None:
        return "unshare(1) is not installed"
    probe = Path("/tmp") if Path("/tmp").is_dir() else Path.cwd()
    try:
        res = subprocess.run(["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=64k none {probe}"],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unshare failed: {exc}"
    if res.returncode != 0:
        return f"user namespaces with mounts are not available: {res.stderr.strip()}"
    return None


def modes() -> list:
    """Both modes where the real one works; the hook alone (saying why) elsewhere."""
    import pytest

    why = tmpfs_unavailable()
    tmpfs = pytest.param("tmpfs", marks=pytest.mark.skipif(why is not None, reason=f"real small disk: {why}; "
                                                               "the hook variant of this test runs instead"))
    return [tmpfs, "hook"]


def run_scenario(tmp_path: Path, mode: str, steps: list[dict], *, size_kib: int = 768) -> list[dict]:
    mount = tmp_path / "disk"
    mount.mkdir(exist_ok=True)
    (tmp_path / "driver.py").write_text(DRIVER)
    (tmp_path / "scenario.py").write_text(SCENARIO)
    spec = {"mode": mode, "mount": str(mount), "run": str(mount / "run"), "driver": str(tmp_path / "driver.py"),
            "steps": steps, "report": str(tmp_path / "report.json")}
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(spec))
    command = [sys.executable, str(tmp_path / "scenario.py"), str(spec_file)]
    if mode == "tmpfs":
        inner = " ".join(f"'{c}'" for c in command)
        command = ["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size={size_kib}k none '{mount}' && exec {inner}"]
    res = subprocess.run(command, capture_output=True, text=True, env=subprocess_env(), timeout=600)
    assert res.returncode == 0, res.stderr
    return json.loads((tmp_path / "report.json").read_text())


def one_line(stderr: str) -> str:
    """The one line a fault prints (Rich may wrap long lines: compare with whitespace collapsed)."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return " ".join(stderr.split())
