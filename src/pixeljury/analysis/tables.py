"""Score tables for agreement: a run directory or any CSV / JSON / JSONL / Parquet file, as rows of
named values, plus a key join and numeric column extraction that name the row and field at fault."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pixeljury.analysis.rundir import is_run_dir, load_run, run_table
from pixeljury.core.jsonl import JsonLineError, iter_json_lines

TABLE_FORMATS = (".csv", ".json", ".jsonl", ".parquet")
# Text that stands for "no value" in a numeric column (compared stripped, case-insensitively). CSV can
# only say "missing" in text, while JSON has null and Parquet has null/NaN; reading these the same way
# makes one data set give one answer whatever its format. Empty and blank text count too.
MISSING_NUMBER_TEXT = frozenset({"", "nan", "na", "n/a", "none", "null"})
# Where both files of a join have a column, the human file's copy is renamed with this prefix.
HUMAN_PREFIX = "human:"
# A JSON object of objects (e.g. TIFA's {image_id: {...}}) becomes rows; its keys land in this column.
OBJECT_KEY_COLUMN = "key"


class TableError(ValueError):
    """A table cannot be read or used as asked; the message names the file, row and field."""


@dataclass
class Table:
    source: str
    rows: list[dict[str, Any]]
    columns: list[str]
    # Columns a run directory marks as scores; None for plain files (any numeric column may be one).
    score_columns: list[str] | None = None
    notes: list[str] = field(default_factory=list)
    # A joined table: each column of the human file -> its name here (prefixed where the names collide).
    human_columns: dict[str, str] = field(default_factory=dict)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise TableError(f"{path} is not valid UTF-8 (byte offset {exc.start}); re-save it as UTF-8") from None


def _json_records(path: Path) -> list[dict[str, Any]]:
    text = _read_text(path).strip()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as first_error:
        # Not one JSON document: JSON lines.
        try:
            data = [value for _, value in iter_json_lines(path, text.splitlines())]
        except JsonLineError as exc:
            if exc.line == 1:
                raise TableError(f"{path} is neither JSON nor JSON lines: {first_error}") from None
            raise TableError(str(exc)) from None
    if isinstance(data, dict):
        if data and all(isinstance(v, dict) for v in data.values()):
            return [{OBJECT_KEY_COLUMN: k, **v} for k, v in data.items()]
        raise TableError(f"{path} holds one JSON object; expected an array of objects or an object of objects")
    if not isinstance(data, list):
        raise TableError(f"{path} holds a {type(data).__name__}; expected an array of objects")
    for i, rec in enumerate(data):
        if not isinstance(rec, dict):
            raise TableError(f"{path} record {i} is a {type(rec).__name__}, expected an object")
    return data


def load_table(path: str | Path) -> Table:
    """Read a score table. A directory must be a pixeljury run directory."""
    path = Path(path)
    if path.is_dir():
        if not is_run_dir(path):
            raise TableError(f"{path} is a directory but not a pixeljury run directory (no per_image.jsonl)")
        rows, scores = run_table(load_run(path))
        return Table(str(path), rows, _columns(rows), scores)
    if not path.is_file():
        raise TableError(f"{path} does not exist")
    ext = path.suffix.lower()
    if ext == ".csv":
        reader = csv.DictReader(_read_text(path).splitlines())
        rows = [dict(r) for r in reader]
    elif ext in (".json", ".jsonl"):
        rows = _json_records(path)
    elif ext == ".parquet":
        import pyarrow.parquet as pq

        rows = pq.read_table(path).to_pylist()
    else:
        raise TableError(f"{path}: unsupported table format {ext!r}; use a run directory or one of {', '.join(TABLE_FORMATS)}")
    if not rows:
        raise TableError(f"{path} has no rows")
    return Table(str(path), rows, _columns(rows))


def _columns(rows: list[dict[str, Any]]) -> list[str]:
    cols: dict[str, None] = {}
    for r in rows:
        cols.update(dict.fromkeys(r))
    return list(cols)


def is_missing(value: Any) -> bool:
    """No value at all: None (JSON null, Parquet null), NaN, or blank text. Used for keys and group
    labels, where a word such as "NA" may be a real name."""
    return value is None or (isinstance(value, float) and math.isnan(value)) or (isinstance(value, str) and not value.strip())


def is_missing_number(value: Any) -> bool:
    """A missing value in a numeric column: :func:`is_missing`, or one of :data:`MISSING_NUMBER_TEXT`."""
    return is_missing(value) or (isinstance(value, str) and value.strip().lower() in MISSING_NUMBER_TEXT)


def to_number(value: Any) -> float | None:
    """A finite float, None for a missing value (see :func:`is_missing_number`); raises ValueError for
    anything else, infinities included."""
    if is_missing_number(value):
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"{value!r} is not a number")
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a number") from None
    if not math.isfinite(number):
        raise ValueError(f"{value!r} is not a finite number")
    return number


def numeric_column(table: Table, column: str) -> list[float | None]:
    """The column as numbers (None where missing). A non-numeric value is an error naming its row."""
    if column not in table.columns:
        raise TableError(f"{table.source} has no column {column!r} (columns: {', '.join(table.columns)})")
    out: list[float | None] = []
    for i, row in enumerate(table.rows):
        try:
            out.append(to_number(row.get(column)))
        except ValueError as exc:
            raise TableError(f"{table.source} row {i} field {column!r}: {exc}") from None
    return out


def numeric_columns(table: Table, exclude: set[str]) -> list[str]:
    """Columns whose every present value is a number (and at least one is present), in table order.
    For a run directory: its score columns."""
    return select_numeric_columns(table, exclude)[0]


def select_numeric_columns(table: Table, exclude: set[str]) -> tuple[list[str], list[str]]:
    """:func:`numeric_columns`, plus a note for each column left out although some of its values are
    numbers (a stray word, an infinity), so that no score column disappears without a word."""
    if table.score_columns is not None:
        return [c for c in table.score_columns if c not in exclude], []
    found: list[str] = []
    notes: list[str] = []
    for col in table.columns:
        if col in exclude:
            continue
        numbers, first_bad = 0, None
        for i, row in enumerate(table.rows):
            try:
                numbers += to_number(row.get(col)) is not None
            except ValueError as exc:
                first_bad = first_bad or f"row {i}: {exc}"
        if first_bad is None and numbers:
            found.append(col)
        elif first_bad is not None and numbers:
            notes.append(f"column {col!r} left out of the default selection ({table.source} {first_bad}; "
                         f"{numbers} other values are numbers)")
    return found, notes


def key_of(value: Any) -> str:
    """Join keys compare as text, so 12 (JSON) matches "12" (CSV) and 12.0 (Parquet float)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def index_by_key(table: Table, column: str) -> dict[str, int]:
    if column not in table.columns:
        raise TableError(f"{table.source} has no key column {column!r} (columns: {', '.join(table.columns)})")
    index: dict[str, int] = {}
    for i, row in enumerate(table.rows):
        value = row.get(column)
        if is_missing(value):
            raise TableError(f"{table.source} row {i} has an empty key {column!r}")
        key = key_of(value)
        if key in index:
            raise TableError(f"{table.source} rows {index[key]} and {i} share the key {column}={key!r}; keys must be unique")
        index[key] = i
    return index


def join(scores: Table, human: Table, *, score_key: str, human_key: str) -> tuple[Table, int, int]:
    """Inner join on the keys. Columns of the human table are added under their own names, or as
    ``human:<name>`` where the score table has a column of that name (decided per column, not per
    row, so a name means one thing in every row); ``joined.human_columns`` maps each human column to
    its name in the join. Returns (joined, unmatched score rows, unmatched human rows)."""
    renamed = {col: f"{HUMAN_PREFIX}{col}" if col in scores.columns else col for col in human.columns}
    taken = [new for old, new in renamed.items() if old != new and new in scores.columns]
    if taken:
        raise TableError(
            f"{scores.source} already has a column {taken[0]!r}, the name the human file's {taken[0][len(HUMAN_PREFIX):]!r} "
            f"would get in the join; rename one of them"
        )
    left = index_by_key(scores, score_key)
    right = index_by_key(human, human_key)
    rows = []
    for key, i in left.items():
        j = right.get(key)
        if j is None:
            continue
        row = dict(scores.rows[i])
        row.update((renamed[col], value) for col, value in human.rows[j].items())
        rows.append(row)
    if not rows:
        sample_left, sample_right = list(left)[:3], list(right)[:3]
        raise TableError(
            f"no keys in common between {scores.source} ({score_key}, e.g. {sample_left}) "
            f"and {human.source} ({human_key}, e.g. {sample_right})"
        )
    joined = Table(f"{scores.source} ⋈ {human.source}", rows, _columns(rows), scores.score_columns, human_columns=renamed)
    return joined, len(left) - len(rows), len(right) - len(rows)
