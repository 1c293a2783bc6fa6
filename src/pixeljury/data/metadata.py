"""Qwen-Image-Bench metadata: benchmark ID -> the facets (``dims_en``) its prompt tests."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pixeljury.rubric.taxonomy import canonical_l1


class MetadataError(ValueError):
    pass


@dataclass(frozen=True)
class FacetPath:
    l1: str
    l2: str
    l3: str


def parse_dims(dims_en: str) -> list[FacetPath]:
    """``"L1 / L2 / L3; L1 / L2 / L3"`` -> facet paths. Splits on ``" / "`` at most twice, so the L3
    names ``Camera / Lens Style`` and ``Difference/Similarity`` survive intact."""
    paths = []
    for chunk in dims_en.split(";"):
        chunk = chunk.strip()
        if not chunk:
            continue
        parts = [p.strip() for p in chunk.split(" / ", 2)]
        if len(parts) == 2:  # "L1 / L2" names a single-facet L2, as the official parser allows
            parts.append(parts[1])
        if len(parts) != 3:
            raise MetadataError(f"facet path {chunk!r} is not 'L1 / L2 / L3'")
        paths.append(FacetPath(*parts))
    return paths


def dimensions_of(dims_en: str) -> list[str]:
    """Distinct L1 names in order of first appearance (one Q-Judger request each)."""
    out: list[str] = []
    for path in parse_dims(dims_en):
        l1 = canonical_l1(path.l1) or path.l1
        if l1 not in out:
            out.append(l1)
    return out


class BenchMetadata:
    """ID -> dims_en, from the official JSON array or a JSONL file of ``{"ID", "dims_en"}`` objects."""

    def __init__(self, dims_by_id: dict[int, str], origin: str):
        self.dims_by_id = dims_by_id
        self.origin = origin

    @classmethod
    def load(cls, path: str | Path) -> "BenchMetadata":
        p = Path(path)
        if not p.is_file():
            raise MetadataError(f"metadata file {p} does not exist")
        text = p.read_text(encoding="utf-8").strip()
        try:
            records = json.loads(text) if text.startswith("[") else [json.loads(l) for l in text.splitlines() if l.strip()]
        except json.JSONDecodeError as exc:
            raise MetadataError(f"metadata file {p} is not JSON or JSONL: {exc}") from exc
        dims: dict[int, str] = {}
        for i, rec in enumerate(records):
            if not isinstance(rec, dict) or "ID" not in rec or "dims_en" not in rec:
                raise MetadataError(f"metadata record {i} in {p} lacks 'ID' or 'dims_en'")
            parse_dims(rec["dims_en"])  # fail early on a malformed path
            dims[int(rec["ID"])] = rec["dims_en"]
        return cls(dims, str(p))

    def __contains__(self, bench_id: int) -> bool:
        return bench_id in self.dims_by_id

    def __len__(self) -> int:
        return len(self.dims_by_id)

    def dimensions(self, bench_id: int) -> list[str]:
        return dimensions_of(self.dims_by_id[bench_id])
