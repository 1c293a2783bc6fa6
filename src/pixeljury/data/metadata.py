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


def _bench_id(raw: object) -> int | None:
    """The benchmark ID as an int -- an int, an integral float, or a string holding one, as the input
    reader accepts them -- or None for anything else (``"one"``, ``1.5``, ``null``, booleans)."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return raw
    if isinstance(raw, str):
        try:
            raw = float(raw)
        except ValueError:
            return None
    if isinstance(raw, float) and raw.is_integer():
        return int(raw)
    return None


def _json_kind(value: object) -> str:
    kinds = {list: "array", str: "string", int: "number", float: "number", bool: "boolean", type(None): "null"}
    return kinds.get(type(value), type(value).__name__)


def _shown(value: object) -> str:
    return "null" if value is None else f"{_json_kind(value)} {value!r}"


def _clip(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _prompt_fields(rec: dict, where: str) -> tuple[str, ...]:
    """The benchmark's wordings of a record's prompt: ``prompt`` and any ``prompt_<lang>`` field
    (the English prompt file has ``prompt``; other releases may carry both languages)."""
    found = []
    for name, value in rec.items():
        if name == "prompt" or name.startswith("prompt_"):
            if not isinstance(value, str):
                raise MetadataError(f"{where}: {name!r} must be a string, got {_shown(value)}")
            found.append(value)
    return tuple(found)


class BenchMetadata:
    """ID -> dims_en, from the official JSON array or a JSONL file of ``{"ID", "dims_en"}`` objects.

    Records may also carry the benchmark's prompt (``prompt``, ``prompt_en``, ``prompt_cn``...): then
    rows can be checked against it, since a row judged under an ID with another prompt is not the
    benchmark's item."""

    def __init__(self, dims_by_id: dict[int, str], origin: str, prompts_by_id: dict[int, tuple[str, ...]] | None = None):
        self.dims_by_id = dims_by_id
        self.origin = origin
        self.prompts_by_id = prompts_by_id or {}

    @property
    def has_prompts(self) -> bool:
        return bool(self.prompts_by_id)

    def prompt_mismatch(self, bench_id: int, prompt: str) -> str | None:
        """Why ``prompt`` is not the benchmark's prompt for ``bench_id``; None when it is, or when
        the metadata does not know the prompt."""
        known = self.prompts_by_id.get(bench_id)
        if not known or prompt in known:
            return None
        hint = " (they differ only in surrounding whitespace)" if prompt.strip() in {k.strip() for k in known} else ""
        return (f"prompt differs from the benchmark's prompt for ID {bench_id} in {self.origin}{hint}: "
                f"{_clip(prompt)!r} vs {_clip(known[0])!r}")

    @classmethod
    def load(cls, path: str | Path) -> "BenchMetadata":
        """Read the file; every problem is a :class:`MetadataError` naming the file and, for a record,
        its index and ID. A UTF-8 BOM is accepted. An ID given twice is an error unless both records
        name the same facet paths."""
        p = Path(path)
        if not p.is_file():
            raise MetadataError(f"metadata file {p} does not exist")
        data = p.read_bytes()
        try:
            text = data.decode("utf-8-sig").strip()
        except UnicodeDecodeError as exc:
            raise MetadataError(f"metadata file {p} is not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset "
                                f"{exc.start}); re-save it as UTF-8") from None
        try:
            records = json.loads(text) if text.startswith("[") else [json.loads(l) for l in text.splitlines() if l.strip()]
        except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
            raise MetadataError(f"metadata file {p} is not JSON or JSONL: {exc}") from None
        dims: dict[int, str] = {}
        prompts: dict[int, tuple[str, ...]] = {}
        first_index: dict[int, int] = {}
        for i, rec in enumerate(records):
            if not isinstance(rec, dict):
                raise MetadataError(f"metadata file {p}, record {i}: is a JSON {_json_kind(rec)}, not an object")
            where = f"metadata file {p}, record {i}" + (f" (ID {rec['ID']!r})" if "ID" in rec else "")
            missing = [k for k in ("ID", "dims_en") if k not in rec]
            if missing:
                raise MetadataError(f"{where}: lacks {' and '.join(repr(k) for k in missing)}")
            raw_id, dims_en = rec["ID"], rec["dims_en"]
            bench_id = _bench_id(raw_id)
            if bench_id is None:
                raise MetadataError(f"{where}: 'ID' must be an integer, got {_shown(raw_id)}")
            if not isinstance(dims_en, str):
                raise MetadataError(f"{where}: 'dims_en' must be a string of facet paths, got {_shown(dims_en)}")
            try:
                paths = parse_dims(dims_en)  # fail early on a malformed path
            except MetadataError as exc:
                raise MetadataError(f"{where}: {exc}") from None
            wordings = _prompt_fields(rec, where)
            if bench_id in dims:
                j = first_index[bench_id]
                if paths != parse_dims(dims[bench_id]):
                    raise MetadataError(f"{where}: ID {bench_id} is also record {j}, with different dims_en "
                                        f"({dims[bench_id]!r} vs {dims_en!r})")
                if wordings and prompts.get(bench_id) and set(wordings) != set(prompts[bench_id]):
                    raise MetadataError(f"{where}: ID {bench_id} is also record {j}, with another prompt")
                continue  # the same record twice: harmless
            dims[bench_id] = dims_en
            if wordings:
                prompts[bench_id] = wordings
            first_index[bench_id] = i
        return cls(dims, str(p), prompts)

    def __contains__(self, bench_id: int) -> bool:
        return bench_id in self.dims_by_id

    def __len__(self) -> int:
        return len(self.dims_by_id)

    def dimensions(self, bench_id: int) -> list[str]:
        return dimensions_of(self.dims_by_id[bench_id])
