"""CPU benchmark of the non-model judge pipeline, and of resuming a large run.

Part 1 — overhead per image: N generated images, 4 Q-Judger dimensions each, judged end to end by
``run_judge`` with a replay engine (so no model time): planning + hashing, image decode / RGB /
resize, request building, parsing, store commits, exports. Reported as wall ms per image, plus the
time of each stage measured on its own over the same images.

Part 2 — resume: a run directory whose store already holds R results (R/4 rows x 4 dimensions);
rerunning the same command must find everything done. Reported: time from start until the pending
list is known (plan + hash-cache + key lookup), and the full rerun including rewriting the outputs.

    python bench/pipeline_overhead.py --images 1000 --resume-results 100000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from pixeljury.engines.replay import ReplayEngine
from pixeljury.rubric import builtin_rubric
from pixeljury.rubric.taxonomy import TREE

DIMS = ["Quality", "Aesthetics", "Alignment", "Real-world Fidelity"]


def answer(req) -> str:
    dim = req.request_id.split(":", 1)[0]
    body = {l2: {l3: {"score": 1} for l3 in l3s} for l2, l3s in TREE[dim].items()}
    return "<think>" + "looks fine. " * 200 + "</think>\n" + json.dumps(body)


def make_images(folder: Path, n: int, size: int, fmt: str) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    # Smooth gradients with mild noise compress and decode like real generated images (pure noise
    # would be a decoder worst case); rolling the base gives distinct files at no generation cost.
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:size, 0:size] / size
    base = np.stack([255 * x, 255 * y, 255 * (1 - x) * y], axis=-1) + rng.normal(0, 6, (size, size, 3))
    base = np.clip(base, 0, 255).astype(np.uint8)
    paths = []
    for i in range(n):
        arr = np.roll(base, i * 7, axis=1)
        p = folder / f"img{i:05d}.{fmt}"
        Image.fromarray(arr).save(p, quality=90) if fmt == "jpg" else Image.fromarray(arr).save(p)
        paths.append(p)
    return paths


def write_input(path: Path, images: list[Path]) -> Path:
    with open(path, "w") as fh:
        for i, img in enumerate(images):
            fh.write(json.dumps({"prompt": f"generated image number {i}", "image_path": str(img), "model": "bench"}) + "\n")
    return path


def timed(fn, *a, **kw):
    t = time.perf_counter()
    out = fn(*a, **kw)
    return out, time.perf_counter() - t


class SlowReplay(ReplayEngine):
    """Replay that also waits ``seconds`` per batch, standing in for a GPU generating the answers."""

    def __init__(self, seconds: float, **kw):
        super().__init__(answer, **kw)
        self.seconds, self.slept = seconds, 0.0

    def generate(self, requests, params):
        time.sleep(self.seconds)
        self.slept += self.seconds
        return super().generate(requests, params)


def overhead(tmp: Path, n: int, size: int, fmt: str, model_seconds: float = 0.0) -> dict:
    from pixeljury.data.images import load_for_judge, sha256_file
    from pixeljury.protocols.qjudger import build_request, parse_generation
    from pixeljury.runs.judge import JudgeConfig, run_judge

    images = make_images(tmp / f"imgs-{size}-{fmt}", n, size, fmt)
    inp = write_input(tmp / f"in-{size}-{fmt}.jsonl", images)
    cfg = JudgeConfig(input=inp, out=tmp / f"run-{size}-{fmt}-{model_seconds}", rubric="builtin", dimensions=DIMS,
                      quiet=True, batch_size=64)
    engine = SlowReplay(model_seconds, batch_size=64)
    summary, wall = timed(run_judge, cfg, lambda: engine)
    assert summary.computed == n * len(DIMS) and summary.failed == 0
    if model_seconds:
        # With a (simulated) model busy, image decoding runs beside it: what is left on the critical path
        return {"images": n, "size": f"{size}x{size} {fmt}", "simulated_model_s_per_batch_of_64": model_seconds,
                "wall_ms_per_image": 1000 * wall / n,
                "critical_path_overhead_ms_per_image": 1000 * (wall - engine.slept) / n}
    # stages on their own (single thread), over the same images
    rubric = builtin_rubric()
    _, t_hash = timed(lambda: [sha256_file(p) for p in images])
    loaded, t_load = timed(lambda: [load_for_judge(p)[0] for p in images])
    _, t_build = timed(lambda: [build_request(rubric, "a prompt", d, im, "0" * 64, d) for im in loaded for d in DIMS])
    texts = [answer(type("R", (), {"request_id": f"{d}:x"})) for d in DIMS]
    _, t_parse = timed(lambda: [parse_generation(t, d) for _ in range(n) for t, d in zip(texts, DIMS)])
    return {
        "images": n, "size": f"{size}x{size} {fmt}", "requests": summary.computed,
        "wall_ms_per_image": 1000 * wall / n,
        "stage_ms_per_image": {"hash": 1000 * t_hash / n, "decode+rgb+resize": 1000 * t_load / n,
                               "build 4 requests": 1000 * t_build / n, "parse 4 answers": 1000 * t_parse / n},
    }


def resume(tmp: Path, results: int) -> dict:
    from pixeljury.runs.judge import JudgeConfig, load_inputs, plan, run_judge
    from pixeljury.runs.store import ResultStore

    rows = results // len(DIMS)
    images = make_images(tmp / "tiny-imgs", rows, 8, "png")
    inp = write_input(tmp / "resume.jsonl", images)
    out = tmp / "resume-run"
    cfg = JudgeConfig(input=inp, out=out, rubric="builtin", dimensions=DIMS, quiet=True, batch_size=512)
    first = ReplayEngine(lambda r: '{"Resolution": {"Resolution": {"score": 2}}}', batch_size=512)
    _, t_first = timed(run_judge, cfg, lambda: first)
    with ResultStore.in_dir(out) as store:
        n = store.count()

    def until_pending():
        with ResultStore.in_dir(out) as store:
            prep = plan(cfg, load_inputs(cfg), store, first.model_id, first.revision)
            keys = {k for r in prep.rows for k in r.keys.values()}
            return len(keys - store.existing_keys(keys))

    pending, t_resume = timed(until_pending)
    again = ReplayEngine(lambda r: None)
    summary, t_full = timed(run_judge, cfg, lambda: again)
    assert pending == 0 and again.calls == 0 and summary.reused == n
    return {"stored_results": n, "rows": rows, "resume_to_pending_s": t_resume, "full_rerun_with_exports_s": t_full,
            "first_run_s": t_first}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--resume-results", type=int, default=100_000)
    ap.add_argument("--model-seconds", type=float, default=1.0,
                    help="Simulated generation time per batch of 64 requests (a real 27B judge takes far longer).")
    ap.add_argument("--only-simulated", action="store_true", help="Skip the plain overhead runs and the resume part.")
    ap.add_argument("--out", type=Path, default=None, help="Write results as JSON here.")
    args = ap.parse_args()
    report = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores", "overhead": []}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for size, fmt in () if args.only_simulated else ((512, "jpg"), (1024, "png"), (1280, "jpg")):
            report["overhead"].append(overhead(tmp, args.images, size, fmt))
            print(json.dumps(report["overhead"][-1]), flush=True)
        for size, fmt in ((1024, "png"), (1280, "jpg")):
            report["overhead"].append(overhead(tmp, args.images, size, fmt, model_seconds=args.model_seconds))
            print(json.dumps(report["overhead"][-1]), flush=True)
        if not args.only_simulated:
            report["resume"] = resume(tmp, args.resume_results)
            print(json.dumps(report["resume"]), flush=True)
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
