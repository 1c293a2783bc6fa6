"""``pixeljury judge`` and ``pixeljury export``."""

from __future__ import annotations

import contextlib
import signal
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from pixeljury.cli.render import ConsoleRenderer
from pixeljury.rubric.taxonomy import L1_NAMES


def _err() -> Console:
    """A console on stderr, made per use (no module-level consoles: tests and embedding apps swap streams)."""
    return Console(stderr=True)


# Exit codes (docs/runs.md, "When the engine fails, and exit codes").
EXIT_MISSING = 1  # requests without a result that a rerun may give: rerun the same command
EXIT_USAGE = 2  # the command, the input as a whole, a damaged store, a run directory in use
EXIT_CANNOT_WRITE = 3  # the disk is full or the output directory cannot be written: fix that, then rerun
EXIT_PERMANENT = 4  # finished; the only requests without a result cannot get one as they are: fix those rows


def _fail(message: str, code: int = EXIT_USAGE) -> None:
    _err().print(f"[bold red]error:[/] {message}", soft_wrap=True, highlight=False)
    raise typer.Exit(code)


def _cannot_write(exc, out: Path, command: str) -> None:
    """One line for a full disk or a directory that refuses writes, and exit 3."""
    from pixeljury.runs.store import ResultStore

    fix = exc.fix[0].upper() + exc.fix[1:]
    if command == "export":
        said = f"{exc}; the outputs are as they were. {fix}, then run `pixeljury export {out}` again."
    elif exc.saved is None:
        said = f"{exc}; nothing was changed. {fix}, then rerun the same command."
    elif exc.stage == "export":
        said = (f"{exc}. The run finished: all {exc.saved} results are saved in {out / ResultStore.FILENAME}, and "
                f"the outputs from before this run are unchanged. {fix}, then run `pixeljury export {out}` (or "
                "rerun the same command).")
    else:
        said = (f"{exc}. {exc.saved} results are saved in {out / ResultStore.FILENAME}; the outputs from before "
                f"this run are unchanged. {fix}, then rerun the same command to continue (saved results are not "
                "recomputed).")
    _err().print(f"error: {said}", soft_wrap=True, markup=False, highlight=False)
    raise typer.Exit(EXIT_CANNOT_WRITE)


def judge(
    input: Path = typer.Argument(..., help="CSV, JSON, JSONL or Parquet with prompt, image_path, optional ID and model."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Judge model: HF hub id, local directory, or ModelScope id (not needed with --dry-run)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Run directory (resumed if it exists). Default: runs/<input name>."),
    metadata: Optional[Path] = typer.Option(None, help="Qwen-Image-Bench metadata (ID -> dims_en), JSON or JSONL."),
    rubric: str = typer.Option("official", help="official (pinned upstream checklist) or builtin (not benchmark-comparable)."),
    rubric_file: Optional[Path] = typer.Option(None, help="Local copy of the official checklists.py."),
    dimensions: str = typer.Option(",".join(L1_NAMES), help="L1 dimensions for rows without a benchmark ID (comma-separated)."),
    engine: str = typer.Option("transformers", help="transformers, vllm, openai or replay."),
    revision: Optional[str] = typer.Option(None, help="Model revision (branch, tag or commit)."),
    model_source: str = typer.Option("auto", help="auto (local dir, else HF hub), hf, modelscope or local."),
    endpoint: Optional[str] = typer.Option(None, help="OpenAI-compatible base URL for --engine openai."),
    api_key: Optional[str] = typer.Option(None, envvar="PIXELJURY_API_KEY", help="API key for --engine openai."),
    replay_file: Optional[Path] = typer.Option(None, help="Recorded answers for --engine replay."),
    batch_size: Optional[int] = typer.Option(None, min=1, help="Requests per engine call. Default: the engine's own (transformers 4, vllm 128, openai 64)."),
    max_new_tokens: int = typer.Option(4096, min=1, help="Generation limit (official: 4096)."),
    max_model_len: Optional[int] = typer.Option(None, min=1, help="The judge's context in tokens: longer requests "
                                                "fail on their own (default: vLLM 8192, transformers the model's)."),
    dtype: str = typer.Option("auto", help="auto, bfloat16, float16 or float32."),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:1..."),
    keep_aspect: bool = typer.Option(False, help="Resize long side to 1024 keeping aspect (not the official square resize)."),
    constrained: bool = typer.Option(False, help="JSON-schema-constrained answers, after the thinking (not the official protocol; recorded)."),
    thinking_budget: Optional[int] = typer.Option(None, help="Cap thinking tokens: then </think> is forced (not the official protocol; recorded)."),
    export: str = typer.Option("", help="Extra export formats: csv, parquet, xlsx (comma-separated)."),
    retries: int = typer.Option(2, min=0, help="Extra attempts for a failed engine batch."),
    strict_prompts: bool = typer.Option(False, "--strict-prompts", help="Refuse rows whose benchmark ID comes with another prompt than the metadata's (default: warn and mark them not comparable)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Write the requests that would be sent, run no model."),
    save_images: Optional[Path] = typer.Option(None, "--save-images", help="With --dry-run: write each image as it would be sent (lossless PNG, one per row and dimension) to this folder."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress display (for logs and CI)."),
) -> None:
    """Judge images with Q-Judger; writes per-image JSONL, bench JSON per model and a CSV summary."""
    from pixeljury.data.inputs import InputError
    from pixeljury.data.metadata import MetadataError
    from pixeljury.engines.base import EngineUnavailable, GenerationParams
    from pixeljury.engines.factory import EngineSpec, create_engine
    from pixeljury.rubric import RubricError
    from pixeljury.runs.faults import CannotWrite
    from pixeljury.runs.judge import JudgeConfig, run_judge
    from pixeljury.runs.lock import RunLocked

    out = out or Path("runs") / input.stem
    if save_images is not None and not dry_run:
        _fail("--save-images goes with --dry-run (it writes the images a run would send, without running it)")
    if model is None and not dry_run:
        _fail("--model is required (an HF hub id, a local directory or a ModelScope id); only --dry-run runs without one")
    dimension_names = [d.strip() for d in dimensions.split(",") if d.strip()]
    if not dimension_names:
        _fail(f"--dimensions names no dimension; give one or more of: {', '.join(L1_NAMES)} (comma-separated)")
    if out.exists() and not out.is_dir():
        _fail(f"--out {out} is an existing file, not a directory; give a directory for the run (it is created "
              "if missing)")
    params = GenerationParams(max_new_tokens=max_new_tokens, json_schema_constrained=constrained,
                              thinking_budget=thinking_budget)
    config = JudgeConfig(
        input=input, out=out, metadata=metadata, rubric=rubric, rubric_file=rubric_file,
        dimensions=dimension_names, keep_aspect=keep_aspect, params=params,
        batch_size=batch_size, retries=retries, quiet=quiet, strict_prompts=strict_prompts,
        export_formats=tuple(f.strip() for f in export.split(",") if f.strip()),
    )
    console = Console(stderr=True, quiet=quiet)
    render = ConsoleRenderer(console)
    try:
        if dry_run:
            from pixeljury.runs.dryrun import dry_run as do_dry_run

            dest = out / "requests.jsonl"
            written, skipped = do_dry_run(config, model, revision, dest, on_event=render, save_images=save_images)
            typer.echo(f"{written} requests written to {dest} ({skipped} rows skipped); no model was run")
            if save_images is not None:
                typer.echo(f"images as the judge would see them: {save_images}/")
            return
        spec = EngineSpec(engine=engine, model=model, revision=revision, source=model_source, dtype=dtype,
                          device=device, batch_size=batch_size or EngineSpec.batch_size, endpoint=endpoint,
                          api_key=api_key, max_model_len=max_model_len, replay_file=None if replay_file is None else str(replay_file))
        with _stop_signals() as stopped_by:
            try:
                summary = run_judge(config, lambda: create_engine(spec), on_event=render)
            except KeyboardInterrupt:
                _interrupted(out, stopped_by[0] if stopped_by else signal.SIGINT)
    except CannotWrite as exc:
        _cannot_write(exc, out, "judge")
        return
    except (InputError, RubricError, MetadataError, EngineUnavailable, RunLocked, ValueError) as exc:
        _fail(str(exc))
        return
    _print_summary(summary, console)
    if summary.complete:
        return
    # Results that exist are kept and exported; the exit code tells scripts whether a rerun can add any.
    raise typer.Exit(EXIT_PERMANENT if summary.status == "permanent_failures" else EXIT_MISSING)


@contextlib.contextmanager
def _stop_signals():
    """SIGTERM stops a run the way Ctrl-C does: the batch in flight is lost, every committed result
    stays, the lock is released. Yields a list that receives the signal that stopped the run."""
    received: list[int] = []
    previous = signal.getsignal(signal.SIGTERM)

    def on_term(signum, _frame):
        received.append(signum)
        raise KeyboardInterrupt

    try:
        signal.signal(signal.SIGTERM, on_term)
    except ValueError:  # not the main thread (e.g. called from a test runner's worker): leave it be
        yield received
        return
    try:
        yield received
    finally:
        signal.signal(signal.SIGTERM, previous)


def _interrupted(out: Path, signum: int) -> None:
    import shlex
    import sys

    from pixeljury.runs.store import ResultStore

    try:
        with ResultStore.in_dir(out) as store:
            saved = f"{store.count()} results are saved in {out / ResultStore.FILENAME}"
    except (OSError, ValueError) as exc:
        saved = f"the results saved so far could not be counted ({exc})"
    name = signal.Signals(signum).name
    command = shlex.join(["pixeljury", *sys.argv[1:]])
    _err().print(f"stopped by {name}: {saved}; resume with the same command: {command}", soft_wrap=True,
              markup=False, highlight=False)
    raise typer.Exit(128 + signum)


def _print_summary(summary, console: Console) -> None:
    import json

    from pixeljury.runs.outcome import row_list

    typer.echo(f"requests: {summary.requests} (reused {summary.reused}, computed {summary.computed}, "
               f"without result {summary.failed}); rows skipped: {summary.row_errors}, duplicates: {summary.duplicates}")
    for name, path in summary.outputs.items():
        if name.startswith("bench:"):
            b = json.loads(Path(path).read_text())
            total = "n/a" if b["total"] is None else f"{b['total']:.2f}"
            fails = sum(c["parse_failures"] for c in b["counts"].values())
            typer.echo(f"  {b['model']}: total {total} over {b['n_images_scored']}/{b['n_images']} images, "
                       f"parse failures {fails}{'' if b['comparable'] else '  [not benchmark-comparable]'}")
    typer.echo(f"outputs in {summary.run_dir}/: per_image.jsonl, bench/, summary.csv, manifest.json")
    rows = row_list(summary.permanent_rows)
    if summary.stopped:
        typer.echo(f"run stopped early: {summary.stopped}; rerun the same command to continue")
    elif summary.failed and summary.status == "permanent_failures":
        typer.echo(f"{summary.failed} requests have no result, and rerunning cannot give them one: their input "
                   f"cannot be judged as it is (rows {rows}; the errors marked \"permanent\" in per_image.jsonl say "
                   "why). Fix or remove those rows; a rerun then judges only them")
    elif summary.failed:
        fix = (f"; {summary.permanent} of them cannot succeed as they are (rows {rows}): fix those rows"
               if summary.permanent else "")
        typer.echo(f"{summary.failed} requests have no result (see the errors in per_image.jsonl); "
                   f"rerun the same command to retry them{fix}")


def export(
    run_dir: Path = typer.Argument(..., help="A run directory written by `pixeljury judge`."),
    format: str = typer.Option("jsonl,csv,parquet,xlsx", "--format", "-f", help="Comma-separated: jsonl, csv, parquet, xlsx."),
) -> None:
    """Regenerate a run's outputs from its result store, without running anything.

    Holds the run directory's lock while it writes, so it never races a `pixeljury judge` on DIR."""
    from pixeljury.runs.exports import write_run_outputs
    from pixeljury.runs.faults import CannotWrite
    from pixeljury.runs.lock import RunLock, RunLocked
    from pixeljury.runs.store import ResultStore

    if not (run_dir / ResultStore.FILENAME).is_file():
        _fail(f"{run_dir} has no {ResultStore.FILENAME}; is it a pixeljury run directory?")
    try:
        with RunLock(run_dir), ResultStore.in_dir(run_dir) as store:
            outputs = write_run_outputs(run_dir, store, tuple(f.strip() for f in format.split(",") if f.strip()))
    except RunLocked:
        holder = (run_dir / ".lock").read_text().strip() or "another process"
        _fail(f"cannot export {run_dir}: it is in use by {holder} (a `pixeljury judge` or `pixeljury export` "
              "writing there); wait for it to finish, then export again")
        return
    except CannotWrite as exc:
        _cannot_write(exc, run_dir, "export")
        return
    except ValueError as exc:
        _fail(str(exc))
        return
    for name, path in outputs.items():
        typer.echo(f"{name}: {path}")




def demo(
    out: Path = typer.Option(Path("demo-out"), "--out", "-o", help="Folder for the demo's inputs, model and run."),
    model: Optional[str] = typer.Option(None, help="A real judge model (HF id or directory). Default: a tiny random one."),
    rubric_file: Optional[Path] = typer.Option(None, help="The official checklists.py, if you have it."),
    max_new_tokens: Optional[int] = typer.Option(None, help="Default: 1024 for the tiny judge, 4096 for a real one."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Run the judge pipeline offline on images pixeljury draws, and show where the outputs are."""
    from pixeljury.demo import run_demo

    console = Console(stderr=True, quiet=quiet)
    result = run_demo(out, model=model, rubric_file=rubric_file, max_new_tokens=max_new_tokens, quiet=quiet,
                      on_event=ConsoleRenderer(console))
    _print_summary(result.summary, console)
    for line in result.lines():
        typer.echo(line)


def register(app: typer.Typer) -> None:
    app.command()(judge)
    app.command()(export)
    app.command()(demo)
