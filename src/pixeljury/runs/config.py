"""The settings of a judge run, and what its inputs resolve to."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pixeljury.data.inputs import InputRow
from pixeljury.data.metadata import BenchMetadata
from pixeljury.engines.base import GenerationParams
from pixeljury.rubric.taxonomy import L1_NAMES, canonical_l1
from pixeljury.runs.plan import KeyContext, PlannedRow


@dataclass
class JudgeConfig:
    input: Path
    out: Path
    metadata: Path | None = None
    rubric: str = "official"
    rubric_file: Path | None = None
    dimensions: list[str] = field(default_factory=lambda: list(L1_NAMES))  # for rows without a benchmark ID
    keep_aspect: bool = False
    params: GenerationParams = field(default_factory=GenerationParams)
    batch_size: int | None = None  # requests per engine call; engine's preference when None
    retries: int = 2  # extra attempts for a failed batch
    retry_wait: float = 1.0
    default_model: str | None = None  # generator name for rows without a `model` column
    quiet: bool = False
    loader_threads: int = 4  # background image decoding
    export_formats: tuple[str, ...] = ()  # besides the standard outputs: csv, parquet, xlsx
    max_failed_batches: int = 10  # the run stops after this many batches in a row fail (engine down)
    strict_prompts: bool = False  # a benchmark ID whose prompt differs from the metadata's: row error, not warning

    def describe(self) -> dict[str, Any]:
        return {
            "input": str(self.input), "out": str(self.out), "metadata": None if self.metadata is None else str(self.metadata),
            "rubric": self.rubric, "rubric_file": None if self.rubric_file is None else str(self.rubric_file),
            "dimensions": self.dimensions, "keep_aspect": self.keep_aspect, "params": self.params.as_dict(),
            "batch_size": self.batch_size, "retries": self.retries, "max_failed_batches": self.max_failed_batches,
            "strict_prompts": self.strict_prompts,
        }


@dataclass
class _Prepared:
    rubric: Any
    metadata: BenchMetadata | None
    rows: list[PlannedRow]
    ctx: KeyContext


def _normalise_dimensions(names: list[str]) -> list[str]:
    out = []
    for n in names:
        c = canonical_l1(n)
        if c is None:
            raise ValueError(f"unknown dimension {n!r}; choose from {', '.join(L1_NAMES)}")
        if c not in out:
            out.append(c)
    return out


@dataclass
class _Inputs:
    rubric: Any
    metadata: BenchMetadata | None
    dimensions: list[str]
    rows: Iterator[InputRow]
