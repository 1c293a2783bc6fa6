"""``pixeljury demo``: the whole judge pipeline offline, on images pixeljury draws itself.

Without ``--model`` it judges with a tiny randomly initialised Qwen3-VL built on the spot, so every
stage runs (rendering, batching, generation, parsing, accounting, exports, the HTML report). A random
model never writes a readable answer on its own, so the tiny judge decodes under the answer's JSON
schema after a short thinking budget (``--constrained``, engines/hf_constrained.py): every answer
parses and every section of the report has numbers — and every number is noise.
"""

from __future__ import annotations

import contextlib
import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

# (prompt, painter) -> drawing instructions: shapes as (kind, colour, box)
SCENES = [
    ("A red circle above a blue square on a white background",
     [("ellipse", "red", (70, 20, 150, 100)), ("rectangle", "blue", (70, 130, 150, 210))]),
    ("Three yellow stars in a dark night sky",
     [("star", "yellow", (30, 40, 70, 80)), ("star", "yellow", (110, 90, 150, 130)), ("star", "yellow", (170, 30, 210, 70))]),
    ("A green triangle to the left of an orange circle",
     [("triangle", "green", (20, 80, 100, 170)), ("ellipse", "orange", (130, 80, 210, 160))]),
    ("A small purple house with a grey roof on green grass",
     [("rectangle", "#2e8b57", (0, 170, 240, 240)), ("rectangle", "purple", (80, 100, 160, 170)),
      ("triangle", "grey", (70, 55, 170, 100))]),
]
PAINTERS = {
    "painter-faithful": {"background": "white", "shuffle": False},
    "painter-sloppy": {"background": "#f4e9d8", "shuffle": True},
}


def _draw(shapes, background: str, sloppy: bool, size: int = 240) -> Image.Image:
    img = Image.new("RGB", (size, size), "#101030" if "night" in str(shapes) else background)
    d = ImageDraw.Draw(img)
    for i, (kind, colour, (x0, y0, x1, y1)) in enumerate(shapes):
        if sloppy:  # the sloppy painter swaps colours and drifts shapes
            colour = shapes[(i + 1) % len(shapes)][1]
            x0, x1 = x0 + 25, x1 + 25
        if kind == "ellipse":
            d.ellipse((x0, y0, x1, y1), fill=colour)
        elif kind == "rectangle":
            d.rectangle((x0, y0, x1, y1), fill=colour)
        elif kind == "triangle":
            d.polygon([((x0 + x1) / 2, y0), (x0, y1), (x1, y1)], fill=colour)
        elif kind == "star":
            cx, cy, r = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2
            d.polygon([(cx, cy - r), (cx + r / 3, cy - r / 3), (cx + r, cy), (cx + r / 3, cy + r / 3), (cx, cy + r),
                       (cx - r / 3, cy + r / 3), (cx - r, cy), (cx - r / 3, cy - r / 3)], fill=colour)
    return img


def make_demo_inputs(folder: Path) -> Path:
    """Draw the demo images and write ``prompts.csv`` (prompt, image_path, model) beside them."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for painter, style in PAINTERS.items():
        for i, (prompt, shapes) in enumerate(SCENES):
            name = f"{painter}-{i}.png"
            _draw(shapes, style["background"], style["shuffle"]).save(folder / name)
            rows.append({"prompt": prompt, "image_path": name, "model": painter})
    path = folder / "prompts.csv"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["prompt", "image_path", "model"])
        writer.writeheader()
        writer.writerows(rows)
    return path


# The tiny judge: thinking capped at this many tokens, then the answer is forced into the schema.
# max_new_tokens leaves room for the longest answer (Creative Generation: 20 facets, about 450 tiny
# tokens). Sampled, not greedy: a random model's greedy choice is the same score everywhere, which
# would make a report of identical numbers; sampled noise at least looks like noise.
TINY_THINKING_BUDGET = 16
TINY_MAX_NEW_TOKENS = 1024
TINY_LAYERS = 1  # half the default depth: the demo is about the pipeline, not the model
# All 40 requests in one generate call: one random stream for every row (two batches with the same
# seed would give both painters the same noise), and the fewest decoding steps.
TINY_BATCH_SIZE = 40
REAL_MAX_NEW_TOKENS = 4096

NOISE_NOTE = (
    "NOTE: the judge was a tiny model with random weights. Its answers were forced into the answer format\n"
    "(constrained decoding after a capped thinking), so every score parses, but every score is noise:\n"
    "it says nothing about the images. Pass --model with a real Q-Judger checkpoint (and --rubric-file\n"
    "with the official checklists.py) for real scores."
)
NOISE_TITLE = "pixeljury demo — random tiny judge: every score here is noise"


@dataclass
class DemoRun:
    """What :func:`run_demo` made: the inputs file, the run's summary, the report, and which judge."""

    inputs: Path
    summary: Any  # pixeljury.runs.outcome.RunSummary
    report: Path
    tiny: bool

    def lines(self) -> list[str]:
        """What the command prints after the run's summary."""
        return [*([NOISE_NOTE] if self.tiny else []),
                f"demo inputs: {self.inputs}",
                f"demo outputs: {self.summary.run_dir.resolve()}",
                f"demo report (open in a browser): {self.report.resolve()}"]


def demo_params(tiny: bool, max_new_tokens: int | None = None) -> Any:
    """Generation settings of the demo: the official ones for a real judge; for the tiny random one,
    constrained sampled decoding with a thinking budget (recorded, and marked not comparable)."""
    from pixeljury.engines.base import GenerationParams

    if not tiny:
        return GenerationParams(max_new_tokens=max_new_tokens or REAL_MAX_NEW_TOKENS)
    return GenerationParams(max_new_tokens=max_new_tokens or TINY_MAX_NEW_TOKENS, temperature=1.0, top_k=0,
                            json_schema_constrained=True, thinking_budget=TINY_THINKING_BUDGET)


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """torch on one CPU thread while the tiny judge runs, as before afterwards. Its matrices are so
    small that extra threads mostly synchronise: on 2 idle cores the demo takes 17 s with one thread
    and 11 s with two, but on 2 cores shared with other work (load 6) 41 s with one and 257 s with
    two, so one thread is the setting that stays quick everywhere."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run_demo(out: Path, *, model: str | None = None, rubric_file: Path | None = None,
             max_new_tokens: int | None = None, quiet: bool = False, on_event: Any = None) -> DemoRun:
    """Draw the demo images into ``out/inputs``, judge them into ``out/run`` (with ``model``, or a tiny
    random judge built in ``out/tiny-judge``), and write ``out/run/report.html``. Reruns resume."""
    from pixeljury.analysis.rundir import load_run
    from pixeljury.engines.factory import EngineSpec, create_engine
    from pixeljury.report.html import ReportOptions, write_report
    from pixeljury.runs.judge import JudgeConfig, run_judge

    from pixeljury.runs.events import Notice, ignore

    emit = on_event or ignore
    out = Path(out)
    inputs = make_demo_inputs(out / "inputs")
    tiny = model is None
    if tiny:
        from pixeljury.testing.tiny import build_tiny_qwen3vl

        model_dir = out / "tiny-judge"
        if not (model_dir / "config.json").exists():
            emit(Notice(f"building a tiny random Qwen3-VL judge in {model_dir} (no real judge given) ..."))
            build_tiny_qwen3vl(model_dir, num_layers=TINY_LAYERS)
        model = str(model_dir)
    batch_size = TINY_BATCH_SIZE if tiny else 4
    config = JudgeConfig(
        input=inputs, out=out / "run", rubric="official" if rubric_file else "builtin", rubric_file=rubric_file,
        params=demo_params(tiny, max_new_tokens), batch_size=batch_size, quiet=quiet,
    )
    spec = EngineSpec(engine="transformers", model=model, batch_size=batch_size)
    with one_torch_thread() if tiny else contextlib.nullcontext():
        summary = run_judge(config, lambda: create_engine(spec), on_event=emit)
    report = summary.run_dir / "report.html"
    options = ReportOptions(title=NOISE_TITLE) if tiny else ReportOptions(title="pixeljury demo")
    write_report([load_run(summary.run_dir)], report, options)
    return DemoRun(inputs=inputs, summary=summary, report=report, tiny=tiny)
