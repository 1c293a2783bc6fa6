"""Score a deterministic set of Q-Judger answers with upstream's own ``score_utils.py`` and write them,
with upstream's L1 / L2 / L3 numbers, to ``tests/fixtures/upstream_parser_golden.json``.

``tests/test_qjudger_upstream_diff.py`` compares pixeljury's reading of every answer with these numbers.
Upstream's file is loaded from a path outside the repository and executed (it is plain functions and
dicts); nothing of it is copied into the fixture except its SHA-256 and the numbers it computes.

The fixture was produced with (from the repository root; the QwenLM/Qwen-Image-Bench history, e.g.
the Stability-AI/Qwen-Image-Bench mirror, cloned at /tmp/Qwen-Image-Bench):

    mkdir -p /tmp/upstream_qib
    git -C /tmp/Qwen-Image-Bench show b6b556bb14dcb37da873bbb571c29273562804f2:score_utils.py \\
        > /tmp/upstream_qib/score_utils.py
    .venv/bin/python scripts/upstream_parser_golden.py /tmp/upstream_qib/score_utils.py

The pinned file's SHA-256 is 48a28d8cd457e39d19ce2fe56344ce70f7fbc60a8b705d96e533ffd1a837d5b4. Later
commits of the mirror (1e8e78c and on) drop 18 facets from ``CHECKLIST_L3_TO_L2``, so they regroup
answers differently; the script refuses another file unless ``--any-version`` is given.

Each case records how upstream ended: ``scored`` (its three levels, plus the value it read for each
facet it scored from anything but the int 0, 1 or 2: ``coerced``), ``no_json`` (its extractor found
nothing) or ``raises`` (the exception's type). For an answer wrapped in the request's own L1 name,
which pixeljury unwraps and upstream does not, upstream's numbers for the unwrapped object are
recorded too (``upstream_of_inner``).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import math
import random
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

PINNED_SHA256 = "48a28d8cd457e39d19ce2fe56344ce70f7fbc60a8b705d96e533ffd1a837d5b4"
PINNED_COMMIT = "b6b556bb14dcb37da873bbb571c29273562804f2"
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "upstream_parser_golden.json"
SEED = 20260605

# Values a judge has been seen to give, or could: every form upstream's int() coerces, and the ones it
# cannot. Kept JSON-encodable (NaN and Infinity are written the way Python's json module writes them).
VALUES: list[Any] = [
    0, 1, 2, -1, 3, 10**30, True, False, None,
    "0", "1", "2", " 1 ", "2\n", "01", "+1", "-0", "\uff12", "\uff11", "1.0", "1_0", "3",
    "N/A", "n/a", " N/A ", "NA", "high", "", "score",
    0.0, 1.0, 2.0, -0.0, 2.7, 0.9999, 1.5, -0.5, 2.999, 1e-300, 3.5,
    [1], {"score": 1}, {}, math.nan, math.inf,
]
SCORES = [0, 1, 2, "N/A"]  # what a well-behaved judge answers
COMMENTS = ["flat lighting", "no people in the image", "N/A because nothing to judge"]


def load_upstream(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("upstream_score_utils", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def upstream_tree(upstream: ModuleType) -> dict[str, dict[str, list[str]]]:
    """L1 -> L2 -> facets, read from upstream's own L3-to-L2 table (so the cases use its names)."""
    tree: dict[str, dict[str, list[str]]] = {}
    for l1, mapping in upstream.CHECKLIST_L3_TO_L2.items():
        for l3, l2 in mapping.items():
            tree.setdefault(l1, {}).setdefault(l2, []).append(l3)
    return tree


def run_upstream(upstream: ModuleType, text: str, dimension: str) -> dict[str, Any]:
    """Upstream's pipeline for one answer: extract, fix the shape, score."""
    obj = upstream.extract_json_from_response(text)
    if obj is None:
        return {"outcome": "no_json"}
    try:
        fixed = upstream.fix_score_json(obj, dimension)
        scores = upstream.compute_dimension_score(fixed)
    except Exception as exc:  # recorded: the differential test checks pixeljury survives these
        return {"outcome": "raises", "error": type(exc).__name__}
    # For each facet upstream gave a number from something other than the int 0, 1 or 2, the value it
    # read: a test can tell which coercion produced the number. (Kept sparse to keep the fixture small.)
    coerced: dict[str, dict[str, Any]] = {}
    for l2, facets in fixed.items():
        for l3, entry in facets.items():
            raw = entry.get("score") if isinstance(entry, dict) else entry
            if scores["level3_scores"][l2][l3] is not None and not (type(raw) is int and raw in (0, 1, 2)):
                coerced.setdefault(l2, {})[l3] = raw
    return {"outcome": "scored", "level1": scores["level1_score"], "level2": scores["level2_scores"],
            "level3": scores["level3_scores"], "coerced": coerced}


def own_l1_inner(obj: Any, dimension: str) -> dict[str, Any] | None:
    """The object pixeljury unwraps (its documented rule): a single key naming the request's own L1, case
    and surrounding spaces ignored, whose value is an object without a "score"."""
    if isinstance(obj, dict) and len(obj) == 1:
        (key, inner), = obj.items()
        if key.strip().casefold() == dimension.casefold() and isinstance(inner, dict) and "score" not in inner:
            return inner
    return None


class CaseMaker:
    def __init__(self, tree: dict[str, dict[str, list[str]]], rng: random.Random) -> None:
        self.tree, self.rng = tree, rng
        self.cases: list[dict[str, Any]] = []

    def add(self, family: str, dimension: str, answer: Any, **extra: Any) -> None:
        text = answer if isinstance(answer, str) else json.dumps(answer, ensure_ascii=self.rng.random() < 0.5)
        self.cases.append({"family": family, "dimension": dimension, "answer": text, **extra})

    def value(self, pool: list[Any] | None = None) -> Any:
        return self.rng.choice(pool or SCORES)

    def nested(self, l1: str, pool: list[Any] | None = None, share: float = 1.0) -> dict[str, Any]:
        """An answer in the requested shape {L2: {L3: {"score": v}}}, each facet kept with probability share."""
        answer: dict[str, Any] = {}
        for l2, facets in self.tree[l1].items():
            kept = {l3: {"score": self.value(pool)} for l3 in facets if self.rng.random() < share}
            if kept:
                answer[l2] = kept
        if not answer:  # never empty: keep the first facet
            l2, facets = next(iter(self.tree[l1].items()))
            answer[l2] = {facets[0]: {"score": self.value(pool)}}
        return answer

    def flat(self, l1: str, pool: list[Any] | None = None, share: float = 1.0) -> dict[str, Any]:
        return {l3: entry for facets in self.nested(l1, pool, share).values() for l3, entry in facets.items()}

    def l3s(self, l1: str) -> list[str]:
        return [l3 for facets in self.tree[l1].values() for l3 in facets]

    def single_facet_l2s(self, l1: str) -> list[str]:
        return [l2 for l2, facets in self.tree[l1].items() if len(facets) == 1]


def wrapper_cases(make: CaseMaker) -> None:
    """Answers wrapped in an L1 name: the request's own (pixeljury unwraps) and every other (it must not)."""
    example = {"Quality": {"Realism": {"Physical Logic": {"score": 2}}}}
    make.add("other_l1_wrapper", "Aesthetics", example, note="the issue's example")
    for request in make.tree:
        for wrapper in make.tree:
            family = "own_l1_wrapper" if wrapper == request else "other_l1_wrapper"
            inners = [make.nested(wrapper, share=0.4), make.flat(wrapper, share=0.4),
                      make.nested(request, share=0.4), make.flat(request, share=0.4),
                      {**make.flat(request, share=0.25), **make.nested(request, share=0.25)}]
            for inner in inners:
                key = make.rng.choice([wrapper, wrapper, wrapper.lower(), f" {wrapper.upper()} "])
                make.add(family, request, {key: inner})
            make.add("other_l1_wrapper" if wrapper != request else "own_l1_wrapper", request, {wrapper: {}})


def score_in_score_cases(make: CaseMaker) -> None:
    """A single-facet L2 given as one score: {"score": x}, {"score": {"score": x}}, with or without a reason."""
    for l1 in make.tree:
        for l2 in make.single_facet_l2s(l1):
            others = {k: v for k, v in make.nested(l1, share=0.5).items() if k != l2}
            for x in [0, 2, "N/A", True, 1.5]:
                for inner in ({"score": {"score": x}}, {"score": x}, {"score": {"score": x}, "reason": "because"},
                              {"score": x, "reason": make.rng.choice(COMMENTS)}, {"score": x, "reason": "2"}):
                    make.add("score_in_score", l1, {**others, l2: inner})  # after a nested L2
                    if make.rng.random() < 0.2:
                        make.add("score_in_score", l1, {l2: inner, **others})  # first, so shape detection sees it
            # Another facet landing in the same L2 keeps upstream's facet named "score".
            facet = make.tree[l1][l2][0]
            make.add("score_in_score", l1, {"Somewhere": {facet: {"score": 2}}, l2: {"score": {"score": 0}}})


def value_cases(make: CaseMaker) -> None:
    """Every value of VALUES in one facet, given as {"score": v} and bare, in nested and flat answers."""
    for value in VALUES:
        for l1 in make.rng.sample(list(make.tree), 2):
            l2 = make.rng.choice(list(make.tree[l1]))
            l3 = make.rng.choice(make.tree[l1][l2])
            for bare in (False, True):
                entry = value if bare else {"score": value}
                probe = {"l2": l2, "l3": l3, "value": value, "bare": bare}
                nested = make.nested(l1, share=0.15)
                nested.setdefault(l2, {})[l3] = entry
                make.add("value", l1, nested, probe=probe)
                # A flat answer is recognised by its first value, so lead with another facet's entry.
                lead = make.rng.choice([f for f in make.l3s(l1) if f != l3])
                flat = {lead: {"score": 1}, **make.flat(l1, share=0.15)}
                flat.pop(l3, None)
                flat[l3] = entry
                make.add("value", l1, flat, probe=probe)


def random_entry(make: CaseMaker) -> Any:
    rng = make.rng
    roll = rng.random()
    if roll < 0.65:
        return {"score": make.value(SCORES + SCORES + VALUES)}
    if roll < 0.75:
        return {"score": make.value(), "reason": rng.choice(COMMENTS)}
    if roll < 0.85:
        return make.value(SCORES + VALUES)
    if roll < 0.92:
        return {"Noise": {"score": make.value()}}  # an object where a score belongs
    return rng.choice([{}, {"reason": "no score"}, [2], "2"])


def random_cases(make: CaseMaker, count: int) -> None:
    """Mixed shapes: flat, nested, both in one answer, misplaced, misspelt, unknown and duplicate facets."""
    rng = make.rng
    l1s = list(make.tree)
    for _ in range(count):
        l1 = rng.choice(l1s)
        facets = [(l2, l3) for l2, l3s in make.tree[l1].items() for l3 in l3s]
        foreign = [(l2, l3) for other in l1s if other != l1 for l2, l3s in make.tree[other].items() for l3 in l3s]
        picked = rng.sample(facets, rng.randint(1, min(5, len(facets))))
        if rng.random() < 0.2:
            picked.append(rng.choice(foreign))
        if rng.random() < 0.15:
            picked.append((rng.choice(list(make.tree[l1])), rng.choice(facets)[1]))  # misplaced or repeated
        if l1 == "Creative Generation" and rng.random() < 0.4:
            picked.append(("Feature Matching", "Feature Mapping"))
        answer: dict[str, Any] = {}
        shape = rng.choice(["flat", "nested", "nested", "mixed"])
        for l2, l3 in picked:
            entry = random_entry(make)
            if shape == "flat" or (shape == "mixed" and rng.random() < 0.5):
                answer[l3] = entry
            else:
                group = answer.setdefault(l2, {})
                if isinstance(group, dict):  # may be a flat facet entry of the same name: then it grows a facet
                    group[l3] = entry
        if rng.random() < 0.1:
            answer[rng.choice(list(make.tree[l1]))] = rng.choice([2, "2", [1], None, {"score": 1}])
        if rng.random() < 0.08:
            answer = {rng.choice([l1, rng.choice(l1s)]): answer}
        text = json.dumps(answer, ensure_ascii=rng.random() < 0.5, indent=rng.choice([None, None, None, 1]))
        text = rng.choice(["", "<think>weighing {\"score\": 0}</think>\n", "```json\n"]) + text
        make.add("random", l1, text + rng.choice(["", "\n```", "\nHope this helps."]))


def odd_answer_cases(make: CaseMaker) -> None:
    for text in ["{}", "[]", "[1, 2]", "no json here", '{"Realism": 2}', '{"Realism": [1, 2], "Detail": "2"}',
                 '{"Resolution": {"Resolution": {"score": Infinity}}}', '{"Realism": {"Noise": -Infinity}}']:
        make.add("odd", "Quality", text)


def build(upstream: ModuleType, seed: int) -> list[dict[str, Any]]:
    make = CaseMaker(upstream_tree(upstream), random.Random(seed))
    wrapper_cases(make)
    score_in_score_cases(make)
    value_cases(make)
    random_cases(make, 620)
    odd_answer_cases(make)
    for number, case in enumerate(make.cases):
        case["id"] = number
        case["upstream"] = run_upstream(upstream, case["answer"], case["dimension"])
        inner = own_l1_inner(upstream.extract_json_from_response(case["answer"]), case["dimension"])
        if inner is not None:
            case["upstream_of_inner"] = run_upstream(upstream, json.dumps(inner), case["dimension"])
    return make.cases


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("score_utils", type=Path, help="upstream's score_utils.py (outside this repository)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--any-version", action="store_true", help="accept a score_utils.py other than the pinned one")
    args = parser.parse_args(argv)
    sha256 = hashlib.sha256(args.score_utils.read_bytes()).hexdigest()
    if sha256 != PINNED_SHA256 and not args.any_version:
        raise SystemExit(f"{args.score_utils}: SHA-256 {sha256} is not the pinned upstream file ({PINNED_SHA256})")
    cases = build(load_upstream(args.score_utils), args.seed)
    meta = {"upstream_commit": PINNED_COMMIT if sha256 == PINNED_SHA256 else None, "score_utils_sha256": sha256,
            "seed": args.seed, "generator": "scripts/upstream_parser_golden.py", "cases": len(cases)}
    # One case per line: diffs of a regenerated fixture stay readable.
    lines = [json.dumps(case, ensure_ascii=True, sort_keys=False) for case in cases]
    args.out.write_text('{"meta": ' + json.dumps(meta) + ',\n"cases": [\n' + ",\n".join(lines) + "\n]}\n",
                        encoding="utf-8")
    print(f"wrote {len(cases)} cases to {args.out} ({args.out.stat().st_size:,} bytes)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
