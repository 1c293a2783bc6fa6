"""What a run tells its caller while it works: typed events. The library prints nothing.

The runner, the dry run and ``pixeljury score`` call an :data:`EventSink` with these events; the
CLI renders them (``pixeljury.cli.render``: coloured lines and a progress bar), the HTTP service and
Ray workers forward or log them, and a caller that passes nothing hears nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Union


@dataclass(frozen=True)
class RowNote:
    """A planned row that is not judged as it stands, or judged with a warning.

    ``kind``: ``skipped`` (a row error: bad path, control tokens, ...), ``duplicate`` (the same
    image and prompt as an earlier row), ``warning`` (judged, but something is off), ``unusable``
    (found unusable after planning, e.g. its image could not be decoded in a dry run)."""

    row: int
    kind: Literal["skipped", "duplicate", "warning", "unusable"]
    message: str


@dataclass(frozen=True)
class Notice:
    """A line for the person running the job (``warning``: something may make results differ)."""

    message: str
    level: Literal["info", "warning"] = "info"


@dataclass(frozen=True)
class Resuming:
    """The run directory already holds results; requests stored under the same keys are skipped."""

    run_dir: str
    stored: int


@dataclass(frozen=True)
class WorkStarted:
    """A stretch of work with a progress count begins. ``unit``: what ``total`` counts
    (``requests`` to compute, ``rows`` to write, ``items`` to score)."""

    label: str
    total: int
    unit: Literal["requests", "rows", "items"] = "requests"


@dataclass(frozen=True)
class TotalChanged:
    """Planning knows better how much is left to compute."""

    total: int


@dataclass(frozen=True)
class Advanced:
    """``n`` more units done. ``images``: SHA-256s of the images this step covered (for images per
    minute); ``written``: requests written so far (dry run)."""

    n: int
    tokens: int = 0
    images: frozenset[str] = field(default_factory=frozenset)
    parse_failures: int = 0
    errors: int = 0
    written: int | None = None


@dataclass(frozen=True)
class WorkFinished:
    """The stretch of work that :class:`WorkStarted` began is over (finished or stopped)."""

    label: str


@dataclass(frozen=True)
class BatchFailed:
    """A batch got no answer after ``attempts`` tries; its requests are recorded as failures."""

    size: int
    rows: tuple[int, ...]
    attempts: int
    reason: str


@dataclass(frozen=True)
class RunStopped:
    """The run stops early (an engine error that retrying cannot fix, too many failed batches)."""

    reason: str


RunEvent = Union[RowNote, Notice, Resuming, WorkStarted, TotalChanged, Advanced, WorkFinished, BatchFailed, RunStopped]
EventSink = Callable[[RunEvent], None]


def ignore(_event: RunEvent) -> None:
    """The sink of a caller that wants no events."""


class Collect:
    """A sink that keeps every event (tests, the service's per-job log)."""

    def __init__(self) -> None:
        self.events: list[RunEvent] = []

    def __call__(self, event: RunEvent) -> None:
        self.events.append(event)

    def of(self, kind: type) -> list:
        return [e for e in self.events if isinstance(e, kind)]


__all__ = [
    "Advanced", "BatchFailed", "Collect", "EventSink", "Notice", "Resuming", "RowNote", "RunEvent", "RunStopped",
    "TotalChanged", "WorkFinished", "WorkStarted", "ignore",
]
