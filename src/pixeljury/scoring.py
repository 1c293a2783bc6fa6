"""Q-Judger score mapping and hierarchical aggregation. Pure functions, no I/O.

Raw facet scores 0/1/2 map to 0/60/100; "N/A" is excluded; any other value is *invalid*: excluded
too, but counted, never silently treated as N/A. Means are taken only over what remains:

    L2 = mean of its facets,  L1 = mean of its L2s,  image total = mean of its L1s,
    bench L1/L2/L3 = mean over the images that have that entry,
    bench total = mean of the per-image totals (not the mean of the bench L1 columns).

Per-image means use the built-in ``sum``; bench means are exact (``math.fsum(values) / len(values)``)
so that they do not depend on the order, chunking or sharding of the images (``BenchAccumulator``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pixeljury.core.accumulator import Accumulator, ExactMean

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


_COUNT_KEYS = ("requests", "scored", "parse_failures", "all_na", "errors", "truncated", "na", "invalid")
_STATUS_COUNT = {"scored": "scored", "parse_failure": "parse_failures", "all_na": "all_na", "error": "errors"}


class BenchAccumulator(Accumulator):
    """``aggregate()`` one image record at a time, keeping only exact sums and counts: memory is bounded
    by the size of the taxonomy, not by the number of images. ``aggregate(images)`` is ``update()``
    over the images followed by ``compute()``.

    Every mean is an ``ExactMean`` (``math.fsum(values) / len(values)``), so one pass, any chunking
    of it and shards merged in any order give the same numbers and counts, bit for bit. The key order
    of the result's dicts (which becomes the key order of the bench JSON) is the order in which keys
    were first seen: merging keeps it when shards are merged in stream order (``merged([first,
    second, ...])``); merged in another order, the numbers are the same and new keys come in merge order.
    """

    kind = "qjudger-bench"

    def __init__(self) -> None:
        self._l1: dict[str, ExactMean] = {}
        self._l2: dict[str, dict[str, ExactMean]] = {}
        self._l3: dict[str, dict[str, dict[str, ExactMean]]] = {}
        self._total = ExactMean()
        self._counts: dict[str, dict[str, int]] = {}
        self.n_images = 0

    def update(self, rec: Mapping[str, Any]) -> None:
        """Add one per-image record: ``scores`` = {"total", "level1", "level2", "level3"} and
        ``dimensions`` = {L1: {"status", "n_na", "invalid", "truncated"}}. None scores are skipped."""
        self.n_images += 1
        scores = rec.get("scores") or {}
        if scores.get("total") is not None:
            self._total.update(scores["total"])
        for d, v in (scores.get("level1") or {}).items():
            if v is not None:
                _acc(self._l1, d).update(v)
        for d, l2s in (scores.get("level2") or {}).items():
            for l2, v in l2s.items():
                if v is not None:
                    _acc(_sub(self._l2, d), l2).update(v)
        for d, l2s in (scores.get("level3") or {}).items():
            for l2, l3s in l2s.items():
                for l3, v in l3s.items():
                    if v is not None:
                        _acc(_sub(_sub(self._l3, d), l2), l3).update(v)
        for d, info in (rec.get("dimensions") or {}).items():
            c = _count_row(self._counts, d)
            c["requests"] += 1
            key = _STATUS_COUNT.get(info.get("status"))
            if key:
                c[key] += 1
            c["truncated"] += int(bool(info.get("truncated")))
            c["na"] += int(info.get("n_na") or 0)
            c["invalid"] += len(info.get("invalid") or [])

    add = update

    def compute(self) -> BenchScores:
        return BenchScores(
            total=self._total.compute(),
            l1=_means(self._l1, 1),
            l2=_means(self._l2, 2),
            l3=_means(self._l3, 3),
            n_images=self.n_images,
            n_images_scored=self._total.n,
            counts={d: dict(c) for d, c in self._counts.items()},
        )

    result = compute

    def merge(self, other: BenchAccumulator | Mapping[str, Any]) -> BenchAccumulator:
        other = self._coerce(other)
        if other is self:
            other = other.copy()
        self._total.merge(other._total)
        _merge_means(self._l1, other._l1, 1)
        _merge_means(self._l2, other._l2, 2)
        _merge_means(self._l3, other._l3, 3)
        for d, c in other._counts.items():
            mine = _count_row(self._counts, d)
            for k in _COUNT_KEYS:
                mine[k] += c[k]
        self.n_images += other.n_images
        return self

    def _state_body(self) -> dict[str, Any]:
        # JSON keeps the key order of these dicts, so a state round trip keeps first-seen order.
        return {"n_images": self.n_images, "total": self._total._state_body(),
                "level1": _mean_states(self._l1, 1), "level2": _mean_states(self._l2, 2),
                "level3": _mean_states(self._l3, 3), "counts": {d: dict(c) for d, c in self._counts.items()}}

    @classmethod
    def _from_body(cls, body: Mapping[str, Any]) -> BenchAccumulator:
        out = cls()
        out.n_images = int(body["n_images"])
        out._total = ExactMean._from_body(body["total"])
        out._l1 = _means_from_states(body["level1"], 1)
        out._l2 = _means_from_states(body["level2"], 2)
        out._l3 = _means_from_states(body["level3"], 3)
        for d, c in body["counts"].items():
            row = _count_row(out._counts, d)
            for k in _COUNT_KEYS:
                row[k] = int(c[k])
        return out


def _count_row(counts: dict[str, dict[str, int]], d: str) -> dict[str, int]:
    c = counts.get(d)
    if c is None:
        c = counts[d] = dict.fromkeys(_COUNT_KEYS, 0)
    return c


def _means(table: Mapping[str, Any], depth: int) -> dict[str, Any]:
    """A nested table of ExactMean (``depth`` levels of keys) -> the same table of their means."""
    if depth == 1:
        return {k: m.compute() for k, m in table.items()}
    return {k: _means(sub, depth - 1) for k, sub in table.items()}


def _merge_means(mine: dict[str, Any], theirs: Mapping[str, Any], depth: int) -> None:
    """Merge a nested table of ExactMean into another; keys new to ``mine`` are appended in order."""
    for k, sub in theirs.items():
        if depth == 1:
            _acc(mine, k).merge(sub)
        else:
            _merge_means(_sub(mine, k), sub, depth - 1)


def _mean_states(table: Mapping[str, Any], depth: int) -> dict[str, Any]:
    if depth == 1:
        return {k: m._state_body() for k, m in table.items()}
    return {k: _mean_states(sub, depth - 1) for k, sub in table.items()}


def _means_from_states(states: Mapping[str, Any], depth: int) -> dict[str, Any]:
    if depth == 1:
        return {k: ExactMean._from_body(s) for k, s in states.items()}
    return {k: _means_from_states(sub, depth - 1) for k, sub in states.items()}


def _acc(table: dict[str, ExactMean], key: str) -> ExactMean:
    m = table.get(key)
    if m is None:
        m = table[key] = ExactMean()
    return m


def _sub(table: dict[str, Any], key: str) -> dict[str, Any]:
    sub = table.get(key)
    if sub is None:
        sub = table[key] = {}
    return sub


def aggregate(images: Iterable[Mapping[str, Any]]) -> BenchScores:
    """Aggregate per-image records (see ``BenchAccumulator.add`` for their form)."""
    return BenchAccumulator().update_many(images).compute()
