"""One writer per run directory: an exclusive, non-blocking ``flock`` on ``DIR/.lock``."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from pixeljury.runs.faults import fault_point, writing


class RunLocked(RuntimeError):
    pass


class RunLock:
    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / ".lock"
        self._fd: int | None = None

    def __enter__(self) -> "RunLock":
        # The first write a run or an export makes: a read-only directory or a full disk stops it here,
        # as CannotWrite, before anything else is touched.
        with writing(self.path):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fault_point(self.path)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = self.path.read_text().strip() or "another process"
            raise RunLocked(
                f"run directory {self.path.parent} is in use by {holder}; wait for it to finish or use another --out"
            ) from None
        try:
            with writing(self.path):
                os.ftruncate(fd, 0)
                os.write(fd, f"pid {os.getpid()}".encode())
        except BaseException:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
            raise
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
