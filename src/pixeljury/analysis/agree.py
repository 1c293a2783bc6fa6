"""``pixeljury agree``: agreement of several score columns with one human column, as one table.

Two levels:

* ``sample``: one (score, human) pair per row of the (joined) table; rows missing either value are
  left out and counted.
* ``model``: rows are grouped by a column (the generator model); each group's mean score and mean
  human rating form one pair. With a separate human file, each file is grouped on its own and the
  group means are joined on the group name, so humans may have rated other images than the judge.

Bootstrap intervals resample items (rows; at model level: rows within each model, then the means
are recomputed) or models (whole groups, model level only).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from pixeljury.analysis.agreement import (
    DEFAULT_CI_STATISTICS,
    P_VALUES,
    STATISTICS,
    AgreementError,
    AgreementResult,
    agreement,
    bootstrap,
    resample,
)
from pixeljury.analysis.tables import Table, TableError, is_missing, key_of, numeric_column

Level = Literal["sample", "model"]
Unit = Literal["items", "models"]
SORTABLE = (*STATISTICS, *P_VALUES, "n")


@dataclass
class AgreeOptions:
    human_column: str
    level: Level = "sample"
    group_by: str = "model"  # model level: the column naming each row's model (in both files)
    pairs_within: str | None = None  # sample level: compare pairs only inside groups of this column
    n_boot: int = 1000  # 0 switches the bootstrap off
    seed: int = 0
    confidence: float = 0.95
    resample: Unit = "items"
    ci_statistics: Sequence[str] = DEFAULT_CI_STATISTICS


@dataclass
class AgreeRow:
    column: str
    level: Level
    result: AgreementResult
    n_dropped: int  # rows without a value in the column or the human column (or the group column)
    groups: list[str] = field(default_factory=list)  # model level: the models compared

    def as_dict(self) -> dict[str, Any]:
        return {"column": self.column, "level": self.level, "n_dropped": self.n_dropped, **self.result.as_dict(),
                **({"models": self.groups} if self.groups else {})}


# --- pairing values --------------------------------------------------------------------------


def _paired(metric: list[float | None], human: list[float | None], extra: list[Any] | None = None):
    keep = [i for i, (m, h) in enumerate(zip(metric, human)) if m is not None and h is not None
            and (extra is None or not is_missing(extra[i]))]
    return keep, len(metric) - len(keep)


def _group_values(table: Table, column: str, group_by: str) -> dict[str, list[float]]:
    if group_by not in table.columns:
        raise TableError(f"{table.source} has no group column {group_by!r} (columns: {', '.join(table.columns)})")
    values = numeric_column(table, column)
    groups: dict[str, list[float]] = {}
    for row, value in zip(table.rows, values):
        if value is not None and not is_missing(row.get(group_by)):
            groups.setdefault(key_of(row.get(group_by)), []).append(value)
    return groups


def _means(groups: Mapping[str, np.ndarray], names: list[str], rng: np.random.Generator | None = None) -> np.ndarray:
    out = np.empty(len(names))
    for k, name in enumerate(names):
        vals = groups[name]
        out[k] = np.mean(vals if rng is None else vals[resample(rng, len(vals))])
    return out


# --- the two levels ----------------------------------------------------------------------------


def _ci_stats(options: AgreeOptions) -> tuple[str, ...]:
    unknown = [s for s in options.ci_statistics if s not in STATISTICS]
    if unknown:
        raise AgreementError(f"unknown statistic {unknown[0]!r} for intervals; choose from {', '.join(STATISTICS)}")
    return tuple(options.ci_statistics)


def _point_values(result: AgreementResult, which: tuple[str, ...]) -> dict[str, float | None]:
    return {k: result.values.get(k) for k in which}


def sample_level(table: Table, column: str, options: AgreeOptions) -> AgreeRow:
    if options.resample != "items":
        raise AgreementError("at sample level only items can be resampled (--resample items)")
    metric = numeric_column(table, column)
    human = numeric_column(table, options.human_column)
    within = None
    if options.pairs_within:
        if options.pairs_within not in table.columns:
            raise TableError(f"{table.source} has no column {options.pairs_within!r} for --pairs-within")
        within = [r.get(options.pairs_within) for r in table.rows]
    keep, dropped = _paired(metric, human, within)
    x = np.array([metric[i] for i in keep])
    y = np.array([human[i] for i in keep])
    g = None if within is None else np.array([key_of(within[i]) for i in keep])
    result = agreement(x, y, groups=g)
    which = _ci_stats(options)
    if options.n_boot:
        def draw(rng: np.random.Generator) -> dict[str, float | None]:
            idx = resample(rng, len(x))
            return _point_values(agreement(x[idx], y[idx], groups=None if g is None else g[idx], which=which), which)

        result.ci, notes = bootstrap(draw, n_boot=options.n_boot, seed=options.seed, confidence=options.confidence)
        result.notes.extend(notes)
    return AgreeRow(column, "sample", result, dropped)


def model_level(table: Table, column: str, options: AgreeOptions, human_table: Table | None = None) -> AgreeRow:
    """Model means of ``column`` (from ``table``) against model means of the human column (from
    ``human_table``, or from the same rows when there is none)."""
    if human_table is None:
        metric = numeric_column(table, column)
        human = numeric_column(table, options.human_column)
        if options.group_by not in table.columns:
            raise TableError(f"{table.source} has no group column {options.group_by!r}")
        labels = [table.rows[i].get(options.group_by) for i in range(len(table.rows))]
        keep, dropped = _paired(metric, human, labels)
        metric_groups: dict[str, list[float]] = {}
        human_groups: dict[str, list[float]] = {}
        for i in keep:
            metric_groups.setdefault(key_of(labels[i]), []).append(metric[i])  # type: ignore[arg-type]
            human_groups.setdefault(key_of(labels[i]), []).append(human[i])  # type: ignore[arg-type]
        paired = True
    else:
        metric_groups = _group_values(table, column, options.group_by)
        human_groups = _group_values(human_table, options.human_column, options.group_by)
        dropped = sum(1 for v in numeric_column(table, column) if v is None)
        paired = False
    names = [m for m in metric_groups if m in human_groups]
    if len(names) < 3:
        raise AgreementError(
            f"{column}: only {len(names)} models have both scores and human ratings (need 3); "
            f"scored: {sorted(metric_groups)[:5]}, rated: {sorted(human_groups)[:5]}"
        )
    m_arr = {k: np.asarray(v) for k, v in metric_groups.items()}
    h_arr = {k: np.asarray(v) for k, v in human_groups.items()}
    x, y = _means(m_arr, names), _means(h_arr, names)
    result = agreement(x, y)
    which = _ci_stats(options)
    if options.n_boot:
        def draw(rng: np.random.Generator) -> dict[str, float | None]:
            if options.resample == "models":
                idx = resample(rng, len(names))
                return _point_values(agreement(x[idx], y[idx], which=which), which)
            if paired:  # the same rows for both means, so each item keeps its score and its rating together
                xs, ys = np.empty(len(names)), np.empty(len(names))
                for k, name in enumerate(names):
                    idx = resample(rng, len(m_arr[name]))
                    xs[k], ys[k] = m_arr[name][idx].mean(), h_arr[name][idx].mean()
            else:
                xs, ys = _means(m_arr, names, rng), _means(h_arr, names, rng)
            return _point_values(agreement(xs, ys, which=which), which)

        result.ci, notes = bootstrap(draw, n_boot=options.n_boot, seed=options.seed, confidence=options.confidence)
        result.notes.extend(notes)
    return AgreeRow(column, "model", result, dropped, names)


def compute(table: Table, columns: Sequence[str], options: AgreeOptions, human_table: Table | None = None) -> list[AgreeRow]:
    if not columns:
        raise AgreementError("no score columns to correlate")
    if options.level == "sample":
        if human_table is not None:
            raise AgreementError("at sample level join the human file onto the scores first (tables.join)")
        return [sample_level(table, c, options) for c in columns]
    if options.level == "model":
        return [model_level(table, c, options, human_table) for c in columns]
    raise AgreementError(f"unknown level {options.level!r}; use sample or model")


def sort_rows(rows: list[AgreeRow], by: str, *, descending: bool = True) -> list[AgreeRow]:
    """Sorted by a statistic; rows where it is undefined go last whatever the direction."""
    if by not in SORTABLE:
        raise AgreementError(f"cannot sort by {by!r}; choose from {', '.join(SORTABLE)}")

    def value(row: AgreeRow) -> float | None:
        return float(row.result.n) if by == "n" else row.result.values.get(by)

    defined = [r for r in rows if value(r) is not None]
    undefined = [r for r in rows if value(r) is None]
    return sorted(defined, key=lambda r: value(r), reverse=descending) + undefined  # type: ignore[arg-type, return-value]


# --- output ------------------------------------------------------------------------------------

CSV_STATS = ("srcc", "krcc", "plcc", "plcc_fitted", "pairwise_acc", "pairwise_eps", "ntire", "srcc_p", "krcc_p", "plcc_p")


def to_json(rows: list[AgreeRow], meta: Mapping[str, Any]) -> str:
    return json.dumps({**meta, "results": [r.as_dict() for r in rows]}, indent=2, allow_nan=False)


def to_csv(rows: list[AgreeRow]) -> str:
    ci_names = sorted({k for r in rows for k in r.result.ci})
    header = ["column", "level", "n", "n_dropped", *CSV_STATS]
    for k in ci_names:
        header += [f"{k}_ci_low", f"{k}_ci_high"]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for r in rows:
        line: list[Any] = [r.column, r.level, r.result.n, r.n_dropped]
        line += ["" if r.result.values.get(k) is None else r.result.values[k] for k in CSV_STATS]
        for k in ci_names:
            ci = r.result.ci.get(k)
            line += ["", ""] if ci is None else list(ci)
        writer.writerow(line)
    return buf.getvalue()
