"""The work of a judge run, as the planner finds it: batches of requests still to compute."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from pixeljury.runs.events import EventSink, RowNote
from pixeljury.runs.plan import PlannedRow, RowPlanner
from pixeljury.runs.store import ResultStore

Work = tuple[PlannedRow, str, str]  # (row, dimension, result key)


class WorkStream:
    """Turns planned rows into batches of requests still to compute, as the planner yields them.

    Rows are recorded in the store as they are planned (``pixeljury export`` rebuilds outputs from
    them), each distinct key is queued once, and keys already in the store are counted as reused.
    ``set_total`` hears the number of requests left to compute, refined as planning goes on.
    """

    def __init__(self, rows: RowPlanner, store: ResultStore, size: int, emit: EventSink,
                 set_total: Callable[[int], None]):
        self.rows, self.store, self.size, self.emit, self.set_total = rows, store, size, emit, set_total
        self.planned: list[PlannedRow] = []
        self.all_keys: set[str] = set()
        self.reused = 0
        self.to_compute = rows.upper_bound_requests()  # until planning says otherwise
        set_total(self.to_compute)

    def _drop(self, n: int) -> None:
        if n:
            self.to_compute -= n
            self.set_total(self.to_compute)

    def batches(self) -> Iterator[list[Work]]:
        planned = iter(self.rows)
        try:
            yield from self._batches(planned)
        finally:
            planned.close()  # stops the hashing threads and saves the hashes computed so far

    def _batches(self, planned: Iterator[PlannedRow]) -> Iterator[list[Work]]:
        # Rows are upserted by index as they are planned, and those past the end of the input are
        # dropped once planning is complete: a run stopped half-way leaves the earlier plan's tail.
        # Keys are looked up in the store a chunk at a time: small at first, so the first batch goes
        # out after a few rows; larger later, so resuming a big run takes few queries.
        lookup = self.size
        candidates: list[Work] = []
        pending: list[Work] = []
        unsaved: list[PlannedRow] = []
        try:
            for source, row in zip(self.rows.rows, planned):
                self.planned.append(row)
                unsaved.append(row)
                report_row(row, self.emit)
                queued = 0
                if row.status == "ok":
                    for dim, key in row.keys.items():
                        if key not in self.all_keys:
                            self.all_keys.add(key)
                            candidates.append((row, dim, key))
                            queued += 1
                if not source.errors:  # counted in the upper bound
                    self._drop(len(self.rows.dimensions_of(source)) - queued)
                if len(candidates) >= lookup:
                    pending += self._not_stored(candidates)
                    candidates = []
                    lookup = min(2 * lookup, max(self.size, 1024))
                if len(pending) >= self.size:
                    self.store.add_rows(r.payload() for r in unsaved)
                    unsaved = []
                    while len(pending) >= self.size:
                        yield pending[: self.size]
                        pending = pending[self.size :]
            pending += self._not_stored(candidates)
        finally:
            # Every planned row is recorded, also when the run stops or is interrupted here.
            self.store.add_rows(r.payload() for r in unsaved)
        self.store.drop_rows_from(len(self.rows.rows))
        for i in range(0, len(pending), self.size):
            yield pending[i : i + self.size]

    def _not_stored(self, work: list[Work]) -> list[Work]:
        done = self.store.existing_keys(key for _, _, key in work) if work else set()
        self.reused += len(done)
        self._drop(len(done))
        return [w for w in work if w[2] not in done]


def report_row(r: PlannedRow, emit: EventSink) -> None:
    """A planned row's errors and warnings, as events."""
    if r.status == "row_error":
        emit(RowNote(r.row, "skipped", "; ".join(r.errors)))
    elif r.status == "duplicate":
        emit(RowNote(r.row, "duplicate", "; ".join(r.errors)))
    for warning in r.warnings:
        emit(RowNote(r.row, "warning", warning))
