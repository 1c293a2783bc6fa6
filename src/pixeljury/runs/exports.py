"""Outputs of a run, rebuilt from the store alone: per-image JSONL, bench JSON per model, summary CSV,
and on request Parquet, flat CSV and XLSX. ``pixeljury export DIR`` calls the same code."""

from __future__ import annotations

import csv
import json
import re
from collections import defaultdict
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import Any

from pixeljury.protocols.qjudger import image_scores_from_dicts
from pixeljury.rubric.taxonomy import L1_NAMES, TREE
from pixeljury.runs.manifest import MANIFEST_NAME
from pixeljury.runs.store import ResultStore
from pixeljury.scoring import aggregate

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
        failures = store.latest_failures(keys - results.keys())
        for r in batch:
            yield _image_record(r, results, failures)


def image_records(store: ResultStore) -> list[dict[str, Any]]:
    return list(iter_image_records(store))


def _image_record(r: dict[str, Any], results: dict, failures: dict[str, str]) -> dict[str, Any]:
    dims: dict[str, Any] = {}
    for dim, key in r.get("keys", {}).items():
        res = results.get(key)
        if res is None:
            dims[dim] = {"status": "error", "error": failures.get(key, "not computed"), "raw_text": None}
            continue
        entry = dict(res.parsed or {})
        entry.update(raw_text=res.raw_text, reasoning=res.reasoning, finish_reason=res.finish_reason,
                     completion_tokens=res.completion_tokens)
        dims[dim] = entry
    errors = list(r.get("errors", []))
    image_errors = {d["error"] for d in dims.values() if d["status"] == "error" and d["error"].startswith("row ")}
    if r["status"] == "ok" and dims and all(d["status"] == "error" for d in dims.values()) and image_errors:
        errors.extend(sorted(image_errors))
    return {
        "row": r["row"], "model": r["model"], "ID": r["ID"], "prompt": r["prompt"],
        "image_path": r["image_path"], "image_abspath": r["image_abspath"], "image_sha256": r["image_sha256"],
        "comparable": r["comparable"], "status": r["status"], "errors": errors, "input": r["input"],
        "dimensions": dims, "scores": image_scores_from_dicts(dims), "manifest": MANIFEST_NAME,
    }


def _light(rec: dict[str, Any]) -> dict[str, Any]:
    """What aggregation and tables need from a record: no raw texts, no parsed JSON."""
    keep = ("status", "truncated", "n_na", "invalid")
    return {**{k: v for k, v in rec.items() if k not in ("dimensions", "input")},
            "dimensions": {d: {k: v.get(k) for k in keep} for d, v in rec["dimensions"].items()}}


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "model"


def bench_by_model(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    by_model: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for rec in records:
        by_model[rec["model"]].append(rec)
    out = {}
    for model, recs in by_model.items():
        counted = [r for r in recs if r["status"] == "ok"]
        bench = aggregate(counted).as_dict()
        out[model] = {
            "model": model,
            "manifest": f"../{MANIFEST_NAME}",
            "comparable": bool(counted) and all(r["comparable"] for r in counted),
            **bench,
            "rows": len(recs),
            "row_errors": sum(r["status"] == "row_error" for r in recs),
            "duplicates": sum(r["status"] == "duplicate" for r in recs),
        }
    return out


def _flat_scores(scores: dict[str, Any]) -> dict[str, Any]:
    """Columns total, L1, L1/L2, L1/L2/L3 in canonical order (None where absent)."""
    cols: dict[str, Any] = {"total": scores.get("total")}
    for l1 in L1_NAMES:
        cols[l1] = (scores.get("level1") or {}).get(l1)
    for l1, l2s in TREE.items():
        for l2 in l2s:
            cols[f"{l1}/{l2}"] = (scores.get("level2") or {}).get(l1, {}).get(l2)
    for l1, l2s in TREE.items():
        for l2, l3s in l2s.items():
            for l3 in l3s:
                cols[f"{l1}/{l2}/{l3}"] = (scores.get("level3") or {}).get(l1, {}).get(l2, {}).get(l3)
    return cols


def flat_image_table(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    table = []
    for rec in records:
        counts = defaultdict(int)
        for d in rec["dimensions"].values():
            counts[d["status"]] += 1
        table.append({
            "row": rec["row"], "model": rec["model"], "ID": rec["ID"], "prompt": rec["prompt"],
            "image_path": rec["image_path"], "image_sha256": rec["image_sha256"], "status": rec["status"],
            "comparable": rec["comparable"], "errors": "; ".join(rec["errors"]),
            "parse_failures": counts["parse_failure"], "dimension_errors": counts["error"],
            **_flat_scores(rec["scores"]), "manifest": MANIFEST_NAME,
        })
    return table


def summary_rows(bench: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    ranked = sorted(bench.values(), key=lambda b: (b["total"] is None, -(b["total"] or 0)))
    rows = []
    for rank, b in enumerate(ranked, 1):
        counts = b["counts"].values()
        rows.append({
            "rank": rank if b["total"] is not None else None, "model": b["model"], "n_images": b["n_images"],
            "n_images_scored": b["n_images_scored"], "total": b["total"],
            **{l1: b["level1"].get(l1) for l1 in L1_NAMES},
            "requests": sum(c["requests"] for c in counts), "parse_failures": sum(c["parse_failures"] for c in counts),
            "errors": sum(c["errors"] for c in counts), "row_errors": b["row_errors"], "comparable": b["comparable"],
            "manifest": MANIFEST_NAME,
        })
    return rows


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        if not rows:
            return
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _write_xlsx(path: Path, bench: dict[str, dict[str, Any]], table: list[dict[str, Any]]) -> None:
    from openpyxl import Workbook

    wb = Workbook()
    sheets = {
        "Level-1": [(l1,) for l1 in L1_NAMES],
        "Level-2": [(l1, l2) for l1, l2s in TREE.items() for l2 in l2s],
        "Level-3": [(l1, l2, l3) for l1, l2s in TREE.items() for l2, l3s in l2s.items() for l3 in l3s],
    }
    first = True
    for title, paths in sheets.items():
        ws = wb.active if first else wb.create_sheet()
        first = False
        ws.title = title
        ws.append(["model", "total"] + [" / ".join(p) for p in paths])
        for b in bench.values():
            vals = []
            for p in paths:
                node: Any = {1: b["level1"], 2: b["level2"], 3: b["level3"]}[len(p)]
                for part in p:
                    node = node.get(part) if isinstance(node, dict) else None
                vals.append(node)
            ws.append([b["model"], b["total"]] + vals)
    ws = wb.create_sheet("Images")
    if table:
        ws.append(list(table[0]))
        for row in table:
            ws.append([v if not isinstance(v, (dict, list)) else json.dumps(v) for v in row.values()])
    wb.save(path)


def write_run_outputs(run_dir: Path, store: ResultStore, formats: tuple[str, ...] = ("jsonl",)) -> dict[str, Path]:
    """Write the standard outputs (always: per_image.jsonl, bench/<model>.json, summary.csv) plus ``formats``."""
    unknown = set(formats) - set(FORMATS)
    if unknown:
        raise ValueError(f"unknown export format(s) {sorted(unknown)}; choose from {', '.join(FORMATS)}")
    run_dir = Path(run_dir)
    out: dict[str, Path] = {}
    path = run_dir / "per_image.jsonl"
    records = []  # light records only: raw texts go straight to the file
    tmp = path.with_suffix(".jsonl.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for rec in iter_image_records(store):
            fh.write(json.dumps(rec, ensure_ascii=False, default=str) + "\n")
            records.append(_light(rec))
    tmp.replace(path)
    out["per_image"] = path
    bench = bench_by_model(records)
    bench_dir = run_dir / "bench"
    bench_dir.mkdir(exist_ok=True)
    for model, b in bench.items():
        p = bench_dir / f"{slug(model)}.json"
        p.write_text(json.dumps(b, indent=2, ensure_ascii=False), encoding="utf-8")
        out[f"bench:{model}"] = p
    out["summary"] = run_dir / "summary.csv"
    _write_csv(out["summary"], summary_rows(bench))
    table = flat_image_table(records) if set(formats) & {"csv", "parquet", "xlsx"} else []
    if "csv" in formats:
        out["csv"] = run_dir / "per_image.csv"
        _write_csv(out["csv"], table)
    if "parquet" in formats:
        import pyarrow as pa
        import pyarrow.parquet as pq

        out["parquet"] = run_dir / "per_image.parquet"
        pq.write_table(pa.Table.from_pylist(table), out["parquet"])
    if "xlsx" in formats:
        out["xlsx"] = run_dir / "scores.xlsx"
        _write_xlsx(out["xlsx"], bench, table)
    return out
