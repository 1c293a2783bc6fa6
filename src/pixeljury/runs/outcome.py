"""How a judge run ended: the summary it returns and the ``status`` its manifest records."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

# The manifest's "status", from the most to the least finished:
#   complete            every request has a result (a parse failure is a result)
#   permanent_failures  ran to the end; the only requests without a result fail the same way on every
#                       rerun (an image no decoder reads, a request the engine refuses as such): fix those rows
#   incomplete          ran to the end; some requests without a result may get one when rerun
#   stopped             stopped early (the engine refused, or batch after batch failed)
#   interrupted         killed or stopped by a signal before its outputs were written
#   running             manifest.running.json of a run in progress
STATUSES = ("complete", "permanent_failures", "incomplete", "stopped", "interrupted", "running")


def run_status(stopped: str | None, failed: int, permanent: int) -> str:
    if stopped is not None:
        return "stopped"
    if failed == 0:
        return "complete"
    return "permanent_failures" if permanent >= failed else "incomplete"


@dataclass
class RunSummary:
    run_dir: Path
    requests: int  # distinct requests the run needs
    reused: int  # found in the store
    computed: int  # generated in this run
    failed: int  # requests without a result after this run
    row_errors: int
    duplicates: int
    outputs: dict[str, Path]
    stopped: str | None = None  # why the run stopped before the end, if it did
    permanent: int = 0  # of ``failed``: requests that fail the same way on every rerun
    permanent_rows: list[int] = field(default_factory=list)  # input rows holding them

    @property
    def complete(self) -> bool:
        """Every request the input needs has a result (parse failures count as results)."""
        return self.stopped is None and self.failed == 0

    @property
    def status(self) -> str:
        return run_status(self.stopped, self.failed, self.permanent)


def row_list(rows: list[int], limit: int = 20) -> str:
    """``3, 7, 12`` or ``3, 7, … (25 rows)``: the rows to fix, short enough for one line."""
    shown = ", ".join(str(r) for r in rows[:limit])
    return shown if len(rows) <= limit else f"{shown}, … ({len(rows)} rows)"


__all__ = ["STATUSES", "RunSummary", "row_list", "run_status"]
