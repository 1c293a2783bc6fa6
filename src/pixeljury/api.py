"""The Python API: the same as the CLI in a few lines.

    import pixeljury
    summary = pixeljury.judge("images.csv", model="/models/q-judger", out="runs/a", metadata="bench_metadata.json")
    bench = pixeljury.load_bench("runs/a")          # {model: {"total": ..., "level1": {...}, ...}}
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pixeljury.core.jsonl import iter_json_lines
from pixeljury.engines.base import Engine, GenerationParams
from pixeljury.engines.factory import EngineSpec, create_engine
from pixeljury.runs.events import EventSink, ignore
from pixeljury.runs.judge import JudgeConfig, RunSummary, run_judge


def judge(
    input: str | Path,
    *,
    model: str | None = None,
    out: str | Path,
    metadata: str | Path | None = None,
    rubric: str = "official",
    rubric_file: str | Path | None = None,
    engine: str | Engine = "transformers",
    params: GenerationParams | None = None,
    quiet: bool = True,
    on_event: EventSink = ignore,
    **options: Any,
) -> RunSummary:
    """Judge every row of ``input`` into the run directory ``out`` (resuming if it exists).

    ``engine`` is an engine name (with ``model`` and engine options such as ``revision``, ``dtype``,
    ``device``, ``batch_size``, ``endpoint``) or a ready :class:`~pixeljury.engines.base.Engine`.
    Remaining ``options`` go to :class:`~pixeljury.runs.judge.JudgeConfig` (``dimensions``, ``keep_aspect``...).
    Nothing is printed: ``on_event`` hears how the run goes (:mod:`pixeljury.runs.events`; rows
    skipped or warned about, progress, batch failures); ``quiet`` silences the libraries' loading bars.
    """
    spec_fields = set(EngineSpec.__dataclass_fields__)
    spec_opts = {k: options.pop(k) for k in list(options) if k in spec_fields}
    config = JudgeConfig(
        input=Path(input), out=Path(out), metadata=None if metadata is None else Path(metadata), rubric=rubric,
        rubric_file=None if rubric_file is None else Path(rubric_file), params=params or GenerationParams(),
        quiet=quiet, **options,
    )
    if isinstance(engine, Engine):
        ready = engine
        return run_judge(config, lambda: ready, on_event=on_event)
    if not model:
        raise ValueError("judge() needs model= when engine is given by name")
    spec = EngineSpec(engine=engine, model=model, **spec_opts)
    return run_judge(config, lambda: create_engine(spec), on_event=on_event)


def load_bench(run_dir: str | Path) -> dict[str, dict[str, Any]]:
    """Bench scores of every model in a run directory."""
    bench_dir = Path(run_dir) / "bench"
    return {(d := json.loads(p.read_text()))["model"]: d for p in sorted(bench_dir.glob("*.json"))}


def load_images(run_dir: str | Path) -> list[dict[str, Any]]:
    """Per-image records of a run directory. A line that is not JSON raises a ValueError naming the
    file and line."""
    return [rec for _, rec in iter_json_lines(Path(run_dir) / "per_image.jsonl")]
