"""The metric contract: what every metric declares, what scoring returns, and batching.

Nothing here imports torch: the registry and the CLI read specs without loading a model.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

from PIL import Image

InputKind = Literal["prompt+image", "image", "image-pair", "image-sets"]
Direction = Literal["higher-is-better", "lower-is-better"]
ImageInput = Union[Image.Image, str, Path]


class MetricError(RuntimeError):
    """A metric failed while scoring (model error, shape mismatch...)."""


class MetricInputError(ValueError):
    """An input item cannot be scored; the message names the item."""


class MetricUnavailable(RuntimeError):
    """The metric cannot be used here: missing extra, weights not obtainable, unknown name."""


@dataclass(frozen=True)
class WeightsRef:
    """Where a metric's default weights come from.

    ``revision`` is the hub revision the metric was written against; ``filename`` names one file of
    the repository (original-format checkpoints) or is None for a whole transformers repository.
    ``sha256`` is checked after download when known.
    """

    repo_id: str
    revision: str
    filename: str | None = None
    sha256: str | None = None
    source: Literal["hf", "modelscope", "url"] = "hf"
    # A second repository some metrics need (e.g. the processor/tokenizer of PickScore).
    companion_repo_id: str | None = None
    companion_revision: str | None = None

    @property
    def label(self) -> str:
        """The declared source (``repo[/file]@revision``); result keys use the resolved identity instead."""
        file = f"/{self.filename}" if self.filename else ""
        return f"{self.repo_id}{file}@{self.revision}"

    def companion(self) -> "WeightsRef | None":
        """The companion repository as a reference of its own, or None when there is none."""
        if not self.companion_repo_id:
            return None
        return WeightsRef(self.companion_repo_id, self.companion_revision or "main")


@dataclass(frozen=True)
class MetricSpec:
    """Everything a metric declares about itself, readable without loading it."""

    name: str
    convention: str  # e.g. "clipscore@hessel-2.5x": name and scale/formula; stored with every value
    input_kind: InputKind
    direction: Direction
    value_range: tuple[float | None, float | None]  # None = unbounded on that side
    reference: str  # paper and/or repository
    description: str
    weights: WeightsRef | None = None
    extra: str | None = "torch"  # pip extra needed (pixeljury[<extra>]); None when the core suffices
    loader: str = ""  # "module:function" called by load_metric

    def range_text(self) -> str:
        lo, hi = self.value_range
        return f"[{'-inf' if lo is None else lo}, {'+inf' if hi is None else hi}]"


@dataclass
class MetricResult:
    """One item's score. ``value`` is always in the unit the ``convention`` names.

    ``token_limit`` is the text encoder's limit (special tokens included) and ``tokens_dropped`` how
    many tokens of this item's prompt fell beyond it and were cut off; both are None for metrics whose
    text input has no such limit (or no text at all).
    """

    metric: str
    convention: str
    value: float
    extras: dict[str, Any] = field(default_factory=dict)  # e.g. PickScore's per-prompt probability
    tokens_dropped: int | None = None
    token_limit: int | None = None

    @property
    def truncated(self) -> bool:
        return bool(self.tokens_dropped)


class SpecNamed:
    """``name`` and ``convention`` read off the metric's :class:`MetricSpec`."""

    spec: MetricSpec

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def convention(self) -> str:
        return self.spec.convention


class Metric(SpecNamed, ABC):
    """A per-item metric. Subclasses implement :meth:`_score_batch`; chunking is done here."""

    default_batch_size: int = 32
    # Part of every result key: bump it when a change to what the model is fed (image transform,
    # prompt wording or tokenisation) changes the values, so that stored values are not reused.
    preprocessing_version: str = "unversioned"

    def weights_label(self) -> str:
        """Identifies the weights actually loaded (recorded in result keys). Metrics loaded from files
        return the resolved identity (hub commit or content fingerprint); this default is only the
        declared source."""
        return self.spec.weights.label if self.spec.weights else "none"

    def dtype_label(self) -> str:
        """The numeric type the model computes in (recorded in result keys); "none" without a model."""
        return "none"

    def score(
        self,
        prompts: Sequence[str] | None,
        images: Sequence[ImageInput],
        *,
        batch_size: int | None = None,
        device: str | None = None,
        dtype: str | None = None,
    ) -> list[MetricResult]:
        """Score items ``(prompts[i], images[i])``; images may be PIL images or file paths.

        Inputs are split into chunks of ``batch_size``; ``device``/``dtype`` move the model first.
        """
        images = list(images)
        if self.spec.input_kind == "image-sets":
            raise MetricUnavailable(f"{self.name} compares image sets; use its compute(generated, reference)")
        if self.spec.input_kind == "prompt+image":
            if prompts is None:
                raise MetricInputError(f"{self.name} needs one prompt per image; got no prompts")
            prompts = list(prompts)
            if len(prompts) != len(images):
                raise MetricInputError(f"{self.name}: {len(prompts)} prompts but {len(images)} images")
            for i, p in enumerate(prompts):
                if not isinstance(p, str) or not p.strip():
                    raise MetricInputError(f"{self.name}: item {i} has an empty or non-text prompt ({p!r})")
        else:
            prompts = list(prompts) if prompts is not None else [""] * len(images)
        size = batch_size or self.default_batch_size
        if size < 1:
            raise ValueError(f"batch_size must be >= 1, got {size}")
        if device is not None or dtype is not None:
            self.to(device=device, dtype=dtype)
        values: list[Any] = []
        for start in range(0, len(images), size):
            chunk_images = [load_rgb(img, start + j) for j, img in enumerate(images[start : start + size])]
            try:
                chunk_values = self._score_chunk(prompts[start : start + size], chunk_images)
            except MetricError as exc:
                raise MetricError(f"items {start}-{start + len(chunk_images) - 1}: {exc}") from exc
            if len(chunk_values) != len(chunk_images):
                raise MetricError(f"{self.name} returned {len(chunk_values)} values for {len(chunk_images)} items")
            values.extend(chunk_values)
        return self._finalize(prompts, values)

    def _score_chunk(self, prompts: list[str], images: list[Image.Image]) -> list[Any]:
        """Hook for torch metrics (out-of-memory back-off); plain metrics score the chunk directly."""
        return self._score_batch(prompts, images)

    @abstractmethod
    def _score_batch(self, prompts: list[str], images: list[Image.Image]) -> list[float] | list[MetricResult]:
        """Values (or whole results, when a metric has extras) for one chunk, in order, in the convention's unit."""

    def _finalize(self, prompts: list[str], values: list[Any]) -> list[MetricResult]:
        """Turn raw values into results; metrics that need the whole call (softmax per prompt) override."""
        return [v if isinstance(v, MetricResult) else MetricResult(self.name, self.convention, float(v))
                for v in values]

    def to(self, *, device: str | None = None, dtype: str | None = None) -> "Metric":  # noqa: ARG002
        return self


def load_rgb(item: ImageInput, index: int) -> Image.Image:
    """An RGB PIL image from a PIL image or a path; failures name the item."""
    from pixeljury.data.images import ImageLoadError, open_image, to_rgb

    if isinstance(item, Image.Image):
        return to_rgb(item)
    if isinstance(item, (str, Path)):
        try:
            img, _info = open_image(Path(item))
            return to_rgb(img)
        except ImageLoadError as exc:
            raise MetricInputError(f"item {index}: {exc}") from None
    raise MetricInputError(f"item {index}: expected a PIL image or a path, got {type(item).__name__}")


__all__ = [
    "Direction",
    "ImageInput",
    "InputKind",
    "Metric",
    "MetricError",
    "MetricInputError",
    "MetricResult",
    "MetricSpec",
    "MetricUnavailable",
    "SpecNamed",
    "WeightsRef",
    "load_rgb",
]
