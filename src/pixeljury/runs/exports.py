"""Outputs of a run, rebuilt from the store alone: per-image JSONL, bench JSON per model, summary CSV,
and on request Parquet, flat CSV and XLSX. ``pixeljury export DIR`` calls the same code."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import Any

from pixeljury.analysis.records import IMAGE_STAGES, JudgedImage, flat_scores, level_columns
from pixeljury.protocols.qjudger import current_result, image_scores_from_dicts
from pixeljury.rubric.taxonomy import L1_NAMES, TREE
from pixeljury.runs.atomic import discard, remove_stale_temporaries, temporary_path
from pixeljury.runs.faults import fault_point, writing
from pixeljury.runs.manifest import MANIFEST_NAME, adopt_running
from pixeljury.runs.switch import OutputSwitch
from pixeljury.runs.store import FailureState, ResultStore, StoreDamaged
from pixeljury.runs.bench import (  # noqa: F401 - re-exported: the names callers know from here
    ModelBench, bench_by_model, bench_file_names, is_bench_file, name_hash, slug, summary_rows,
)

FORMATS = ("jsonl", "csv", "parquet", "xlsx")


def iter_image_records(store: ResultStore, chunk: int = 500) -> Iterator[dict[str, Any]]:
    """One record per input row of the latest run, with its dimensions' results and scores.

    Rows are read from the store a chunk at a time, so memory stays bounded however large the run.
    """
    rows = store.iter_rows()
    while True:
        batch = list(islice(rows, chunk))
        if not batch:
            return
        keys = {k for r in batch for k in r.get("keys", {}).values()}
        results = store.get_many(keys)
        failures = store.latest_failure_details(keys - results.keys())
        for r in batch:
            yield _image_record(r, results, failures)
        del batch, keys, results, failures  # before the next chunk is read: one chunk in memory, not two


def image_records(store: ResultStore) -> list[dict[str, Any]]:
    return list(iter_image_records(store))


def _image_record(r: dict[str, Any], results: dict, failures: dict[str, FailureState]) -> dict[str, Any]:
    dims: dict[str, Any] = {}
    image_errors: set[str] = set()
    for dim, key in r.get("keys", {}).items():
        res = results.get(key)
        if res is None:
            failure = failures.get(key)
            if failure is None:
                dims[dim] = {"status": "error", "error": "not computed", "raw_text": None, "permanent": False}
                continue
            # permanent: the same input fails the same way on every rerun (fix the row, not the run)
            dims[dim] = {"status": "error", "error": failure.message, "raw_text": None, "permanent": failure.permanent}
            if failure.stage in IMAGE_STAGES:
                image_errors.add(failure.message)
            continue
        # Parsed again from the stored text if an older parser wrote it: outputs follow the current rules.
        entry = dict(current_result(res.parsed, res.raw_text, res.reasoning, res.finish_reason, dim) or {})
        entry.update(raw_text=res.raw_text, reasoning=res.reasoning, finish_reason=res.finish_reason,
                     completion_tokens=res.completion_tokens)
        dims[dim] = entry
    errors = list(r.get("errors", []))
    # Every dimension failed, and (some) because of the image itself: the row says so too.
    if r["status"] == "ok" and dims and all(d["status"] == "error" for d in dims.values()) and image_errors:
        errors.extend(sorted(image_errors))
    return {
        "row": r["row"], "model": r["model"], "ID": r["ID"], "prompt": r["prompt"],
        "image_path": r["image_path"], "image_abspath": r["image_abspath"], "image_sha256": r["image_sha256"],
        "comparable": r["comparable"], "status": r["status"], "errors": errors,
        "warnings": list(r.get("warnings", [])), "input": r["input"],
        "dimensions": dims, "scores": image_scores_from_dicts(dims), "manifest": MANIFEST_NAME,
    }


_SCORE_COLUMNS = level_columns()


def flat_image_row(rec: dict[str, Any] | JudgedImage) -> dict[str, Any]:
    """One line of per_image.csv / per_image.parquet / the Images sheet: the row's fields, its
    request counts (:class:`~pixeljury.analysis.records.Tally`) and every score column of the taxonomy
    (None where absent)."""
    image = rec if isinstance(rec, JudgedImage) else JudgedImage.from_dict(rec)
    r = image.record
    counted = image.tally()
    scores = flat_scores(image.scores)
    return {
        "row": r["row"], "model": r["model"], "ID": r["ID"], "prompt": r["prompt"],
        "image_path": r["image_path"], "image_sha256": r["image_sha256"], "status": r["status"],
        "comparable": r["comparable"], "errors": "; ".join(r["errors"]),
        "parse_failures": counted.parse_failures, "dimension_errors": counted.errors,
        **{c: scores.get(c) for c in _SCORE_COLUMNS}, "manifest": MANIFEST_NAME,
    }


def flat_image_table(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return [flat_image_row(rec) for rec in records]


_INT_COLUMNS = ("row", "ID", "parse_failures", "dimension_errors")
_TEXT_COLUMNS = ("model", "prompt", "image_path", "image_sha256", "status", "errors", "manifest")


def parquet_schema(columns: list[str]):
    """Column types of per_image.parquet, the same in every chunk and every run: counts and IDs int64,
    ``comparable`` bool, text columns string, every score column float64 (even when all empty)."""
    import pyarrow as pa

    def typ(c: str):
        if c in _INT_COLUMNS:
            return pa.int64()
        if c == "comparable":
            return pa.bool_()
        if c in _TEXT_COLUMNS:
            return pa.string()
        return pa.float64()

    return pa.schema([(c, typ(c)) for c in columns])


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        if not rows:
            return
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


_LEVEL_SHEETS = {
    "Level-1": [(l1,) for l1 in L1_NAMES],
    "Level-2": [(l1, l2) for l1, l2s in TREE.items() for l2 in l2s],
    "Level-3": [(l1, l2, l3) for l1, l2s in TREE.items() for l2, l3s in l2s.items() for l3 in l3s],
}


def _xlsx_value(v: Any) -> Any:
    return json.dumps(v) if isinstance(v, (dict, list)) else v


class _Sinks:
    """The per-image outputs, fed one record at a time; each is written to a temporary file named
    for this process and moved into place by ``commit`` (so concurrent writers never share a file,
    and a reader never sees half a file)."""

    PARQUET_CHUNK = 4096  # rows per Parquet row group

    def __init__(self, run_dir: Path, formats: tuple[str, ...]):
        self.paths: dict[str, Path] = {"per_image": run_dir / "per_image.jsonl"}
        if "csv" in formats:
            self.paths["csv"] = run_dir / "per_image.csv"
        if "parquet" in formats:
            self.paths["parquet"] = run_dir / "per_image.parquet"
        if "xlsx" in formats:
            self.paths["xlsx"] = run_dir / "scores.xlsx"
        self.tmp = {k: temporary_path(p) for k, p in self.paths.items()}
        for tmp in self.tmp.values():
            fault_point(tmp)
        self.flat = len(self.paths) > 1
        self._jsonl = self._csv_fh = self._csv = None
        self._jsonl = open(self.tmp["per_image"], "w", encoding="utf-8")
        self._parquet = None
        self._parquet_schema = None
        self._parquet_cols: dict[str, list[Any]] = {}  # buffered rows, by column (compact)
        self._parquet_n = 0
        self._columns: list[str] | None = None
        self._wb = self._images = None
        if "csv" in self.paths:
            try:
                self._csv_fh = open(self.tmp["csv"], "w", newline="", encoding="utf-8")
            except BaseException:
                self.abort()
                raise
        if "xlsx" in self.paths:
            from openpyxl import Workbook

            self._wb = Workbook(write_only=True)
            for title in _LEVEL_SHEETS:  # filled by finish(), from the bench results; first in the book
                self._wb.create_sheet(title)
            self._images = self._wb.create_sheet("Images")

    def add(self, rec: dict[str, Any]) -> None:
        self._jsonl.write(json.dumps(rec, ensure_ascii=False, default=str) + "\n")
        if not self.flat:
            return
        row = flat_image_row(rec)
        if self._columns is None:
            self._columns = list(row)
            if self._csv_fh is not None:
                self._csv = csv.DictWriter(self._csv_fh, fieldnames=self._columns)
                self._csv.writeheader()
            if self._images is not None:
                self._images.append(self._columns)
        if self._csv is not None:
            self._csv.writerow(row)
        if self._images is not None:
            self._images.append([_xlsx_value(v) for v in row.values()])
        if "parquet" in self.paths:
            for col, v in row.items():
                self._parquet_cols.setdefault(col, []).append(v)
            self._parquet_n += 1
            if self._parquet_n >= self.PARQUET_CHUNK:
                self._flush_parquet()

    def _flush_parquet(self) -> None:
        """Write the buffered rows as one row group, with the schema every row group shares."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self._parquet is None:
            self._parquet_schema = parquet_schema(self._columns or list(flat_image_row(_EMPTY_RECORD)))
            self._parquet = pq.ParquetWriter(self.tmp["parquet"], self._parquet_schema)
        cols = {c: self._parquet_cols.get(c, []) for c in self._parquet_schema.names}
        self._parquet.write_table(pa.Table.from_pydict(cols, schema=self._parquet_schema))
        self._parquet_cols, self._parquet_n = {}, 0

    def finish(self, bench: dict[str, dict[str, Any]]) -> None:
        """Close every file; the XLSX gets its Level sheets from ``bench``."""
        self._jsonl.close()
        if self._csv_fh is not None:
            self._csv_fh.close()
        if "parquet" in self.paths:
            if self._parquet_n or self._parquet is None:
                self._flush_parquet()
            self._parquet.close()
        if self._wb is not None:
            for title, paths in _LEVEL_SHEETS.items():
                ws = self._wb[title]
                ws.append(["model", "total"] + [" / ".join(p) for p in paths])
                for b in bench.values():
                    vals = []
                    for p in paths:
                        node: Any = {1: b["level1"], 2: b["level2"], 3: b["level3"]}[len(p)]
                        for part in p:
                            node = node.get(part) if isinstance(node, dict) else None
                        vals.append(node)
                    ws.append([b["model"], b["total"]] + vals)
            with _KeepFirstError(self.tmp["xlsx"]) as fh:
                self._wb.save(fh)


    def abort(self) -> None:
        for closable in (self._jsonl, self._csv_fh, self._parquet):
            if closable is not None:
                try:
                    closable.close()  # may fail again on a full disk; the file is closed all the same
                except Exception:  # noqa: BLE001 - cleaning up after another error
                    pass
        # openpyxl's write-only sheets stream rows into files of their own through generators; closed
        # here, not by the garbage collector (which would print "Exception ignored ..." on stderr).
        for ws in getattr(self._wb, "worksheets", ()):
            try:
                if not ws.closed:
                    ws.close()
                ws._writer.cleanup()
            except Exception:  # noqa: BLE001 - cleaning up after another error
                pass
        self._wb = self._images = None
        for tmp in self.tmp.values():
            discard(tmp)


class _KeepFirstError(io.RawIOBase):
    """A write-only file that keeps the first write error instead of raising it, then raises it when
    closed. openpyxl's save, when its zip file fails half-way (a full disk), leaves half-closed
    generators and zip files that complain when collected; written through this it finishes normally,
    and the error comes once, here."""

    def __init__(self, path: Path):
        super().__init__()
        self._fh = open(path, "wb")
        self._written = 0
        self.error: OSError | None = None

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:  # type: ignore[override]
        if self.error is None:
            try:
                self._fh.write(data)
            except OSError as exc:
                self.error = exc
        self._written += len(data)
        return len(data)

    def tell(self) -> int:  # not seekable: zipfile then streams, with data descriptors
        return self._written

    def close(self) -> None:
        if self.closed:
            return
        super().close()
        try:
            self._fh.close()
        except OSError as exc:
            self.error = self.error or exc
        if self.error is not None:
            raise self.error

    def __exit__(self, *exc: object) -> None:
        if exc[0] is not None:
            self.error = None  # the error in flight says more; close quietly
            try:
                self.close()
            except OSError:
                pass
            return None
        self.close()


_EMPTY_RECORD: dict[str, Any] = {"row": None, "model": None, "ID": None, "prompt": None, "image_path": None,
                                 "image_sha256": None, "status": None, "comparable": None, "errors": [],
                                 "dimensions": {}, "scores": {}}


class EmptyStore(ValueError):
    """An export would replace outputs that hold rows with empty ones."""


def write_run_outputs(run_dir: Path, store: ResultStore, formats: tuple[str, ...] = ("jsonl",),
                      manifest: dict[str, Any] | None = None) -> dict[str, Path]:
    """Write the standard outputs (always: per_image.jsonl, bench/<model>.json, summary.csv) plus ``formats``.

    One pass over the store: each image record goes to every per-image file as it is read and into its
    model's running aggregate, so memory does not grow with the number of rows. Every file is written
    whole under a temporary name first; only then are they moved into place, together with
    ``manifest`` (the run that made these outputs) as ``manifest.json``. Without ``manifest`` the
    manifest stays, unless a killed run left its own (``manifest.running.json``): its plan is what the
    store now holds, so it comes in, marked interrupted. A disk that fills up or refuses writes raises
    :class:`~pixeljury.runs.faults.CannotWrite` and leaves the earlier outputs as they were."""
    unknown = set(formats) - set(FORMATS)
    if unknown:
        raise ValueError(f"unknown export format(s) {sorted(unknown)}; choose from {', '.join(FORMATS)}")
    run_dir = Path(run_dir)
    with writing(run_dir):
        remove_stale_temporaries(run_dir)  # we hold the run lock: any temporary file left is from a dead export
        return _write_outputs(run_dir, store, tuple(formats), manifest if manifest is not None else adopt_running(run_dir))


def _write_outputs(run_dir: Path, store: ResultStore, formats: tuple[str, ...],
                   manifest: dict[str, Any] | None) -> dict[str, Path]:
    switch = OutputSwitch(run_dir)
    sinks = _Sinks(run_dir, formats)
    benches: dict[str, ModelBench] = {}
    rows = 0
    try:
        for rec in iter_image_records(store):
            rows += 1
            sinks.add(rec)
            b = benches.get(rec["model"])
            if b is None:
                b = benches[rec["model"]] = ModelBench(rec["model"])
            b.add(rec)
        existing = sinks.paths["per_image"]
        if rows == 0 and existing.is_file() and existing.stat().st_size > 0:
            raise EmptyStore(f"the result store {store.path} holds no rows, but {existing} does; the outputs were "
                             "left as they are. Is this the right run directory, or was the store replaced?")
        bench = {m: b.result() for m, b in benches.items()}
        sinks.finish(bench)
        out = {"per_image": sinks.paths["per_image"]}
        switch.add(sinks.tmp["per_image"], sinks.paths["per_image"])
        bench_dir = run_dir / "bench"
        bench_dir.mkdir(exist_ok=True)
        names = bench_file_names(bench)
        for model, b in bench.items():
            out[f"bench:{model}"] = switch.write_text(bench_dir / names[model], json.dumps(b, indent=2, ensure_ascii=False))
        out["summary"] = switch.write_with(run_dir / "summary.csv", lambda tmp: _write_csv(tmp, summary_rows(bench)))
        for key in ("csv", "parquet", "xlsx"):
            if key in sinks.paths:
                switch.add(sinks.tmp[key], sinks.paths[key])
                out[key] = sinks.paths[key]
        if manifest is not None:
            switch.set_manifest(manifest)
        switch.commit()  # from here on: the new outputs and their manifest
    except sqlite3.DatabaseError as exc:
        sinks.abort()
        switch.abort()
        raise StoreDamaged(store.path, exc) from None
    except BaseException:
        sinks.abort()
        switch.abort()
        raise
    written = set(names.values())
    for stale in bench_dir.glob("*.json"):  # models no longer in the run, or files named by an older version
        if stale.name not in written and is_bench_file(stale):
            stale.unlink(missing_ok=True)
    return out
