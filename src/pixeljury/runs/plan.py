"""Planning a judge run: input rows -> per-row dimensions and content keys, with row-level problems."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pixeljury.data.images import ImageLoadError, stat_and_hash
from pixeljury.data.inputs import InputRow
from pixeljury.data.metadata import BenchMetadata
from pixeljury.protocols.qjudger import control_tokens_in
from pixeljury.protocols.qjudger_evaluator import KeyContext
from pixeljury.rubric.model import Rubric
from pixeljury.runs.store import ResultStore


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
    warnings: list[str] = field(default_factory=list)  # judged, but something the user should know

    def payload(self) -> dict[str, Any]:
        return asdict(self)


def _stat_and_hash(path: Path) -> tuple[int, int, str]:
    """(size, mtime_ns, sha256) of a file; runs in the hashing threads (hashlib releases the GIL).
    A named pipe or a device is refused when opened, so no thread ever blocks on one."""
    return stat_and_hash(path)


class RowPlanner:
    """Plans input rows one at a time, in input order, while a thread pool hashes image files ahead.

    Iterating yields :class:`PlannedRow` objects as soon as each row's hash is known, so a run can
    start generating on the first rows while later files are still being read: on a first run over
    a large input, hashing every file before the first request would keep the judge idle for minutes.
    Hashes are cached in the store by (path, size, mtime), so a rerun stats files instead of reading them.
    Nothing here raises for one bad row: its problems stay in the row's ``errors``.
    """

    def __init__(
        self,
        rows: Iterable[InputRow],
        *,
        store: ResultStore,
        rubric: Rubric,
        ctx: KeyContext,
        metadata: BenchMetadata | None,
        custom_dimensions: list[str],
        benchmark_comparable: bool,
        strict_prompts: bool = False,
        threads: int | None = None,
        lookahead: int = 512,
    ):
        self.rows = list(rows)
        self.store, self.rubric, self.ctx, self.metadata = store, rubric, ctx, metadata
        self.custom_dimensions = list(custom_dimensions)
        self.benchmark_comparable = benchmark_comparable
        self.strict_prompts = strict_prompts
        self.threads = threads or min(4, os.cpu_count() or 1)
        self.lookahead = max(1, lookahead)
        self._known = store.cached_hashes()  # path -> (size, mtime_ns, sha256)
        self._fresh: list[tuple[str, int, int, str]] = []

    def dimensions_of(self, r: InputRow) -> list[str]:
        if r.bench_id is None:
            return list(self.custom_dimensions)
        if self.metadata is None or r.bench_id not in self.metadata:
            return []
        return self.metadata.dimensions(r.bench_id)

    def upper_bound_requests(self) -> int:
        """Requests the run needs at most (before duplicates, unreadable files and stored results)."""
        return sum(len(self.dimensions_of(r)) for r in self.rows if not r.errors)

    def _cached(self, path: Path) -> str | None:
        try:
            st = os.stat(path)
        except OSError:
            return None
        hit = self._known.get(str(path))
        if hit and stat.S_ISREG(st.st_mode) and hit[0] == st.st_size and hit[1] == st.st_mtime_ns:
            return hit[2]
        return None

    def __iter__(self) -> Iterator[PlannedRow]:
        pool = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="pixeljury-hash")
        hashes: dict[int, Future | str] = {}  # row position -> digest, or the future computing it
        inflight: dict[str, Future] = {}  # path -> the future hashing it (rows sharing a file share it)
        submitted = 0
        seen: dict[tuple, int] = {}
        try:
            for pos, r in enumerate(self.rows):
                # Keep the pool `lookahead` rows ahead of the row being planned.
                while submitted < min(len(self.rows), pos + self.lookahead):
                    ahead = self.rows[submitted]
                    if ahead.image_path is not None and not ahead.errors:
                        path = str(ahead.image_path)
                        cached = self._cached(ahead.image_path)
                        if cached is not None:
                            hashes[submitted] = cached
                        else:
                            if path not in inflight:
                                inflight[path] = pool.submit(_stat_and_hash, ahead.image_path)
                            hashes[submitted] = inflight[path]
                    submitted += 1
                if r.image_path is not None:
                    inflight.pop(str(r.image_path), None)  # from now on the cache knows it
                yield self._plan_one(r, hashes.pop(pos, None), seen)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            # Hashes finished ahead of a stopped plan are kept for the next run too.
            for pos, pending in hashes.items():
                if isinstance(pending, Future) and pending.done() and not pending.cancelled() \
                        and pending.exception() is None:
                    size, mtime, digest = pending.result()
                    self._fresh.append((str(self.rows[pos].image_path), size, mtime, digest))
            self.flush()

    def _image_hash(self, r: InputRow, pending: Future | str | None, errors: list[str]) -> str | None:
        path = r.image_path
        assert path is not None
        try:
            if isinstance(pending, str):
                return pending
            if pending is None:  # not hashed ahead (e.g. created since): hash it now
                size, mtime, digest = _stat_and_hash(path)
            else:
                size, mtime, digest = pending.result()
        except ImageLoadError as exc:  # missing, not a regular file, cannot be opened
            errors.append(str(exc))
            return None
        except OSError as exc:
            errors.append(f"image file {path} cannot be read: {exc.strerror or exc}")
            return None
        self._known[str(path)] = (size, mtime, digest)
        self._fresh.append((str(path), size, mtime, digest))
        if len(self._fresh) >= 256:
            self.flush()  # a run killed later still keeps these
        return digest

    def _plan_one(self, r: InputRow, pending: Future | str | None, seen: dict[tuple, int]) -> PlannedRow:
        errors = list(r.errors)
        sha = self._image_hash(r, pending, errors) if r.image_path is not None else None
        if r.bench_id is not None and self.metadata is None:
            errors.append(f"row has benchmark ID {r.bench_id} but no --metadata file was given")
        elif r.bench_id is not None and r.bench_id not in self.metadata:  # type: ignore[operator]
            errors.append(f"ID {r.bench_id} is not in the benchmark metadata ({self.metadata.origin})")  # type: ignore[union-attr]
        control = control_tokens_in(r.prompt)
        if control:
            errors.append(f"prompt contains {', '.join(control)}: special token(s) of the judge's tokenizer, which the "
                          "judge would read as control tokens (end or start a turn, stand for image features), "
                          "not as text; remove them from the prompt")
        warnings: list[str] = []
        if r.bench_id is not None and self.metadata is not None and r.bench_id in self.metadata:
            mismatch = self.metadata.prompt_mismatch(r.bench_id, r.prompt)
            if mismatch and self.strict_prompts:
                errors.append(f"{mismatch}; refused (--strict-prompts)")
            elif mismatch:
                warnings.append(f"{mismatch}; judged on the benchmark's dimensions but marked not comparable")
        dims = self.dimensions_of(r)
        unknown_dims = [d for d in dims if d not in self.rubric.checklists]
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
            comparable=self.benchmark_comparable and r.bench_id is not None and not warnings,
            status="ok",
            errors=errors,
            input=r.fields,
            warnings=warnings,
        )
        if errors:
            row.status = "row_error"
            return row
        ident = (r.model, sha, r.prompt, r.bench_id)
        if ident in seen:
            row.status = "duplicate"
            row.errors.append(f"duplicate of row {seen[ident]} (same model, image and prompt); counted once")
        else:
            seen[ident] = r.index
        row.dimensions = dims
        row.keys = {d: self.ctx.key(sha, r.prompt, d) for d in dims}  # type: ignore[arg-type]
        return row

    def flush(self) -> None:
        """Save newly computed file hashes in the store's cache (also done when iteration ends)."""
        if self._fresh:
            self.store.save_hashes(self._fresh)
            self._fresh = []
