"""CLI commands of the metric suite: ``score``, ``fid`` and ``list-metrics``. Thin wrappers over the library."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from pixeljury.metrics.base import MetricUnavailable

# Metrics that generate text through an engine; `score` builds one for each (item metrics over
# prompt/image rows: UnifiedReward-Edit needs source images and is a library API).
GENERATIVE_METRICS = ("unifiedreward",)


def _parse_weights(values: list[str]) -> dict[str, str]:
    out = {}
    for value in values:
        name, sep, where = value.partition("=")
        if not sep or not name or not where:
            raise typer.BadParameter(f"--weights takes NAME=PATH_OR_HUB_ID, got {value!r}")
        out[name.strip().lower()] = where
    return out


def score(
    input: Path = typer.Argument(..., help="CSV/JSON/JSONL/Parquet with prompt and image_path columns."),
    metric: str = typer.Option(..., "--metric", "-m", help="Comma-separated metrics, e.g. pickscore,hpsv2@raw-cos."),
    out: Path = typer.Option(..., "--out", "-o", help="Run directory (results.sqlite, scores.jsonl, scores.csv)."),
    batch_size: Optional[int] = typer.Option(None, help="Items per forward pass (default: each metric's own)."),
    device: Optional[str] = typer.Option(None, help="cuda, cuda:1, cpu... (default: cuda when present)."),
    dtype: Optional[str] = typer.Option(None, help="float32 (default), float16 or bfloat16."),
    weights: list[str] = typer.Option([], "--weights", help="NAME=PATH_OR_HUB_ID to override a metric's weights."),
    engine: str = typer.Option("transformers", help="For generative metrics (unifiedreward): transformers, vllm, "
                               "openai or replay."),
    judge_model: Optional[str] = typer.Option(None, help="Generative metrics: hub id, local path or ModelScope id "
                                              "(default: the metric's own weights); the served name for openai."),
    judge_revision: Optional[str] = typer.Option(None, help="Generative metrics: model revision."),
    endpoint: Optional[str] = typer.Option(None, help="OpenAI-compatible base URL for --engine openai."),
    api_key: Optional[str] = typer.Option(None, envvar="PIXELJURY_API_KEY", help="API key for --engine openai."),
    replay_file: Optional[Path] = typer.Option(None, help="Recorded answers for --engine replay."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress lines."),
) -> None:
    """Score every (prompt, image) row with reward metrics; reruns skip what is already stored.

    Like `pixeljury judge`, the run directory is locked while it runs, has a manifest, and a stopped
    run resumes: rerun the same command."""
    import signal

    from pixeljury.cli.judge import _cannot_write, _interrupted, _stop_signals
    from pixeljury.cli.render import ConsoleRenderer
    from pixeljury.data.inputs import InputError
    from pixeljury.engines.base import EngineError, EngineUnavailable
    from pixeljury.metrics.base import MetricInputError
    from pixeljury.metrics.run import score_file
    from pixeljury.runs.faults import CannotWrite
    from pixeljury.runs.lock import RunLocked

    names = [m.strip() for m in metric.split(",") if m.strip()]
    if not names:
        raise typer.BadParameter("--metric names no metric")
    try:
        metric_kwargs, engines = _generative_engines(
            names, engine=engine, model=judge_model, revision=judge_revision, endpoint=endpoint, api_key=api_key,
            replay_file=replay_file, device=device, batch_size=batch_size)
        try:
            with _stop_signals() as stopped_by:
                try:
                    summaries = score_file(input, out, names, weights=_parse_weights(weights), batch_size=batch_size,
                                           device=device, dtype=dtype, metric_kwargs=metric_kwargs,
                                           on_event=ConsoleRenderer(quiet=quiet))
                except KeyboardInterrupt:
                    _interrupted(out, stopped_by[0] if stopped_by else signal.SIGINT)
        finally:
            for built in engines:
                built.close()
    except CannotWrite as exc:
        _cannot_write(exc, out, "score")
        return
    except (RunLocked, InputError, MetricInputError, MetricUnavailable, EngineUnavailable, EngineError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    for s in summaries:
        typer.echo(f"{s.convention}: {s.scored} scored, {s.skipped} already stored, {len(s.failed)} failed")
        for index, message in s.failed[:10]:
            typer.echo(f"  row {index}: {message}", err=True)
    for s in summaries:
        truncation = s.truncation_line()
        if truncation:
            typer.echo(truncation)
    typer.echo(f"results in {out / 'results.sqlite'}, {out / 'scores.jsonl'}, {out / 'scores.csv'}")
    if any(s.failed for s in summaries):
        raise typer.Exit(1)


def _generative_engines(names: list[str], *, engine: str, model: str | None, revision: str | None,
                        endpoint: str | None, api_key: str | None, replay_file: Path | None, device: str | None,
                        batch_size: int | None) -> tuple[dict[str, dict[str, Any]], list[Any]]:
    """One engine per generative metric named (``extra is None`` and a loader that takes ``engine=``).

    Built through the engine factory; nothing is imported or built when no such metric is asked for."""
    from pixeljury.metrics.registry import get_spec

    kwargs: dict[str, dict[str, Any]] = {}
    built: list[Any] = []
    for name in names:
        spec = get_spec(name)
        if spec.name not in GENERATIVE_METRICS or spec.name in kwargs:
            continue
        from pixeljury.engines.factory import EngineSpec, create_engine

        where = model or (spec.weights.repo_id if spec.weights else "")
        engine_spec = EngineSpec(engine=engine, model=where, revision=revision, device=device or "auto",
                                 batch_size=batch_size or 4, endpoint=endpoint, api_key=api_key,
                                 replay_file=None if replay_file is None else str(replay_file))
        try:
            instance = create_engine(engine_spec)
        except BaseException:
            for earlier in built:
                earlier.close()
            raise
        built.append(instance)
        kwargs[spec.name] = {"engine": instance}
    return kwargs, built


def fid(
    generated: Path = typer.Argument(..., help="Folder of generated images."),
    reference: Path = typer.Argument(..., help="Folder of reference images (statistics cached)."),
    metric: str = typer.Option("fid", "--metric", "-m", help="fid, fid@legacy-pytorch or kid."),
    weights: Optional[str] = typer.Option(None, help="clean-fid Inception TorchScript file or URL."),
    batch_size: int = typer.Option(64, help="Images per forward pass."),
    device: Optional[str] = typer.Option(None, help="cuda or cpu (default: cuda when present)."),
) -> None:
    """FID or KID between two image folders."""
    from pixeljury.metrics.registry import load_metric

    try:
        distance = load_metric(metric, weights=weights, device=device)
        result = distance.compute(generated, reference, batch_size=batch_size)
    except MetricUnavailable as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"{result.convention} = {result.value:.6f}  ({result.extras})")


def list_metrics() -> None:
    """List the metrics and conventions (scale, range, direction, default weights)."""
    from pixeljury.metrics.registry import list_metrics as specs

    for spec in specs():
        weights = spec.weights.label if spec.weights else "-"
        typer.echo(f"{spec.convention:32} {spec.input_kind:13} {spec.direction:17} {spec.range_text():14} {weights}")
        typer.echo(f"{'':32} {spec.description}")


def register(app: typer.Typer) -> None:
    app.command("score")(score)
    app.command("fid")(fid)
    app.command("list-metrics")(list_metrics)


__all__ = ["register"]
