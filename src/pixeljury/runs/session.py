"""What every job on a run directory shares (``pixeljury judge`` and ``pixeljury score``): the store
opened for the job, a running manifest that says how the job is going, and what happens when it
ends badly.

- ``manifest.running.json`` describes the job while it runs (a stale one, left by a killed job, is
  archived first); the job's outputs and ``manifest.json`` then switch together
  (:mod:`pixeljury.runs.switch`).
- A full disk or a directory that refuses writes is a :class:`~pixeljury.runs.faults.CannotWrite`
  that says how many results the store holds (``saved``); nothing already computed is lost.
- Ctrl-C or SIGTERM marks the running manifest ``interrupted``, an error that ends the job marks it
  ``stopped`` (with the error); ``manifest.json`` keeps describing the outputs in place.

The run directory's lock (:class:`~pixeljury.runs.lock.RunLock`) is taken by the caller first, so
that inputs are checked before a store is created.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pixeljury.runs.faults import CannotWrite
from pixeljury.runs.manifest import archive_stale_running, iso_now, write_running_manifest
from pixeljury.runs.store import ResultStore


class RunSession:
    def __init__(self, out: str | Path, store: ResultStore):
        self.out, self.store = Path(out), store
        self.manifest: dict[str, Any] = {}

    def begin(self, manifest: dict[str, Any]) -> None:
        """The job starts: ``manifest`` (with ``status: running``) becomes the running manifest."""
        self.manifest.update(manifest)
        archive_stale_running(self.out)
        write_running_manifest(self.out, self.manifest)

    def end(self, **fields: Any) -> dict[str, Any]:
        """The job's work is over (its outputs are written next): how it ended goes into the running
        manifest, so it is on disk should the outputs fail to be written."""
        self.manifest.update(finished_at=iso_now(), **fields)
        write_running_manifest(self.out, self.manifest)
        return self.manifest


@contextlib.contextmanager
def open_session(out: str | Path) -> Iterator[RunSession]:
    """The store of ``out`` opened for one job; see the module's docstring for what a bad end does."""
    store = ResultStore.in_dir(out)
    session = RunSession(out, store)
    try:
        yield session
    except CannotWrite as exc:
        exc.saved = _count(store)
        raise
    except KeyboardInterrupt:
        _mark_ended(session, "interrupted", "interrupted by a signal before the run's outputs were written")
        raise
    except Exception as exc:
        _mark_ended(session, "stopped", f"{type(exc).__name__}: {exc}")
        raise
    finally:
        store.close()


def _count(store: ResultStore) -> int | None:
    try:
        return store.count()
    except Exception:  # noqa: BLE001 - only for the message; the write error is what matters
        return None


def _mark_ended(session: RunSession, status: str, why: str) -> None:
    """A job ended by a signal or an error: its running manifest says so (``manifest.json`` keeps
    describing the outputs in place), and the next job on the directory archives it."""
    if not session.manifest:
        return
    stamp = "interrupted_at" if status == "interrupted" else "finished_at"
    session.manifest.update({"status": status, stamp: iso_now(), "stopped": why})
    try:
        write_running_manifest(session.out, session.manifest)
    except (CannotWrite, OSError):
        pass  # the signal or error is what the caller reports; the store holds every committed result


__all__ = ["RunSession", "open_session"]
