"""``judge --dry-run``: the requests a run would send, without any model.

Writes ``requests.jsonl`` (one line per request) and ``request_texts.jsonl`` (each distinct text once;
requests name their texts by id): see :mod:`pixeljury.runs.requests_file`, whose ``read_requests``
gives each request back with its texts inline. Rows are planned and written as they come (nothing
holds all rows' plans), images are decoded by a few threads ahead of the row being written, and each
distinct image is decoded once for its size, so a large input runs in memory that does not grow with
its rows' texts. Progress (rows done / total) and skipped rows are told as events (:mod:`pixeljury.runs.events`).
"""

from __future__ import annotations

import contextlib
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from pixeljury.core.evaluator import ImageRef, Sample, with_images
from pixeljury.data.images import ImageLoadError, load_for_judge
from pixeljury.engines.base import ImagePart, TextPart
from pixeljury.protocols.qjudger_evaluator import QJudger
from pixeljury.runs.atomic import remove_stale_temporaries, temporary_path
from pixeljury.runs.events import Advanced, EventSink, RowNote, WorkFinished, WorkStarted, ignore
from pixeljury.runs.exports import slug
from pixeljury.runs.faults import cannot_write, fault_point
from pixeljury.runs.judge import JudgeConfig, load_inputs, planner, warn_parity
from pixeljury.runs.plan import PlannedRow
from pixeljury.runs.requests_file import RequestWriter, texts_path
from pixeljury.runs.store import ResultStore
from pixeljury.runs.work import report_row

# Keys of a dry run name no judge when none is given; they are never stored.
NO_MODEL = "(dry run: no model)"


def saved_image_name(row: int, dimension: str) -> str:
    """File name of a row's image as sent for one dimension: ``row00012_Real-world_Fidelity.png``."""
    return f"row{row:05d}_{slug(dimension)}.png"


@dataclass(frozen=True)
class _Sized:
    """Stands in for a decoded image where only its size is written (no ``--save-images``)."""

    width: int
    height: int


class _Progress:
    """Rows done / total as events (the CLI draws the bar; a quiet caller hears nothing)."""

    LABEL = "dry run: rows"

    def __init__(self, total: int, emit: EventSink):
        self.emit, self.total = emit, total

    def __enter__(self) -> "_Progress":
        self.emit(WorkStarted(self.LABEL, self.total, unit="rows"))
        return self

    def __exit__(self, *exc: object) -> None:
        self.emit(WorkFinished(self.LABEL))

    def row_done(self, requests: int) -> None:
        self.emit(Advanced(1, written=requests))


def _decode(path: Path, keep_aspect: bool, keep_image: bool):
    """The image as it would be sent (kept whole only when it is saved), else just its size."""
    image, _ = load_for_judge(path, keep_aspect=keep_aspect)
    return image if keep_image else _Sized(image.width, image.height)


class _DryRun:
    def __init__(self, config: JudgeConfig, evaluator: QJudger, writer: RequestWriter, emit: EventSink,
                 progress: _Progress, pool: ThreadPoolExecutor, save_images: Path | None):
        self.config, self.evaluator, self.writer, self.emit = config, evaluator, writer, emit
        self.progress, self.pool, self.save_images = progress, pool, save_images
        self.skipped = 0
        self.sizes: dict[str, _Sized] = {}  # image sha256 -> size as sent (each distinct image decoded once)
        self.decoding: dict[tuple, Future] = {}  # (sha256, path) -> the decode in flight
        self.window: deque[tuple[PlannedRow, Future | _Sized]] = deque()
        threads = max(1, config.loader_threads)
        # Saved images are held whole until written: keep fewer of them in flight.
        self.ahead = 2 * threads if save_images is not None else 16 * threads

    def add(self, row: PlannedRow) -> None:
        report_row(row, self.emit)
        if row.status != "ok":
            self.skipped += 1
            self.progress.row_done(self.writer.written)
            return
        path = Path(row.image_abspath or "")
        pending: Future | _Sized | None
        if self.save_images is None:
            pending = self.sizes.get(row.image_sha256 or "") or self.decoding.get((row.image_sha256, path))
            if pending is None:
                pending = self.decoding[(row.image_sha256, path)] = self.pool.submit(
                    _decode, path, self.config.keep_aspect, False)
        else:
            pending = self.pool.submit(_decode, path, self.config.keep_aspect, True)
        self.window.append((row, pending))
        while len(self.window) > self.ahead:
            self._write_next()

    def finish(self) -> None:
        while self.window:
            self._write_next()

    def _write_next(self) -> None:
        row, pending = self.window.popleft()
        sha = row.image_sha256 or ""
        if isinstance(pending, Future):
            decoding = (row.image_sha256, Path(row.image_abspath or ""))
            if self.decoding.get(decoding) is pending:
                del self.decoding[decoding]
            try:
                image = pending.result()
            except ImageLoadError as exc:
                return self._skip(row, str(exc))
            except Exception as exc:  # noqa: BLE001 - a decoder bug on one file must not end the dry run
                return self._skip(row, f"image {row.image_abspath} could not be decoded ({type(exc).__name__}: {exc})")
            if isinstance(image, _Sized):
                self.sizes[sha] = image
        else:
            image = pending
        sample = Sample(str(row.row), row.prompt, (ImageRef(Path(row.image_abspath or ""), sha),))
        for dim, key in row.keys.items():
            # The same request a real run builds (the evaluator's); only the image's size is read from it.
            req = with_images(self.evaluator.ask(sample, dim, key).request, {sha: image})  # type: ignore[dict-item]
            saved = None
            if self.save_images is not None:
                saved = self.save_images / saved_image_name(row.row, dim)
                image.save(saved, format="PNG")  # type: ignore[union-attr]
            user = []
            for part in req.user:
                if isinstance(part, TextPart):
                    user.append({"type": "text", "text": part.text})
                elif isinstance(part, ImagePart):
                    user.append({"type": "image", "sha256": part.sha256, "width": part.image.width,
                                 "height": part.image.height,
                                 **({"saved_as": str(saved)} if saved is not None else {})})
            self.writer.write(row=row.row, ID=row.ID, model=row.model, dimension=dim, system=req.system, user=user)
        self.progress.row_done(self.writer.written)

    def _skip(self, row: PlannedRow, reason: str) -> None:
        self.skipped += 1
        self.emit(RowNote(row.row, "unusable", reason))
        self.progress.row_done(self.writer.written)


def dry_run(config: JudgeConfig, judge_model: str | None, judge_revision: str | None, dest: Path,
            on_event: EventSink = ignore, save_images: Path | None = None) -> tuple[int, int]:
    """Write request lines to ``dest`` and their texts beside it (``request_texts.jsonl``); returns
    (requests written, rows skipped). Both files are replaced only when complete; a full disk or a
    read-only folder is a :class:`~pixeljury.runs.faults.CannotWrite` naming the file.

    With ``save_images``, every image exactly as it would be sent (after RGB conversion and the
    official resize) is written there as a lossless PNG, one per row and dimension."""
    judge_model = judge_model or NO_MODEL
    inputs = load_inputs(config)
    warn_parity(on_event)
    if save_images is not None:
        try:
            save_images.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ValueError(f"cannot write images to {save_images}: {exc.strerror or exc}") from None
    texts_dest = texts_path(dest)
    tmp_requests, tmp_texts = temporary_path(dest), temporary_path(texts_dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(dest.parent)  # of dry runs or exports killed half-way (dead pids only)
        with ResultStore(":memory:") as scratch:
            rows, ctx = planner(config, inputs, scratch, judge_model, judge_revision)
            planned = iter(rows)
            try:
                fault_point(tmp_requests)  # PIXELJURY_FAULT, for tests (runs.faults)
                fault_point(tmp_texts)
                with open(tmp_requests, "w", encoding="utf-8") as req_fh, \
                        open(tmp_texts, "w", encoding="utf-8") as text_fh, \
                        _Progress(len(rows.rows), on_event) as progress, \
                        ThreadPoolExecutor(max_workers=max(1, config.loader_threads),
                                           thread_name_prefix="pixeljury-dry-decode") as pool:
                    writer = RequestWriter(req_fh, text_fh)
                    evaluator = QJudger(inputs.rubric, ctx, keep_aspect=config.keep_aspect)
                    run = _DryRun(config, evaluator, writer, on_event, progress, pool, save_images)
                    try:
                        for row in planned:
                            run.add(row)
                        run.finish()
                    finally:
                        for _, pending in run.window:  # left over when stopped early (Ctrl-C)
                            if isinstance(pending, Future):
                                pending.cancel()
            finally:
                planned.close()  # stops the hashing threads
        # Texts first: a requests file in place always finds its texts.
        tmp_texts.replace(texts_dest)
        tmp_requests.replace(dest)
    except OSError as exc:  # one line, not a traceback; the files in place are as they were
        fault = cannot_write(exc, dest)  # a full disk, a read-only directory: exit 3, as a run's
        if fault is not None:
            raise fault from None
        raise ValueError(f"cannot write {exc.filename or dest.parent}: {exc.strerror or exc}; {dest.name} and "
                         f"{texts_dest.name} are as they were") from None
    finally:
        for tmp in (tmp_requests, tmp_texts):
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
    return writer.written, run.skipped
