"""Output of ``pixeljury agree``: the rows of :mod:`pixeljury.analysis.agree` as JSON and CSV."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pixeljury.analysis.agree import AgreeRow

CSV_STATS = ("srcc", "krcc", "plcc", "plcc_fitted", "pairwise_acc", "pairwise_eps", "ntire", "srcc_p", "krcc_p", "plcc_p")


def to_json(rows: list[AgreeRow], meta: Mapping[str, Any]) -> str:
    return json.dumps({**meta, "results": [r.as_dict() for r in rows]}, indent=2, allow_nan=False)


def to_csv(rows: list[AgreeRow]) -> str:
    ci_names = sorted({k for r in rows for k in r.result.ci})
    header = ["column", "level", "n", "n_dropped", *CSV_STATS, "resample"]
    for k in ci_names:
        header += [f"{k}_ci_low", f"{k}_ci_high"]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for r in rows:
        line: list[Any] = [r.column, r.level, r.result.n, r.n_dropped]
        line += ["" if r.result.values.get(k) is None else r.result.values[k] for k in CSV_STATS]
        line.append(r.resample or "")
        for k in ci_names:
            ci = r.result.ci.get(k)
            line += ["", ""] if ci is None else list(ci)
        writer.writerow(line)
    return buf.getvalue()
