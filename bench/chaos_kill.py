"""Chaos run: SIGKILL a real `pixeljury judge` process at random moments, rerun after each kill, and
check that the final outputs equal an uninterrupted run's byte for byte.

The judge is the real command line (`python -m pixeljury judge`) with the replay engine (recorded
answers, `--engine replay --replay-file`), so no model is needed and every stage but generation runs
for real: input reading, planning and hashing, result commits (`--batch-size 1`: one commit per
request), the manifest, and the exports (`per_image.jsonl`, `bench/`, `summary.csv`, and with
`--export csv,parquet,xlsx` the CSV, Parquet and XLSX files).

1. An uninterrupted reference run into ``ref/`` times the phases: until the first result is stored,
   until the exports begin (the first export temporary, ``*.<pid>.tmp``, appears), until it exits.
2. Then, into ``chaos/``, KILLS runs are SIGKILLed. Each kill is aimed at a phase drawn from a seeded
   schedule -- at least a third of them at the exports, a third at judging (results being stored),
   the rest anywhere from the process start -- at a random delay within that phase's span as the
   reference measured it (judging: scaled to the work still left). A run that ends before its kill
   is a miss and is started again with a new draw. After each kill the same command is run again
   (resuming), and that run is the next one killed.
3. A last rerun goes to the end (exit 0) and its directory is compared with ``ref/``.

Compared byte for byte: every file of the run directory (``bench/`` included), i.e. per_image.jsonl,
bench/*.json, summary.csv, per_image.csv, per_image.parquet; a file in one directory only (a
leftover temporary, a missing export) is a mismatch too. ``scores.xlsx`` is compared member by
member of its zip (every member's bytes and the list of members) except ``docProps/core.xml``, which
holds its creation time (the zip's own entry dates are times too). Not compared, because they
legitimately hold times or process ids: ``manifest.json`` (start and end times, the run directory),
``manifests/`` (the manifests of the killed runs), ``results.sqlite`` and its ``-wal``/``-shm``
(each result's ``created_at``; page layout depends on the commit history), ``.lock`` (the pid).

Prints the seed (``--seed`` repeats a run's draws; timing still varies), one line per kill with the
phase it landed in, and ``kills survived: N``. Exit status: 0 when the outputs match; 1 on a
mismatch or a rerun that failed; 3 when no kill landed during the exports (the check is incomplete).

    python bench/chaos_kill.py --kills 10 --rows 300 [--seed 1234]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))  # this checkout's pixeljury, also for the child processes (child_env)
DIMS = ("Quality", "Aesthetics", "Alignment", "Real-world Fidelity", "Creative Generation")
POLL = 0.003  # seconds between looks at the run directory

# Not compared: these hold times or process ids (see the docstring).
EXCLUDED = ("manifest.json", "manifests", "results.sqlite", "results.sqlite-wal", "results.sqlite-shm",
            "results.sqlite-journal", ".lock")
XLSX_TIMED_MEMBERS = ("docProps/core.xml",)


# ---------------------------------------------------------------------------------------------- input


def make_input(folder: Path, rows: int) -> tuple[Path, Path]:
    """``rows`` rows over distinct small images, three generator names, and a recording per request."""
    from PIL import Image

    from pixeljury.rubric.taxonomy import TREE

    (folder / "imgs").mkdir(parents=True, exist_ok=True)
    lines, answers = [], []
    for i in range(rows):
        path = folder / "imgs" / f"{i:05d}.png"
        Image.new("RGB", (24 + i % 17, 24 + i % 13), (i % 251, (7 * i) % 253, (13 * i) % 255)).save(path)
        colour = ("red", "green", "blue")[i % 3]
        lines.append({"prompt": f"picture {i}: a {colour} cube", "image_path": f"imgs/{path.name}",
                      "model": ("alpha", "beta/2", "gamma")[i % 3]})
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        for d, dim in enumerate(DIMS):
            if (i + d) % 29 == 0:
                text = "<think>unsure</think>\nno JSON here"  # a parse failure: a result like any other
            else:
                body = {l2: {l3: {"score": (i + d + k) % 3 if (i + k) % 11 else "N/A"} for k, l3 in enumerate(l3s)}
                        for l2, l3s in TREE[dim].items()}
                text = "<think>looking</think>\n" + json.dumps(body)
            answers.append({"image_sha256": sha, "dimension": dim, "text": text})
    inp = folder / "in.jsonl"
    inp.write_text("".join(json.dumps(r) + "\n" for r in lines), encoding="utf-8")
    replay = folder / "answers.jsonl"
    replay.write_text("".join(json.dumps(a) + "\n" for a in answers), encoding="utf-8")
    return inp, replay


def judge_command(inp: Path, replay: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "pixeljury", "judge", str(inp), "--out", str(out), "--model", "replay",
            "--engine", "replay", "--replay-file", str(replay), "--rubric", "builtin", "--dimensions", ",".join(DIMS),
            "--batch-size", "1", "--export", "csv,parquet,xlsx", "--quiet"]


SRC = REPO / "src"  # the sources the judge runs from (--src)


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(SRC) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("HF_HUB_OFFLINE", "1")
    return env


# -------------------------------------------------------------------------------------- observation


def stored_results(run: Path) -> int:
    db = run / "results.sqlite"
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=0.5) as conn:
            return conn.execute("SELECT COUNT(*) FROM results").fetchone()[0]
    except sqlite3.Error:
        return 0


def export_temporaries(run: Path, pid: int) -> list[Path]:
    """Temporaries of process ``pid`` other than the manifest's: present while it writes the exports."""
    found = []
    for folder in (run, run / "bench"):
        try:
            names = os.listdir(folder)
        except OSError:
            continue
        found += [folder / n for n in names if n.endswith(f".{pid}.tmp") and not n.startswith("manifest")]
    return found


def phase_of(run: Path, pid: int, started_ns: int, results_at_start: int) -> str:
    """Where a killed process was, read from what it left (nothing changes after a SIGKILL)."""
    if export_temporaries(run, pid):
        return "exports"

    def fresh(name: str) -> bool:
        try:
            return (run / name).stat().st_mtime_ns >= started_ns
        except OSError:
            return False

    if fresh("manifest.json"):
        try:
            finished = json.loads((run / "manifest.json").read_text(encoding="utf-8")).get("finished_at")
        except (OSError, ValueError):
            finished = None
        if finished:
            return "finishing (manifest finished, no export temporaries)"
    if fresh("manifest.json") or fresh("manifest.running.json") or stored_results(run) > results_at_start:
        return "planning/judging"
    return "startup (imports, input, store, planner; no manifest written yet)"


@dataclass
class Timeline:
    exports_begin: float  # seconds from the start: the first export temporary appears
    exports_end: float  # the last one is gone (renamed into place)
    exit: float
    results: int


def reference_run(cmd: list[str], run: Path) -> Timeline:
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    begin = end = None
    while proc.poll() is None:
        now = time.perf_counter() - started
        if export_temporaries(run, proc.pid):
            begin = now if begin is None else begin
            end = now
        time.sleep(POLL)
    finished = time.perf_counter() - started
    _, stderr = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"the reference run failed ({proc.returncode}):\n{stderr.decode()[-3000:]}")
    if begin is None or end is None:
        raise SystemExit("the reference run was too quick to observe its exports; use more --rows")
    return Timeline(begin, end, finished, stored_results(run))


# -------------------------------------------------------------------------------------------- kills


@dataclass
class Aim:
    phase: str  # "judging", "exports" or "anywhere"
    delay: float = 0.0  # exports, anywhere: seconds after the phase begins (anywhere: the process start)
    results: int = 0  # judging: kill once the store holds this many results

    def __str__(self) -> str:
        if self.phase == "judging":
            return f"judging, at {self.results} stored results"
        return f"{self.phase} + {self.delay:.3f} s" if self.phase == "exports" else f"{self.delay:.3f} s after start"


@dataclass
class Kill:
    aim: Aim
    landed: str
    results: int


@dataclass
class Miss:
    status: int  # the run's exit status
    seconds: float  # how long it ran: an undisturbed run from the directory's state
    said: str  # its stderr


def aimed_kill(cmd: list[str], run: Path, aim: Aim, log: Path) -> Kill | Miss:
    """Start a run, wait for the moment ``aim`` names, SIGKILL it; or, when the run ends before that,
    say how it ended. Judging is aimed at by stored results, not by time: the kill then lands while
    results are being stored however fast the machine is."""
    at_start = stored_results(run)
    started_ns = time.time_ns()
    started = time.perf_counter()
    with open(log, "wb") as err:
        proc = subprocess.Popen(cmd, env=child_env(), stdout=subprocess.DEVNULL, stderr=err)
        deadline = started + aim.delay if aim.phase == "anywhere" else None
        while proc.poll() is None:
            if aim.phase == "judging" and stored_results(run) >= aim.results:
                break
            if aim.phase == "exports" and deadline is None and export_temporaries(run, proc.pid):
                deadline = time.perf_counter() + aim.delay
            if deadline is not None and time.perf_counter() >= deadline:
                break
            time.sleep(POLL if deadline is None else min(POLL, max(0.0, deadline - time.perf_counter())))
        if proc.poll() is not None:
            return Miss(proc.returncode, time.perf_counter() - started, log.read_text(errors="replace"))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    return Kill(aim, phase_of(run, proc.pid, started_ns, at_start), stored_results(run))


# ---------------------------------------------------------------------------------------- comparison


def _xlsx_members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as z:
        return {n: z.read(n) for n in z.namelist() if n not in XLSX_TIMED_MEMBERS}


def compare_runs(ref: Path, got: Path) -> tuple[list[str], list[str]]:
    """(files compared, differences) over every file of the two run directories but the excluded."""
    def files(root: Path) -> set[str]:
        out = set()
        for p in root.rglob("*"):
            rel = p.relative_to(root)
            if rel.parts[0] not in EXCLUDED and p.is_file():
                out.add(rel.as_posix())
        return out

    mine, theirs = files(ref), files(got)
    diffs = [f"{name}: only in the uninterrupted run" for name in sorted(mine - theirs)]
    diffs += [f"{name}: only in the killed-and-resumed run" for name in sorted(theirs - mine)]
    compared = []
    for name in sorted(mine & theirs):
        compared.append(name)
        a, b = ref / name, got / name
        if name.endswith(".xlsx"):
            ma, mb = _xlsx_members(a), _xlsx_members(b)
            bad = sorted(n for n in ma.keys() | mb.keys() if ma.get(n) != mb.get(n))
            if bad:
                diffs.append(f"{name}: zip members differ: {', '.join(bad)}")
        elif a.read_bytes() != b.read_bytes():
            diffs.append(f"{name}: bytes differ ({a.stat().st_size} vs {b.stat().st_size} bytes)")
    return compared, diffs


# ---------------------------------------------------------------------------------------------- main


def schedule(rng: random.Random, kills: int) -> list[str]:
    """What each kill aims at: a third at judging (first, while there is work left to judge), a third
    at the exports, the rest anywhere from the start of the process; the last two in a seeded order."""
    third = max(1, kills // 3)
    rest = ["exports"] * third + ["anywhere"] * (kills - 2 * third)
    rng.shuffle(rest)
    return ["judging"] * third + rest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--rows", type=int, default=300, help=f"input rows ({len(DIMS)} requests each)")
    ap.add_argument("--seed", type=int, default=None, help="default: a random one (printed)")
    ap.add_argument("--workdir", type=Path, default=None, help="keep the directories here (default: a temporary one)")
    ap.add_argument("--src", type=Path, default=None,
                    help="run the judge from these pixeljury sources (a `src` folder; default: this checkout's)")
    args = ap.parse_args(argv)
    global SRC
    if args.src is not None:
        SRC = args.src.resolve()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    print(f"seed: {seed}  (repeat with --seed {seed})", flush=True)
    rng = random.Random(seed)

    tmp = None
    if args.workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="pj-chaos-")
        work = Path(tmp.name)
    else:
        work = args.workdir
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
    try:
        return _chaos(work, args.rows, args.kills, rng)
    finally:
        if tmp is not None:
            tmp.cleanup()


def _chaos(work: Path, rows: int, kills: int, rng: random.Random) -> int:
    inp, replay = make_input(work / "input", rows)
    ref, chaos = work / "ref", work / "chaos"
    timeline = reference_run(judge_command(inp, replay, ref), ref)
    print(f"uninterrupted run: {timeline.results} results; exports from {timeline.exports_begin:.2f} s "
          f"to {timeline.exports_end:.2f} s, exit at {timeline.exit:.2f} s", flush=True)
    cmd = judge_command(inp, replay, chaos)
    spans = {"anywhere": timeline.exit, "exports": timeline.exports_end - timeline.exports_begin}
    done: list[Kill] = []
    misses = 0
    phases = schedule(rng, kills)
    while len(done) < kills:
        phase = phases[len(done)]
        stored = stored_results(chaos)
        if phase == "judging" and stored >= timeline.results - 1:
            phase = "anywhere"  # nothing left to judge: aim anywhere instead
        if phase == "judging":
            aim = Aim(phase, results=rng.randint(stored + 1, timeline.results - 1))
        else:
            aim = Aim(phase, delay=rng.uniform(0, spans[phase]))
        kill = aimed_kill(cmd, chaos, aim, work / f"run{len(done) + misses:02d}.log")
        if isinstance(kill, Miss):
            if kill.status != 0:
                print(f"FAIL: a rerun after {len(done)} kill(s) exited with {kill.status}:\n{kill.said[-3000:]}")
                print(f"kills survived: {max(0, len(done) - 1)}")
                return 1
            misses += 1
            print(f"  (miss: the run ended after {kill.seconds:.2f} s, before the kill aimed at {aim}; drawing again)",
                  flush=True)
            if phase == "anywhere":  # a resumed run is shorter than the first: aim within what it takes now
                spans["anywhere"] = min(spans["anywhere"], kill.seconds)
            if misses > 5 * kills:
                print("FAIL: too many misses; the runs are too short for the kills (use more --rows)")
                return 3
            continue
        done.append(kill)
        print(f"kill {len(done):2d}: aimed at {kill.aim} -> landed in {kill.landed}; "
              f"{kill.results}/{timeline.results} results stored", flush=True)
    final = subprocess.run(cmd, env=child_env(), capture_output=True, text=True)
    if final.returncode != 0:
        print(f"FAIL: the final rerun exited with {final.returncode}:\n{final.stderr[-3000:]}")
        print(f"kills survived: {kills - 1}")
        return 1
    print(f"kills survived: {len(done)}  ({misses} misses redrawn)")
    compared, diffs = compare_runs(ref, chaos)
    print(f"compared with the uninterrupted run: {', '.join(compared)} "
          f"(scores.xlsx: every zip member but {', '.join(XLSX_TIMED_MEMBERS)})")
    print(f"not compared (times, pids): {', '.join(EXCLUDED)}")
    if diffs:
        print("MISMATCH:\n  " + "\n  ".join(diffs))
        return 1
    print("outputs identical to the uninterrupted run's, byte for byte")
    in_exports = sum(k.landed == "exports" for k in done)
    if not in_exports:
        print("INCOMPLETE: no kill landed during the exports")
        return 3
    print("kills by phase: " + ", ".join(f"{p}: {sum(k.landed == p for k in done)}"
                                          for p in sorted({k.landed for k in done})))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
