"""``judge --dry-run``: the requests a run would send, without any model.

Writes ``requests.jsonl`` (one line per request) and ``request_texts.jsonl`` (each distinct text once;
requests name their texts by id): see :mod:`pixeljury.runs.requests_file`, whose ``read_requests``
gives each request back with its texts inline. Rows are planned and written as they come (nothing
holds all rows' plans), images are decoded by a few threads ahead of the row being written, and each
distinct image is decoded once for its size, so a large input runs in memory that does not grow with
its rows' texts. Progress is shown on stderr (rows done / total), as in a real run; ``--quiet`` hides it.
"""

from __future__ import annotations

import contextlib
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

from pixeljury.data.images import ImageLoadError, load_for_judge
from pixeljury.engines.base import ImagePart, TextPart
from pixeljury.protocols import qjudger
from pixeljury.runs.atomic import remove_stale_temporaries, temporary_path
from pixeljury.runs.exports import slug
from pixeljury.runs.faults import cannot_write, fault_point
from pixeljury.runs.judge import JudgeConfig, load_inputs, planner, report_row, warn_parity
from pixeljury.runs.plan import PlannedRow
from pixeljury.runs.requests_file import RequestWriter, texts_path
from pixeljury.runs.store import ResultStore

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
    """Rows done / total on stderr, with requests written and rows per second; nothing when quiet."""

    def __init__(self, total: int, console: Console, quiet: bool):
        self._progress: Progress | None = None
        self._done = self._shown = self._requests = 0
        self._last = 0.0
        self._started = time.perf_counter()
        if not quiet:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
                TextColumn("{task.fields[info]}"), TimeRemainingColumn(), console=console, transient=False)
            self._task = self._progress.add_task("dry run: rows", total=total, info="")

    def __enter__(self) -> "_Progress":
        if self._progress:
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress:
            self._refresh()  # the final count, whatever the last update showed
            self._progress.stop()

    def row_done(self, requests: int) -> None:
        self._done += 1
        self._requests = requests
        if self._progress and time.perf_counter() - self._last >= 0.1:
            self._refresh()  # a display update per row would cost more than the row

    def _refresh(self) -> None:
        assert self._progress is not None
        now = time.perf_counter()
        rate = self._done / max(now - self._started, 1e-9)
        self._progress.update(self._task, advance=self._done - self._shown,
                              info=f"{self._requests} requests  {rate:.0f} rows/s")
        self._shown, self._last = self._done, now


def _decode(path: Path, keep_aspect: bool, keep_image: bool):
    """The image as it would be sent (kept whole only when it is saved), else just its size."""
    image, _ = load_for_judge(path, keep_aspect=keep_aspect)
    return image if keep_image else _Sized(image.width, image.height)


class _DryRun:
    def __init__(self, config: JudgeConfig, rubric, writer: RequestWriter, console: Console,
                 progress: _Progress, pool: ThreadPoolExecutor, save_images: Path | None):
        self.config, self.rubric, self.writer, self.console = config, rubric, writer, console
        self.progress, self.pool, self.save_images = progress, pool, save_images
        self.skipped = 0
        self.sizes: dict[str, _Sized] = {}  # image sha256 -> size as sent (each distinct image decoded once)
        self.decoding: dict[tuple, Future] = {}  # (sha256, path) -> the decode in flight
        self.window: deque[tuple[PlannedRow, Future | _Sized]] = deque()
        threads = max(1, config.loader_threads)
        # Saved images are held whole until written: keep fewer of them in flight.
        self.ahead = 2 * threads if save_images is not None else 16 * threads

    def add(self, row: PlannedRow) -> None:
        report_row(row, self.console)
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
        for dim, key in row.keys.items():
            # The same request a real run builds; only the image's size is read from it.
            req = qjudger.build_request(self.rubric, row.prompt, dim, image, sha,  # type: ignore[arg-type]
                                        f"{dim}:{key}")
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
        self.console.print(f"[yellow]row {row.row}: {reason}")
        self.progress.row_done(self.writer.written)


def dry_run(config: JudgeConfig, judge_model: str | None, judge_revision: str | None, dest: Path,
            console: Console | None = None, save_images: Path | None = None) -> tuple[int, int]:
    """Write request lines to ``dest`` and their texts beside it (``request_texts.jsonl``); returns
    (requests written, rows skipped). Both files are replaced only when complete; a full disk or a
    read-only folder is a :class:`~pixeljury.runs.faults.CannotWrite` naming the file.

    With ``save_images``, every image exactly as it would be sent (after RGB conversion and the
    official resize) is written there as a lossless PNG, one per row and dimension."""
    console = console or Console(stderr=True, quiet=config.quiet)
    judge_model = judge_model or NO_MODEL
    inputs = load_inputs(config)
    warn_parity(console)
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
            rows, _ = planner(config, inputs, scratch, judge_model, judge_revision)
            planned = iter(rows)
            try:
                fault_point(tmp_requests)  # PIXELJURY_FAULT, for tests (runs.faults)
                fault_point(tmp_texts)
                with open(tmp_requests, "w", encoding="utf-8") as req_fh, \
                        open(tmp_texts, "w", encoding="utf-8") as text_fh, \
                        _Progress(len(rows.rows), console, config.quiet) as progress, \
                        ThreadPoolExecutor(max_workers=max(1, config.loader_threads),
                                           thread_name_prefix="pixeljury-dry-decode") as pool:
                    writer = RequestWriter(req_fh, text_fh)
                    run = _DryRun(config, inputs.rubric, writer, console, progress, pool, save_images)
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
