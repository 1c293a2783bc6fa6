"""Rubrics: the text a judge reads (system prompt, user template, one checklist per L1)."""

from pixeljury.rubric.model import Rubric, RubricError, parse_checklist
from pixeljury.rubric.official import (
    OFFICIAL_COMMIT,
    OFFICIAL_SHA256,
    OFFICIAL_SIZE,
    load_official_rubric,
    read_checklist_file,
)
from pixeljury.rubric.builtin import builtin_rubric

__all__ = [
    "OFFICIAL_COMMIT",
    "OFFICIAL_SHA256",
    "OFFICIAL_SIZE",
    "Rubric",
    "RubricError",
    "builtin_rubric",
    "load_official_rubric",
    "parse_checklist",
    "read_checklist_file",
    "resolve_rubric",
]


def resolve_rubric(kind: str = "official", path: str | None = None, *, allow_download: bool = True) -> Rubric:
    """The rubric a run asked for: ``official`` (from ``path`` or the pinned upstream file) or ``builtin``."""
    if kind == "builtin":
        if path:
            raise RubricError("--rubric-file is only used with --rubric official")
        return builtin_rubric()
    if kind == "official":
        return load_official_rubric(path, allow_download=allow_download)
    raise RubricError(f"unknown rubric {kind!r}: choose 'official' or 'builtin'")
