"""Any evaluator over samples, on one engine, through the store: the library's one driver.

:func:`run_evaluator` plans each sample's asks, reads what the store already holds under the same
keys (so a rerun asks nothing twice), sends the rest in batches of one request kind through the
runner (:class:`~pixeljury.runs.runner.BatchRunner`: images loaded ahead, retries, failures
recorded, each answer committed as it comes), then asks the follow-ups the answers lead to, stage by
stage. Stored answers are read again on resume, so a multi-stage evaluator rebuilds its later
stages from them without asking again.

With ``out`` the run directory is locked and gets a manifest, as a judge run's; with ``store`` the
caller's store is used (the service, Ray workers); with neither, an in-memory store serves one call.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from pixeljury.core.evaluator import (
    Ask, EvaluationResult, Evaluator, Reading, RequestEngine, Sample, Verdict, check_capabilities,
)
from pixeljury.core.requests import EngineError
from pixeljury.runs.events import EventSink, Resuming, RunStopped, WorkFinished, WorkStarted, ignore
from pixeljury.runs.lock import RunLock
from pixeljury.runs.manifest import environment, iso_now
from pixeljury.runs.outcome import run_status
from pixeljury.runs.runner import BatchRunner, Job, RunnerSettings, stored_answer
from pixeljury.runs.session import open_session
from pixeljury.runs.store import ResultStore


def run_evaluator(evaluator: Evaluator, samples: Iterable[Sample], engine: RequestEngine, *,
                  out: str | Path | None = None, store: ResultStore | None = None, batch_size: int | None = None,
                  settings: RunnerSettings = RunnerSettings(), on_event: EventSink = ignore,
                  max_stages: int = 8) -> EvaluationResult:
    """Evaluate ``samples`` (unique ``sample_id``s) and aggregate the verdicts. An ask that gets no
    answer becomes an ``error`` verdict, never a score; an engine without a request kind the
    evaluator needs is refused before anything runs."""
    samples = list(samples)
    if out is not None and store is not None:
        raise ValueError("give run_evaluator either out (a run directory) or store, not both")
    if out is None:
        with _own_store(store) as held:
            return _evaluate(evaluator, samples, engine, held, batch_size, settings, on_event, max_stages)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with RunLock(out), open_session(out) as session:
        stored = session.store.count()
        if stored:
            on_event(Resuming(str(out), stored))
        session.begin({**environment(), "job": "evaluate", "evaluator": evaluator.identity.as_dict(),
                       "engine": _describe(engine), "samples": len(samples), "status": "running",
                       "started_at": iso_now(), "finished_at": None, "run_dir": str(out.resolve())})
        result = _evaluate(evaluator, samples, engine, session.store, batch_size, settings, on_event, max_stages)
        errors = [v for v in result.verdicts if v.status == "error"]
        lasting = sum(not v.retryable for v in errors)
        manifest = session.end(asked=result.asked, reused=result.reused, errors=len(errors), stopped=result.stopped,
                               status=run_status(result.stopped, len(errors), lasting), aggregate=result.aggregate)
        _publish(out, manifest)
    return result


@contextlib.contextmanager
def _own_store(store: ResultStore | None) -> Iterator[ResultStore]:
    if store is not None:
        yield store
        return
    with ResultStore(":memory:") as scratch:
        yield scratch


def _publish(out: Path, manifest: dict[str, Any]) -> None:
    from pixeljury.runs.switch import OutputSwitch

    switch = OutputSwitch(out)
    try:
        switch.set_manifest(manifest)
        switch.commit()
    except BaseException:
        switch.abort()
        raise


def _describe(engine: RequestEngine) -> dict[str, Any]:
    describe = getattr(engine, "describe", None)
    return describe() if callable(describe) else {"engine": engine.name}


def _evaluate(evaluator: Evaluator, samples: list[Sample], engine: RequestEngine, store: ResultStore,
              batch_size: int | None, settings: RunnerSettings, emit: EventSink, max_stages: int) -> EvaluationResult:
    rows = {s.sample_id: i for i, s in enumerate(samples)}
    if len(rows) != len(samples):
        twice = sorted(sid for sid, n in Counter(s.sample_id for s in samples).items() if n > 1)
        raise ValueError(f"sample ids must be unique; repeated: {twice[:5]}")
    pending: list[tuple[Sample, Ask]] = [(s, a) for s in samples for a in evaluator.plan(s)]
    check_capabilities(engine, (a for _, a in pending), evaluator.request_kinds)
    runner = BatchRunner(evaluator, engine, store, settings, emit)
    size = max(1, batch_size or engine.preferred_batch_size)
    verdicts: list[Verdict] = []
    reused = 0
    with ThreadPoolExecutor(max_workers=max(1, settings.loader_threads), thread_name_prefix="pixeljury-load") as pool:
        for stage in range(1, max_stages + 1):
            if not pending:
                break
            jobs = [Job(s, a, evaluator.ask_key(s, a, runner.model), rows[s.sample_id]) for s, a in pending]
            stored = store.get_many({j.key for j in jobs})
            readings: list[tuple[Job, Reading]] = []
            todo: list[Job] = []
            for job in jobs:
                record = stored.get(job.key)
                if record is None:
                    todo.append(job)
                    continue
                reused += 1
                readings.append((job, _read_stored(runner, job, record)))
            readings += _ask(runner, pool, todo, size, emit, f"{evaluator.identity.name}: stage {stage}")
            place = {id(job): n for n, job in enumerate(jobs)}
            readings.sort(key=lambda jr: place[id(jr[0])])  # plan order, whatever the store held
            pending = [(job.sample, follow) for job, reading in readings for follow in reading.follow_ups]
            verdicts += [v for _, reading in readings for v in reading.verdicts]
            if runner.stopped is not None:
                break
            check_capabilities(engine, (a for _, a in pending))
    if runner.stopped is not None:
        emit(RunStopped(runner.stopped))
        why = f"not asked: the run stopped ({runner.stopped})"  # follow-ups the stop left unasked
        verdicts += [v for s, a in pending for v in runner.error_reading(Job(s, a, "", rows[s.sample_id]), why).verdicts]
    elif pending:
        raise EngineError(f"{evaluator.identity.name} still asked follow-ups after {max_stages} stages", retryable=False)
    acc = evaluator.accumulator()
    acc.update_many(verdicts)
    return EvaluationResult(verdicts, acc.compute(), runner.asked, reused, runner.stopped)


def _read_stored(runner: BatchRunner, job: Job, record: Any) -> Reading:
    """A stored answer read again (resume); a reader that fails on it gives an error, not a crash."""
    try:
        return runner.evaluator.read(job.sample, job.ask, stored_answer(job, record))
    except Exception as exc:  # noqa: BLE001 - one stored answer must not end the run; said as an error
        return runner.error_reading(job, f"pixeljury could not read the stored answer ({type(exc).__name__}: "
                                          f"{exc}); please report this")


def _ask(runner: BatchRunner, pool: ThreadPoolExecutor, todo: list[Job], size: int, emit: EventSink,
         label: str) -> list[tuple[Job, Reading]]:
    """Send ``todo`` in batches of one request kind, images of the next batch loading while one runs."""
    kinds = list(dict.fromkeys(j.ask.kind for j in todo))
    batches = [group[i : i + size] for kind in kinds
               for group in [[j for j in todo if j.ask.kind == kind]] for i in range(0, len(group), size)]
    readings: list[tuple[Job, Reading]] = []
    emit(WorkStarted(label, len(todo)))
    images: dict = {}
    try:
        images = runner.prefetch(pool, batches[0] if batches else None)
        for i, batch in enumerate(batches):
            if runner.stopped is not None:  # what is left gets no answer this run: errors, asked again next run
                why = f"not asked: the run stopped ({runner.stopped})"
                readings += [(j, runner.error_reading(j, why)) for rest in batches[i:] for j in rest]
                break
            ahead = runner.prefetch(pool, batches[i + 1] if i + 1 < len(batches) else None)
            try:
                readings += runner.run_batch(batch, images)
            finally:
                images = ahead
    finally:
        for future in images.values():  # decodes queued for batches the stop left unasked
            future.cancel()
        emit(WorkFinished(label))
    return readings


__all__ = ["run_evaluator"]
