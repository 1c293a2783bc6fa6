"""Writing small run directories in the ``pixeljury judge --out`` format, for tests and demos.

Each record is built from a judge's raw text through the real Q-Judger parser, so the scores in a
fixture are exactly what the pipeline would have written for that text.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pixeljury.protocols.qjudger import parse_generation
from pixeljury.rubric.taxonomy import TREE
from pixeljury.scoring import image_total


@dataclass
class FakeImage:
    model: str
    prompt: str
    image: Path | None
    # L1 -> {L3: raw score (0/1/2/"N/A"/anything)}; a str value is used as the judge's raw text as is.
    verdicts: dict[str, dict[str, Any] | str]
    bench_id: int | None = None
    status: str = "ok"
    errors: list[str] = field(default_factory=list)
    reasoning: str = "The image is checked facet by facet."


def judge_text(l1: str, facets: dict[str, Any], reasoning: str) -> str:
    """A Q-Judger-style answer: thinking, then {L2: {L3: {"score": raw}}}."""
    parents = {l3: l2 for l2, names in TREE[l1].items() for l3 in names}
    grouped: dict[str, dict[str, Any]] = {}
    for l3, raw in facets.items():
        grouped.setdefault(parents.get(l3, "Unknown"), {})[l3] = {"score": raw}
    return f"<think>{reasoning} ({l1})</think>{json.dumps(grouped)}"


def make_record(index: int, item: FakeImage, base: Path) -> dict[str, Any]:
    dims: dict[str, Any] = {}
    results = {}
    for l1, verdict in item.verdicts.items():
        text = verdict if isinstance(verdict, str) else judge_text(l1, verdict, item.reasoning)
        res = parse_generation(text, l1)
        results[l1] = res
        dims[l1] = {**res.as_dict(), "raw_text": text, "finish_reason": "stop", "completion_tokens": len(text) // 4}
    ok = [r for r in results.values() if r.scores is not None]
    l1_scores = {r.dimension: r.scores.l1 for r in ok}  # type: ignore[union-attr]
    scores = {
        "total": image_total(l1_scores) if item.status == "ok" else None,
        "level1": l1_scores,
        "level2": {r.dimension: r.scores.l2 for r in ok},  # type: ignore[union-attr]
        "level3": {r.dimension: r.scores.l3 for r in ok},  # type: ignore[union-attr]
    }
    rel = None if item.image is None else str(item.image)
    absolute = None if item.image is None else (item.image if item.image.is_absolute() else base / item.image)
    digest = hashlib.sha256(absolute.read_bytes()).hexdigest() if absolute and absolute.is_file() else None
    return {
        "row": index, "model": item.model, "ID": item.bench_id, "prompt": item.prompt,
        "image_path": rel, "image_abspath": None if absolute is None else str(absolute), "image_sha256": digest,
        "comparable": False, "status": item.status, "errors": item.errors,
        "input": {"prompt": item.prompt, "image_path": rel, "model": item.model,
                  **({"ID": item.bench_id} if item.bench_id is not None else {})},
        "dimensions": dims, "scores": scores,
    }


def write_run_dir(out: Path, items: list[FakeImage], *, base: Path | None = None, model_id: str = "test/judge") -> Path:
    """Write manifest.json and per_image.jsonl under ``out``; image paths are taken relative to ``base``."""
    out.mkdir(parents=True, exist_ok=True)
    base = base or out
    manifest = {
        "pixeljury_version": "0.1.0", "git_revision": "test", "python": "3", "torch": None, "transformers": None,
        "device": "cpu", "config": {"max_new_tokens": 4096}, "input_sha256": "0" * 64,
        "rubric": {"source": "builtin", "sha256": "1" * 64, "origin": "pixeljury built-in", "comparable": False},
        "judge": {"engine": "fake", "model_id": model_id, "revision": "main"},
        "started_at": "2026-01-01T00:00:00Z", "finished_at": "2026-01-01T00:01:00Z",
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    with open(out / "per_image.jsonl", "w", encoding="utf-8") as fh:
        for i, item in enumerate(items):
            fh.write(json.dumps(make_record(i, item, base)) + "\n")
    return out


# A small, realistic run over images laid out as t2v_metrics' (``<prompt index>/<model file>``): four
# models, two prompts, all five L1 dimensions, with one unreadable answer and some N/A verdicts, so
# every part of a report has data.
T2V_PROMPTS = (
    "The brown dog chases the black dog around the tree.",
    "Two cats sit at the window, the blue one intently watching the rain, the red one curled up asleep.",
)
T2V_MODELS = (("DALLE3", "DALLE3.png"), ("Midjourney", "Midjourney.jpg"), ("SDXL", "SDXL.jpg"), ("DeepFloyd", "DeepFloyd.jpg"))


def _verdicts(strength: int, prompt_index: int) -> dict[str, dict[str, Any] | str]:
    """Deterministic facet verdicts: a stronger model gets more 2s. ``strength`` 0..3."""
    def pick(i: int) -> int:
        return min(2, max(0, (strength + i + prompt_index) * 2 // 4 - (i % 2)))

    out: dict[str, dict[str, Any] | str] = {
        "Quality": {"Physical Logic": pick(1), "Material Texture": pick(2), "Noise": pick(3), "Resolution": pick(4)},
        "Aesthetics": {"Composition": pick(2), "Color Harmony": pick(3), "Lighting & Atmosphere": pick(1)},
        "Alignment": {"Quantity": pick(0), "Color": pick(1), "Full-body Action": pick(2), "2D Space": pick(0)},
        "Real-world Fidelity": {"Animals": pick(3), "Social Bias": "N/A"},
        "Creative Generation": {"Imagination": pick(1), "Cinematic Style": pick(2), "Text Accuracy": "N/A"},
    }
    return out


def sample_run(out: Path, images_dir: Path) -> Path:
    """Write the sample run over ``images_dir/<prompt index>/<file of T2V_MODELS>`` (the shared
    t2v_metrics images, or any images saved in that layout: tests/test_report.py draws its own)."""
    items = []
    for p, prompt in enumerate(T2V_PROMPTS):
        for strength, (model, filename) in zip((3, 2, 1, 0), T2V_MODELS):
            verdicts = _verdicts(strength, p)
            if model == "DeepFloyd" and p == 1:
                verdicts["Alignment"] = "<think>The cats are hard to make out.</think>Scores: mostly fine"  # unparseable
            items.append(FakeImage(model, prompt, images_dir / str(p) / filename, verdicts, bench_id=p,
                                   reasoning=f"Looking at the {model} image for the prompt, facet by facet"))
    return write_run_dir(out, items)
