"""How the CLI shows a run's events (pixeljury.runs.events): coloured lines on stderr and a progress
bar (requests done / total, images per minute, tokens per second, ETA, parse failures; rows per
second for a dry run; a line per chunk of metric items). Quiet mode shows no bar. The library
emits; only this module draws."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

from pixeljury.runs.events import (
    Advanced, BatchFailed, Notice, Resuming, RowNote, RunEvent, RunStopped, TotalChanged, WorkFinished, WorkStarted,
)

_REFRESH_SECONDS = 0.1  # row-counting bars (dry run) redraw at most this often: a redraw costs more than a row


class ConsoleRenderer:
    """An event sink for the CLI. Use as ``run_judge(config, factory, on_event=ConsoleRenderer(console))``."""

    def __init__(self, console: Console | None = None, *, quiet: bool = False):
        self.console = console or Console(stderr=True, quiet=quiet)
        self.quiet = quiet or self.console.quiet
        self._bar: _Bar | None = None
        self._items: _ItemCount | None = None

    def __call__(self, event: RunEvent) -> None:
        if isinstance(event, WorkStarted):
            self._stop_bar()
            self._items = _ItemCount(event) if event.unit == "items" else None
            if not self.quiet and self._items is None:
                self._bar = _Bar(event, self.console)
        elif isinstance(event, Advanced) and self._items is not None:
            # Metric scoring advances a chunk of hundreds of items at a time: a line per chunk.
            self.console.print(self._items.advance(event), markup=False, highlight=False)
        elif isinstance(event, (TotalChanged, Advanced)):
            if self._bar is not None:
                self._bar.update(event)
        elif isinstance(event, WorkFinished):
            self._stop_bar()
        else:
            self._line(event)

    def _stop_bar(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def _line(self, event: RunEvent) -> None:
        print_ = self.console.print
        if isinstance(event, RowNote):
            label = {"skipped": "skipped: ", "warning": "warning: "}.get(event.kind, "")
            print_(f"[yellow]row {event.row}: {label}{event.message}")
        elif isinstance(event, Notice):
            print_(f"[yellow]warning:[/] {event.message}" if event.level == "warning" else event.message)
        elif isinstance(event, Resuming):
            print_(f"resuming: {event.run_dir} already holds {event.stored} results; stored requests are skipped")
        elif isinstance(event, BatchFailed):
            print_(f"[red]engine failed on a batch of {event.size} (rows {list(event.rows)}) after "
                   f"{event.attempts} attempt(s): {event.reason}")
        elif isinstance(event, RunStopped):
            print_(f"[bold red]run stopped:[/] {event.reason}. Finished results are kept; "
                   "rerun the same command to continue.")


class _ItemCount:
    """``clipscore@hessel-2.5x: 512/2000 scored``: items with a value so far, of those to score."""

    def __init__(self, started: WorkStarted):
        self.label, self.total, self.scored = started.label, started.total, 0

    def advance(self, event: Advanced) -> str:
        self.scored += event.n - event.errors
        return f"{self.label}: {self.scored}/{self.total} scored"


class _Bar:
    def __init__(self, started: WorkStarted, console: Console):
        self.unit = started.unit
        self.began = time.perf_counter()
        self.tokens = self.parse_failures = self.errors = 0
        self.images: set[str] = set()
        self.done = self.shown = self.written = 0
        self.last_draw = 0.0
        info = "info" if self.unit == "rows" else "rate"
        columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
                   TextColumn("{task.fields[" + info + "]}")]
        if self.unit != "rows":
            columns.append(TextColumn("[red]{task.fields[fails]}"))
        self.progress = Progress(*columns, TimeRemainingColumn(), console=console, transient=False)
        self.task = self.progress.add_task(started.label, total=started.total, rate="", fails="", info="")
        self.progress.start()

    def update(self, event: TotalChanged | Advanced) -> None:
        if isinstance(event, TotalChanged):
            self.progress.update(self.task, total=event.total)
            return
        self.done += event.n
        self.tokens += event.tokens
        self.images |= event.images
        self.parse_failures += event.parse_failures
        self.errors += event.errors
        if event.written is not None:
            self.written = event.written
        if self.unit == "rows":
            if time.perf_counter() - self.last_draw >= _REFRESH_SECONDS:
                self._draw_rows()
            return
        minutes = max(time.perf_counter() - self.began, 1e-9) / 60
        rate = f"{len(self.images) / minutes:.1f} img/min  {self.tokens / (minutes * 60):.0f} tok/s"
        fails = f"parse failures {self.parse_failures}" + (f"  errors {self.errors}" if self.errors else "")
        self.progress.update(self.task, advance=event.n, rate=rate, fails=fails)
        self.shown = self.done

    def _draw_rows(self) -> None:
        now = time.perf_counter()
        rate = self.done / max(now - self.began, 1e-9)
        self.progress.update(self.task, advance=self.done - self.shown, info=f"{self.written} requests  {rate:.0f} rows/s")
        self.shown, self.last_draw = self.done, now

    def stop(self) -> None:
        if self.unit == "rows":
            self._draw_rows()  # the final count, whatever the last redraw showed
        self.progress.stop()


__all__ = ["ConsoleRenderer"]
