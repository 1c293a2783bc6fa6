"""``pixeljury list``: every engine, evaluator and metric the registry knows, with its conventions."""

from __future__ import annotations

import json
import warnings
from typing import Any, Optional

import typer

_SKIP = {"metric", "convention", "default", "input_kind", "direction", "range", "weights", "extra", "generative",
         "protocol_id", "protocol_version", "parser_version"}


def conventions(entry: Any) -> str:
    """One line of what a result of this entry means (metric scale, engine extra, protocol version)."""
    meta = entry.metadata
    parts: list[str] = []
    if entry.kind == "metric":
        parts.append(" ".join(str(meta[k]) for k in ("input_kind", "direction", "range") if meta.get(k)))
        if meta.get("default"):
            parts.append(f"default for {meta.get('metric', entry.name.partition('@')[0])}")
        if meta.get("generative"):
            parts.append("needs an engine")
    elif entry.kind == "engine":
        parts.append(f"pip install 'pixeljury[{meta['extra']}]'" if meta.get("extra") else "core install")
    elif entry.kind == "evaluator":
        if meta.get("protocol_id"):
            version = f" v{meta['protocol_version']}" if meta.get("protocol_version") is not None else ""
            parser = f", parser v{meta['parser_version']}" if meta.get("parser_version") is not None else ""
            parts.append(f"protocol {meta['protocol_id']}{version}{parser}")
    parts += [f"{k}={v}" for k, v in meta.items() if k not in _SKIP and v is not None]
    return "; ".join(p for p in parts if p)


def list_entries(
    kind: Optional[str] = typer.Option(None, "--kind", help="Only one kind: engine, evaluator or metric."),
    as_json: bool = typer.Option(False, "--json", help="JSON on stdout instead of a table."),
) -> None:
    """List the engines, evaluators and metrics (built-in and from plugins) with their conventions."""
    from pixeljury.core.registry import KINDS, RegistryError, registry

    if kind is not None and kind not in KINDS:
        typer.echo(f"error: unknown kind {kind!r}; choose from {', '.join(KINDS)}", err=True)
        raise typer.Exit(2)
    reg = registry()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # plugin failures are reported below, once each
        try:
            entries = reg.entries(kind)
        except RegistryError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
    if as_json:
        rows = [dict(e.as_dict(), conventions=conventions(e)) for e in entries]
        typer.echo(json.dumps({"entries": rows, "plugin_errors": list(reg.plugin_errors)}, indent=2, default=str))
    else:
        from rich.console import Console
        from rich.table import Table
        from rich.text import Text

        table = Table(title="pixeljury registry", show_lines=False)
        for column in ("kind", "name", "conventions", "source", "description"):
            table.add_column(column, overflow="fold")
        for e in entries:
            table.add_row(*(Text(cell) for cell in (e.kind, e.name, conventions(e), e.source, e.description)))
        Console().print(table)
    for message in reg.plugin_errors:
        typer.echo(f"warning: {message}", err=True)


def register(app: typer.Typer) -> None:
    app.command("list")(list_entries)


__all__ = ["conventions", "list_entries", "register"]
