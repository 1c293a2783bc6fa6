"""The official Qwen-Image-Bench checklist file, read with ``ast`` (never imported or executed)."""

from __future__ import annotations

import ast
import hashlib
import os
from pathlib import Path

from pixeljury.cache import cache_dir
from pixeljury.rubric.model import Rubric, RubricError
from pixeljury.rubric.taxonomy import L1_NAMES

OFFICIAL_COMMIT = "b6b556bb14dcb37da873bbb571c29273562804f2"
OFFICIAL_SHA256 = "0b2608752afb8adfd2ee38a7cd09ea6b11fd87365c94111eb70d10d60fd2eab3"
OFFICIAL_SIZE = 10_579
# The pinned upstream file. $PIXELJURY_CHECKLIST_URL (a mirror) replaces it; it is read when a download
# starts (official_url()), not at import. A download from either must match OFFICIAL_SHA256.
OFFICIAL_URL = f"https://raw.githubusercontent.com/QwenLM/Qwen-Image-Bench/{OFFICIAL_COMMIT}/checklists.py"
CHECKLIST_URL_ENV = "PIXELJURY_CHECKLIST_URL"

CHECKLIST_NAMES = {
    "Quality": "QUALITY_CHECKLIST",
    "Aesthetics": "AESTHETICS_CHECKLIST",
    "Alignment": "ALIGNMENT_CHECKLIST",
    "Real-world Fidelity": "REAL_WORLD_FIDELITY_CHECKLIST",
    "Creative Generation": "CREATIVE_GENERATION_CHECKLIST",
}


def _string_value(node: ast.AST, known: dict[str, str], where: str) -> str:
    """Evaluate a string expression made only of literals, ``+`` and names bound to earlier literals.

    Walks the tree with an explicit stack: a long chain of ``"a" + "b" + ...`` is a deep tree, and a
    recursive walk would end in RecursionError instead of a RubricError."""
    parts: list[str] = []
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, ast.Constant) and isinstance(item.value, str):
            parts.append(item.value)
        elif isinstance(item, ast.BinOp) and isinstance(item.op, ast.Add):
            stack.extend((item.right, item.left))  # left is popped first
        elif isinstance(item, ast.Name) and item.id in known:
            parts.append(known[item.id])
        else:
            raise RubricError(f"{where}: expected a string literal, found {type(item).__name__}")
    return "".join(parts)


def read_checklist_file(source: bytes, origin: str = "<bytes>") -> dict[str, object]:
    """Module-level string assignments and ``DIM_TO_CHECKLIST`` of a checklist file, without executing it."""
    try:
        tree = ast.parse(source, filename=origin)
    except SyntaxError as exc:
        raise RubricError(f"{origin} is not valid Python: {exc}") from exc
    except (RecursionError, MemoryError):
        raise RubricError(f"{origin} nests expressions too deeply for Python's parser; a checklist file "
                          "holds string constants") from None
    except ValueError as exc:  # e.g. "source code string cannot contain null bytes"
        raise RubricError(f"{origin} is not valid Python: {exc}") from None
    strings: dict[str, str] = {}
    dim_map: dict[str, str] | None = None
    for stmt in tree.body:
        if not (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name)):
            continue
        name = stmt.targets[0].id
        if name == "DIM_TO_CHECKLIST":
            if not isinstance(stmt.value, ast.Dict):
                raise RubricError(f"{origin}: DIM_TO_CHECKLIST is not a dict literal")
            dim_map = {}
            for k, v in zip(stmt.value.keys, stmt.value.values):
                if not (isinstance(k, ast.Constant) and isinstance(k.value, str) and isinstance(v, ast.Name)):
                    raise RubricError(f"{origin}: DIM_TO_CHECKLIST entries must be 'L1 name': CHECKLIST_NAME")
                dim_map[k.value] = v.id
            continue
        try:
            strings[name] = _string_value(stmt.value, strings, f"{origin}: {name}")
        except RubricError:
            continue  # not a string constant; the names we need are checked below
    return {"strings": strings, "dim_to_checklist": dim_map}


def rubric_from_checklist_bytes(data: bytes, origin: str, *, expect_sha256: str | None = None) -> Rubric:
    digest = hashlib.sha256(data).hexdigest()
    if expect_sha256 and digest != expect_sha256:
        raise RubricError(
            f"{origin} has sha256 {digest}, expected {expect_sha256} (the file at upstream commit "
            f"{OFFICIAL_COMMIT[:8]}); refusing to judge with a different rubric"
        )
    parsed = read_checklist_file(data, origin)
    strings: dict[str, str] = parsed["strings"]  # type: ignore[assignment]
    dim_map = parsed["dim_to_checklist"] or CHECKLIST_NAMES
    for needed in ("SYSTEM_PROMPT", "USER_PROMPT_TEMPLATE"):
        if needed not in strings:
            raise RubricError(f"{origin} defines no string {needed}")
    checklists = {}
    for l1 in L1_NAMES:
        var = dim_map.get(l1)  # type: ignore[union-attr]
        if var is None or var not in strings:
            raise RubricError(f"{origin}: no checklist string for dimension {l1!r}")
        checklists[l1] = strings[var]
    return Rubric(
        source="official",
        system_prompt=strings["SYSTEM_PROMPT"],
        user_template=strings["USER_PROMPT_TEMPLATE"],
        checklists=checklists,
        sha256=digest,
        origin=origin,
        comparable=digest == OFFICIAL_SHA256,
    )


def official_url() -> str:
    """Where the official checklist file is downloaded from: $PIXELJURY_CHECKLIST_URL, else the pinned commit."""
    return os.environ.get(CHECKLIST_URL_ENV) or OFFICIAL_URL


def official_cache_path() -> Path:
    """The cached copy of the pinned file, under the cache root (:func:`pixeljury.cache.cache_dir`)."""
    return cache_dir() / "rubrics" / f"checklists-{OFFICIAL_COMMIT[:12]}.py"


def _download_official(url: str) -> bytes:
    import httpx

    try:
        resp = httpx.get(url, timeout=30, follow_redirects=True)
        resp.raise_for_status()
    except httpx.HTTPError as exc:
        raise RubricError(
            f"could not download the official checklist file from {url} ({exc}). "
            "Pass a local copy with --rubric-file PATH, or use --rubric builtin (not benchmark-comparable)."
        ) from exc
    return resp.content


def load_official_rubric(path: str | os.PathLike | None = None, *, allow_download: bool = True) -> Rubric:
    """The official rubric from a local ``checklists.py`` or the pinned upstream commit (hash-verified).

    A local file with another hash is accepted (e.g. a test fixture or an edited rubric) but marked
    as not comparable to the benchmark; a downloaded file must match the pinned hash exactly.
    """
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise RubricError(f"rubric file {p} does not exist")
        return rubric_from_checklist_bytes(p.read_bytes(), str(p))
    cached = official_cache_path()
    if cached.is_file():
        return rubric_from_checklist_bytes(cached.read_bytes(), str(cached), expect_sha256=OFFICIAL_SHA256)
    if not allow_download:
        raise RubricError(
            "the official checklist file is not cached and downloading is disabled: "
            "pass --rubric-file PATH or --rubric builtin"
        )
    url = official_url()
    data = _download_official(url)
    rubric = rubric_from_checklist_bytes(data, url, expect_sha256=OFFICIAL_SHA256)
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.replace(cached)
    return rubric
