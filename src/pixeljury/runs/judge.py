"""Running Q-Judger over an input file into a run directory, resumably.

Each finished request is committed to the store as soon as its batch returns; a rerun on the same
directory skips every stored key. Failures (image, engine) are recorded with their row and never
become scores.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from pixeljury.data.images import ImageLoadError, load_for_judge, sha256_file
from pixeljury.data.inputs import InputRow, read_rows
from pixeljury.data.metadata import BenchMetadata
from pixeljury.engines.base import ChatRequest, Engine, EngineError, GenerationParams
from pixeljury.protocols import qjudger
from pixeljury.protocols.qjudger_schema import dimension_schema
from pixeljury.rubric import resolve_rubric
from pixeljury.rubric.taxonomy import L1_NAMES, canonical_l1
from pixeljury.runs.exports import write_run_outputs
from pixeljury.runs.lock import RunLock
from pixeljury.runs.manifest import environment, iso_now, write_manifest
from pixeljury.runs.plan import KeyContext, PlannedRow, plan_rows
from pixeljury.runs.progress import RunProgress
from pixeljury.runs.store import ResultRecord, ResultStore


@dataclass
class JudgeConfig:
    input: Path
    out: Path
    metadata: Path | None = None
    rubric: str = "official"
    rubric_file: Path | None = None
    dimensions: list[str] = field(default_factory=lambda: list(L1_NAMES))  # for rows without a benchmark ID
    keep_aspect: bool = False
    params: GenerationParams = field(default_factory=GenerationParams)
    batch_size: int | None = None  # requests per engine call; engine's preference when None
    retries: int = 2  # extra attempts for a failed batch
    retry_wait: float = 1.0
    default_model: str | None = None  # generator name for rows without a `model` column
    quiet: bool = False
    loader_threads: int = 4  # background image decoding

    def describe(self) -> dict[str, Any]:
        return {
            "input": str(self.input), "out": str(self.out), "metadata": None if self.metadata is None else str(self.metadata),
            "rubric": self.rubric, "rubric_file": None if self.rubric_file is None else str(self.rubric_file),
            "dimensions": self.dimensions, "keep_aspect": self.keep_aspect, "params": self.params.as_dict(),
            "batch_size": self.batch_size, "retries": self.retries,
        }


@dataclass
class RunSummary:
    run_dir: Path
    requests: int  # distinct requests the run needs
    reused: int  # found in the store
    computed: int  # generated in this run
    failed: int  # requests without a result after this run
    row_errors: int
    duplicates: int
    outputs: dict[str, Path]


@dataclass
class _Prepared:
    rubric: Any
    metadata: BenchMetadata | None
    rows: list[PlannedRow]
    ctx: KeyContext


def _normalise_dimensions(names: list[str]) -> list[str]:
    out = []
    for n in names:
        c = canonical_l1(n)
        if c is None:
            raise ValueError(f"unknown dimension {n!r}; choose from {', '.join(L1_NAMES)}")
        if c not in out:
            out.append(c)
    return out


@dataclass
class _Inputs:
    rubric: Any
    metadata: BenchMetadata | None
    dimensions: list[str]
    rows: Iterator[InputRow]


def load_inputs(config: JudgeConfig) -> _Inputs:
    """Everything that can fail for the run as a whole fails here, before a model is loaded."""
    rubric = resolve_rubric(config.rubric, None if config.rubric_file is None else str(config.rubric_file))
    metadata = BenchMetadata.load(config.metadata) if config.metadata else None
    dims = _normalise_dimensions(config.dimensions)
    rows = read_rows(config.input, default_model=config.default_model)  # checks columns and encoding now
    return _Inputs(rubric, metadata, dims, rows)


def plan(config: JudgeConfig, inputs: _Inputs, store: ResultStore, judge_model: str,
         judge_revision: str | None) -> _Prepared:
    preprocess = "rgb-lanczos-1024-" + ("keep-aspect" if config.keep_aspect else "square")
    ctx = KeyContext(judge_model, judge_revision, inputs.rubric.sha256, config.params, preprocess)
    comparable = inputs.rubric.comparable and not config.keep_aspect and not config.params.json_schema_constrained
    rows = plan_rows(
        inputs.rows, store=store, rubric=inputs.rubric, ctx=ctx, metadata=inputs.metadata,
        custom_dimensions=inputs.dimensions, benchmark_comparable=comparable,
    )
    return _Prepared(inputs.rubric, inputs.metadata, rows, ctx)


def _pending(rows: list[PlannedRow], done: set[str]) -> list[tuple[PlannedRow, str, str]]:
    """(row, dimension, key) still to compute, each key once, grouped by image in row order."""
    out, queued = [], set(done)
    for row in rows:
        if row.status != "ok":
            continue
        for dim, key in row.keys.items():
            if key not in queued:
                queued.add(key)
                out.append((row, dim, key))
    return out


def _batches(pending: list[tuple[PlannedRow, str, str]], size: int):
    for i in range(0, len(pending), size):
        yield pending[i : i + size]


class _Runner:
    def __init__(self, config: JudgeConfig, engine: Engine, store: ResultStore, prep: _Prepared, console: Console):
        self.config, self.engine, self.store, self.prep, self.console = config, engine, store, prep, console
        self.computed = 0

    def prefetch(self, pool: ThreadPoolExecutor, batch) -> dict[str, Future]:
        """Start decoding a batch's images in the background (PIL releases the GIL while decoding)."""
        futures: dict[str, Future] = {}
        for row, _, _ in batch:
            if row.image_sha256 not in futures:
                futures[row.image_sha256] = pool.submit(load_for_judge, Path(row.image_abspath),
                                                        keep_aspect=self.config.keep_aspect)
        return futures

    def _requests(self, batch, images: dict[str, Future]) -> tuple[list[ChatRequest], list[tuple[PlannedRow, str, str]]]:
        """Requests for a batch; a row whose image fails to load is recorded and left out."""
        requests, kept = [], []
        for row, dim, key in batch:
            try:
                img, _ = images[row.image_sha256].result()
            except ImageLoadError as exc:
                self.store.record_failure("image", f"row {row.row}: {exc}", key=key, row_index=row.row)
                continue
            req = qjudger.build_request(self.prep.rubric, row.prompt, dim, img, row.image_sha256, f"{dim}:{key}")
            if self.config.params.json_schema_constrained:
                req.json_schema = dimension_schema(self.prep.rubric, dim)
            requests.append(req)
            kept.append((row, dim, key))
        return requests, kept

    def _generate(self, requests: list[ChatRequest], kept) -> list | None:
        attempts = 1 + max(0, self.config.retries)
        for attempt in range(1, attempts + 1):
            try:
                gens = self.engine.generate(requests, self.config.params)
                if [g.request_id for g in gens] != [r.request_id for r in requests]:
                    raise EngineError(f"engine returned {len(gens)} generations for {len(requests)} requests, "
                                      "or out of order", retryable=False)
                return gens
            except EngineError as exc:
                reason, retryable = str(exc), exc.retryable
            except Exception as exc:  # noqa: BLE001 - an engine bug must not end the run; it is recorded below
                reason, retryable = f"{type(exc).__name__}: {exc}", True
            if not retryable or attempt == attempts:
                rows = sorted({row.row for row, _, _ in kept})
                self.console.print(f"[red]engine failed on a batch of {len(requests)} (rows {rows}) after "
                                   f"{attempt} attempt(s): {reason}")
                for row, dim, key in kept:
                    self.store.record_failure("engine", f"row {row.row} {dim}: {reason}", key=key, row_index=row.row,
                                              attempts=attempt)
                return None
            time.sleep(self.config.retry_wait * attempt)
        return None

    def run_batch(self, batch, images: dict[str, Future], progress: RunProgress) -> None:
        requests, kept = self._requests(batch, images)
        failed_images = len(batch) - len(kept)
        gens = self._generate(requests, kept) if requests else []
        if gens is None:
            progress.advance(len(batch), errors=len(batch))
            return
        records, parse_failures, errors, tokens = [], 0, failed_images, 0
        for (row, dim, key), gen in zip(kept, gens):
            if gen.error is not None:
                errors += 1
                self.store.record_failure("engine", f"row {row.row} {dim}: {gen.error}", key=key, row_index=row.row)
                continue
            result = qjudger.parse(gen, dim)
            parse_failures += result.status == "parse_failure"
            tokens += gen.completion_tokens or 0
            records.append(ResultRecord(
                key=key, protocol=qjudger.PROTOCOL_ID, dimension=dim,
                key_fields=self.prep.ctx.key_fields(row.image_sha256, row.prompt, dim),
                status=result.status, image_sha256=row.image_sha256, prompt=row.prompt,
                model_id=self.engine.model_id, raw_text=gen.text, reasoning=gen.reasoning,
                parsed=result.as_dict(), finish_reason=gen.finish_reason, prompt_tokens=gen.prompt_tokens,
                completion_tokens=gen.completion_tokens, seconds=gen.seconds, error=result.error,
            ))
        self.store.put_many(records)  # committed now: a crash after this line loses nothing
        self.computed += len(records)
        progress.advance(len(batch), tokens=tokens, images={r.image_sha256 for r, _, _ in kept},
                         parse_failures=parse_failures, errors=errors)


def run_judge(config: JudgeConfig, engine_factory: Callable[[], Engine], *, console: Console | None = None) -> RunSummary:
    """Judge ``config.input`` into ``config.out``; resumes from whatever the directory already holds."""
    console = console or Console(stderr=True, quiet=config.quiet)
    out = Path(config.out)
    with RunLock(out):
        inputs = load_inputs(config)
        store = ResultStore.in_dir(out)
        try:
            engine = engine_factory()
            with engine:
                prep = plan(config, inputs, store, engine.model_id, engine.revision)
                store.replace_rows(r.payload() for r in prep.rows)
                all_keys = {k for r in prep.rows if r.status == "ok" for k in r.keys.values()}
                done = store.existing_keys(all_keys)
                pending = _pending(prep.rows, done)
                manifest = _manifest(config, engine, prep, out)
                manifest.update(requests=len(all_keys), reused=len(done), to_compute=len(pending))
                write_manifest(out, manifest)
                _report_rows(prep.rows, console)
                if done:
                    console.print(f"resuming: {len(done)} of {len(all_keys)} requests already in {out}")
                runner = _Runner(config, engine, store, prep, console)
                size = config.batch_size or engine.preferred_batch_size
                batches = list(_batches(pending, size))
                # Images of the next batch are decoded while the engine works on this one; at most
                # two batches of images are in memory at a time.
                with RunProgress(len(pending), quiet=config.quiet, console=console) as progress, \
                        ThreadPoolExecutor(max_workers=config.loader_threads) as pool:
                    ahead = runner.prefetch(pool, batches[0]) if batches else {}
                    for i, batch in enumerate(batches):
                        current = ahead
                        ahead = runner.prefetch(pool, batches[i + 1]) if i + 1 < len(batches) else {}
                        runner.run_batch(batch, current, progress)
                failed = len(all_keys - store.existing_keys(all_keys))
                manifest.update(finished_at=iso_now(), computed=runner.computed, failed_requests=failed)
                write_manifest(out, manifest)
            outputs = write_run_outputs(out, store)
        finally:
            store.close()
    return RunSummary(out, len(all_keys), len(done), runner.computed, failed,
                      sum(r.status == "row_error" for r in prep.rows), sum(r.status == "duplicate" for r in prep.rows),
                      outputs)


def _report_rows(rows: list[PlannedRow], console: Console) -> None:
    for r in rows:
        if r.status == "row_error":
            console.print(f"[yellow]row {r.row}: skipped: {'; '.join(r.errors)}")
        elif r.status == "duplicate":
            console.print(f"[yellow]row {r.row}: {'; '.join(r.errors)}")


def _manifest(config: JudgeConfig, engine: Engine, prep: _Prepared, out: Path) -> dict[str, Any]:
    return {
        **environment(),
        "protocol": {"id": qjudger.PROTOCOL_ID, "version": qjudger.PROTOCOL_VERSION},
        "config": config.describe(),
        "input_sha256": sha256_file(config.input),
        "metadata_sha256": sha256_file(config.metadata) if config.metadata else None,
        "rubric": prep.rubric.summary(),
        "judge": engine.describe(),
        "constrained": config.params.json_schema_constrained,
        "preprocess": prep.ctx.preprocess,
        "rows": len(prep.rows),
        "started_at": iso_now(),
        "finished_at": None,
        "run_dir": str(out.resolve()),
    }
