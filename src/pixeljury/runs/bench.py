"""The bench files of a run: one JSON per generator model (means at every level, counts), their file
names, and the one-line-per-model summary table."""

from __future__ import annotations

import hashlib
import json
import re
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pixeljury.rubric.taxonomy import L1_NAMES
from pixeljury.runs.manifest import MANIFEST_NAME
from pixeljury.scoring import BenchAccumulator


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "model"


def name_hash(name: str) -> str:
    """First 8 hex digits of the SHA-256 of the exact model name (UTF-8)."""
    return hashlib.sha256(name.encode("utf-8")).hexdigest()[:8]


def bench_file_names(models: Iterable[str]) -> dict[str, str]:
    """Model name -> its file name in ``bench/``.

    A name made only of ``A-Z a-z 0-9 . _ -`` (its own slug) is used as it is: ``SDXL`` -> ``SDXL.json``.
    Any other name gets its slug plus the first 8 hex digits of the SHA-256 of the exact name:
    ``sdxl/base`` -> ``sdxl_base-<hash>.json``, so names that slug alike never share a file, and a
    model's file name does not depend on which other models are in the run. Names longer than 120
    characters are cut to 120 and hashed. Should two names still map to one file on a case-insensitive
    file system (``SDXL`` and ``sdxl``), all of those get the hash.
    """
    models = list(dict.fromkeys(models))
    hashed = {m: f"{slug(m)[:_MAX_STEM]}-{name_hash(m)}" for m in models}
    stems = {m: m if slug(m) == m and len(m) <= _MAX_STEM else hashed[m] for m in models}
    folded: dict[str, list[str]] = defaultdict(list)
    for m, stem in stems.items():
        folded[stem.casefold()].append(m)
    for group in folded.values():
        if len(group) > 1:
            for m in group:
                stems[m] = hashed[m]
    return {m: f"{stem}.json" for m, stem in stems.items()}


_MAX_STEM = 120  # longer names are cut (and hashed): file names stay well under the usual 255-byte limit


class ModelBench:
    """The bench JSON of one generator model, built one image record at a time."""

    def __init__(self, model: str):
        self.model = model
        self.scores = BenchAccumulator()  # rows with status "ok" only
        self.rows = self.row_errors = self.duplicates = 0
        self.all_comparable = True

    def add(self, rec: dict[str, Any]) -> None:
        self.rows += 1
        self.row_errors += rec["status"] == "row_error"
        self.duplicates += rec["status"] == "duplicate"
        if rec["status"] == "ok":
            self.scores.update(rec)
            self.all_comparable = self.all_comparable and bool(rec["comparable"])

    def result(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "manifest": f"../{MANIFEST_NAME}",
            "comparable": self.scores.n_images > 0 and self.all_comparable,
            **self.scores.compute().as_dict(),
            "rows": self.rows,
            "row_errors": self.row_errors,
            "duplicates": self.duplicates,
        }


def bench_by_model(records: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Model -> bench JSON, models in order of first appearance."""
    benches: dict[str, ModelBench] = {}
    for rec in records:
        b = benches.get(rec["model"])
        if b is None:
            b = benches[rec["model"]] = ModelBench(rec["model"])
        b.add(rec)
    return {m: b.result() for m, b in benches.items()}


def summary_rows(bench: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    ranked = sorted(bench.values(), key=lambda b: (b["total"] is None, -(b["total"] or 0)))
    rows = []
    for rank, b in enumerate(ranked, 1):
        counts = b["counts"].values()
        rows.append({
            "rank": rank if b["total"] is not None else None, "model": b["model"], "n_images": b["n_images"],
            "n_images_scored": b["n_images_scored"], "total": b["total"],
            **{l1: b["level1"].get(l1) for l1 in L1_NAMES},
            "requests": sum(c["requests"] for c in counts), "parse_failures": sum(c["parse_failures"] for c in counts),
            "errors": sum(c["errors"] for c in counts), "row_errors": b["row_errors"], "comparable": b["comparable"],
            "manifest": MANIFEST_NAME,
        })
    return rows


def is_bench_file(path: Path) -> bool:
    """A file this module wrote into bench/: a JSON object with our "model" and "manifest" fields."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and "model" in data and data.get("manifest") == f"../{MANIFEST_NAME}"
