"""Files written whole or not at all: per-process temporaries renamed into place, and the cleanup of
temporaries that a killed writer left behind."""

from __future__ import annotations

import os
import re
from pathlib import Path

from pixeljury.runs.faults import fault_point


def temporary_path(path: Path) -> Path:
    """``<name>.<pid>.tmp`` beside ``path``: unique to this process."""
    return path.with_name(f"{path.name}.{os.getpid()}.tmp")


def discard(path: Path) -> None:
    """Remove a temporary if it is there; on a read-only file system even that fails, and quietly."""
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass


def write_text_atomic(path: Path, text: str) -> None:
    tmp = temporary_path(path)
    try:
        fault_point(tmp)
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    finally:
        discard(tmp)


_TEMPORARY = re.compile(r".+\.(\d+)\.tmp")


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True  # exists under another user, or cannot tell: keep its file
    return True


def remove_stale_temporaries(run_dir: Path) -> list[Path]:
    """Delete the ``<name>.<pid>.tmp`` files that an export or manifest write killed half-way left
    behind: those whose process no longer exists (a live one may still be writing its own)."""
    removed = []
    for folder in (run_dir, run_dir / "bench", run_dir / "manifests"):
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            match = _TEMPORARY.fullmatch(path.name)
            if match and not _process_alive(int(match.group(1))) and path.is_file():
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed


__all__ = ["discard", "remove_stale_temporaries", "temporary_path", "write_text_atomic"]
