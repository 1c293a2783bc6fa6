"""Running Q-Judger over an input file into a run directory, resumably.

The input's rows are planned (:mod:`pixeljury.runs.plan`: hashes, dimensions, keys, row errors)
while the runner (:mod:`pixeljury.runs.runner`) asks the engine what the store does not hold yet,
through the Q-Judger evaluator (:mod:`pixeljury.protocols.qjudger_evaluator`). Each finished
request is committed as soon as its batch returns; a rerun on the same directory skips every stored
key. Failures (image, engine) are recorded with their row and never become scores.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from pixeljury.core.evaluator import ImageRef, Sample
from pixeljury.data.images import pixel_parity, sha256_file
from pixeljury.data.inputs import read_rows
from pixeljury.data.metadata import BenchMetadata
from pixeljury.engines.base import Engine
from pixeljury.protocols import qjudger
from pixeljury.protocols.qjudger_evaluator import KeyContext, QJudger, preprocess_label
from pixeljury.rubric import resolve_rubric
from pixeljury.runs.config import JudgeConfig, _Inputs, _normalise_dimensions, _Prepared
from pixeljury.runs.events import EventSink, Notice, Resuming, RunStopped, TotalChanged, WorkFinished, WorkStarted, ignore
from pixeljury.runs.exports import FORMATS as EXPORT_FORMATS
from pixeljury.runs.exports import write_run_outputs
from pixeljury.runs.faults import CannotWrite
from pixeljury.runs.lock import RunLock
from pixeljury.runs.manifest import environment, iso_now
from pixeljury.runs.outcome import RunSummary, run_status
from pixeljury.runs.plan import RowPlanner
from pixeljury.runs.quiet import library_bars_off
from pixeljury.runs.runner import BatchRunner, Job, RunnerSettings
from pixeljury.runs.session import RunSession, open_session
from pixeljury.runs.store import ResultStore
from pixeljury.runs.work import Work, WorkStream

__all__ = ["JudgeConfig", "RunSummary", "load_inputs", "plan", "planner", "run_judge", "warn_parity"]


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
    ctx = KeyContext(judge_model, judge_revision, inputs.rubric.sha256, config.params,
                     preprocess_label(config.keep_aspect))
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


def _jobs(evaluator: QJudger, batch: list[Work]) -> list[Job]:
    """The planner's work as the runner's jobs: each row a sample, each (row, dimension) an ask."""
    samples: dict[int, Sample] = {}  # a row's dimensions in this batch share its sample
    jobs = []
    for row, dim, key in batch:
        sample = samples.get(row.row)
        if sample is None:
            sample = samples[row.row] = Sample(str(row.row), row.prompt,
                                               (ImageRef(Path(row.image_abspath), row.image_sha256),),  # type: ignore[arg-type]
                                               {"dimensions": row.dimensions, "ID": row.ID, "model": row.model})
        jobs.append(Job(sample, evaluator.ask(sample, dim, key), key, row.row))
    return jobs


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
        evaluator = QJudger(inputs.rubric, ctx, keep_aspect=config.keep_aspect)
        settings = RunnerSettings(config.retries, config.retry_wait, config.max_failed_batches, config.loader_threads)
        runner = BatchRunner(evaluator, engine, store, settings, emit)
        size = config.batch_size or engine.preferred_batch_size
        emit(WorkStarted("judging", 0))
        with _finishing(emit, "judging"), ThreadPoolExecutor(max_workers=config.loader_threads) as pool:
            work = WorkStream(rows, store, size, emit, set_total=lambda total: emit(TotalChanged(total)))
            stream = work.batches()
            batches = (_jobs(evaluator, batch) for batch in stream)
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
                stream.close()  # on any exit: hashing threads stopped, hashes so far saved
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
