"""Planning a judge run: input rows -> per-row dimensions and content keys, with row-level problems."""

from __future__ import annotations

import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from pixeljury.data.images import sha256_file
from pixeljury.data.inputs import InputRow
from pixeljury.data.metadata import BenchMetadata
from pixeljury.engines.base import GenerationParams
from pixeljury.protocols.qjudger import PROTOCOL_ID, PROTOCOL_VERSION
from pixeljury.rubric.model import Rubric
from pixeljury.runs.store import ResultStore, result_key


@dataclass
class PlannedRow:
    row: int
    model: str
    ID: int | None
    prompt: str
    image_path: str | None  # as given in the input
    image_abspath: str | None
    image_sha256: str | None
    comparable: bool
    status: str  # "ok" | "row_error" | "duplicate"
    errors: list[str]
    input: dict[str, Any]
    dimensions: list[str] = field(default_factory=list)
    keys: dict[str, str] = field(default_factory=dict)  # dimension -> result key

    def payload(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class KeyContext:
    """Everything besides the image, prompt and dimension that determines a result."""

    judge_model: str
    judge_revision: str | None
    rubric_sha256: str
    params: GenerationParams
    preprocess: str  # e.g. "rgb-lanczos-1024-square" (parity) or "rgb-lanczos-1024-keep-aspect"

    def key_fields(self, image_sha256: str, prompt: str, dimension: str) -> dict[str, Any]:
        return {**self._fixed_fields, "image_sha256": image_sha256, "prompt": prompt, "dimension": dimension}

    @cached_property
    def _fixed_fields(self) -> dict[str, Any]:  # the same for every request of a run: built once
        return {
            "protocol": PROTOCOL_ID,
            "protocol_version": PROTOCOL_VERSION,
            "judge_model": self.judge_model,
            "judge_revision": self.judge_revision,
            "rubric_sha256": self.rubric_sha256,
            "params": self.params.as_dict(),
            "preprocess": self.preprocess,
        }


def _try_hash(path: Path) -> str | None:
    try:
        return sha256_file(path)
    except OSError:
        return None  # sha256() reads it again and reports the error against its row


class _HashCache:
    """sha256 of image files, reusing the store's (path, size, mtime) cache across runs."""

    def __init__(self, store: ResultStore):
        self.store = store
        self.known = store.cached_hashes()
        self.fresh: list[tuple[str, int, int, str]] = []

    def sha256(self, path: Path) -> str:
        st = os.stat(path)
        key = str(path)
        hit = self.known.get(key)
        if hit and hit[0] == st.st_size and hit[1] == st.st_mtime_ns:
            return hit[2]
        digest = sha256_file(path)
        self.known[key] = (st.st_size, st.st_mtime_ns, digest)
        self.fresh.append((key, st.st_size, st.st_mtime_ns, digest))
        return digest

    def prefetch(self, paths: list[Path], threads: int = 4) -> None:
        """Hash files not in the cache in parallel (hashlib releases the GIL on large reads)."""
        todo = []
        for p in dict.fromkeys(paths):
            try:
                st = os.stat(p)
            except OSError:
                continue  # reported per row by sha256()
            hit = self.known.get(str(p))
            if not (hit and hit[0] == st.st_size and hit[1] == st.st_mtime_ns):
                todo.append(p)
        if len(todo) > 1:
            with ThreadPoolExecutor(max_workers=threads) as pool:
                for p, digest in zip(todo, pool.map(_try_hash, todo)):
                    if digest is not None:
                        st = os.stat(p)
                        self.known[str(p)] = (st.st_size, st.st_mtime_ns, digest)
                        self.fresh.append((str(p), st.st_size, st.st_mtime_ns, digest))

    def flush(self) -> None:
        self.store.save_hashes(self.fresh)
        self.fresh = []


def plan_rows(
    rows: Iterable[InputRow],
    *,
    store: ResultStore,
    rubric: Rubric,
    ctx: KeyContext,
    metadata: BenchMetadata | None,
    custom_dimensions: list[str],
    benchmark_comparable: bool,
) -> list[PlannedRow]:
    """Plan every row. Problems stay with their row; nothing here raises for one bad row."""
    hashes = _HashCache(store)
    rows = list(rows)
    hashes.prefetch([r.image_path for r in rows if r.image_path is not None and not r.errors])
    seen: dict[tuple, int] = {}
    planned: list[PlannedRow] = []
    for r in rows:
        errors = list(r.errors)
        sha = None
        if r.image_path is not None:
            if not r.image_path.exists():
                errors.append(f"image file {r.image_path} does not exist")
            elif not r.image_path.is_file():
                errors.append(f"image path {r.image_path} is not a file")
            else:
                try:
                    sha = hashes.sha256(r.image_path)
                except OSError as exc:
                    errors.append(f"image file {r.image_path} cannot be read: {exc}")
        if r.bench_id is not None:
            if metadata is None:
                errors.append(f"row has benchmark ID {r.bench_id} but no --metadata file was given")
                dims: list[str] = []
            elif r.bench_id not in metadata:
                errors.append(f"ID {r.bench_id} is not in the benchmark metadata ({metadata.origin})")
                dims = []
            else:
                dims = metadata.dimensions(r.bench_id)
        else:
            dims = list(custom_dimensions)
        unknown_dims = [d for d in dims if d not in rubric.checklists]
        if unknown_dims:
            errors.append(f"dimension(s) {unknown_dims} have no checklist in the rubric")
        raw_path = r.fields.get("image_path")
        row = PlannedRow(
            row=r.index,
            model=r.model,
            ID=r.bench_id,
            prompt=r.prompt,
            image_path=None if raw_path is None else str(raw_path),
            image_abspath=None if r.image_path is None else str(r.image_path),
            image_sha256=sha,
            comparable=benchmark_comparable and r.bench_id is not None,
            status="ok",
            errors=errors,
            input=r.fields,
        )
        if errors:
            row.status = "row_error"
        else:
            ident = (r.model, sha, r.prompt, r.bench_id)
            if ident in seen:
                row.status = "duplicate"
                row.errors.append(f"duplicate of row {seen[ident]} (same model, image and prompt); counted once")
            else:
                seen[ident] = r.index
            row.dimensions = dims
            row.keys = {d: result_key(ctx.key_fields(sha, r.prompt, d)) for d in dims}  # type: ignore[arg-type]
        planned.append(row)
    hashes.flush()
    return planned
