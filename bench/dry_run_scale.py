"""Dry run at scale, before and after: wall time, peak RSS and bytes written for `judge --dry-run`.

Builds one input of ROWS rows (distinct prompts, images shared round-robin from IMAGES generated
files, one generator name, no benchmark ID so each row is judged on all five dimensions with the
builtin rubric), then runs `python -m pixeljury judge INPUT --dry-run --quiet` twice, as separate
processes over the same input:

* before: the sources of revision BEFORE (default: the last one with texts inline in every request
  line), extracted with `git archive` into a temporary folder;
* after: this checkout's sources.

Each child's peak RSS and CPU time (user + system, all its threads) come from ``wait4``; on a
shared machine CPU time is the steadier figure. With ``--check`` (default on) the after run's files are
expanded with ``pixeljury.runs.requests_file`` and compared byte for byte with the before run's
``requests.jsonl`` (a SHA-256 of each stream; nothing large is held in memory).

    python bench/dry_run_scale.py --rows 100000 --images 1000
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import platform
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
BEFORE = "52c86ac"  # the last revision whose dry run wrote every text inline


def make_input(folder: Path, rows: int, images: int, size: int) -> Path:
    (folder / "imgs").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:size, 0:size] / size
    base = np.stack([255 * x, 255 * y, 255 * (1 - x) * y], axis=-1) + rng.normal(0, 6, (size, size, 3))
    base = np.clip(base, 0, 255).astype(np.uint8)
    for i in range(images):
        Image.fromarray(np.roll(base, i * 3, axis=1)).save(folder / "imgs" / f"{i:05d}.png")
    path = folder / "in.jsonl"
    with open(path, "w", encoding="utf-8") as fh:
        for r in range(rows):
            fh.write(json.dumps({"prompt": f"generated image number {r}: a red cube on a blue table",
                                 "image_path": f"imgs/{r % images:05d}.png", "model": "bench"}) + "\n")
    return path


def sources_of(rev: str, dest: Path) -> Path:
    """``src/`` of ``rev`` under ``dest`` (from the repository's history, nothing else touched)."""
    blob = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", rev, "src"], check=True,
                          capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        tar.extractall(dest, filter="data")
    return dest / "src"


def run_dry(src: Path, inp: Path, out: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(src), HF_HUB_OFFLINE="1")
    cmd = [sys.executable, "-m", "pixeljury", "judge", str(inp), "--out", str(out), "--dry-run", "--quiet",
           "--rubric", "builtin"]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stdout = proc.stdout.read()  # type: ignore[union-attr]
    stderr = proc.stderr.read()  # type: ignore[union-attr]
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"dry run with {src} failed ({proc.returncode}):\n{stderr.decode()[-3000:]}")
    files = {p.name: p.stat().st_size for p in sorted(out.glob("*.jsonl"))}
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "peak_rss_mb": usage.ru_maxrss / 1024,
            "files": files,
            "bytes": sum(files.values()), "said": stdout.decode().strip()}


def sha256_of_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_of_expanded(src: Path, requests: Path) -> tuple[str, float]:
    """SHA-256 of the after run's requests with texts inline, streamed from the expander's stdout."""
    env = dict(os.environ, PYTHONPATH=str(src))
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "pixeljury.runs.requests_file", str(requests)], env=env,
                            stdout=subprocess.PIPE)
    h = hashlib.sha256()
    for chunk in iter(lambda: proc.stdout.read(1 << 20), b""):  # type: ignore[union-attr]
        h.update(chunk)
    if proc.wait() != 0:
        raise SystemExit("expanding the after run's requests failed")
    return h.hexdigest(), time.perf_counter() - started


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--images", type=int, default=1000, help="distinct image files, shared round-robin by the rows")
    ap.add_argument("--size", type=int, default=256, help="image side in pixels")
    ap.add_argument("--before", default=BEFORE, help="git revision for the 'before' run")
    ap.add_argument("--no-before", action="store_true", help="run only this checkout")
    ap.add_argument("--no-check", action="store_true", help="skip the byte-parity check of the expanded requests")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="pj-dry-scale-") as tmp:
        tmp = Path(tmp)
        t = time.perf_counter()
        inp = make_input(tmp / "input", args.rows, args.images, args.size)
        print(f"input: {args.rows} rows over {args.images} images of {args.size}x{args.size} "
              f"({time.perf_counter() - t:.1f} s to build); 5 dimensions per row, builtin rubric")
        print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
              f"Python {platform.python_version()}, load average {os.getloadavg()[0]:.1f}")
        results = {}
        if not args.no_before:
            results["before"] = run_dry(sources_of(args.before, tmp / "before"), inp, tmp / "out-before")
        results["after"] = run_dry(REPO / "src", inp, tmp / "out-after")
        print(f"{'':8} {'wall s':>8} {'CPU s':>7} {'peak RSS MB':>12} {'written MB':>11}  files")
        for name, r in results.items():
            files = ", ".join(f"{k} {v / 1e6:.1f} MB" for k, v in r["files"].items())
            print(f"{name:8} {r['wall_s']:8.1f} {r['cpu_s']:7.1f} {r['peak_rss_mb']:12.0f} {r['bytes'] / 1e6:11.1f}  "
                  f"{files}")
            print(f"{'':8} {r['said']}")
        if "before" in results and not args.no_check:
            old = sha256_of_file(tmp / "out-before" / "requests.jsonl")
            new, seconds = sha256_of_expanded(REPO / "src", tmp / "out-after" / "requests.jsonl")
            same = old == new
            print(f"parity: after's requests expanded ({seconds:.1f} s) {'==' if same else '!='} before's "
                  f"requests.jsonl, byte for byte (sha256 {new[:16]}…)")
            if not same:
                return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
