"""Q-Judger score mapping and hierarchical aggregation. Pure functions, no I/O.

Raw facet scores 0/1/2 map to 0/60/100; "N/A" is excluded; any other value is *invalid*: excluded
too, but counted, never silently treated as N/A. Means are taken only over what remains:

    L2 = mean of its facets,  L1 = mean of its L2s,  image total = mean of its L1s,
    bench L1/L2/L3 = mean over the images that have that entry,
    bench total = mean of the per-image totals (not the mean of the bench L1 columns).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

SCORE_MAP = {0: 0.0, 1: 60.0, 2: 100.0}

Nested = dict[str, dict[str, Any]]


def mean(values: Iterable[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None


def map_raw_score(raw: Any) -> tuple[float | None, str]:
    """(mapped score or None, kind) with kind one of ``score``, ``na``, ``invalid``.

    Accepted as scores: the ints 0/1/2, the strings "0"/"1"/"2", and the floats 0.0/1.0/2.0.
    "N/A" in any case (surrounding spaces ignored) is ``na``. Booleans, 1.5, "high", None... are ``invalid``.
    """
    if isinstance(raw, bool):
        return None, "invalid"
    if isinstance(raw, str):
        s = raw.strip()
        if s.upper() == "N/A":
            return None, "na"
        if s in ("0", "1", "2"):
            return SCORE_MAP[int(s)], "score"
        return None, "invalid"
    if isinstance(raw, int) and raw in SCORE_MAP:
        return SCORE_MAP[raw], "score"
    if isinstance(raw, float) and raw.is_integer() and int(raw) in SCORE_MAP:
        return SCORE_MAP[int(raw)], "score"
    return None, "invalid"


@dataclass
class DimensionScores:
    """Scores of one L1 dimension of one image."""

    l1: float | None
    l2: dict[str, float | None]
    l3: dict[str, dict[str, float | None]]
    n_scored: int = 0
    n_na: int = 0
    invalid: list[dict[str, Any]] = field(default_factory=list)  # {"l2", "l3", "value"}


def score_dimension(grouped: Mapping[str, Mapping[str, Any]]) -> DimensionScores:
    """Score a repaired ``{L2: {L3: {"score": raw} | raw}}`` object."""
    l2_scores: dict[str, float | None] = {}
    l3_scores: dict[str, dict[str, float | None]] = {}
    n_scored = n_na = 0
    invalid: list[dict[str, Any]] = []
    for l2, facets in grouped.items():
        l3_scores[l2] = {}
        for l3, obj in facets.items():
            raw = obj.get("score") if isinstance(obj, Mapping) else obj
            mapped, kind = map_raw_score(raw)
            l3_scores[l2][l3] = mapped
            if kind == "score":
                n_scored += 1
            elif kind == "na":
                n_na += 1
            else:
                invalid.append({"l2": l2, "l3": l3, "value": raw})
        l2_scores[l2] = mean(l3_scores[l2].values())
    return DimensionScores(mean(l2_scores.values()), l2_scores, l3_scores, n_scored, n_na, invalid)


def image_total(l1_scores: Mapping[str, float | None]) -> float | None:
    return mean(l1_scores.values())


@dataclass
class BenchScores:
    """Benchmark-level means over images (one generator model)."""

    total: float | None
    l1: dict[str, float | None]
    l2: dict[str, dict[str, float | None]]
    l3: dict[str, dict[str, dict[str, float | None]]]
    n_images: int  # images that entered aggregation
    n_images_scored: int  # images with a total
    counts: dict[str, dict[str, int]]  # per L1: requests, scored, parse_failures, all_na, errors, truncated, na, invalid

    def as_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "level1": self.l1,
            "level2": self.l2,
            "level3": self.l3,
            "n_images": self.n_images,
            "n_images_scored": self.n_images_scored,
            "counts": self.counts,
        }


def aggregate(images: Iterable[Mapping[str, Any]]) -> BenchScores:
    """Aggregate per-image records. Each record has ``scores`` = {"total", "level1", "level2", "level3"}
    (as written by the judge pipeline) and ``dimensions`` = {L1: {"status", "n_na", "invalid", "truncated"}}."""
    l1_acc: dict[str, list[float]] = defaultdict(list)
    l2_acc: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    l3_acc: dict[str, dict[str, dict[str, list[float]]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    totals: list[float] = []
    counts: dict[str, dict[str, int]] = defaultdict(
        lambda: dict.fromkeys(
            ("requests", "scored", "parse_failures", "all_na", "errors", "truncated", "na", "invalid"), 0
        )
    )
    n_images = 0
    for rec in images:
        n_images += 1
        scores = rec.get("scores") or {}
        if scores.get("total") is not None:
            totals.append(scores["total"])
        for d, v in (scores.get("level1") or {}).items():
            if v is not None:
                l1_acc[d].append(v)
        for d, l2s in (scores.get("level2") or {}).items():
            for l2, v in l2s.items():
                if v is not None:
                    l2_acc[d][l2].append(v)
        for d, l2s in (scores.get("level3") or {}).items():
            for l2, l3s in l2s.items():
                for l3, v in l3s.items():
                    if v is not None:
                        l3_acc[d][l2][l3].append(v)
        for d, info in (rec.get("dimensions") or {}).items():
            c = counts[d]
            c["requests"] += 1
            status = info.get("status")
            key = {"scored": "scored", "parse_failure": "parse_failures", "all_na": "all_na", "error": "errors"}.get(status)
            if key:
                c[key] += 1
            c["truncated"] += int(bool(info.get("truncated")))
            c["na"] += int(info.get("n_na") or 0)
            c["invalid"] += len(info.get("invalid") or [])
    return BenchScores(
        total=mean(totals),
        l1={d: mean(v) for d, v in l1_acc.items()},
        l2={d: {k: mean(v) for k, v in l2s.items()} for d, l2s in l2_acc.items()},
        l3={d: {l2: {l3: mean(v) for l3, v in l3s.items()} for l2, l3s in l2s.items()} for d, l2s in l3_acc.items()},
        n_images=n_images,
        n_images_scored=len(totals),
        counts=dict(counts),
    )
