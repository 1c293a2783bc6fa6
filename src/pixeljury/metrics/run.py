"""Scoring an input file with per-item metrics into a run directory.

Results go into the same content-keyed store as the judge (``protocol = "metric:<name>"``,
``dimension = <convention>``), so a rerun skips every (image, prompt, metric, weights, dtype,
preprocessing) already scored; ``scores.jsonl`` / ``scores.csv`` are rewritten from the store each
time, from the values stored under this run's keys (values of other weights or dtypes stay in the
store but are not shown).

The job runs as a judge run does (:mod:`pixeljury.runs.session`): the directory is locked, a
running manifest says how it goes, the tables and ``manifest.json`` switch together when it ends,
Ctrl-C leaves every committed value in the store, and progress is told as events
(:mod:`pixeljury.runs.events`), never printed.
"""

from __future__ import annotations

import csv
import json
import math
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pixeljury.data.images import ImageLoadError, sha256_file
from pixeljury.data.inputs import InputRow, read_rows
from pixeljury.core.evaluator import ImageRef, Sample
from pixeljury.metrics.base import Metric, MetricInputError, MetricUnavailable
from pixeljury.metrics.evaluator import KEY_VERSION, MetricEngine, MetricEvaluator, metric_key_fields
from pixeljury.metrics.registry import get_spec, load_metric
from pixeljury.runs.events import EventSink, Resuming, RunStopped, WorkFinished, WorkStarted, ignore
from pixeljury.runs.faults import writing
from pixeljury.runs.lock import RunLock
from pixeljury.runs.manifest import environment, iso_now
from pixeljury.runs.outcome import run_status
from pixeljury.runs.runner import BatchRunner, Job, RunnerSettings
from pixeljury.runs.session import RunSession, open_session
from pixeljury.runs.store import ResultStore
from pixeljury.runs.switch import OutputSwitch

LOAD_CHUNK = 256  # rows decoded at once (bounds memory); the metric batches inside each chunk


@dataclass
class MetricRunSummary:
    convention: str
    scored: int = 0
    skipped: int = 0  # already in the store
    failed: list[tuple[int, str]] = field(default_factory=list)  # (row index, message)
    keys: dict[int, str] = field(default_factory=dict)  # row index -> result key, for rows whose image hashed
    # Prompt truncation over the rows that have a value (counted from the store when the tables are
    # written, so already stored rows count too); token_limit is None for metrics without a text limit.
    token_limit: int | None = None
    rows_with_value: int = 0
    rows_truncated: int = 0
    max_tokens_dropped: int = 0
    stopped: str | None = None  # why scoring stopped before the end (the engine refused, batches kept failing)

    def truncation_line(self) -> str | None:
        """E.g. "clipscore@hessel-2.5x: 12 of 100 prompts truncated to 77 tokens (up to 30 tokens dropped)"."""
        if self.token_limit is None:
            return None
        line = (f"{self.convention}: {self.rows_truncated} of {self.rows_with_value} prompts truncated to "
                f"{self.token_limit} tokens")
        return line + (f" (up to {self.max_tokens_dropped} tokens dropped)" if self.rows_truncated else "")


def score_file(input_path: str | Path, out_dir: str | Path, metric_names: list[str], *,
               weights: dict[str, str] | None = None, batch_size: int | None = None, device: str | None = None,
               dtype: str | None = None, metric_kwargs: dict[str, dict[str, Any]] | None = None,
               settings: RunnerSettings = RunnerSettings(), on_event: EventSink = ignore) -> list[MetricRunSummary]:
    """``metric_kwargs[name]`` goes to that metric's loader (e.g. ``{"unifiedreward": {"engine": engine}}``).

    Raises :class:`~pixeljury.runs.lock.RunLocked` when another job holds ``out_dir`` and
    :class:`~pixeljury.runs.faults.CannotWrite` (with ``saved``) when the disk refuses writes."""
    specs = [get_spec(name) for name in metric_names]  # unknown names fail before any work
    for spec in specs:
        if spec.input_kind == "image-sets":
            raise MetricUnavailable(f"{spec.convention} compares image sets, not items: use `pixeljury fid`")
        if spec.input_kind == "image-pair":
            raise MetricUnavailable(f"{spec.convention} judges a source image and its edit(s), which a "
                                    "prompt/image input file does not carry: use the library API")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise MetricInputError(f"--out {out} is an existing file, not a directory")
    out.mkdir(parents=True, exist_ok=True)
    with RunLock(out):
        rows = list(read_rows(Path(input_path)))
        with open_session(out) as session:
            stored = session.store.count()
            if stored:
                on_event(Resuming(str(out), stored))
            session.begin(_manifest(input_path, out, metric_names, rows, batch_size, device, dtype))
            hashes = _hash_images(rows)
            summaries = []
            for spec in specs:
                extra_kw = {"weights": weights[spec.name]} if weights and spec.name in weights else {}
                extra_kw.update((metric_kwargs or {}).get(spec.name, {}))
                metric = load_metric(spec.convention, device=device, dtype=dtype, **extra_kw)
                session.manifest.setdefault("metrics", []).append(metric_key_fields(metric))
                summaries.append(_score_rows(metric, rows, hashes, session.store, batch_size, settings, on_event))
                if summaries[-1].stopped is not None:
                    on_event(RunStopped(summaries[-1].stopped))
                    break  # the metrics after it would meet the same fault; a rerun continues
            _finish(session, rows, hashes, summaries)
    return summaries


def _manifest(input_path: str | Path, out: Path, names: list[str], rows: list[InputRow], batch_size: int | None,
              device: str | None, dtype: str | None) -> dict[str, Any]:
    return {
        **environment(),
        "job": "score",
        "config": {"input": str(input_path), "metrics": names, "batch_size": batch_size, "device": device,
                   "dtype": dtype},
        "input_sha256": sha256_file(Path(input_path)),
        "rows": len(rows),
        "metrics": [],  # each metric's key fields (resolved weights, dtype, preprocessing), as it loads
        "status": "running",
        "started_at": iso_now(),
        "finished_at": None,
        "run_dir": str(out.resolve()),
    }


def _finish(session: RunSession, rows: list[InputRow], hashes: dict[int, str | Exception],
            summaries: list[MetricRunSummary]) -> None:
    failed = sum(len(s.failed) for s in summaries)
    stopped = next((s.stopped for s in summaries if s.stopped is not None), None)
    keys = [k for s in summaries for k in s.keys.values()]
    missing = set(keys) - session.store.existing_keys(keys)
    permanent = sum(lasting for _, lasting in session.store.latest_failure_states(missing).values())
    manifest = session.end(
        items=sum(len(rows) for _ in summaries), scored=sum(s.scored for s in summaries),
        reused=sum(s.skipped for s in summaries), failed=failed, permanent_failures=permanent, stopped=stopped,
        status=run_status(stopped, failed, permanent),
    )
    write_tables(session.store, rows, hashes, summaries, session.out, manifest=manifest)


def _hash_images(rows: list[InputRow]) -> dict[int, str | Exception]:
    hashes: dict[int, str | Exception] = {}
    for row in rows:
        if not row.ok:
            hashes[row.index] = MetricInputError("; ".join(row.errors))
            continue
        try:
            hashes[row.index] = sha256_file(row.image_path)  # type: ignore[arg-type]
        except ImageLoadError as exc:  # missing, or not a regular file: the message names the path
            hashes[row.index] = MetricInputError(str(exc))
        except OSError as exc:
            hashes[row.index] = MetricInputError(f"image {row.image_path}: {exc.strerror or exc}")
    return hashes


def _score_rows(metric: Metric, rows: list[InputRow], hashes: dict[int, str | Exception], store: ResultStore,
                batch_size: int | None, settings: RunnerSettings, emit: EventSink) -> MetricRunSummary:
    summary = MetricRunSummary(metric.convention)
    evaluator = MetricEvaluator(metric)
    todo: list[Job] = []
    for row in rows:
        digest = hashes[row.index]
        if isinstance(digest, Exception):
            summary.failed.append((row.index, str(digest)))
            store.record_failure(evaluator.failure_stage, f"row {row.index}: {digest}", row_index=row.index)
            continue
        sample = Sample(str(row.index), row.prompt, (ImageRef(Path(row.image_path), digest),))  # type: ignore[arg-type]
        [ask] = evaluator.plan(sample)
        summary.keys[row.index] = evaluator.ask_key(sample, ask, metric.weights_label())
        todo.append(Job(sample, ask, summary.keys[row.index], row.index))
    done = store.existing_keys([job.key for job in todo])
    summary.skipped = sum(1 for job in todo if job.key in done)
    todo = [job for job in todo if job.key not in done]
    runner = BatchRunner(evaluator, MetricEngine(metric, batch_size=batch_size, chunk=LOAD_CHUNK), store, settings,
                         emit)
    emit(WorkStarted(metric.convention, len(todo), unit="items"))
    images: dict = {}
    try:
        with ThreadPoolExecutor(max_workers=max(1, settings.loader_threads), thread_name_prefix="pixeljury-load") as pool:
            batches = [todo[i : i + LOAD_CHUNK] for i in range(0, len(todo), LOAD_CHUNK)]
            images = runner.prefetch(pool, batches[0] if batches else None)
            for i, batch in enumerate(batches):  # images of the next chunk decode while this one is scored
                if runner.stopped is not None:  # rows not reached: without a value, said so
                    summary.failed += [(job.row, f"not scored: the run stopped ({runner.stopped})")
                                       for rest in batches[i:] for job in rest]
                    break
                ahead = runner.prefetch(pool, batches[i + 1] if i + 1 < len(batches) else None)
                try:
                    for job, reading in runner.run_batch(batch, images):
                        summary.failed += [(job.row, v.error or "") for v in reading.verdicts if v.status == "error"]
                finally:
                    images = ahead
            for future in images.values():  # decodes queued for chunks the stop left unscored
                future.cancel()
    finally:
        emit(WorkFinished(metric.convention))
    summary.scored, summary.stopped = runner.computed, runner.stopped
    return summary


def _softmax_by_prompt(values: dict[int, float], prompts: dict[int, str]) -> dict[int, float]:
    groups: dict[str, list[int]] = defaultdict(list)
    for index in values:
        groups[prompts[index]].append(index)
    out: dict[int, float] = {}
    for members in groups.values():
        top = max(values[i] for i in members)
        exps = {i: math.exp(values[i] - top) for i in members}
        total = sum(exps.values())
        out.update({i: e / total for i, e in exps.items()})
    return out


def write_tables(store: ResultStore, rows: list[InputRow], hashes: dict[int, str | Exception],
                 summaries: list[MetricRunSummary], out_dir: Path,
                 manifest: dict[str, Any] | None = None) -> tuple[Path, Path]:
    """One line per input row with a column per convention (empty when that row has no score), read
    from the store under each summary's keys; metrics with a text limit add a ``<convention>:tokens_dropped``
    column and fill the summary's truncation counts."""
    by_convention: dict[str, dict[int, float]] = {}
    dropped_by_convention: dict[str, dict[int, int | None]] = {}
    for summary in summaries:
        records = store.get_many(summary.keys.values())
        parsed = {index: records[key].parsed for index, key in summary.keys.items()
                  if key in records and records[key].parsed is not None}
        by_convention[summary.convention] = {index: float(p["value"]) for index, p in parsed.items()}
        limits = {p.get("token_limit") for p in parsed.values()} - {None}
        if limits:
            dropped = {index: p.get("tokens_dropped") for index, p in parsed.items()}
            dropped_by_convention[summary.convention] = dropped
            summary.token_limit = max(limits)  # one loaded metric has one limit
            summary.rows_with_value = len(parsed)
            summary.rows_truncated = sum(1 for n in dropped.values() if n)
            summary.max_tokens_dropped = max((n or 0 for n in dropped.values()), default=0)
    prompts = {row.index: row.prompt for row in rows}
    probabilities = {c: _softmax_by_prompt(v, prompts) for c, v in by_convention.items() if c.startswith("pickscore@")}
    table = []
    for row in rows:
        digest = hashes[row.index]
        line: dict[str, Any] = {
            "row": row.index, "ID": row.bench_id, "model": row.model, "prompt": row.prompt,
            "image_path": str(row.image_path) if row.image_path else None,
            "image_sha256": digest if isinstance(digest, str) else None,
        }
        for convention, values in by_convention.items():
            line[convention] = values.get(row.index)
            if convention in probabilities:
                # PickScore's probabilities: softmax over all of this input's images of the same prompt.
                line["pickscore@probability"] = probabilities[convention].get(row.index)
            if convention in dropped_by_convention:
                line[f"{convention}:tokens_dropped"] = dropped_by_convention[convention].get(row.index)
        table.append(line)
    # Both tables and the manifest switch together: a failed write leaves the previous ones in place.
    switch = OutputSwitch(out_dir)
    try:
        with writing(out_dir):  # a full disk or a read-only directory: CannotWrite, outputs as they were
            jsonl = switch.write_with(out_dir / "scores.jsonl", lambda tmp: _write_jsonl(tmp, table))
            csv_path = switch.write_with(out_dir / "scores.csv", lambda tmp: _write_csv(tmp, table))
            if manifest is not None:
                switch.set_manifest(manifest)
            switch.commit()
    except BaseException:
        switch.abort()
        raise
    return jsonl, csv_path


def _write_jsonl(path: Path, table: list[dict[str, Any]]) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for line in table:
            fh.write(json.dumps(line, ensure_ascii=False) + "\n")


def _write_csv(path: Path, table: list[dict[str, Any]]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(table[0]) if table else ["row"])
        writer.writeheader()
        writer.writerows(table)


__all__ = ["KEY_VERSION", "MetricRunSummary", "metric_key_fields", "score_file", "write_tables"]
