"""Peak memory of rebuilding a run's outputs (``write_run_outputs`` / ``pixeljury export``) against row count.

For each size N it fills a result store with N rows (5 generator models, 4 Q-Judger dimensions per
row, each answer with ~2 KB of reasoning, like a real thinking judge), then, in a fresh Python
process that has already imported everything the export needs, measures how much the peak RSS
(``VmHWM`` after resetting it, on Linux; ``ru_maxrss`` elsewhere) grows while ``write_run_outputs`` writes the requested formats. Memory that does not
depend on N shows up as the same growth at every size.

    python bench/export_memory.py --rows 10000,40000 --formats jsonl,csv,parquet,xlsx
    python bench/export_memory.py --rows 10000,40000 --formats jsonl,csv,parquet,xlsx --max-growth-mib 50

With ``--max-growth-mib`` the script exits 1 when growth(largest N) - growth(smallest N) exceeds it.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODELS = 5
DIMS = 4

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
import openpyxl, pyarrow, pyarrow.parquet  # imported before the baseline: not what is measured
from pixeljury.runs.exports import write_run_outputs
from pixeljury.runs.store import ResultStore

def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024  # kB -> MiB

run_dir, formats = Path(sys.argv[1]), tuple(sys.argv[2].split(","))
if len(sys.argv) > 3:
    import pixeljury.runs.exports as exports
    exports._Sinks.PARQUET_CHUNK = int(sys.argv[3])
store = ResultStore.in_dir(run_dir)
try:  # Linux: reset the peak (VmHWM) to the current RSS, so the peak below is the export's own
    open("/proc/self/clear_refs", "w").write("5")
    base, peak_of = status("VmRSS"), lambda: status("VmHWM")
except OSError:  # elsewhere: ru_maxrss, which may include an earlier peak
    scale = 1 / 1024 if sys.platform != "darwin" else 1 / 1024 / 1024
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
    peak_of = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
t = time.perf_counter()
write_run_outputs(run_dir, store, formats)
wall = time.perf_counter() - t
print(json.dumps({"baseline_rss_mib": base, "growth_mib": peak_of() - base, "export_s": wall}))
"""

def build_store(run_dir: Path, n: int) -> None:
    from pixeljury.protocols.qjudger import parse_generation
    from pixeljury.rubric.taxonomy import TREE
    from pixeljury.runs.store import ResultRecord, ResultStore

    dims = list(TREE)[:DIMS]
    texts = {l1: "<think>" + "x" * 2000 + "</think>" + json.dumps({l2: {l3: {"score": 1} for l3 in l3s}
                                                                    for l2, l3s in TREE[l1].items()}) for l1 in dims}
    parsed = {l1: parse_generation(t, l1).as_dict() for l1, t in texts.items()}
    with ResultStore.in_dir(run_dir) as store:
        rows, recs = [], []
        for i in range(n):
            keys = {l1: f"{i}-{l1}" for l1 in dims}
            rows.append({"row": i, "model": f"model-{i % MODELS}", "ID": i, "prompt": "a prompt " * 20,
                         "image_path": f"{i}.png", "image_abspath": f"/x/{i}.png", "image_sha256": "0" * 64,
                         "comparable": True, "status": "ok", "errors": [],
                         "input": {"prompt": "a prompt " * 20, "image_path": f"{i}.png"},
                         "dimensions": dims, "keys": keys})
            recs.extend(ResultRecord(k, "qjudger", l1, {}, "scored", raw_text=texts[l1], parsed=parsed[l1])
                        for l1, k in keys.items())
            if len(recs) >= 20000:
                store.put_many(recs)
                recs = []
        store.put_many(recs)
        store.replace_rows(rows)


def measure(n: int, formats: str, tmp: Path, parquet_chunk: int | None = None) -> dict:
    run_dir = tmp / f"run-{n}"
    t = time.perf_counter()
    build_store(run_dir, n)
    built = time.perf_counter() - t
    cmd = [sys.executable, "-c", CHILD, str(run_dir), formats] + ([str(parquet_chunk)] if parquet_chunk else [])
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    return {"rows": n, "formats": formats, **res, "store_build_s": built}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", default="10000,40000", help="comma-separated row counts")
    ap.add_argument("--formats", default="jsonl,csv,parquet,xlsx")
    ap.add_argument("--max-growth-mib", type=float, default=None,
                    help="fail when growth at the largest size exceeds growth at the smallest by more than this")
    ap.add_argument("--parquet-chunk", type=int, default=None,
                    help="rows per Parquet row group (default: the exporter's); the buffer of one row group "
                         "is the one part of export memory that grows with rows up to this size")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args()
    sizes = sorted(int(s) for s in args.rows.split(","))
    results = []
    with tempfile.TemporaryDirectory(prefix="pj-export-mem-") as tmp:
        for n in sizes:
            r = measure(n, args.formats, Path(tmp), args.parquet_chunk)
            results.append(r)
            print(f"{n:>7} rows  [{args.formats}]: peak RSS grew {r['growth_mib']:7.1f} MiB "
                  f"(baseline {r['baseline_rss_mib']:.0f} MiB), export {r['export_s']:.1f} s", flush=True)
            shutil.rmtree(Path(tmp) / f"run-{n}")
    delta = results[-1]["growth_mib"] - results[0]["growth_mib"]
    print(f"growth {sizes[-1]} rows minus growth {sizes[0]} rows: {delta:.1f} MiB "
          f"({platform.machine()}, Python {platform.python_version()})")
    if args.json:
        args.json.write_text(json.dumps({"results": results, "delta_mib": delta}, indent=2))
    if args.max_growth_mib is not None and delta > args.max_growth_mib:
        print(f"FAIL: more than {args.max_growth_mib} MiB", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
