"""Q-Judger as an :class:`~pixeljury.core.evaluator.Evaluator`: one chat request per (image, L1
dimension), read into that dimension's scores; results keyed by everything that determines them.

A sample's dimensions are in ``sample.metadata["dimensions"]`` (a benchmark row's own, or those
asked for rows without a benchmark ID). Images are planned unloaded and loaded when sent, with the
official resize; a file whose bytes changed since it was hashed is refused
(:class:`~pixeljury.data.images.ImageChanged`),
so an answer is never stored under another image's key.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

from PIL import Image

from pixeljury.core.evaluator import (
    Ask, Evaluator, EvaluatorIdentity, ImageRef, Reading, Sample, StoredForm, Verdict, VerdictMeans, content_key,
)
from pixeljury.core.requests import Generation, GenerationParams
from pixeljury.data.images import ImageChanged, load_for_judge
from pixeljury.protocols import qjudger
from pixeljury.protocols.qjudger_schema import dimension_schema
from pixeljury.rubric.model import Rubric

# "hfirst": LANCZOS with the horizontal pass first, as under upstream's Pillow (results resized
# otherwise, by pixeljury before 0.1.1 under Pillow 13, are not reused).
PREPROCESS_PREFIX = "rgb-lanczos-hfirst-1024-"


def preprocess_label(keep_aspect: bool) -> str:
    return PREPROCESS_PREFIX + ("keep-aspect" if keep_aspect else "square")


@dataclass(frozen=True)
class KeyContext:
    """Everything besides the image, prompt and dimension that determines a result."""

    judge_model: str
    judge_revision: str | None
    rubric_sha256: str
    params: GenerationParams
    preprocess: str  # e.g. "rgb-lanczos-hfirst-1024-square" (parity) or "...-keep-aspect"

    def key_fields(self, image_sha256: str, prompt: str, dimension: str) -> dict[str, Any]:
        return {**self._fixed_fields, "image_sha256": image_sha256, "prompt": prompt, "dimension": dimension}

    def key(self, image_sha256: str, prompt: str, dimension: str) -> str:
        return content_key(self.key_fields(image_sha256, prompt, dimension))

    @cached_property
    def _fixed_fields(self) -> dict[str, Any]:  # the same for every request of a run: built once
        return {
            "protocol": qjudger.PROTOCOL_ID,
            "protocol_version": qjudger.PROTOCOL_VERSION,
            "judge_model": self.judge_model,
            "judge_revision": self.judge_revision,
            "rubric_sha256": self.rubric_sha256,
            "params": self.params.as_dict(),
            "preprocess": self.preprocess,
        }


class QJudger(Evaluator):
    """The Qwen-Image-Bench judge protocol with ``rubric``, keyed by ``ctx`` (judge, rubric, settings)."""

    def __init__(self, rubric: Rubric, ctx: KeyContext, *, keep_aspect: bool = False):
        self.rubric, self.ctx, self.keep_aspect = rubric, ctx, keep_aspect
        self.params = ctx.params
        self.identity = EvaluatorIdentity(qjudger.PROTOCOL_ID, qjudger.PROTOCOL_VERSION, {
            "rubric_sha256": rubric.sha256, "preprocess": ctx.preprocess})

    def plan(self, sample: Sample) -> list[Ask]:
        return [self.ask(sample, dim) for dim in sample.metadata.get("dimensions", ())]

    def ask(self, sample: Sample, dimension: str, key: str | None = None) -> Ask:
        """The request for one dimension; ``key`` when the caller already has it (the planner does)."""
        image = sample.images[0]
        key = key or self.ctx.key(image.sha256, sample.prompt, dimension)
        # The image part names the image without holding it (None): the runner loads it when sent.
        request = qjudger.build_request(self.rubric, sample.prompt, dimension, None, image.sha256,  # type: ignore[arg-type]
                                        f"{dimension}:{key}")
        if self.params.json_schema_constrained:
            request.json_schema = dimension_schema(self.rubric, dimension)
        return Ask(dimension, request)

    def key_fields(self, sample: Sample, ask: Ask, model: str | None = None) -> dict[str, Any]:
        """The run's key context names the judge (``model`` is not needed: it is the same one)."""
        return self.ctx.key_fields(sample.images[0].sha256, sample.prompt, ask.name)

    def ask_key(self, sample: Sample, ask: Ask, model: str | None = None) -> str:
        return content_key(self.key_fields(sample, ask))

    def load_image(self, ref: ImageRef) -> Image.Image:
        image, info = load_for_judge(ref.path, keep_aspect=self.keep_aspect)
        if info.sha256 != ref.sha256:
            raise ImageChanged(ref.path, info.sha256)
        return image

    def read(self, sample: Sample, ask: Ask, answer: Any) -> Reading:
        assert isinstance(answer, Generation)
        result = qjudger.parse(answer, ask.name)
        status = {"all_na": "not_applicable"}.get(result.status, result.status)
        value = result.scores.l1 if result.scores is not None else None
        return Reading([Verdict(sample.sample_id, ask.name, status, value, result.as_dict(), result.error)])  # type: ignore[arg-type]

    def stored_form(self, verdict: Verdict) -> StoredForm:
        return StoredForm(verdict.detail["status"], verdict.detail, verdict.error)

    def accumulator(self) -> VerdictMeans:
        """Per dimension: the mean L1 score and the status counts (the benchmark's per-model tables
        are built from the store: :mod:`pixeljury.runs.bench`)."""
        return VerdictMeans()


__all__ = ["KeyContext", "PREPROCESS_PREFIX", "QJudger", "preprocess_label"]
