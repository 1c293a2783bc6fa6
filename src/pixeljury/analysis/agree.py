"""``pixeljury agree``: agreement of several score columns with one human column, as one table.

Two levels:

* ``sample``: one (score, human) pair per row of the (joined) table; rows missing either value are
  left out and counted.
* ``model``: rows are grouped by a column (the generator model); each group's mean score and mean
  human rating form one pair. With a separate human file, each file is grouped on its own and the
  group means are joined on the group name, so humans may have rated other images than the judge.

Join policy (:func:`plan`): with a human file, ``--human-col`` always names the human file's column,
and score columns always come from the scores file. A scores column of the same name is a score
column like any other and is correlated against the human one, never against itself.

A column with fewer than 3 pairs (items, or models at model level) is reported as undefined, with
its n, and the other columns go on.

Bootstrap intervals resample items (rows; at model level: rows within each model, then the means
are recomputed) or models (whole groups, model level only). ``auto`` resamples items, except at model
level when every model has a single row, where items resampling would give zero-width intervals.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np

from pixeljury.analysis.agree_output import CSV_STATS, to_csv, to_json  # noqa: F401 - output, known by these names here
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
from pixeljury.analysis.tables import Table, TableError, is_missing, join, key_of, numeric_column, select_numeric_columns

Level = Literal["sample", "model"]
Unit = Literal["items", "models"]
ResampleChoice = Literal["auto", "items", "models"]
SORTABLE = (*STATISTICS, *P_VALUES, "n")
MIN_PAIRS = 3  # agreement() needs three pairs; fewer leaves a column undefined, not the run stopped


@dataclass
class AgreeOptions:
    human_column: str  # as its own file names it: the human file's column when there is one
    level: Level = "sample"
    group_by: str = "model"  # model level: the column naming each row's model (in both files)
    pairs_within: str | None = None  # sample level: compare pairs only inside groups of this column
    n_boot: int = 1000  # 0 switches the bootstrap off
    seed: int = 0
    confidence: float = 0.95
    resample: ResampleChoice = "auto"
    ci_statistics: Sequence[str] = DEFAULT_CI_STATISTICS


@dataclass
class AgreeRow:
    column: str
    level: Level
    result: AgreementResult
    n_dropped: int  # rows without a value in the column or the human column (or the group column)
    groups: list[str] = field(default_factory=list)  # model level: the models compared
    resample: Unit | None = None  # the bootstrap unit used; None without a bootstrap
    undefined: str | None = None  # why no statistic could be computed (too few pairs)

    def as_dict(self) -> dict[str, Any]:
        return {"column": self.column, "level": self.level, "n_dropped": self.n_dropped, "resample": self.resample,
                "undefined": self.undefined, **self.result.as_dict(), **({"models": self.groups} if self.groups else {})}


@dataclass
class LevelInput:
    """Where one level reads its pairs."""

    table: Table  # holds the score columns, and the human column unless ``human`` is set
    human_column: str  # the human column's name in ``human`` when set, else in ``table``
    human: Table | None = None  # model level: the human file, grouped on its own


@dataclass
class AgreePlan:
    columns: list[str]
    inputs: dict[str, LevelInput]
    notes: list[str]


# --- which tables and columns ------------------------------------------------------------------


def _check_columns(columns: Sequence[str], scores: Table, human: Table | None, human_column: str) -> None:
    for column in columns:
        if column not in scores.columns:
            where = (f"; it is a column of the human file {human.source}, and --columns names columns of the scores file"
                     if human is not None and column in human.columns else f" (columns: {', '.join(scores.columns)})")
            raise TableError(f"{scores.source} has no score column {column!r}{where}")
        if human is None and column == human_column:
            raise AgreementError(f"--columns includes the human column {human_column!r}; it would be correlated with itself")


def plan(scores: Table, human: Table | None, options: AgreeOptions, levels: Sequence[Level], *,
         columns: Sequence[str] = (), exclude: Sequence[str] = (), key: str | None = None,
         human_key: str | None = None) -> AgreePlan:
    """Decide, before computing anything, which table each level reads and which columns are scores.

    With a human file the human column is the human file's, whatever the scores file holds, and the
    score columns are the scores file's; a name in both files is judge (scores) against human."""
    human_column, notes = options.human_column, []
    if human is None and human_column not in scores.columns:
        raise TableError(f"{scores.source} has no column {human_column!r} for --human-col (columns: {', '.join(scores.columns)})")
    if human is not None and human_column not in human.columns:
        also = (f"; {scores.source} has a {human_column!r}, but with --human the ratings are read from the human file"
                if human_column in scores.columns else "")
        raise TableError(f"{human.source} has no column {human_column!r} for --human-col "
                         f"(columns: {', '.join(human.columns)}){also}")
    # At model level a human file with its own model column is grouped on its own; one without it is
    # joined item by item on the key first, like at sample level.
    human_grouped = human is not None and options.group_by in human.columns
    joined, joined_human_column = scores, human_column
    if human is not None and ("sample" in levels or not human_grouped):
        if not key:
            raise AgreementError(f"--key is needed to join {human.source} onto the scores "
                                 f"(at model level it may instead have a {options.group_by!r} column)")
        joined, unmatched_scores, unmatched_human = join(scores, human, score_key=key, human_key=human_key or key)
        joined_human_column = joined.human_columns[human_column]
        notes.append(f"joined {len(joined.rows)} rows; {unmatched_scores} score rows and {unmatched_human} human rows had no partner")
    if columns:
        _check_columns(columns, scores, human, human_column)
        chosen = list(columns)
    else:
        never = {options.group_by, *(c for c in (key, human_key, options.pairs_within) if c), *exclude}
        if human is None:
            never.add(human_column)
        chosen, skipped = select_numeric_columns(scores, never)
        notes += skipped
        if not chosen:
            raise AgreementError("no score columns to correlate" + "".join(f"; {note}" for note in skipped))
    if human is not None and human_column in chosen:
        notes.append(f"{human_column!r} is in both files: --human-col reads the human file's column, and the "
                     f"scores file's {human_column!r} is correlated against it as a score column")
    inputs = {level: LevelInput(scores, human_column, human) if level == "model" and human_grouped
              else LevelInput(joined, joined_human_column) for level in levels}
    return AgreePlan(chosen, inputs, notes)


# --- pairing values --------------------------------------------------------------------------


def _paired(metric: list[float | None], human: list[float | None], extra: list[Any] | None = None):
    keep = [i for i, (m, h) in enumerate(zip(metric, human)) if m is not None and h is not None
            and (extra is None or not is_missing(extra[i]))]
    return keep, len(metric) - len(keep)


def _group_values(table: Table, column: str, group_by: str) -> tuple[dict[str, list[float]], int]:
    """Values of ``column`` by group, and the number of rows left out (no value or no group)."""
    if group_by not in table.columns:
        raise TableError(f"{table.source} has no group column {group_by!r} (columns: {', '.join(table.columns)})")
    values = numeric_column(table, column)
    groups: dict[str, list[float]] = {}
    for row, value in zip(table.rows, values):
        if value is not None and not is_missing(row.get(group_by)):
            groups.setdefault(key_of(row.get(group_by)), []).append(value)
    return groups, len(values) - sum(len(v) for v in groups.values())


def _means(groups: Mapping[str, np.ndarray], names: list[str], rng: np.random.Generator | None = None) -> np.ndarray:
    out = np.empty(len(names))
    for k, name in enumerate(names):
        vals = groups[name]
        out[k] = np.mean(vals if rng is None else vals[resample(rng, len(vals))])
    return out


def _undefined(column: str, level: Level, n: int, dropped: int, reason: str, groups: Sequence[str] = ()) -> AgreeRow:
    result = AgreementResult(n, {k: None for k in (*STATISTICS, *P_VALUES, "pairwise_eps")}, notes=[f"undefined: {reason}"])
    return AgreeRow(column, level, result, dropped, list(groups), undefined=reason)


# --- the two levels ----------------------------------------------------------------------------


def _ci_stats(options: AgreeOptions) -> tuple[str, ...]:
    unknown = [s for s in options.ci_statistics if s not in STATISTICS]
    if unknown:
        raise AgreementError(f"unknown statistic {unknown[0]!r} for intervals; choose from {', '.join(STATISTICS)}")
    return tuple(options.ci_statistics)


def _point_values(result: AgreementResult, which: tuple[str, ...]) -> dict[str, float | None]:
    return {k: result.values.get(k) for k in which}


def sample_level(source: LevelInput, column: str, options: AgreeOptions) -> AgreeRow:
    table = source.table
    metric = numeric_column(table, column)
    human = numeric_column(table, source.human_column)
    within = None
    if options.pairs_within:
        if options.pairs_within not in table.columns:
            raise TableError(f"{table.source} has no column {options.pairs_within!r} for --pairs-within")
        within = [r.get(options.pairs_within) for r in table.rows]
    keep, dropped = _paired(metric, human, within)
    if len(keep) < MIN_PAIRS:
        return _undefined(column, "sample", len(keep), dropped, f"only {len(keep)} paired items (need at least {MIN_PAIRS})")
    x = np.array([metric[i] for i in keep])
    y = np.array([human[i] for i in keep])
    g = None if within is None else np.array([key_of(within[i]) for i in keep])
    result = agreement(x, y, groups=g)
    which = _ci_stats(options)
    if not options.n_boot:
        return AgreeRow(column, "sample", result, dropped)

    def draw(rng: np.random.Generator) -> dict[str, float | None]:
        idx = resample(rng, len(x))
        return _point_values(agreement(x[idx], y[idx], groups=None if g is None else g[idx], which=which), which)

    result.ci, notes = bootstrap(draw, n_boot=options.n_boot, seed=options.seed, confidence=options.confidence)
    result.notes.extend(notes)
    return AgreeRow(column, "sample", result, dropped, resample="items")


def _model_unit(choice: ResampleChoice, m_arr: Mapping[str, np.ndarray], h_arr: Mapping[str, np.ndarray],
                names: list[str]) -> tuple[Unit, list[str]]:
    """The bootstrap unit at model level, with a note wherever resampling items cannot show all the
    uncertainty: a model with one row has a mean that no resample of its rows can move."""
    single_scores = all(len(m_arr[name]) == 1 for name in names)
    single_ratings = all(len(h_arr[name]) == 1 for name in names)
    if choice == "models":
        return "models", []
    if single_scores and single_ratings:
        if choice == "auto":
            return "models", ["resampled models: one row per model, so resampling items within models would "
                              "give zero-width intervals"]
        return "items", ["zero-width intervals: one row per model, so resampling items within models never "
                         "moves a mean; use --resample models"]
    if single_scores or single_ratings:
        fixed = "scores" if single_scores else "human ratings"
        return "items", [f"one {fixed[:-1]} per model: resampling items holds those means fixed, so the intervals "
                         f"show the sampling error of the other side only"]
    return "items", []


def model_level(source: LevelInput, column: str, options: AgreeOptions) -> AgreeRow:
    """Model means of ``column`` against model means of the human column (from ``source.human``, or
    from the same rows when there is none)."""
    table, notes = source.table, []
    if source.human is None:
        metric = numeric_column(table, column)
        human = numeric_column(table, source.human_column)
        if options.group_by not in table.columns:
            raise TableError(f"{table.source} has no group column {options.group_by!r}")
        labels = [row.get(options.group_by) for row in table.rows]
        keep, dropped = _paired(metric, human, labels)
        metric_groups: dict[str, list[float]] = {}
        human_groups: dict[str, list[float]] = {}
        for i in keep:
            metric_groups.setdefault(key_of(labels[i]), []).append(metric[i])  # type: ignore[arg-type]
            human_groups.setdefault(key_of(labels[i]), []).append(human[i])  # type: ignore[arg-type]
        paired = True
    else:
        metric_groups, dropped_scores = _group_values(table, column, options.group_by)
        human_groups, dropped_ratings = _group_values(source.human, source.human_column, options.group_by)
        dropped, paired = dropped_scores + dropped_ratings, False
        only_scored = sorted(set(metric_groups) - set(human_groups))
        only_rated = sorted(set(human_groups) - set(metric_groups))
        if only_scored or only_rated:
            notes.append(f"models left out: {len(only_scored)} only scored {only_scored[:5]}, "
                         f"{len(only_rated)} only rated {only_rated[:5]}")
    names = [m for m in metric_groups if m in human_groups]
    if len(names) < MIN_PAIRS:
        reason = (f"only {len(names)} models have both scores and human ratings (need {MIN_PAIRS}); "
                  f"scored: {sorted(metric_groups)[:5]}, rated: {sorted(human_groups)[:5]}")
        return _undefined(column, "model", len(names), dropped, reason, names)
    m_arr = {k: np.asarray(v) for k, v in metric_groups.items()}
    h_arr = {k: np.asarray(v) for k, v in human_groups.items()}
    x, y = _means(m_arr, names), _means(h_arr, names)
    result = agreement(x, y)
    result.notes[:0] = notes
    which = _ci_stats(options)
    if not options.n_boot:
        return AgreeRow(column, "model", result, dropped, names)
    unit, unit_notes = _model_unit(options.resample, m_arr, h_arr, names)

    def draw(rng: np.random.Generator) -> dict[str, float | None]:
        if unit == "models":
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

    result.ci, boot_notes = bootstrap(draw, n_boot=options.n_boot, seed=options.seed, confidence=options.confidence)
    result.notes.extend(unit_notes + boot_notes)
    return AgreeRow(column, "model", result, dropped, names, resample=unit)


def compute(source: LevelInput, columns: Sequence[str], options: AgreeOptions) -> list[AgreeRow]:
    """One row per column at ``options.level``. An error about one column names it."""
    if not columns:
        raise AgreementError("no score columns to correlate")
    _ci_stats(options)
    if options.level == "sample":
        if source.human is not None:
            raise AgreementError("at sample level join the human file onto the scores first (tables.join)")
        if options.resample == "models":
            raise AgreementError("at sample level only items can be resampled (--resample items or auto)")
        one = sample_level
    elif options.level == "model":
        one = model_level
    else:
        raise AgreementError(f"unknown level {options.level!r}; use sample or model")
    rows = []
    for column in columns:
        try:
            rows.append(one(source, column, options))
        except AgreementError as exc:
            raise AgreementError(f"{column} ({options.level}): {exc}") from None
    return rows


def sort_rows(rows: list[AgreeRow], by: str, *, descending: bool = True) -> list[AgreeRow]:
    """Sorted by a statistic; rows where it is undefined go last whatever the direction."""
    if by not in SORTABLE:
        raise AgreementError(f"cannot sort by {by!r}; choose from {', '.join(SORTABLE)}")

    def value(row: AgreeRow) -> float | None:
        return float(row.result.n) if by == "n" else row.result.values.get(by)

    defined = [r for r in rows if value(r) is not None]
    undefined = [r for r in rows if value(r) is None]
    return sorted(defined, key=lambda r: value(r), reverse=descending) + undefined  # type: ignore[arg-type, return-value]


# --- the whole command ------------------------------------------------------------------------


@dataclass
class AgreementRun:
    """What ``pixeljury agree`` shows and writes: the rows of every level (each level sorted), the
    plan's notes, and the fields the JSON output starts with."""

    rows: list[AgreeRow]
    notes: list[str]
    meta: dict[str, Any]

    @property
    def any_defined(self) -> bool:
        """Whether some column gave at least one statistic at some level."""
        return any(v is not None for r in self.rows for v in r.result.values.values())

    def undefined_message(self) -> str:
        """Why nothing could be computed, column by column (for when :attr:`any_defined` is false)."""
        return "no column gave a statistic: " + "; ".join(
            f"{r.column} ({r.level}): {r.undefined or '; '.join(r.result.notes)}" for r in self.rows)


def run_agreement(scores: Table, human: Table | None, options: AgreeOptions, levels: Sequence[Level], *,
                  columns: Sequence[str] = (), exclude: Sequence[str] = (), key: str | None = None,
                  human_key: str | None = None, sort: str = "srcc", descending: bool = True) -> AgreementRun:
    """Plan (:func:`plan`), compute every level in ``levels`` and sort each level's rows by ``sort``.

    ``options.resample`` is the unit at model level; with both levels, the sample level resamples
    items even when models are asked for (there are no models to draw at sample level).
    ``options.level`` is ignored: ``levels`` says which. ``options`` itself is left unchanged."""
    the_plan = plan(scores, human, options, levels, columns=columns, exclude=exclude, key=key, human_key=human_key)
    rows: list[AgreeRow] = []
    for level in levels:
        unit = options.resample
        if level == "sample" and len(levels) > 1 and unit == "models":
            unit = "items"
        found = compute(the_plan.inputs[level], the_plan.columns, replace(options, level=level, resample=unit))
        rows += sort_rows(found, sort, descending=descending)
    meta = {"scores": scores.source, "human": human.source if human is not None else None,
            "human_column": options.human_column, "bootstrap": options.n_boot, "seed": options.seed,
            "confidence": options.confidence, "resample": options.resample, "notes": the_plan.notes}
    return AgreementRun(rows, the_plan.notes, meta)
