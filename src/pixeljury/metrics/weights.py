"""Getting weights: a local path, the Hugging Face hub (pinned revision), ModelScope or a URL.

Checkpoints stay in their original format on disk; each metric converts them when it loads them.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from pixeljury.metrics.base import MetricUnavailable, WeightsRef

MODELSCOPE_PREFIX = "modelscope:"


def cache_dir() -> Path:
    """pixeljury's cache root: $PIXELJURY_CACHE_DIR, else $XDG_CACHE_HOME/pixeljury, else ~/.cache/pixeljury."""
    explicit = os.environ.get("PIXELJURY_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pixeljury"


def _check_sha256(path: Path, expected: str | None) -> None:
    if not expected or not path.is_file():
        return
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    if h.hexdigest() != expected:
        raise MetricUnavailable(f"{path} has sha256 {h.hexdigest()}, expected {expected}: corrupt or wrong file")


def resolve(
    ref: WeightsRef | None,
    override: str | os.PathLike[str] | None = None,
    *,
    revision: str | None = None,
    filename: str | None = None,
) -> Path:
    """A local path for the weights: ``override`` (local path, hub id or ``modelscope:<id>``) or ``ref``.

    Returns a directory for whole repositories and a file when a filename is known.
    """
    if override is not None and Path(override).exists():
        return Path(override)
    if override is None and ref is None:
        raise MetricUnavailable("this metric has no default weights; pass weights=<path or hub id>")
    repo_id = str(override) if override is not None else ref.repo_id  # type: ignore[union-attr]
    rev = revision or (ref.revision if ref is not None and override is None else "main")
    # A hub id given instead of the default repository is assumed to hold the same file layout.
    fname = filename if filename is not None else (ref.filename if ref is not None else None)
    sha = ref.sha256 if ref is not None and override is None else None
    if repo_id.startswith(MODELSCOPE_PREFIX):
        path = _from_modelscope(repo_id[len(MODELSCOPE_PREFIX):], rev, fname)
    elif repo_id.startswith(("http://", "https://")):
        path = _from_url(repo_id)
    else:
        if repo_id.startswith(("/", ".", "~")):
            raise MetricUnavailable(f"weights path {repo_id} does not exist")
        path = _from_hub(repo_id, rev, fname)
    _check_sha256(path, sha)
    return path


def _from_hub(repo_id: str, revision: str, filename: str | None) -> Path:
    try:
        from huggingface_hub import hf_hub_download, snapshot_download

        if filename:
            return Path(hf_hub_download(repo_id, filename, revision=revision))
        return Path(snapshot_download(repo_id, revision=revision))
    except Exception as exc:  # the hub raises many types (offline, gated, 404); all mean "not here"
        what = f"{repo_id}/{filename}" if filename else repo_id
        raise MetricUnavailable(
            f"cannot get weights {what}@{revision} from the Hugging Face hub ({type(exc).__name__}: {exc}); "
            "pass weights=<local path> or 'modelscope:<id>', or set HF_ENDPOINT"
        ) from exc


def _from_modelscope(model_id: str, revision: str, filename: str | None) -> Path:
    try:
        from modelscope import snapshot_download  # type: ignore[import-not-found]
    except ImportError:
        raise MetricUnavailable("ModelScope weights need the 'modelscope' extra: pip install 'pixeljury[modelscope]'") from None
    try:
        root = Path(snapshot_download(model_id, revision=None if revision == "main" else revision))
    except Exception as exc:
        raise MetricUnavailable(f"cannot get {model_id} from ModelScope ({type(exc).__name__}: {exc})") from exc
    return root / filename if filename else root


def _from_url(url: str) -> Path:
    """Download once into the cache (atomic rename), then reuse."""
    target = cache_dir() / "weights" / hashlib.sha256(url.encode()).hexdigest()[:16] / url.rsplit("/", 1)[-1]
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(target.suffix + ".part")
    try:
        import httpx

        with httpx.stream("GET", url, follow_redirects=True, timeout=60) as response:
            response.raise_for_status()
            with open(partial, "wb") as fh:
                for block in response.iter_bytes(1 << 20):
                    fh.write(block)
    except Exception as exc:
        partial.unlink(missing_ok=True)
        raise MetricUnavailable(
            f"cannot download {url} ({type(exc).__name__}: {exc}); download it yourself and pass weights=<path>"
        ) from exc
    partial.replace(target)
    return target


__all__ = ["cache_dir", "resolve"]
