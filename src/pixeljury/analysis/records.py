"""Typed results of a judge run: one :class:`JudgedImage` per input row with one :class:`DimensionResult`
per L1 dimension, the one function that flattens scores into columns, and the one place that counts
requests, failures and N/A verdicts (:class:`Tally`).

Exports (``runs.exports``), leaderboards, the report and ``agree`` all read results through these
types, whether the records come from the result store or from a run directory's per_image.jsonl, so
a column name, a failure rate or an N/A rate means the same thing everywhere. Imports nothing heavy
and no other analysis module, so the runner may use it too."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pixeljury.rubric.taxonomy import L1_NAMES, TREE

# Failure stages (the ``stage`` column of the store's failures table) that concern the row's image
# itself rather than one request: such a failure is said on the image record too.
IMAGE_STAGES = frozenset({"image"})


@dataclass(frozen=True)
class DimensionResult:
    """One L1 dimension of one image: how its request ended and what it gave."""

    name: str
    status: str  # scored, all_na, parse_failure, error
    level1: float | None = None
    n_scored: int = 0  # facet verdicts with a score
    n_na: int = 0  # facet verdicts "N/A"
    n_invalid: int = 0  # facet verdicts that were neither
    truncated: bool = False
    error: str | None = None
    permanent: bool = False
    detail: Mapping[str, Any] = field(default_factory=dict)  # the entry as written (parsed, level3, raw_text...)

    @property
    def facets(self) -> int:
        """Facet verdicts returned: scored, N/A and invalid."""
        return self.n_scored + self.n_na + self.n_invalid

    @classmethod
    def from_dict(cls, name: str, entry: Mapping[str, Any]) -> DimensionResult:
        return cls(
            name=name, status=entry.get("status"), level1=entry.get("level1"),
            n_scored=int(entry.get("n_scored") or 0), n_na=int(entry.get("n_na") or 0),
            n_invalid=len(entry.get("invalid") or []), truncated=bool(entry.get("truncated")),
            error=entry.get("error"), permanent=bool(entry.get("permanent")), detail=entry,
        )


@dataclass(frozen=True)
class JudgedImage:
    """One input row of a judge run (one line of per_image.jsonl)."""

    row: int | None
    model: str  # as text: the model's name is a label, whatever type the input gave it
    prompt: str | None
    status: str  # ok, row_error, duplicate
    dimensions: dict[str, DimensionResult]
    scores: Mapping[str, Any]  # {"total", "level1", "level2", "level3"}
    errors: tuple[str, ...] = ()
    comparable: bool | None = None
    record: Mapping[str, Any] = field(default_factory=dict)  # the record as written, every field

    @property
    def scored(self) -> bool:
        """The row entered scoring (row errors and duplicates do not)."""
        return self.status == "ok"

    @property
    def total(self) -> float | None:
        return self.scores.get("total")

    def flat_scores(self) -> dict[str, float | None]:
        """:func:`flat_scores` of a row that entered scoring; nothing for one that did not."""
        return flat_scores(self.scores) if self.scored else {}

    def tally(self) -> Tally:
        t = Tally()
        for dim in self.dimensions.values():
            t.add(dim)
        return t

    @classmethod
    def from_dict(cls, rec: Mapping[str, Any]) -> JudgedImage:
        dims = rec.get("dimensions") or {}
        return cls(
            row=rec.get("row"), model=str(rec.get("model")), prompt=rec.get("prompt"), status=rec.get("status"),
            dimensions={name: DimensionResult.from_dict(name, entry) for name, entry in dims.items()},
            scores=rec.get("scores") or {}, errors=tuple(rec.get("errors") or ()), comparable=rec.get("comparable"),
            record=rec,
        )


def judged_images(records: Iterable[Mapping[str, Any]]) -> list[JudgedImage]:
    return [JudgedImage.from_dict(r) for r in records]


# --- flat score columns --------------------------------------------------------------------------


def score_columns() -> list[str]:
    """Flat names of every score a record can carry, each L1 followed by its L2s and their L3s:
    ``total``, ``L1``, ``L1/L2``, ``L1/L2/L3``. (One L3 name contains a slash; names are only ever
    built, never split.)"""
    cols = ["total"]
    for l1, l2s in TREE.items():
        cols.append(l1)
        for l2, facets in l2s.items():
            cols.append(f"{l1}/{l2}")
            cols.extend(f"{l1}/{l2}/{l3}" for l3 in facets)
    return cols


def level_columns() -> list[str]:
    """The same names level by level (``total``, every L1, every L2, every L3): the score columns of
    per_image.csv, per_image.parquet and the Images sheet."""
    return (["total", *L1_NAMES] + [f"{l1}/{l2}" for l1, l2s in TREE.items() for l2 in l2s]
            + [f"{l1}/{l2}/{l3}" for l1, l2s in TREE.items() for l2, l3s in l2s.items() for l3 in l3s])


def flat_scores(scores: Mapping[str, Any]) -> dict[str, float | None]:
    """Nested scores ``{"total", "level1", "level2", "level3"}`` under flat names (``total``, ``L1``,
    ``L1/L2``, ``L1/L2/L3``): the entries present, total first, then level by level. Names outside
    the taxonomy are kept."""
    flat: dict[str, float | None] = {"total": scores.get("total")}
    for l1, value in (scores.get("level1") or {}).items():
        flat[l1] = value
    for l1, l2s in (scores.get("level2") or {}).items():
        for l2, value in l2s.items():
            flat[f"{l1}/{l2}"] = value
    for l1, l2s in (scores.get("level3") or {}).items():
        for l2, l3s in l2s.items():
            for l3, value in l3s.items():
                flat[f"{l1}/{l2}/{l3}"] = value
    return flat


# --- counting requests, failures and N/A ---------------------------------------------------------


@dataclass
class Tally:
    """Requests (one per image and L1 dimension) by how they ended, and facet verdicts by kind."""

    requests: int = 0
    scored: int = 0
    all_na: int = 0
    parse_failures: int = 0
    errors: int = 0
    na: int = 0  # facet verdicts "N/A"
    facets: int = 0  # facet verdicts returned: scored, N/A and invalid

    def add(self, dim: DimensionResult) -> None:
        self.requests += 1
        self.scored += dim.status == "scored"
        self.all_na += dim.status == "all_na"
        self.parse_failures += dim.status == "parse_failure"
        self.errors += dim.status == "error"
        self.na += dim.n_na
        self.facets += dim.facets

    def merge(self, other: Tally) -> Tally:
        for name in ("requests", "scored", "all_na", "parse_failures", "errors", "na", "facets"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        return self

    @property
    def parse_failure_rate(self) -> float | None:
        """Parse failures per request; None without requests."""
        return self.parse_failures / self.requests if self.requests else None

    @property
    def na_rate(self) -> float | None:
        """N/A verdicts per facet verdict; None without verdicts."""
        return self.na / self.facets if self.facets else None


def tally(images: Iterable[JudgedImage]) -> Tally:
    """Every request of ``images``, all dimensions together."""
    out = Tally()
    for image in images:
        for dim in image.dimensions.values():
            out.add(dim)
    return out


def tally_by_dimension(images: Iterable[JudgedImage]) -> dict[str, Tally]:
    """The requests of ``images`` per L1 dimension, dimensions in order of first appearance."""
    out: dict[str, Tally] = {}
    for image in images:
        for name, dim in image.dimensions.items():
            out.setdefault(name, Tally()).add(dim)
    return out
