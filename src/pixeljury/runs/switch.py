"""Switching a run directory's outputs and its manifest together.

Every new file is first written whole under a per-process temporary name; nothing in place changes
while any of them is being written, so a full disk, an error or a kill leaves the previous outputs
and ``manifest.json`` as they were. Only then are the temporaries renamed into place, one after the
other, the manifest last: the earlier ``manifest.json`` is kept in ``manifests/`` (a hard link where
the file system has them, so ``manifest.json`` never goes missing), and the running manifest of the
run that made the outputs is removed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pixeljury.runs.atomic import discard, temporary_path
from pixeljury.runs.faults import fault_point
from pixeljury.runs.manifest import MANIFEST_NAME, RUNNING_NAME, archive_destination


class OutputSwitch:
    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self._moves: list[tuple[Path, Path]] = []
        self._manifest_tmp: Path | None = None
        self._archive: Path | None = None

    def add(self, tmp: Path, final: Path) -> Path:
        """A temporary already written whole, to be moved to ``final``."""
        self._moves.append((tmp, final))
        return final

    def write_with(self, final: Path, write: Callable[[Path], None]) -> Path:
        tmp = temporary_path(final)
        self._moves.append((tmp, final))  # before writing: abort() removes a half-written one too
        fault_point(tmp)
        write(tmp)
        return final

    def write_text(self, final: Path, text: str) -> Path:
        return self.write_with(final, lambda tmp: tmp.write_text(text, encoding="utf-8"))

    def set_manifest(self, manifest: dict[str, Any]) -> None:
        """``manifest`` becomes ``manifest.json`` at the commit; the one there now is archived and named
        in its ``previous_manifest``."""
        current = self.run_dir / MANIFEST_NAME
        if current.is_file():
            self._archive = archive_destination(self.run_dir)
            self._archive.parent.mkdir(exist_ok=True)
            manifest = {**manifest, "previous_manifest": str(self._archive.relative_to(self.run_dir))}
        tmp = temporary_path(current)
        self._manifest_tmp = tmp
        fault_point(tmp)
        tmp.write_text(json.dumps(manifest, indent=2, ensure_ascii=False, default=str), encoding="utf-8")

    def commit(self) -> None:
        for tmp, final in self._moves:
            tmp.replace(final)
        self._moves = []
        if self._manifest_tmp is None:
            return
        current = self.run_dir / MANIFEST_NAME
        if self._archive is not None:
            try:
                os.link(current, self._archive)  # manifest.json stays in place until it is replaced
            except OSError:
                current.replace(self._archive)
        self._manifest_tmp.replace(current)
        self._manifest_tmp = None
        (self.run_dir / RUNNING_NAME).unlink(missing_ok=True)

    def abort(self) -> None:
        for tmp, _ in self._moves:
            discard(tmp)
        self._moves = []
        if self._manifest_tmp is not None:
            discard(self._manifest_tmp)
            self._manifest_tmp = None


__all__ = ["OutputSwitch"]
