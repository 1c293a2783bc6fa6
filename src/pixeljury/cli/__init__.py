"""The ``pixeljury`` command line. Thin: parse options, call the library, print where results went."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="pixeljury",
    help="Judge text-to-image generations: Q-Judger, reward metrics, agreement with people, reports.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.command()
def version() -> None:
    """Print the pixeljury version."""
    from pixeljury import __version__

    typer.echo(__version__)


# Command groups defined in their own modules register themselves here (one line each).
# --- registered commands ---
from pixeljury.cli import analysis, judge, listing, metrics  # noqa: E402

judge.register(app)
analysis.register(app)
metrics.register(app)
listing.register(app)
# --- end registered commands ---


def main() -> None:
    app()


if __name__ == "__main__":
    main()
