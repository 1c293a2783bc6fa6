"""Progress display for long runs: requests done / total, images per minute, tokens per second, ETA,
parse failures so far. Quiet mode prints nothing (for logs and CI)."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn


class RunProgress:
    def __init__(self, total: int, *, quiet: bool = False, console: Console | None = None, label: str = "judging"):
        self.total = total
        self.quiet = quiet
        self.started = time.perf_counter()
        self.tokens = 0
        self.images: set[str] = set()
        self.parse_failures = 0
        self.errors = 0
        self._progress: Progress | None = None
        if not quiet:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TaskProgressColumn(),
                TextColumn("{task.fields[rate]}"),
                TextColumn("[red]{task.fields[fails]}"),
                TimeRemainingColumn(),
                console=console or Console(stderr=True),
                transient=False,
            )
            self._task = self._progress.add_task(label, total=total, rate="", fails="")

    def __enter__(self) -> "RunProgress":
        if self._progress:
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress:
            self._progress.stop()

    def set_total(self, total: int) -> None:
        """The number of requests to compute, once planning knows it better."""
        self.total = total
        if self._progress:
            self._progress.update(self._task, total=total)

    def advance(self, n: int, *, tokens: int = 0, images: set[str] | None = None, parse_failures: int = 0,
                errors: int = 0) -> None:
        self.tokens += tokens
        self.images |= images or set()
        self.parse_failures += parse_failures
        self.errors += errors
        if not self._progress:
            return
        minutes = max(time.perf_counter() - self.started, 1e-9) / 60
        rate = f"{len(self.images) / minutes:.1f} img/min  {self.tokens / (minutes * 60):.0f} tok/s"
        fails = f"parse failures {self.parse_failures}" + (f"  errors {self.errors}" if self.errors else "")
        self._progress.update(self._task, advance=n, rate=rate, fails=fails)


@contextlib.contextmanager
def library_bars_off(enabled: bool = True) -> Iterator[None]:
    """``--quiet`` for the libraries too: no "Loading weights" / "Loading checkpoint shards" bars from
    transformers and no download bars from huggingface_hub while the block runs; afterwards each is
    as it was. transformers decides when it is imported, from huggingface_hub's setting, so that one
    is switched off first (importing huggingface_hub.utils takes milliseconds, not transformers)."""
    if not enabled:
        yield
        return
    try:
        from huggingface_hub import utils as hub
    except ImportError:
        hub = None
    hub_on = hub is not None and not hub.are_progress_bars_disabled()
    loaded = sys.modules.get("transformers.utils.logging")
    transformers_on = loaded.is_progress_bar_enabled() if loaded is not None else hub_on
    if hub is not None:
        hub.disable_progress_bars()
    if loaded is not None:
        loaded.disable_progress_bar()
    try:
        yield
    finally:
        now = sys.modules.get("transformers.utils.logging")  # imported before, or by the engine since
        if now is not None and transformers_on:
            now.enable_progress_bar()  # (switches huggingface_hub's on as well: set right below)
        if hub is not None:
            if hub_on:
                hub.enable_progress_bars()
            else:
                hub.disable_progress_bars()
