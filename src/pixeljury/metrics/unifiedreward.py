"""UnifiedReward 2.0 pointwise image scoring through the generative engine interface.

The reward model (a Qwen-VL fine-tune) writes three 1-5 ratings as text; they are parsed and
averaged. Text that does not carry all three ratings is an error for that item, never a score.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from PIL import Image

from pixeljury.engines.base import ChatRequest, Engine, GenerationParams, ImagePart, TextPart
from pixeljury.metrics.base import Metric, MetricError, MetricResult, MetricSpec, MetricUnavailable

# The prompt UnifiedReward 2.0 was trained with for pointwise image assessment (a protocol constant:
# the model's ratings are only meaningful with this wording).
POINTWISE_TEMPLATE = (
    "You are presented with a generated image and its associated text caption. "
    "Your task is to analyze the image across multiple dimensions in relation to the caption. Specifically:\n"
    "Provide overall assessments for the image along the following axes (each rated from 1 to 5):\n"
    "- Alignment Score: How well the image matches the caption in terms of content.\n"
    "- Coherence Score: How logically consistent the image is (absence of visual glitches, object distortions, etc.).\n"
    "- Style Score: How aesthetically appealing the image looks, regardless of caption accuracy.\n\n"
    "Output your evaluation using the format below:\n\n"
    "Alignment Score (1-5): X\n"
    "Coherence Score (1-5): Y\n"
    "Style Score (1-5): Z\n\n"
    "Your task is provided as follows:\n"
    "Text Caption: [{prompt}]"
)
AXES = ("alignment", "coherence", "style")
_RATING = {axis: re.compile(rf"{axis}\s+score\s*\(\s*1\s*-\s*5\s*\)\s*:\s*\**\s*(\d+(?:\.\d+)?)", re.IGNORECASE)
           for axis in AXES}
# Part of every result key: bump when the prompt wording or the way the image is passed changes.
PREPROCESSING_VERSION = "unifiedreward-2.0-pointwise-prompt.1"
DEFAULT_PARAMS = GenerationParams(max_new_tokens=256, temperature=0.0, top_k=1, repetition_penalty=1.0,
                                  enable_thinking=False)


def parse_ratings(text: str) -> dict[str, float]:
    """The three ratings; raises ValueError naming what is missing or out of range. The last match
    of each axis wins (models sometimes restate the format before answering)."""
    ratings: dict[str, float] = {}
    for axis, pattern in _RATING.items():
        found = pattern.findall(text or "")
        if not found:
            raise ValueError(f"no '{axis.title()} Score (1-5): N' in the output")
        value = float(found[-1])
        if not 1.0 <= value <= 5.0:
            raise ValueError(f"{axis} score {value} is outside 1-5")
        ratings[axis] = value
    return ratings


def _image_sha256(img: Image.Image) -> str:
    return hashlib.sha256(f"{img.mode}{img.size}".encode() + img.tobytes()).hexdigest()


class UnifiedReward(Metric):
    default_batch_size = 16
    preprocessing_version = PREPROCESSING_VERSION

    def __init__(self, spec: MetricSpec, engine: Engine, params: GenerationParams = DEFAULT_PARAMS):
        self.spec = spec
        self.engine = engine
        self.params = params
        self.default_batch_size = engine.preferred_batch_size

    def weights_label(self) -> str:
        return f"{self.engine.model_id}@{self.engine.revision or 'unpinned'}"

    def dtype_label(self) -> str:
        # The engine owns the model; engines that load it in-process say in which dtype.
        return str(getattr(self.engine, "dtype", None) or "engine-unreported")

    def _score_batch(self, prompts: list[str], images: list[Image.Image]) -> list[MetricResult]:
        requests = [
            ChatRequest(request_id=str(i), system="",
                        user=[ImagePart(img, _image_sha256(img)), TextPart(POINTWISE_TEMPLATE.format(prompt=p))])
            for i, (p, img) in enumerate(zip(prompts, images))
        ]
        generations = self.engine.generate(requests, self.params)
        results = []
        for i, gen in enumerate(generations):
            try:
                ratings = parse_ratings(gen.text)
            except ValueError as exc:
                raise MetricError(f"{self.name}: chunk item {i} (prompt {prompts[i]!r}): {exc}; "
                                  f"finish_reason={gen.finish_reason}; output: {gen.text[:200]!r}") from None
            value = sum(ratings.values()) / len(ratings)
            results.append(MetricResult(self.name, self.convention, value, {**ratings, "raw_text": gen.text}))
        return results


def load_unifiedreward(spec: MetricSpec, *, engine: Engine | None = None, params: GenerationParams | None = None,
                       **_ignored: Any) -> UnifiedReward:
    if engine is None:
        raise MetricUnavailable(
            "UnifiedReward generates text: pass engine=<a pixeljury Engine serving "
            f"{spec.weights.repo_id if spec.weights else 'the model'}> (transformers, vLLM or OpenAI-compatible)"
        )
    return UnifiedReward(spec, engine, params or DEFAULT_PARAMS)


__all__ = ["POINTWISE_TEMPLATE", "PREPROCESSING_VERSION", "UnifiedReward", "load_unifiedreward", "parse_ratings"]
