"""Getting weights: a local path, the Hugging Face hub (pinned revision), ModelScope or a URL.

Checkpoints stay in their original format on disk; each metric converts them when it loads them.
Every resolution also says *which* weights were found (:class:`ResolvedWeights`): the hub commit, or
a fingerprint of the content, so that result keys change when the weights do.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pixeljury import cache as _cache

# The judge engines' weight fingerprint, reused so that judges and metrics identify local weights
# alike (engines.checkpoints imports no torch).
from pixeljury.engines.checkpoints import judge_identity, local_revision, sampled_file_digest
from pixeljury.metrics.base import MetricUnavailable, WeightsRef

MODELSCOPE_PREFIX = "modelscope:"


def cache_dir() -> Path:
    """pixeljury's cache root (:func:`pixeljury.cache.cache_dir`: $PIXELJURY_CACHE_DIR, else
    $XDG_CACHE_HOME/pixeljury, else ~/.cache/pixeljury), read from the environment at each call."""
    return _cache.cache_dir()


def _check_sha256(path: Path, expected: str | None) -> None:
    if not expected or not path.is_file():
        return
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    if h.hexdigest() != expected:
        raise MetricUnavailable(f"{path} has sha256 {h.hexdigest()}, expected {expected}: corrupt or wrong file")


@dataclass(frozen=True)
class ResolvedWeights:
    """Weights on local disk and the identity result keys record for them.

    ``identity`` is ``<repo>[/<file>]@<commit>`` for the hub (``@<revision>+<fingerprint>`` when the
    commit cannot be read off the download), ``local:<absolute path>@<fingerprint>`` for a local
    path, ``<url>@sha256:<hex>`` or ``<url>@<fingerprint>`` for a URL, and
    ``modelscope:<id>[/<file>]@<fingerprint>`` for ModelScope (whose revisions are movable tags).
    """

    path: Path
    identity: str


def content_fingerprint(path: str | os.PathLike[str]) -> str:
    """``local-<16 hex>`` from the content of local weights, not their place or time.

    A folder gets the judge engines' :func:`~pixeljury.engines.checkpoints.local_revision` (config, tokenizer
    and processor files in full, weight files by size and sampled content); a single checkpoint file
    gets the same sampling of that file (whole when small, else its first and last MiB and 16 blocks
    between). Raises FileNotFoundError for a missing path.
    """
    path = Path(path)
    if path.is_dir():
        return local_revision(path)
    size = path.stat().st_size
    h = hashlib.sha256(b"pixeljury-local-file-revision-v1\0")
    h.update(f"{size}\0".encode())
    h.update(sampled_file_digest(path, size))
    return "local-" + h.hexdigest()[:16]


def tokenizer_identity(tokenizer: Any) -> str:
    """A tokenizer passed as an object has no files to fingerprint: identify it by its class and a
    hash of its vocabulary (what decides the token ids the model sees)."""
    vocab = json.dumps(tokenizer.get_vocab(), sort_keys=True, ensure_ascii=False)
    return f"object:{type(tokenizer).__name__}:vocab-{hashlib.sha256(vocab.encode()).hexdigest()[:16]}"


def combined_identity(main: str, **companions: str | None) -> str:
    """One weights label for a metric built from several sources: ``main+role=identity+...``."""
    return "+".join([main, *(f"{role}={identity}" for role, identity in companions.items() if identity)])


def resolve(
    ref: WeightsRef | None,
    override: str | os.PathLike[str] | None = None,
    *,
    revision: str | None = None,
    filename: str | None = None,
) -> Path:
    """A local path for the weights (see :func:`resolve_weights`, which also identifies them)."""
    return resolve_weights(ref, override, revision=revision, filename=filename).path


def resolve_weights(
    ref: WeightsRef | None,
    override: str | os.PathLike[str] | None = None,
    *,
    revision: str | None = None,
    filename: str | None = None,
) -> ResolvedWeights:
    """The weights named by ``override`` (local path, hub id, ``modelscope:<id>`` or URL) or else ``ref``:
    a local path (a directory for whole repositories, a file when a filename is known) and their identity.
    """
    if override is not None and Path(override).exists():
        local = Path(override)
        return ResolvedWeights(local, f"local:{local.resolve()}@{content_fingerprint(local)}")
    if override is None and ref is None:
        raise MetricUnavailable("this metric has no default weights; pass weights=<path or hub id>")
    repo_id = str(override) if override is not None else ref.repo_id  # type: ignore[union-attr]
    rev = revision or (ref.revision if ref is not None and override is None else "main")
    # A hub id given instead of the default repository is assumed to hold the same file layout.
    fname = filename if filename is not None else (ref.filename if ref is not None else None)
    sha = ref.sha256 if ref is not None and override is None else None
    file_part = f"/{fname}" if fname else ""
    if repo_id.startswith(MODELSCOPE_PREFIX):
        path = _from_modelscope(repo_id[len(MODELSCOPE_PREFIX):], rev, fname)
        identity = f"{repo_id}{file_part}@{content_fingerprint(path)}"
    elif repo_id.startswith(("http://", "https://")):
        path = _from_url(repo_id)
        identity = f"{repo_id}@sha256:{sha}" if sha else f"{repo_id}@{content_fingerprint(path)}"
    else:
        if repo_id.startswith(("/", ".", "~")):
            raise MetricUnavailable(f"weights path {repo_id} does not exist")
        path = _from_hub(repo_id, rev, fname)
        commit = _hub_commit(repo_id, rev, path, fname)
        identity = f"{repo_id}{file_part}@{commit or f'{rev}+{content_fingerprint(path)}'}"
    _check_sha256(path, sha)
    return ResolvedWeights(path, identity)


def _hub_commit(repo_id: str, revision: str, path: Path, filename: str | None) -> str | None:
    """The commit the hub download came from: the name of its ``snapshots/<commit>`` folder (read the
    way the judge engines read it), or None when that is not a commit."""
    snapshot = path if filename is None else path.parents[len(Path(filename).parts) - 1]
    _model, commit = judge_identity(repo_id, revision, "hf", snapshot=str(snapshot))
    is_commit = commit is not None and len(commit) == 40 and all(c in "0123456789abcdef" for c in commit)
    return commit if is_commit else None


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


__all__ = ["ResolvedWeights", "cache_dir", "combined_identity", "content_fingerprint", "resolve", "resolve_weights",
           "tokenizer_identity"]
