"""CLI commands of the metric suite: ``score``, ``fid`` and ``list-metrics``. Thin wrappers over the library."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from pixeljury.metrics.base import MetricUnavailable


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
) -> None:
    """Score every (prompt, image) row with reward metrics; reruns skip what is already stored."""
    from pixeljury.data.inputs import InputError
    from pixeljury.metrics.run import score_file

    names = [m.strip() for m in metric.split(",") if m.strip()]
    if not names:
        raise typer.BadParameter("--metric names no metric")
    try:
        summaries = score_file(input, out, names, weights=_parse_weights(weights), batch_size=batch_size,
                               device=device, dtype=dtype, log=lambda msg: typer.echo(msg, err=True))
    except (InputError, MetricUnavailable) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    for s in summaries:
        typer.echo(f"{s.convention}: {s.scored} scored, {s.skipped} already stored, {len(s.failed)} failed")
        for index, message in s.failed[:10]:
            typer.echo(f"  row {index}: {message}", err=True)
    typer.echo(f"results in {out / 'results.sqlite'}, {out / 'scores.jsonl'}, {out / 'scores.csv'}")
    if any(s.failed for s in summaries):
        raise typer.Exit(1)


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
