"""CLI commands ``agree``, ``leaderboard`` and ``report``. Thin: parse options, call the library,
print a table and say where files went. Registered on the main app by :func:`register`."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich import box
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table as RichTable



def _console() -> Console:
    """Standard output, as the terminal is now (made per use: no console lives at module level)."""
    return Console()


def _err_console() -> Console:
    return Console(stderr=True)


class LevelChoice(str, Enum):
    sample = "sample"
    model = "model"
    both = "both"


class UnitChoice(str, Enum):
    auto = "auto"
    items = "items"
    models = "models"


def _split(values: list[str] | None) -> list[str]:
    """Repeatable options that also accept comma lists (column names containing commas are rare)."""
    return [v.strip() for item in values or [] for v in item.split(",") if v.strip()]


def _load_runs(runs: list[Path]) -> list:
    """The run directories, read; a directory that cannot be read ends the command with its message."""
    from pixeljury.analysis.rundir import RunDirError, load_run

    try:
        return [load_run(r) for r in runs]
    except RunDirError as exc:
        _fail(str(exc))
        raise  # _fail exits; never reached


def _fail(message: str, code: int = 2) -> None:
    _err_console().print(f"error: {message}", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _write(path: Path | None, text: str, what: str) -> None:
    if path is None:
        return
    _write_whole(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    _console().print(f"{what} written to {path}", highlight=False)


def _write_whole(path: Path, write) -> None:
    """Write ``path`` whole or not at all (a temporary beside it, renamed); a full disk or a directory
    that refuses writes is one line and exit 3, and a file already there stays as it was."""
    from pixeljury.runs.atomic import discard, temporary_path
    from pixeljury.runs.faults import CannotWrite, fault_point, writing

    tmp = temporary_path(path)
    try:
        with writing(path):
            path.parent.mkdir(parents=True, exist_ok=True)
            fault_point(tmp)
            write(tmp)
            tmp.replace(path)
    except CannotWrite as exc:
        _fail(f"{exc}; {path} was not written (a file already there is unchanged). {exc.fix[0].upper()}"
              f"{exc.fix[1:]}, then run this again.", 3)
    finally:
        discard(tmp)


def _say_unfinished(runs: list) -> None:
    """Unfinished runs, and runs with requests that could not be judged, said plainly under the table."""
    console = _console()
    for run in runs:
        note = run.state.note
        if note:
            console.print(f"note: {run.path}: {note}", highlight=False, soft_wrap=True)


def _num(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _p_value(value: float | None) -> str:
    # Small p-values in scientific notation, so they do not all print as 0.000.
    if value is None:
        return "–"
    return f"{value:.3f}" if value >= 0.001 else f"{value:.1e}"


def agree(
    scores: Annotated[Path, typer.Argument(help="Run directory, or a CSV/JSON/JSONL/Parquet file with score columns.")],
    human_col: Annotated[str, typer.Option("--human-col", "-H", help="Column with the human ratings; with --human, the human file's column (a scores column of the same name is then correlated against it).")],
    human: Annotated[Optional[Path], typer.Option(help="Separate file with the human ratings (else they are in SCORES).")] = None,
    columns: Annotated[Optional[list[str]], typer.Option("--columns", "-c", help="Score columns of SCORES (repeat or comma-separate); default: every numeric column.")] = None,
    exclude: Annotated[Optional[list[str]], typer.Option(help="Columns to leave out of the default selection.")] = None,
    key: Annotated[Optional[str], typer.Option(help="Key column of SCORES for the join with --human (sample level).")] = None,
    human_key: Annotated[Optional[str], typer.Option(help="Key column of --human (default: --key).")] = None,
    level: Annotated[LevelChoice, typer.Option(help="sample: one pair per row; model: model means; both.")] = LevelChoice.sample,
    group_by: Annotated[str, typer.Option(help="Column naming each row's model (model level).")] = "model",
    pairs_within: Annotated[Optional[str], typer.Option(help="Pairwise accuracy compares pairs only within groups of this column (e.g. the prompt).")] = None,
    bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples for the CIs (0: none).")] = 1000,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap.")] = 0,
    confidence: Annotated[float, typer.Option(help="Confidence level of the intervals.")] = 0.95,
    resample: Annotated[UnitChoice, typer.Option(help="Bootstrap unit at model level: items (within models) or models; auto: items, or models when every model has one row.")] = UnitChoice.auto,
    ci_stats: Annotated[str, typer.Option(help="Statistics that get a CI (comma list).")] = "srcc,krcc,plcc,ntire",
    sort: Annotated[str, typer.Option(help="Sort the table by this statistic.")] = "srcc",
    ascending: Annotated[bool, typer.Option(help="Sort ascending instead of descending.")] = False,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write the results as JSON here.")] = None,
    csv_out: Annotated[Optional[Path], typer.Option("--csv", help="Write the results as CSV here.")] = None,
) -> None:
    """Correlate score columns with human ratings (SRCC, KRCC, PLCC, 4PL-PLCC, pairwise accuracy, NTIRE)."""
    from pixeljury.analysis import agree as ag
    from pixeljury.analysis.agreement import AgreementError
    from pixeljury.analysis.rundir import RunDirError
    from pixeljury.analysis.tables import TableError, load_table

    try:
        table = load_table(scores)
        human_table = load_table(human) if human else None
        levels = ["sample", "model"] if level is LevelChoice.both else [level.value]
        options = ag.AgreeOptions(
            human_column=human_col, group_by=group_by, pairs_within=pairs_within, n_boot=bootstrap, seed=seed,
            confidence=confidence, resample=resample.value, ci_statistics=_split([ci_stats]),
        )
        result = ag.run_agreement(table, human_table, options, levels, columns=_split(columns),  # type: ignore[arg-type]
                                  exclude=_split(exclude), key=key, human_key=human_key, sort=sort,
                                  descending=not ascending)
    except (TableError, RunDirError, AgreementError) as exc:
        _fail(str(exc))
        return
    _print_agreement(result.rows, confidence if bootstrap else None)
    for note in result.notes:
        _console().print(note, highlight=False)
    _write(json_out, ag.to_json(result.rows, result.meta), "JSON")
    _write(csv_out, ag.to_csv(result.rows), "CSV")
    if not result.any_defined:
        # Nothing to read off the table: say so in the exit status, naming every column's reason.
        _fail(result.undefined_message())


def _print_agreement(rows: list, confidence: float | None) -> None:
    """The screen table; ``confidence`` None when there was no bootstrap (then no CI is promised)."""
    console = _console()
    title = "Agreement with humans" + ("" if confidence is None else f" ({confidence:.0%} bootstrap CIs in brackets)")
    table = RichTable(title=title, box=box.SIMPLE_HEAD)  # no vertical rules: 13 columns need the room
    for name in ("column", "level", "n", "dropped", "SRCC", "SRCC p", "KRCC", "KRCC p", "PLCC", "PLCC p",
                 "PLCC 4PL", "pair acc", "NTIRE"):
        # Fold rather than cut: a number shortened to "0.…" would be worse than one over two lines.
        table.add_column(name, justify="left" if name in ("column", "level") else "right", overflow="fold")

    def cell(row, stat: str) -> str:
        value = _num(row.result.values.get(stat))
        ci = row.result.ci.get(stat)
        return f"{value}\n[{ci[0]:.3f}, {ci[1]:.3f}]" if ci else value  # the interval under its estimate

    for r in rows:
        values = r.result.values
        table.add_row(r.column, r.level, str(r.result.n), str(r.n_dropped),
                      cell(r, "srcc"), _p_value(values.get("srcc_p")), cell(r, "krcc"), _p_value(values.get("krcc_p")),
                      cell(r, "plcc"), _p_value(values.get("plcc_p")),
                      _num(values.get("plcc_fitted")), _num(values.get("pairwise_acc")), cell(r, "ntire"))
    # Piped into a file or another program there is no screen to fit: print at the table's own width
    # (console.print can only narrow, so a console of that width does it).
    natural = Measurement.get(console, console.options.update(max_width=10_000), table).maximum
    out = console if console.is_terminal or natural <= console.width else Console(width=natural)
    out.print(table)
    for r in rows:
        for note in r.result.notes:
            console.print(f"{r.column} ({r.level}): {note}", highlight=False)


def leaderboard(
    runs: Annotated[list[Path], typer.Argument(help="One or more run directories.")],
    bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples for the CI of the total (0: none).")] = 1000,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap.")] = 0,
    csv_out: Annotated[Optional[Path], typer.Option("--csv", help="Write CSV here.")] = None,
    md_out: Annotated[Optional[Path], typer.Option("--md", help="Write Markdown here.")] = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write JSON (with L2/L3 and counts) here.")] = None,
) -> None:
    """Rank the models of one or more runs: total with CI, L1 means, scored counts, failure and N/A rates."""
    from pixeljury.analysis import leaderboard as lb

    loaded = _load_runs(runs)
    entries = lb.build(loaded, n_boot=bootstrap, seed=seed)
    console = _console()
    dims = lb.dimensions(entries)
    table = RichTable(title="Leaderboard")
    for name in ("rank", "model", "total", "95% CI", *dims, "scored", "parse fail", "N/A"):
        table.add_column(name, justify="left" if name == "model" else "right")
    for e in entries:
        ci = f"{e.total_ci[0]:.2f}–{e.total_ci[1]:.2f}" if e.total_ci else "–"
        pf = "–" if e.parse_failure_rate is None else f"{100 * e.parse_failure_rate:.1f}%"
        na = "–" if e.na_rate is None else f"{100 * e.na_rate:.1f}%"
        table.add_row(str(e.rank or "–"), e.model, _num(e.total, 2), ci, *[_num(e.level1.get(d), 2) for d in dims],
                      f"{e.n_images_scored}/{e.n_images}", pf, na)
    console.print(table)
    _say_unfinished(loaded)
    _write(csv_out, lb.to_csv(entries), "CSV")
    _write(md_out, lb.to_markdown(entries), "Markdown")
    _write(json_out, lb.to_json(entries, {"runs": [str(r) for r in runs], "bootstrap": bootstrap, "seed": seed}), "JSON")


def report(
    runs: Annotated[list[Path], typer.Argument(help="One or more run directories.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="HTML file to write.")] = Path("report.html"),
    thumb_size: Annotated[int, typer.Option(help="Long side of gallery thumbnails, in pixels.")] = 256,
    max_images: Annotated[int, typer.Option(help="At most this many gallery images per model (0: all).")] = 200,
    bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples for the CI of the total (0: none).")] = 1000,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap.")] = 0,
    title: Annotated[str, typer.Option(help="Title of the report.")] = "pixeljury report",
) -> None:
    """Write one self-contained HTML report: leaderboard, radar, heatmaps, failure rates, gallery, provenance."""
    from pixeljury.report.html import ReportOptions, write_report

    loaded = _load_runs(runs)
    options = ReportOptions(title=title, thumb_size=thumb_size, max_images_per_model=max_images, n_boot=bootstrap, seed=seed)
    written: list[str] = []
    _write_whole(out, lambda tmp: written.append(write_report(loaded, tmp, options)))
    _console().print(f"report written to {out} ({written[0]})", highlight=False)
    _say_unfinished(loaded)


def register(app: typer.Typer) -> None:
    app.command("agree")(agree)
    app.command("leaderboard")(leaderboard)
    app.command("report")(report)
