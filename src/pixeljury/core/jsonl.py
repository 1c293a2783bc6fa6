"""Reading JSON lines: one helper for every reader of per_image.jsonl, requests.jsonl, texts and tables,
so that blank lines are skipped the same way and a bad line is named the same way (file and line)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any


class JsonLineError(ValueError):
    """A line that is not valid JSON. ``source`` and ``line`` (1-based) say where; ``cause`` is the
    decoder's own error, for callers that word their message themselves."""

    def __init__(self, source: str, line: int, cause: json.JSONDecodeError):
        super().__init__(f"{source} line {line} is not valid JSON: {cause}")
        self.source, self.line, self.cause = source, line, cause


def iter_json_lines(source: str | Path, lines: Iterable[str] | None = None) -> Iterator[tuple[int, Any]]:
    """``(line number, parsed value)`` for each non-blank line of the file ``source`` (read as UTF-8),
    or of ``lines`` when given (``source`` then only names them in errors). Line numbers count every
    line, blank ones included, from 1. Raises :class:`JsonLineError` at the first line that is not JSON;
    the lines before it have been yielded by then."""
    if lines is not None:
        yield from _parse(str(source), lines)
        return
    with open(source, encoding="utf-8") as fh:
        yield from _parse(str(source), fh)


def _parse(source: str, lines: Iterable[str]) -> Iterator[tuple[int, Any]]:
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise JsonLineError(source, lineno, exc) from None
        yield lineno, value
