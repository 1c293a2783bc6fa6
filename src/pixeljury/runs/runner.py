"""The runner's core, for any evaluator: a batch of asks in, answers committed to the store.

For one batch of :class:`Job` (asks of one request kind), :class:`BatchRunner`

- loads the images the requests name but do not hold (:meth:`Evaluator.load_image`), in background
  threads, one batch ahead of the engine;
- asks the engine (``generate`` or ``score``), retrying a batch that failed as a whole;
- reads each answer through the evaluator and commits its record at once (a crash after that loses
  nothing);
- records every failure (image, engine, reading) with its row in the store, never as a score, and
  tells the caller how it went through events.

Planning (which asks, which keys, what the store already holds) belongs to the callers:
:mod:`pixeljury.runs.judge` (an input file, Q-Judger) and :mod:`pixeljury.runs.evaluate` (any
evaluator over samples, multi-stage).
"""

from __future__ import annotations

import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pixeljury.core.evaluator import (
    Answer, Ask, Evaluator, Reading, RequestEngine, Sample, Verdict, unloaded, with_images,
)
from pixeljury.core.requests import ChatRequest, EngineError, Generation, MeasureRequest, Measurement, ScoreRequest, Scores
from pixeljury.data.images import ImageChanged, ImageLoadError, stat_and_hash
from pixeljury.runs.events import Advanced, BatchFailed, EventSink
from pixeljury.runs.store import ResultRecord, ResultStore


@dataclass
class Job:
    """One ask of one sample, under its result key; ``row`` names it in failures and messages."""

    sample: Sample
    ask: Ask
    key: str
    row: int


@dataclass(frozen=True)
class RunnerSettings:
    retries: int = 2  # extra attempts for a batch that failed as a whole
    retry_wait: float = 1.0  # seconds, times the attempt number
    max_failed_batches: int = 10  # this many batches in a row without an answer stop the run
    loader_threads: int = 4


class BatchRunner:
    def __init__(self, evaluator: Evaluator, engine: RequestEngine, store: ResultStore, settings: RunnerSettings,
                 emit: EventSink):
        self.evaluator, self.engine, self.store, self.settings, self.emit = evaluator, engine, store, settings, emit
        self.model_id = getattr(engine, "model_id", engine.name)
        self.model = model_label(engine)
        self.computed = 0  # records committed
        self.asked = 0  # requests sent (answered or not)
        self.failed_in_a_row = 0
        self.batch_error: str | None = None  # why the last batch got no answer at all
        self.stopped: str | None = None

    def _fail(self, stage: str, job: Job, why: str, *, name_ask: bool = True, **kw: Any) -> Reading:
        """Record a job's failure in the store (never a result) and give its ``error`` reading."""
        where = f"row {job.row}" if self.evaluator.one_ask_per_sample or not name_ask else f"row {job.row} {job.ask.name}"
        self.store.record_failure(self.evaluator.failure_stage or stage, f"{where}: {why}", key=job.key,
                                  row_index=job.row, **kw)
        return self.error_reading(job, why, not kw.get("permanent", False))

    # -- images ------------------------------------------------------------------------------

    def prefetch(self, pool: ThreadPoolExecutor, batch: list[Job] | None) -> dict[str, Future]:
        """Start loading the images a batch names (decoders release the GIL), each distinct one once."""
        futures: dict[str, Future] = {}
        for job in batch or ():
            refs = {ref.sha256: ref for ref in job.sample.images}
            for sha in unloaded(job.ask.request):
                if sha not in futures and sha in refs:
                    futures[sha] = pool.submit(self.evaluator.load_image, refs[sha])
        return futures

    def _requests(self, batch: list[Job], images: dict[str, Future]) -> tuple[list, list[Job], list]:
        """Requests with their images; a job whose image fails to load is recorded and left out
        (its error reading is in the third list)."""
        requests, kept, failed = [], [], []
        lasting: dict[str, bool] = {}  # image sha256 -> its failure is permanent (checked once per batch)
        for job in batch:
            refs = {ref.sha256: ref for ref in job.sample.images}
            wanted = unloaded(job.ask.request)
            strange = [sha for sha in wanted if sha not in images]
            if strange:  # an evaluator bug, not the input's fault: said as such, for this job only
                failed.append((job, self._fail("plan", job, f"the request names image(s) {strange} the sample "
                                                "does not hold; please report this")))
                continue
            loaded = {}
            sha = ""
            try:
                for sha in wanted:
                    loaded[sha] = images[sha].result()
            except ImageChanged as exc:  # rewritten after it was hashed: no answer under the old key
                self._forget_hash(exc.path, exc.sha256)
                failed.append((job, self._fail("image", job, str(exc), name_ask=False)))
                continue
            except ImageLoadError as exc:
                if sha not in lasting:
                    lasting[sha] = _same_bytes(refs.get(sha))
                failed.append((job, self._fail("image", job, str(exc), name_ask=False, permanent=lasting[sha])))
                continue
            except Exception as exc:  # noqa: BLE001 - a decoder bug on one file must not end the run
                why = f"image {refs[sha].path} could not be decoded ({type(exc).__name__}: {exc})"
                failed.append((job, self._fail("image", job, why, name_ask=False)))
                continue
            requests.append(with_images(job.ask.request, loaded))
            kept.append(job)
        return requests, kept, failed

    def _forget_hash(self, path: Path, sha256: str) -> None:
        """Replace a stale cached hash (a file rewritten keeping its size and mtime, as `cp -p` does),
        so the next run plans the file with its real content hash."""
        try:
            st = os.stat(path)
        except OSError:
            return
        self.store.save_hashes([(str(path), st.st_size, st.st_mtime_ns, sha256)])

    # -- the engine --------------------------------------------------------------------------

    def _call(self, requests: list) -> list[Answer]:
        if isinstance(requests[0], ScoreRequest):
            return list(self.engine.score(requests))
        if isinstance(requests[0], MeasureRequest):
            return list(self.engine.measure(requests))  # type: ignore[attr-defined]
        return list(self.engine.generate(requests, self.evaluator.params))

    def _ask(self, requests: list, kept: list[Job]) -> list[Answer] | None:
        attempts = 1 + max(0, self.settings.retries)
        for attempt in range(1, attempts + 1):
            try:
                answers = self._call(requests)
                if [a.request_id for a in answers] != [r.request_id for r in requests]:
                    raise EngineError(f"engine returned {len(answers)} answers for {len(requests)} requests, "
                                      "or out of order", retryable=False)
                return answers
            except EngineError as exc:
                reason, retryable = str(exc), exc.retryable
            except Exception as exc:  # noqa: BLE001 - an engine bug must not end the run; it is recorded below
                reason, retryable = f"{type(exc).__name__}: {exc}", True
            if not retryable or attempt == attempts:
                self.emit(BatchFailed(len(requests), tuple(sorted({j.row for j in kept})), attempt, reason))
                self.batch_error = reason
                for job in kept:
                    self._fail("engine", job, reason, attempts=attempt)
                if not retryable:
                    # e.g. refused credentials or an unknown model: every later batch would fail the same way
                    self.stopped = f"the engine refused a batch with an error that retrying cannot fix: {reason}"
                self._batch_failed(reason)
                return None
            time.sleep(self.settings.retry_wait * attempt)
        return None

    def _batch_failed(self, reason: str) -> None:
        """A batch without a single answer (raised, or every request came back as an error, as a
        remote engine reports an unreachable server): enough of them in a row stop the run."""
        self.failed_in_a_row += 1
        if self.stopped is None and self.failed_in_a_row >= self.settings.max_failed_batches:
            self.stopped = f"{self.failed_in_a_row} batches in a row failed; last error: {reason}"

    # -- reading and committing --------------------------------------------------------------

    def run_batch(self, batch: list[Job], images: dict[str, Future]) -> list[tuple[Job, Reading]]:
        """Run one batch (asks of one kind). Returns a reading for every job: the evaluator's for an
        answer, one ``error`` verdict for a job that got none."""
        requests, kept, readings = self._requests(batch, images)
        answers = self._ask(requests, kept) if requests else []
        self.asked += len(requests)
        if answers is None:
            self.emit(Advanced(len(batch), errors=len(batch)))
            return readings + [(j, self.error_reading(j, self.batch_error or "")) for j in kept]
        records, parse_failures, errors, tokens = [], 0, len(batch) - len(kept), 0
        # Requests the engine refuses as such (too long, control tokens) say nothing about the engine.
        if answers and all(a.error is not None for a in answers) and any(a.retryable for a in answers):
            self._batch_failed(answers[-1].error or "")
        elif answers:
            self.failed_in_a_row = 0
        for job, answer in zip(kept, answers):
            if answer.error is not None:
                errors += 1
                readings.append((job, self._fail("engine", job, answer.error, permanent=not answer.retryable)))
                continue
            try:
                reading = self.evaluator.read(job.sample, job.ask, answer)
                records.append(self.record(job, answer, reading))
            except Exception as exc:  # noqa: BLE001 - a reader bug on one answer must not lose the batch
                errors += 1
                why = f"pixeljury could not process the answer ({type(exc).__name__}: {exc}); please report this"
                readings.append((job, self._fail("parse", job, why)))
                continue
            parse_failures += any(v.status == "parse_failure" for v in reading.verdicts)
            tokens += getattr(answer, "completion_tokens", None) or 0
            readings.append((job, reading))
        self.store.put_many(records)  # committed now: a crash after this line loses nothing
        self.computed += len(records)
        self.emit(Advanced(len(batch), tokens=tokens, images=frozenset(i.sha256 for j in kept for i in j.sample.images),
                           parse_failures=parse_failures, errors=errors))
        return readings

    def error_reading(self, job: Job, why: str, retryable: bool = True) -> Reading:
        """What a job without an answer gives: an ``error`` verdict under each name its answer would have given."""
        return Reading([Verdict(job.sample.sample_id, name, "error", error=why, retryable=retryable)
                        for name in self.evaluator.verdict_names(job.ask)])

    def record(self, job: Job, answer: Answer, reading: Reading) -> ResultRecord:
        """The stored form of an answer: the evaluator's words for its verdict, the answer to read again."""
        own = [v for v in reading.verdicts if v.name == job.ask.name] or reading.verdicts
        form = self.evaluator.stored_form(own[0]) if len(own) == 1 else None
        parsed: dict[str, Any] = dict(form.parsed) if form else {"verdicts": [_verdict_dict(v) for v in own]}
        sample = job.sample
        common = dict(key=job.key, protocol=self.evaluator.identity.name, dimension=job.ask.name,
                      key_fields=self.evaluator.key_fields(sample, job.ask, self.model), status=form.status if form else "scored",
                      image_sha256=sample.images[0].sha256 if sample.images else None, prompt=sample.prompt,
                      model_id=self.model_id, error=form.error if form else None, seconds=answer.seconds)
        if isinstance(answer, Scores):
            parsed["answer"] = {"logprobs": answer.logprobs, "logprob": answer.logprob, "tokens": answer.tokens}
            return ResultRecord(**common, parsed=parsed, prompt_tokens=answer.prompt_tokens)
        if isinstance(answer, Measurement):
            raw = {"value": answer.value, "extras": answer.extras, "tokens_dropped": answer.tokens_dropped,
                   "token_limit": answer.token_limit}
            if any(parsed.get(k) != v for k, v in raw.items()):  # kept apart when the reading changed it
                parsed["answer"] = raw
            return ResultRecord(**common, parsed=parsed)
        return ResultRecord(**common, raw_text=answer.text, reasoning=answer.reasoning, parsed=parsed,
                            finish_reason=answer.finish_reason, prompt_tokens=answer.prompt_tokens,
                            completion_tokens=answer.completion_tokens)


def model_label(engine: RequestEngine) -> str:
    """The model behind an engine, as result keys name it: ``model_id@revision`` (``@unpinned``
    without a revision)."""
    return f"{getattr(engine, 'model_id', engine.name)}@{getattr(engine, 'revision', None) or 'unpinned'}"


def stored_answer(job: Job, record: ResultRecord) -> Answer:
    """The answer a record keeps, as the engine gave it (to read again on resume)."""
    if isinstance(job.ask.request, MeasureRequest):
        kept = (record.parsed or {}).get("answer") or record.parsed or {}  # as the engine gave them
        return Measurement(job.ask.request.request_id, kept.get("value"), kept.get("extras") or {},
                           kept.get("tokens_dropped"), kept.get("token_limit"), record.seconds)
    if isinstance(job.ask.request, ScoreRequest):
        kept = (record.parsed or {}).get("answer") or {}
        return Scores(job.ask.request.request_id, logprobs=kept.get("logprobs"), logprob=kept.get("logprob"),
                      tokens=kept.get("tokens"), prompt_tokens=record.prompt_tokens, seconds=record.seconds)
    assert isinstance(job.ask.request, ChatRequest)
    return Generation(job.ask.request.request_id, record.raw_text or "", record.finish_reason or "stop",
                      prompt_tokens=record.prompt_tokens, completion_tokens=record.completion_tokens,
                      reasoning=record.reasoning, seconds=record.seconds)


def _verdict_dict(v: Verdict) -> dict[str, Any]:
    return {"name": v.name, "status": v.status, "value": v.value, "detail": v.detail, "error": v.error}


def _same_bytes(ref: Any) -> bool:
    """An image that failed to load is permanently unusable when its file still holds the bytes its
    key names (0 bytes, not an image, a bomb, corrupt): the same bytes fail the same way on every
    rerun. A file that is gone, unreadable or rewritten since it was hashed may work next time."""
    if ref is None:
        return False
    try:
        return stat_and_hash(Path(ref.path))[2] == ref.sha256
    except (ImageLoadError, OSError):
        return False


__all__ = ["BatchRunner", "Job", "RunnerSettings", "model_label", "stored_answer"]
