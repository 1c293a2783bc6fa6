"""Where a judge's weights come from and what identifies them, for every engine that loads weights
(and for metrics loaded from a folder): local directory, Hugging Face hub snapshot or ModelScope,
and a content fingerprint for local checkpoints. No torch."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from pixeljury.engines.base import EngineUnavailable


def local_model_dir(model: str, source: str = "auto") -> Path | None:
    """``model`` as a local weights directory, or None when it names a hub repository."""
    path = Path(model).expanduser()
    return path if source in ("auto", "local") and path.is_dir() else None


def fetch_weights(model: str, revision: str | None, source: str) -> str:
    """The local directory holding the weights, downloading them first when ``model`` is a repository id.
    ``source``: ``auto`` (local path, else HF hub), ``local``, ``hf``, ``modelscope``."""
    local = local_model_dir(model, source)
    if local is not None:
        return str(local)
    if source == "local":
        raise EngineUnavailable(f"judge model directory {Path(model).expanduser()} does not exist")
    if source == "modelscope":
        try:
            from modelscope import snapshot_download as ms_download
        except ImportError as exc:
            raise EngineUnavailable("ModelScope weights need `pip install 'pixeljury[modelscope]'`") from exc
        try:
            return ms_download(model, revision=revision or "master")
        except Exception as exc:  # noqa: BLE001 - modelscope raises many types; re-raised with context
            raise EngineUnavailable(f"could not fetch {model!r} from ModelScope: {exc}") from exc
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(model, revision=revision)
    except Exception as exc:  # noqa: BLE001 - hub errors vary (offline, 401, 404); re-raised with advice
        raise EngineUnavailable(
            f"could not get judge weights {model!r} (revision {revision or 'main'}) from the Hugging Face hub: "
            f"{type(exc).__name__}: {exc}. Download them where the hub is reachable "
            f"(`hf download {model}`) and pass the local directory, or use --model-source modelscope."
        ) from exc


def judge_identity(
    model: str,
    revision: str | None,
    source: str = "auto",
    *,
    snapshot: str | None = None,
    cache_dir: str | None = None,
) -> tuple[str, str | None]:
    """``(model_id, revision)`` as results are keyed on them, for every engine that loads weights.

    * local directory: its absolute path (so ``./ckpt`` and ``/abs/ckpt`` are one judge), and
      ``revision`` if given, else :func:`local_revision`, a fingerprint of the directory's content;
    * ModelScope id: the id, and ``revision`` if given, else the fingerprint of ``snapshot`` (the
      downloaded directory) when there is one;
    * Hugging Face hub id: the id, and the 40-hex commit: that of ``snapshot`` (a hub snapshot
      directory) or else the one the local HF cache (``cache_dir``, default the HF cache) holds for
      ``revision`` (default ``main``); failing both, ``revision`` as given (possibly None).

    Never downloads anything.
    """
    local = local_model_dir(model, source)
    if local is not None:
        return os.path.abspath(local), revision or local_revision(local)
    if source == "modelscope":
        return model, revision or (local_revision(Path(snapshot)) if snapshot else None)
    if snapshot is not None and _is_commit(Path(snapshot).name):  # .../snapshots/<commit sha>
        return model, Path(snapshot).name
    return model, cached_hub_commit(model, revision, cache_dir) or revision


def cached_hub_commit(model: str, revision: str | None, cache_dir: str | None = None) -> str | None:
    """The commit the local HF cache holds for ``model`` at ``revision`` (a branch, tag or commit;
    default ``main``), or None when the cache does not know it. Offline: reads the cache only."""
    if _is_commit(revision):
        return revision
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(model, "config.json", cache_dir=cache_dir, revision=revision)
    except Exception:  # noqa: BLE001 - no hub library, or an id the cache cannot name: nothing known
        return None
    if not isinstance(found, str):
        return None
    commit = Path(found).parent.name  # <cache>/models--org--name/snapshots/<commit>/config.json
    return commit if _is_commit(commit) else None


def _is_commit(value: str | None) -> bool:
    return value is not None and len(value) == 40 and all(c in "0123456789abcdef" for c in value)


def resolve_weights(model: str, revision: str | None, source: str) -> tuple[str, str | None]:
    """(local directory, resolved revision). ``source``: ``auto`` (local path, else HF hub), ``hf``, ``modelscope``."""
    local = fetch_weights(model, revision, source)
    return local, judge_identity(model, revision, source, snapshot=local)[1]


# Files whose bytes are the model: fingerprinted by name, size and sampled content.
WEIGHT_SUFFIXES = frozenset(
    {".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf", ".ggml", ".h5", ".msgpack", ".onnx", ".npz", ".npy"}
)
# Files that decide how the model is built, prompted and tokenised (config, tokenizer, chat
# template, processor, remote code): read in full.
CONFIG_SUFFIXES = frozenset({".json", ".jinja", ".txt", ".model", ".tiktoken", ".py"})
SAMPLE_EDGE_BYTES = 1 << 20  # the first and the last MiB of a weight file
SAMPLE_BLOCK_BYTES = 64 << 10  # and this many bytes at each of SAMPLE_BLOCKS evenly spaced places
SAMPLE_BLOCKS = 16
FULL_READ_LIMIT = 64 << 20  # a config-like file larger than this is sampled like weights


def local_revision(path: Path) -> str:
    """A revision for a local weights directory: a hash of its config, tokenizer, chat template and
    processor files in full, and of each weight file's name, size and sampled content (first and last
    MiB, 16 blocks of 64 KiB between). A checkpoint overwritten in place with same-size weights gets
    a new revision; a copy of the directory elsewhere keeps it (times are not hashed). Reads a few
    MiB per file, so a 54 GB checkpoint takes well under a second from a warm disk."""
    h = hashlib.sha256(b"pixeljury-local-revision-v2\0")
    for f in sorted(Path(path).iterdir(), key=lambda p: p.name):
        suffix = f.suffix.lower()
        if not f.is_file() or suffix not in WEIGHT_SUFFIXES | CONFIG_SUFFIXES:
            continue
        size = f.stat().st_size
        sample = suffix in WEIGHT_SUFFIXES or size > FULL_READ_LIMIT
        h.update(f"{f.name}\0{size}\0".encode())
        h.update(sampled_file_digest(f, size) if sample else hashlib.sha256(f.read_bytes()).digest())
    return "local-" + h.hexdigest()[:16]


def sampled_file_digest(f: Path, size: int) -> bytes:
    """sha256 of the first and last :data:`SAMPLE_EDGE_BYTES` of ``f`` and of
    :data:`SAMPLE_BLOCKS` evenly spaced blocks between; the whole file when it is about that small."""
    h = hashlib.sha256()
    with open(f, "rb") as fh:
        if size <= 2 * SAMPLE_EDGE_BYTES + SAMPLE_BLOCKS * SAMPLE_BLOCK_BYTES:
            while chunk := fh.read(SAMPLE_EDGE_BYTES):
                h.update(chunk)
            return h.digest()
        inner = size - 2 * SAMPLE_EDGE_BYTES - SAMPLE_BLOCK_BYTES
        spans = [(0, SAMPLE_EDGE_BYTES)]
        spans += [(SAMPLE_EDGE_BYTES + inner * i // (SAMPLE_BLOCKS - 1), SAMPLE_BLOCK_BYTES) for i in range(SAMPLE_BLOCKS)]
        spans.append((size - SAMPLE_EDGE_BYTES, SAMPLE_EDGE_BYTES))
        for offset, length in spans:
            fh.seek(offset)
            h.update(fh.read(length))
    return h.digest()
