"""Reading input rows (CSV, JSON array, JSON lines, Parquet) one at a time, with row-level validation.

A missing required column stops the run before any work starts; every other problem belongs to one
row: it is recorded against that row, and the rest of the run goes on.
"""

from __future__ import annotations

import csv
import io
import json
import re
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REQUIRED_COLUMNS = ("prompt", "image_path")
SUPPORTED = (".csv", ".json", ".jsonl", ".parquet")


class InputError(ValueError):
    """The input file as a whole cannot be used (format, encoding, missing column)."""


@dataclass
class InputRow:
    index: int  # 0-based position in the input file
    fields: dict[str, Any]  # the row as read, passed through to outputs
    prompt: str
    image_path: Path | None
    bench_id: int | None
    model: str
    errors: list[str] = field(default_factory=list)  # problems found while reading this row

    @property
    def ok(self) -> bool:
        return not self.errors


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or (isinstance(value, str) and not value.strip())


def _decode_error(path: Path, exc: UnicodeDecodeError, data: bytes | None = None) -> InputError:
    where = ""
    if data is not None:
        line = data.count(b"\n", 0, exc.start) + 1
        where = f" on line {line}"
    return InputError(
        f"{path} is not valid UTF-8{where} (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); "
        "re-save it as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)"
    )


def _read_text(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _decode_error(path, exc, data) from None


def _refuse_duplicate_columns(path: Path, columns: list[str]) -> None:
    seen: dict[str, list[int]] = {}
    for position, name in enumerate(columns, 1):
        seen.setdefault(name, []).append(position)
    repeated = {name: where for name, where in seen.items() if len(where) > 1}
    if repeated:
        listed = "; ".join(f"{name!r} (columns {', '.join(map(str, where))})" for name, where in repeated.items())
        raise InputError(f"{path} has duplicate column names: {listed}; which one is meant is ambiguous, "
                         "so rename or remove the extra columns")


def _json_object_refusing_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    repeated: list[str] = []
    for key, value in pairs:
        if key in obj and key not in repeated:
            repeated.append(key)
        obj[key] = value
    if repeated:
        # Kept for the row reader to report: json.loads would keep the last value silently.
        obj[_DUPLICATE_KEYS] = repeated
    return obj


_DUPLICATE_KEYS = "\x00duplicate keys"  # cannot clash with a real field name read from JSON text


def _iter_records(path: Path) -> tuple[list[str], Iterator[dict[str, Any]]]:
    """(column names, record iterator). Columns are known before the first record is used."""
    ext = path.suffix.lower()
    if ext == ".csv":
        text = _read_text(path)  # decoded up front so that an encoding error fails before any work
        # newline="" keeps quoted newlines inside a field (a multi-line prompt) intact
        reader = csv.DictReader(io.StringIO(text, newline=""))
        columns = list(reader.fieldnames or [])
        _refuse_duplicate_columns(path, columns)  # DictReader would keep the last one silently
        return columns, iter(reader)
    if ext in (".json", ".jsonl"):
        text = _read_text(path).strip()
        if text.startswith("["):
            try:
                records = json.loads(text, object_pairs_hook=_json_object_refusing_duplicates)
            except json.JSONDecodeError as exc:
                raise InputError(f"{path} is not valid JSON: {exc}") from None
            except RecursionError:
                raise InputError(f"{path} nests arrays or objects too deeply to read; input rows are flat "
                                 "objects of prompt, image_path, ID, model") from None
        else:
            records = []
            for lineno, line in enumerate(text.splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    records.append(json.loads(line, object_pairs_hook=_json_object_refusing_duplicates))
                except json.JSONDecodeError as exc:
                    raise InputError(f"{path} line {lineno} is not valid JSON: {exc}") from None
                except RecursionError:
                    raise InputError(f"{path} line {lineno} nests arrays or objects too deeply to read; input "
                                     "rows are flat objects of prompt, image_path, ID, model") from None
        for i, rec in enumerate(records):
            if not isinstance(rec, dict):
                raise InputError(f"{path} record {i} is a {type(rec).__name__}, expected an object")
        columns: list[str] = []
        for rec in records:
            columns.extend(k for k in rec if k not in columns and k != _DUPLICATE_KEYS)
        return columns, iter(records)
    if ext == ".parquet":
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(path)
        columns = list(pf.schema_arrow.names)
        _refuse_duplicate_columns(path, columns)

        def gen() -> Iterator[dict[str, Any]]:
            for batch in pf.iter_batches(batch_size=4096):
                yield from batch.to_pylist()

        return columns, gen()
    raise InputError(f"{path}: unsupported input format {ext!r}; use one of {', '.join(SUPPORTED)}")


def read_rows(path: str | Path, *, default_model: str | None = None) -> Iterator[InputRow]:
    """Yield validated rows. Raises :class:`InputError` before the first row if the file is unusable."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"input file {path} does not exist")
    columns, records = _iter_records(path)
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise InputError(
            f"{path} has no column {', '.join(repr(c) for c in missing)} (found: {', '.join(columns) or 'none'}); "
            f"required: {', '.join(REQUIRED_COLUMNS)}; optional: ID, model"
        )
    base = Path(os.path.abspath(path.parent))  # image_abspath must not depend on the working directory
    model_default = default_model or path.stem
    return _rows(records, base, model_default)


def _json_kind(value: Any) -> str:
    kinds = {list: "a JSON array", dict: "a JSON object", bool: "a boolean", int: "a number", float: "a number"}
    return kinds.get(type(value), type(value).__name__)


def _clipped(value: Any, limit: int = 60) -> str:
    shown = json.dumps(value, ensure_ascii=False, default=str)
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _without_surrogates(value: Any, bad: list[str], name: str) -> Any:
    """``value`` with unpaired UTF-16 surrogates (JSON escapes such as ``\\ud83d`` alone) replaced by
    U+FFFD; the names of the fields that held any are added to ``bad``."""
    if isinstance(value, str):
        if _LONE_SURROGATE.search(value):
            bad.append(name)
            return _LONE_SURROGATE.sub("\ufffd", value)
        return value
    if isinstance(value, dict):
        return {k: _without_surrogates(v, bad, name) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_surrogates(v, bad, name) for v in value]
    return value


def _rows(records: Iterator[dict[str, Any]], base: Path, model_default: str) -> Iterator[InputRow]:
    for index, rec in enumerate(records):
        errors: list[str] = []
        repeated = rec.pop(_DUPLICATE_KEYS, None)
        if repeated:
            errors.append(f"the record names {', '.join(repr(k) for k in repeated)} more than once; "
                          "which value is meant is ambiguous")
        bad: list[str] = []
        rec = {k: _without_surrogates(v, bad, k) for k, v in rec.items()}
        if bad:
            errors.append(f"field(s) {', '.join(repr(b) for b in dict.fromkeys(bad))} hold unpaired UTF-16 "
                          "surrogates (invalid Unicode, e.g. half of an emoji's \\ud83d\\ude00 escape); fix the input")
        prompt = rec.get("prompt")
        if isinstance(prompt, (list, dict, bool)):
            # str() would send the judge Python's repr of it ("['a', 'b']", "True") as the prompt
            errors.append(f"prompt must be text, got {_json_kind(prompt)} {_clipped(prompt)}")
            prompt = ""
        elif _is_missing(prompt):
            errors.append("empty prompt")
            prompt = ""
        elif not isinstance(prompt, str):
            prompt = str(prompt)  # a number (JSON 42, or a Parquet int column) is text the judge can read
        image = rec.get("image_path")
        image_path: Path | None = None
        if isinstance(image, (list, dict, bool, int, float)) and not _is_missing(image):
            errors.append(f"image_path must be a path, got {_json_kind(image)} {_clipped(image)}")
        elif _is_missing(image):
            errors.append("empty image_path")
        elif "\x00" in str(image):
            # No file name can hold a NUL byte; the OS calls would raise on it later, far from this row.
            errors.append(f"image_path {_clipped(str(image))} contains a NUL byte")
        else:
            image_path = Path(str(image))
            if not image_path.is_absolute():
                image_path = base / image_path
        bench_id = None
        raw_id = rec.get("ID")
        if not _is_missing(raw_id):
            try:
                if isinstance(raw_id, bool):  # JSON true/false would pass float() as 1/0
                    raise ValueError
                as_float = float(raw_id)
                if not as_float.is_integer():
                    raise ValueError
                bench_id = int(as_float)
            except (TypeError, ValueError):
                errors.append(f"ID {raw_id!r} is not an integer")
        model = rec.get("model")
        model = model_default if _is_missing(model) else str(model)
        yield InputRow(index, dict(rec), prompt, image_path, bench_id, model, errors)
