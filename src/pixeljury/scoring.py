"""Q-Judger score mapping and hierarchical aggregation. Pure functions, no I/O.

Raw facet scores 0/1/2 map to 0/60/100; "N/A" is excluded; any other value is *invalid*: excluded
too, but counted, never silently treated as N/A. Means are taken only over what remains:

    L2 = mean of its facets,  L1 = mean of its L2s,  image total = mean of its L1s,
    bench L1/L2/L3 = mean over the images that have that entry,
    bench total = mean of the per-image totals (not the mean of the bench L1 columns).
"""

from __future__ import annotations

import math
import sys
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


class RunningMean:
    """``mean()`` of a stream of floats without keeping them: the result equals ``mean(list_of_them)``
    bit for bit on the running interpreter, because the sum is taken the way the built-in ``sum``
    takes it (left to right; from Python 3.12 with Neumaier compensation, as CPython's float ``sum``)."""

    __slots__ = ("hi", "lo", "n")

    def __init__(self) -> None:
        self.hi = 0.0  # running sum
        self.lo = 0.0  # compensation (3.12+)
        self.n = 0

    def add(self, value: float) -> None:
        x = float(value)
        self.n += 1
        if _COMPENSATED_SUM:
            t = self.hi + x
            if abs(self.hi) >= abs(x):
                self.lo += (self.hi - t) + x
            else:
                self.lo += (x - t) + self.hi
            self.hi = t
        else:
            self.hi += x

    def value(self) -> float | None:
        if not self.n:
            return None
        total = self.hi
        if self.lo and math.isfinite(self.lo):
            total += self.lo
        return total / self.n


_COMPENSATED_SUM = sys.version_info >= (3, 12) and sys.implementation.name == "cpython"

_COUNT_KEYS = ("requests", "scored", "parse_failures", "all_na", "errors", "truncated", "na", "invalid")
_STATUS_COUNT = {"scored": "scored", "parse_failure": "parse_failures", "all_na": "all_na", "error": "errors"}


class BenchAccumulator:
    """``aggregate()`` one image record at a time, keeping only running sums and counts: memory is
    bounded by the size of the taxonomy, not by the number of images. ``aggregate(images)`` is
    ``add()`` over the images followed by ``result()``."""

    def __init__(self) -> None:
        self._l1: dict[str, RunningMean] = {}
        self._l2: dict[str, dict[str, RunningMean]] = {}
        self._l3: dict[str, dict[str, dict[str, RunningMean]]] = {}
        self._total = RunningMean()
        self._counts: dict[str, dict[str, int]] = {}
        self.n_images = 0

    def add(self, rec: Mapping[str, Any]) -> None:
        """Add one per-image record: ``scores`` = {"total", "level1", "level2", "level3"} and
        ``dimensions`` = {L1: {"status", "n_na", "invalid", "truncated"}}. None scores are skipped."""
        self.n_images += 1
        scores = rec.get("scores") or {}
        if scores.get("total") is not None:
            self._total.add(scores["total"])
        for d, v in (scores.get("level1") or {}).items():
            if v is not None:
                _acc(self._l1, d).add(v)
        for d, l2s in (scores.get("level2") or {}).items():
            for l2, v in l2s.items():
                if v is not None:
                    _acc(_sub(self._l2, d), l2).add(v)
        for d, l2s in (scores.get("level3") or {}).items():
            for l2, l3s in l2s.items():
                for l3, v in l3s.items():
                    if v is not None:
                        _acc(_sub(_sub(self._l3, d), l2), l3).add(v)
        for d, info in (rec.get("dimensions") or {}).items():
            c = self._counts.get(d)
            if c is None:
                c = self._counts[d] = dict.fromkeys(_COUNT_KEYS, 0)
            c["requests"] += 1
            key = _STATUS_COUNT.get(info.get("status"))
            if key:
                c[key] += 1
            c["truncated"] += int(bool(info.get("truncated")))
            c["na"] += int(info.get("n_na") or 0)
            c["invalid"] += len(info.get("invalid") or [])

    def result(self) -> BenchScores:
        return BenchScores(
            total=self._total.value(),
            l1={d: m.value() for d, m in self._l1.items()},
            l2={d: {k: m.value() for k, m in l2s.items()} for d, l2s in self._l2.items()},
            l3={d: {l2: {l3: m.value() for l3, m in l3s.items()} for l2, l3s in l2s.items()}
                for d, l2s in self._l3.items()},
            n_images=self.n_images,
            n_images_scored=self._total.n,
            counts={d: dict(c) for d, c in self._counts.items()},
        )


def _acc(table: dict[str, RunningMean], key: str) -> RunningMean:
    m = table.get(key)
    if m is None:
        m = table[key] = RunningMean()
    return m


def _sub(table: dict[str, Any], key: str) -> dict[str, Any]:
    sub = table.get(key)
    if sub is None:
        sub = table[key] = {}
    return sub


def aggregate(images: Iterable[Mapping[str, Any]]) -> BenchScores:
    """Aggregate per-image records (see ``BenchAccumulator.add`` for their form)."""
    acc = BenchAccumulator()
    for rec in images:
        acc.add(rec)
    return acc.result()
