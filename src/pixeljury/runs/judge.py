"""Running Q-Judger over an input file into a run directory, resumably.

Each finished request is committed to the store as soon as its batch returns; a rerun on the same
directory skips every stored key. Failures (image, engine) are recorded with their row and never
become scores.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from pixeljury.data.images import ImageLoadError, load_for_judge, pixel_parity, sha256_file, stat_and_hash
from pixeljury.data.inputs import read_rows
from pixeljury.data.metadata import BenchMetadata
from pixeljury.engines.base import ChatRequest, Engine, EngineError
from pixeljury.protocols import qjudger
from pixeljury.protocols.qjudger_schema import dimension_schema
from pixeljury.rubric import resolve_rubric
from pixeljury.runs.config import JudgeConfig, _Inputs, _normalise_dimensions, _Prepared
from pixeljury.runs.exports import FORMATS as EXPORT_FORMATS
from pixeljury.runs.events import Advanced, BatchFailed, EventSink, Notice, Resuming, RunStopped, TotalChanged, WorkFinished, WorkStarted, ignore
from pixeljury.runs.exports import write_run_outputs
from pixeljury.runs.faults import CannotWrite
from pixeljury.runs.manifest import environment, iso_now
from pixeljury.runs.lock import RunLock
from pixeljury.runs.outcome import RunSummary, run_status
from pixeljury.runs.session import RunSession, open_session
from pixeljury.runs.plan import KeyContext, PlannedRow, RowPlanner
from pixeljury.runs.quiet import library_bars_off
from pixeljury.runs.store import ResultRecord, ResultStore
from pixeljury.runs.work import Work, WorkStream, report_row  # noqa: F401 - report_row: the dry run's too

__all__ = ["JudgeConfig", "RunSummary", "load_inputs", "plan", "planner", "report_row", "run_judge", "warn_parity"]


def load_inputs(config: JudgeConfig) -> _Inputs:
    """Everything that can fail for the run as a whole fails here, before a model is loaded."""
    unknown = sorted(set(config.export_formats) - set(EXPORT_FORMATS))
    if unknown:
        raise ValueError(f"unknown export format(s) {unknown}; choose from {', '.join(EXPORT_FORMATS)}")
    rubric = resolve_rubric(config.rubric, None if config.rubric_file is None else str(config.rubric_file))
    metadata = BenchMetadata.load(config.metadata) if config.metadata else None
    dims = _normalise_dimensions(config.dimensions)
    rows = read_rows(config.input, default_model=config.default_model)  # checks columns and encoding now
    return _Inputs(rubric, metadata, dims, rows)


def settings_comparable(config: JudgeConfig, rubric: Any) -> bool:
    """Whether a run's settings keep its results comparable with the benchmark: the official rubric,
    square resize, free decoding (no schema constraint, no thinking budget) and Pillow pixel parity."""
    params = config.params
    return bool(rubric.comparable and not config.keep_aspect and not params.json_schema_constrained
                and params.thinking_budget is None and pixel_parity().ok)


def planner(config: JudgeConfig, inputs: _Inputs, store: ResultStore, judge_model: str,
            judge_revision: str | None) -> tuple[RowPlanner, KeyContext]:
    # "hfirst": LANCZOS with the horizontal pass first, as under upstream's Pillow (results resized
    # otherwise, by pixeljury before 0.1.1 under Pillow 13, are not reused).
    preprocess = "rgb-lanczos-hfirst-1024-" + ("keep-aspect" if config.keep_aspect else "square")
    ctx = KeyContext(judge_model, judge_revision, inputs.rubric.sha256, config.params, preprocess)
    comparable = settings_comparable(config, inputs.rubric)
    rows = RowPlanner(
        inputs.rows, store=store, rubric=inputs.rubric, ctx=ctx, metadata=inputs.metadata,
        custom_dimensions=inputs.dimensions, benchmark_comparable=comparable, strict_prompts=config.strict_prompts,
    )
    return rows, ctx


def plan(config: JudgeConfig, inputs: _Inputs, store: ResultStore, judge_model: str,
         judge_revision: str | None) -> _Prepared:
    """Plan every row before anything runs (the dry run; a real run plans while it generates)."""
    rows, ctx = planner(config, inputs, store, judge_model, judge_revision)
    return _Prepared(inputs.rubric, inputs.metadata, list(rows), ctx)


class _Runner:
    def __init__(self, config: JudgeConfig, engine: Engine, store: ResultStore, rubric: Any, ctx: KeyContext,
                 emit: EventSink):
        self.config, self.engine, self.store, self.emit = config, engine, store, emit
        self.rubric, self.ctx = rubric, ctx
        self.computed = 0
        self.failed_in_a_row = 0
        self.stopped: str | None = None

    def prefetch(self, pool: ThreadPoolExecutor, batch: list[Work] | None) -> dict[str, Future]:
        """Start decoding a batch's images in the background (PIL releases the GIL while decoding)."""
        futures: dict[str, Future] = {}
        for row, _, _ in batch or ():
            if row.image_sha256 not in futures:
                futures[row.image_sha256] = pool.submit(load_for_judge, Path(row.image_abspath),
                                                        keep_aspect=self.config.keep_aspect)
        return futures

    def _requests(self, batch: list[Work], images: dict[str, Future]) -> tuple[list[ChatRequest], list[Work]]:
        """Requests for a batch; a row whose image fails to load is recorded and left out."""
        requests, kept = [], []
        lasting: dict[str, bool] = {}  # image sha256 -> its failure is permanent (checked once per batch)
        for row, dim, key in batch:
            try:
                img, info = images[row.image_sha256].result()
            except ImageLoadError as exc:
                if row.image_sha256 not in lasting:
                    lasting[row.image_sha256] = _same_bytes(row)
                self.store.record_failure("image", f"row {row.row}: {exc}", key=key, row_index=row.row,
                                          permanent=lasting[row.image_sha256])
                continue
            except Exception as exc:  # noqa: BLE001 - a decoder bug on one file must not end the run
                self.store.record_failure("image", f"row {row.row}: image {row.image_abspath} could not be decoded "
                                          f"({type(exc).__name__}: {exc})", key=key, row_index=row.row)
                continue
            if info.sha256 != row.image_sha256:
                self._forget_hash(Path(row.image_abspath), info.sha256)
                # The file was rewritten after it was hashed: its result must not go under the old key.
                self.store.record_failure("image", f"row {row.row}: image file {row.image_abspath} changed during "
                                          "the run; rerun to judge the new file", key=key, row_index=row.row)
                continue
            req = qjudger.build_request(self.rubric, row.prompt, dim, img, row.image_sha256, f"{dim}:{key}")
            if self.config.params.json_schema_constrained:
                req.json_schema = dimension_schema(self.rubric, dim)
            requests.append(req)
            kept.append((row, dim, key))
        return requests, kept

    def _forget_hash(self, path: Path, sha256: str) -> None:
        """Replace a stale cached hash (a file rewritten keeping its size and mtime, as `cp -p` does),
        so the next run plans the file with its real content hash."""
        try:
            st = os.stat(path)
        except OSError:
            return
        self.store.save_hashes([(str(path), st.st_size, st.st_mtime_ns, sha256)])

    def _generate(self, requests: list[ChatRequest], kept: list[Work]) -> list | None:
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
                self.emit(BatchFailed(len(requests), tuple(rows), attempt, reason))
                for row, dim, key in kept:
                    self.store.record_failure("engine", f"row {row.row} {dim}: {reason}", key=key, row_index=row.row,
                                              attempts=attempt)
                if not retryable:
                    # e.g. refused credentials or an unknown model: every later batch would fail the same way
                    self.stopped = f"the engine refused a batch with an error that retrying cannot fix: {reason}"
                self._batch_failed(reason)
                return None
            time.sleep(self.config.retry_wait * attempt)
        return None

    def _batch_failed(self, reason: str) -> None:
        """A batch without a single answer (raised, or every request came back as an error, as a
        remote engine reports an unreachable server): enough of them in a row stop the run."""
        self.failed_in_a_row += 1
        if self.stopped is None and self.failed_in_a_row >= self.config.max_failed_batches:
            self.stopped = f"{self.failed_in_a_row} batches in a row failed; last error: {reason}"

    def _record(self, row: PlannedRow, dim: str, key: str, gen: Any) -> ResultRecord:
        result = qjudger.parse(gen, dim)
        return ResultRecord(
            key=key, protocol=qjudger.PROTOCOL_ID, dimension=dim,
            key_fields=self.ctx.key_fields(row.image_sha256, row.prompt, dim),  # type: ignore[arg-type]
            status=result.status, image_sha256=row.image_sha256, prompt=row.prompt,
            model_id=self.engine.model_id, raw_text=gen.text, reasoning=gen.reasoning,
            parsed=result.as_dict(), finish_reason=gen.finish_reason, prompt_tokens=gen.prompt_tokens,
            completion_tokens=gen.completion_tokens, seconds=gen.seconds, error=result.error,
        )

    def run_batch(self, batch: list[Work], images: dict[str, Future]) -> None:
        requests, kept = self._requests(batch, images)
        failed_images = len(batch) - len(kept)
        gens = self._generate(requests, kept) if requests else []
        if gens is None:
            self.emit(Advanced(len(batch), errors=len(batch)))
            return
        records, parse_failures, errors, tokens = [], 0, failed_images, 0
        # Requests the engine refuses as such (too long, control tokens) say nothing about the engine.
        if gens and all(g.error is not None for g in gens) and any(g.retryable for g in gens):
            self._batch_failed(gens[-1].error or "")
        elif gens:
            self.failed_in_a_row = 0
        for (row, dim, key), gen in zip(kept, gens):
            if gen.error is not None:
                errors += 1
                self.store.record_failure("engine", f"row {row.row} {dim}: {gen.error}", key=key, row_index=row.row,
                                          permanent=not gen.retryable)
                continue
            try:
                record = self._record(row, dim, key, gen)
            except Exception as exc:  # noqa: BLE001 - a parser bug on one answer must not lose the batch
                errors += 1
                self.store.record_failure("parse", f"row {row.row} {dim}: pixeljury could not process the answer "
                                          f"({type(exc).__name__}: {exc}); please report this", key=key,
                                          row_index=row.row)
                continue
            parse_failures += record.status == "parse_failure"
            tokens += gen.completion_tokens or 0
            records.append(record)
        self.store.put_many(records)  # committed now: a crash after this line loses nothing
        self.computed += len(records)
        self.emit(Advanced(len(batch), tokens=tokens, images=frozenset(r.image_sha256 for r, _, _ in kept),
                           parse_failures=parse_failures, errors=errors))


def run_judge(config: JudgeConfig, engine_factory: Callable[[], Engine], *, on_event: EventSink = ignore) -> RunSummary:
    """Judge ``config.input`` into ``config.out``; resumes from whatever the directory already holds.

    Rows are planned (image files hashed) while the engine generates, so the first requests go out
    as soon as the first rows are known. The run's manifest is ``manifest.running.json`` until its
    outputs are written; ``manifest.json`` then describes them. A disk that fills up or refuses writes
    raises :class:`CannotWrite` (with ``saved``: the results in the store) and changes no output.
    ``on_event`` hears how the run goes (:mod:`pixeljury.runs.events`); nothing is printed.
    """
    out = Path(config.out)
    with RunLock(out):
        inputs = load_inputs(config)
        with open_session(out) as session, library_bars_off(config.quiet):
            return _run(config, engine_factory, inputs, session, on_event)


def _run(config: JudgeConfig, engine_factory: Callable[[], Engine], inputs: _Inputs, session: RunSession,
         emit: EventSink) -> RunSummary:
    out, store = session.out, session.store
    engine = engine_factory()
    with engine:
        rows, ctx = planner(config, inputs, store, engine.model_id, engine.revision)
        stored = store.count()
        session.begin(_manifest(config, engine, inputs, ctx, len(rows.rows), out))
        warn_parity(emit)
        if stored:
            emit(Resuming(str(out), stored))
        runner = _Runner(config, engine, store, inputs.rubric, ctx, emit)
        size = config.batch_size or engine.preferred_batch_size
        emit(WorkStarted("judging", 0))
        with _finishing(emit, "judging"), ThreadPoolExecutor(max_workers=config.loader_threads) as pool:
            work = WorkStream(rows, store, size, emit, set_total=lambda total: emit(TotalChanged(total)))
            batches = work.batches()
            # Images of the next batch are decoded while the engine works on this one; at most
            # two batches of images are in memory at a time.
            try:
                current = next(batches, None)
                images = runner.prefetch(pool, current)
                while current is not None and runner.stopped is None:
                    following = next(batches, None)
                    ahead = runner.prefetch(pool, following)
                    runner.run_batch(current, images)
                    current, images = following, ahead
                for image in images.values():  # left over when the run stopped early
                    image.cancel()
            finally:
                batches.close()  # on any exit: hashing threads stopped, hashes so far saved
            if runner.stopped is not None:
                # Rows not planned yet are not hashed now: the engine must be fixed first.
                emit(RunStopped(runner.stopped))
        missing = work.all_keys - store.existing_keys(work.all_keys)
        permanent = {k for k, (_, lasting) in store.latest_failure_states(missing).items() if lasting}
        manifest = session.end(
            requests=len(work.all_keys), reused=work.reused, computed=runner.computed,
            failed_requests=len(missing), permanent_failures=len(permanent), stopped=runner.stopped,
            rows_planned=len(work.planned), status=run_status(runner.stopped, len(missing), len(permanent)),
        )
    try:
        outputs = write_run_outputs(out, store, ("jsonl",) + tuple(config.export_formats), manifest=manifest)
    except CannotWrite as exc:
        exc.stage = "export"
        raise
    planned = work.planned
    return RunSummary(out, len(work.all_keys), work.reused, runner.computed, len(missing),
                      sum(r.status == "row_error" for r in planned), sum(r.status == "duplicate" for r in planned),
                      outputs, runner.stopped, permanent=len(permanent),
                      permanent_rows=sorted({r.row for r in planned if permanent & set(r.keys.values())}))


def _same_bytes(row: PlannedRow) -> bool:
    """An image that failed to load is permanently unusable when its file still holds the bytes its
    key names (0 bytes, not an image, a bomb, corrupt): the same bytes fail the same way on every
    rerun. A file that is gone, unreadable or rewritten since it was hashed may work next time."""
    try:
        return stat_and_hash(Path(row.image_abspath))[2] == row.image_sha256  # type: ignore[arg-type]
    except (ImageLoadError, OSError):
        return False


def warn_parity(emit: EventSink) -> None:
    parity = pixel_parity()
    if not parity.ok:
        emit(Notice(parity.detail, "warning"))


@contextlib.contextmanager
def _finishing(emit: EventSink, label: str) -> Iterator[None]:
    """Ends the stretch of work that ``WorkStarted(label)`` began, however it ends."""
    try:
        yield
    finally:
        emit(WorkFinished(label))


def _manifest(config: JudgeConfig, engine: Engine, inputs: _Inputs, ctx: KeyContext, rows: int,
              out: Path) -> dict[str, Any]:
    return {
        **environment(),
        "protocol": {"id": qjudger.PROTOCOL_ID, "version": qjudger.PROTOCOL_VERSION},
        "config": config.describe(),
        "input_sha256": sha256_file(config.input),
        "metadata_sha256": sha256_file(config.metadata) if config.metadata else None,
        # Whether rows' prompts were compared with the benchmark's (only metadata with prompts allows it).
        "prompts_checked": inputs.metadata.has_prompts if inputs.metadata is not None else None,
        "rubric": inputs.rubric.summary(),
        "judge": engine.describe(),
        "constrained": config.params.json_schema_constrained,
        # What the settings allow; rows without a benchmark ID are never comparable on their own.
        "benchmark_comparable": settings_comparable(config, inputs.rubric),
        "preprocess": ctx.preprocess,
        "image_parity": pixel_parity().as_dict(),
        "rows": rows,
        "status": "running",
        "started_at": iso_now(),
        "finished_at": None,
        "run_dir": str(out.resolve()),
    }
