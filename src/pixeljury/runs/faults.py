"""When the run directory cannot be written: a full disk, a read-only file system, no permission.

Such a fault is not pixeljury's and not the input's, and no retry inside the process fixes it. It
becomes one :class:`CannotWrite` naming the path, the reason and what to do; the CLI prints it as one
line and exits 3. Everything is written under temporary names and moved into place only when whole,
so the outputs already there are never truncated, and results already committed to the store stay.

Fault injection (for tests where no small or read-only file system can be mounted): the environment
variable ``PIXELJURY_FAULT`` holds comma-separated items ``ERRNO@PATTERN[#N]``, e.g.
``ENOSPC@results.sqlite#5`` or ``EROFS@.lock``. From the N-th write (default: the first) to a file
whose name matches the shell pattern, writing raises ``OSError(ERRNO)`` as the operating system would.
The store counts each write transaction, other files each time one is opened for writing.
"""

from __future__ import annotations

import errno
import fnmatch
import os
import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

FAULT_ENV = "PIXELJURY_FAULT"
_TEMPORARY = re.compile(r"\.\d+\.tmp$")  # <name>.<pid>.tmp (runs.atomic.temporary_path)

_REASONS = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EFBIG: "file too large for the file system",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
}
_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
# Texts of libraries that raise without an errno (pyarrow, zipfile via openpyxl).
_TEXTS = {"No space left on device": errno.ENOSPC, "Disk quota exceeded": errno.EDQUOT,
          "Read-only file system": errno.EROFS, "Permission denied": errno.EACCES}
# SQLite's primary result codes for what the file system refused (sqlite3 exposes them from 3.11).
_SQLITE_PERM, _SQLITE_READONLY, _SQLITE_IOERR, _SQLITE_FULL, _SQLITE_CANTOPEN = 3, 8, 10, 13, 14
_SQLITE_TEXTS = {"database or disk is full": _SQLITE_FULL, "readonly database": _SQLITE_READONLY,
                 "unable to open database file": _SQLITE_CANTOPEN, "disk I/O error": _SQLITE_IOERR}
_SQLITE_WRITE_IOERRS = {778, 1034, 1290, 1546, 4618}  # IOERR_WRITE, _FSYNC, _DIR_FSYNC, _TRUNCATE, _SHMOPEN


class CannotWrite(Exception):
    """The run directory (or another output path) cannot be written; nothing pixeljury can retry."""

    saved: int | None = None  # results in the store when a judge run stopped on it (None: not opened)
    stage: str = "run"  # "export" when the run had finished and only its outputs could not be written

    def __init__(self, path: str | Path, reason: str, *, full: bool):
        self.path = Path(path)
        self.reason = reason
        self.full = full  # the disk is full (free space) rather than read-only or forbidden (fix access)
        super().__init__(f"cannot write {self.path}: {reason}")

    @property
    def fix(self) -> str:
        where = self.path.parent
        if self.full:
            return f"free space on the disk holding {where} (or use another output directory)"
        return f"make {where} writable (or use another output directory)"


def _read_only_fs(path: Path) -> bool:
    for candidate in (path, *path.parents):
        try:
            return bool(os.statvfs(candidate).f_flag & os.ST_RDONLY)
        except OSError:
            continue
    return False


def _no_space(path: Path) -> bool:
    try:
        return os.statvfs(path.parent).f_bavail == 0
    except OSError:
        return False


def cannot_write(exc: BaseException, path: str | Path) -> CannotWrite | None:
    """``exc`` as a :class:`CannotWrite` when it says the file system refused a write, else None."""
    if isinstance(exc, CannotWrite):
        return exc
    path = Path(path)
    if isinstance(exc, sqlite3.Error) and not isinstance(exc, sqlite3.IntegrityError):
        extended = getattr(exc, "sqlite_errorcode", None)
        code = None if extended is None else extended & 0xFF
        if code is None:
            code = next((c for text, c in _SQLITE_TEXTS.items() if text in str(exc)), None)
        if code not in (_SQLITE_PERM, _SQLITE_READONLY, _SQLITE_IOERR, _SQLITE_FULL, _SQLITE_CANTOPEN):
            return None
        if code == _SQLITE_FULL or (code == _SQLITE_IOERR and _no_space(path)):
            return CannotWrite(path, "no space left on device", full=True)
        if _read_only_fs(path):
            return CannotWrite(path, "read-only file system", full=False)
        if code == _SQLITE_IOERR and extended not in _SQLITE_WRITE_IOERRS:
            return None  # a read error: the file, not the file system (StoreDamaged says so)
        return CannotWrite(path, f"SQLite: {exc}", full=False)
    if isinstance(exc, OSError):
        code = exc.errno if exc.errno in _REASONS else next(
            (c for text, c in _TEXTS.items() if text in str(exc)), None)
        if code is None:
            return None
        where = Path(exc.filename) if isinstance(exc.filename, str) and exc.filename else path
        # A temporary is named as the output it was to become: that is the file the user knows.
        where = where.with_name(_TEMPORARY.sub("", where.name)) if _TEMPORARY.search(where.name) else where
        return CannotWrite(where, _REASONS[code], full=code in _FULL)
    return None


@contextmanager
def writing(path: str | Path) -> Iterator[None]:
    """Turn a refused write inside the block into :class:`CannotWrite` naming ``path`` (or the file
    the operating system named); any other error passes unchanged."""
    try:
        yield
    except (OSError, sqlite3.Error) as exc:
        fault = cannot_write(exc, path)
        if fault is None:
            raise
        raise fault from None


_hits: dict[str, int] = {}


def fault_point(path: str | Path) -> None:
    """Raise the injected fault for a write to ``path``, if ``PIXELJURY_FAULT`` names one."""
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    name = Path(path).name
    for item in (s.strip() for s in spec.split(",")):
        code_name, _, rest = item.partition("@")
        pattern, _, nth = rest.partition("#")
        if not pattern or not fnmatch.fnmatchcase(name, pattern):
            continue
        _hits[item] = _hits.get(item, 0) + 1
        code = getattr(errno, code_name, None)
        if code is not None and _hits[item] >= int(nth or 1):
            raise OSError(code, os.strerror(code), str(path))


__all__ = ["FAULT_ENV", "CannotWrite", "cannot_write", "fault_point", "writing"]
