"""CLIP-family metrics: CLIPScore (Hessel 2.5x, torchmetrics 100x), raw cosine, PickScore, HPSv2/v2.1.

All of them are ``scale * cos(image, text)`` with different checkpoints, scales, clamps and
preprocessing, so one class scores them all, batched; the loaders pick the official settings.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any, Literal

import torch
from PIL import Image

from pixeljury.metrics.base import MetricResult, MetricSpec, MetricUnavailable
from pixeljury.metrics.preprocess import ImageTransform, clip_center_crop, hpsv2_transform
from pixeljury.metrics.torch_base import TorchMetric, default_device
from pixeljury.metrics import weights as weights_mod

Scale = float | Literal["logit_scale"]
HESSEL_PREFIX = "A photo depicts "  # the official clipscore.py prepends this to every caption

# Part of every result key (see Metric.preprocessing_version): bump when the image transform or the
# prompt handling (prefix, tokenisation, truncation) of these conventions changes the values.
CLIP_PREPROCESSING_VERSION = "openai-clip-center-crop.1"  # CLIPScore, torchmetrics CLIPScore, clip, PickScore
HPSV2_PREPROCESSING_VERSION = "hpsv2-pad-square.1"


class ClipSimilarity(TorchMetric):
    """``scale * cos`` (optionally ``max(cos, 0)``) between CLIP image and text embeddings."""

    default_batch_size = 64

    def __init__(self, spec: MetricSpec, model: Any, tokenizer: Any, transform: ImageTransform, *,
                 scale: Scale, clamp_at_zero: bool, prefix: str = "", softmax_per_prompt: bool = False,
                 weights_label: str | None = None, preprocessing_version: str = CLIP_PREPROCESSING_VERSION,
                 device: str | None = None, dtype: str | None = None):
        self.spec = spec
        self.preprocessing_version = preprocessing_version
        self.model = model
        self.tokenizer = tokenizer
        self.transform = transform
        self.scale = scale
        self.clamp_at_zero = clamp_at_zero
        self.prefix = prefix
        self.softmax_per_prompt = softmax_per_prompt
        self._weights_label = weights_label
        self.modules = [model]
        self.context_length = int(model.config.text_config.max_position_embeddings)
        self.to(device=device or default_device(), dtype=dtype or "float32")

    def image_embeddings(self, images: list[Image.Image]) -> torch.Tensor:
        """L2-normalised projected image embeddings (float32)."""
        pixels = self.pixel_batch([self.transform(img) for img in images])
        feats = self.model.get_image_features(pixel_values=pixels)
        feats = getattr(feats, "pooler_output", feats).float()
        return feats / feats.norm(dim=-1, keepdim=True)

    def text_embeddings(self, prompts: list[str]) -> torch.Tensor:
        """L2-normalised projected text embeddings; prompts are truncated to the context length.

        Each distinct prompt is encoded once: benchmarks score several images per prompt."""
        unique = list(dict.fromkeys(prompts))
        tokens = self.tokenizer([self.prefix + p for p in unique], padding="max_length", truncation=True,
                                max_length=self.context_length, return_tensors="pt")
        feats = self.model.get_text_features(input_ids=tokens["input_ids"].to(self.device),
                                             attention_mask=tokens["attention_mask"].to(self.device))
        feats = getattr(feats, "pooler_output", feats).float()
        feats = feats / feats.norm(dim=-1, keepdim=True)
        position = {p: i for i, p in enumerate(unique)}
        return feats[torch.tensor([position[p] for p in prompts], device=feats.device)]

    def tokens_dropped(self, prompts: list[str]) -> list[int]:
        """How many tokens of each prompt (prefix and start/end tokens included) lie beyond the context
        length: the tokenizer's truncation cuts exactly these off the end, keeping the end token."""
        unique = list(dict.fromkeys(prompts))
        # verbose=False: the over-length warning is what this count replaces.
        ids = self.tokenizer([self.prefix + p for p in unique], truncation=False, verbose=False)["input_ids"]
        dropped = {p: max(0, len(tokens) - self.context_length) for p, tokens in zip(unique, ids)}
        return [dropped[p] for p in prompts]

    def scale_value(self) -> float:
        if self.scale == "logit_scale":
            return float(self.model.logit_scale.float().exp())
        return float(self.scale)

    def _score_batch(self, prompts: list[str], images: list[Image.Image]) -> list[MetricResult]:
        cos = (self.image_embeddings(images) * self.text_embeddings(prompts)).sum(dim=-1)
        if self.clamp_at_zero:
            cos = cos.clamp(min=0)
        values = (self.scale_value() * cos).tolist()
        return [MetricResult(self.name, self.convention, value, tokens_dropped=dropped,
                             token_limit=self.context_length)
                for value, dropped in zip(values, self.tokens_dropped(prompts))]

    def _finalize(self, prompts: list[str], values: list[MetricResult]) -> list[MetricResult]:
        results = super()._finalize(prompts, values)
        if self.softmax_per_prompt:
            # PickScore's probabilities: softmax of the scaled scores over the images sharing a prompt.
            groups: dict[str, list[int]] = defaultdict(list)
            for i, prompt in enumerate(prompts):
                groups[prompt].append(i)
            for members in groups.values():
                top = max(results[i].value for i in members)
                weights = [math.exp(results[i].value - top) for i in members]
                total = sum(weights)
                for i, w in zip(members, weights):
                    results[i].extras["probability"] = w / total
                    results[i].extras["group_size"] = len(members)
        return results


# -- loading --------------------------------------------------------------------------------------

def _load_hf_clip(path: Path, tokenizer_path: Path | None = None) -> tuple[Any, Any]:
    from transformers import AutoTokenizer, CLIPModel

    try:
        model = CLIPModel.from_pretrained(path)
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_path or path)
    except (OSError, ValueError) as exc:
        raise MetricUnavailable(f"cannot load a CLIP model from {path}: {exc}") from exc
    return model.eval(), tokenizer


def _image_size(model: Any) -> int:
    return int(model.config.vision_config.image_size)


def _clip_metric(spec: MetricSpec, *, scale: Scale, clamp: bool, prefix: str = "", weights: Any = None,
                 revision: str | None = None, device: str | None = None, dtype: str | None = None,
                 softmax: bool = False) -> ClipSimilarity:
    main = weights_mod.resolve_weights(spec.weights, weights, revision=revision)
    # The default weights of some conventions (PickScore) keep their tokenizer in a companion repository;
    # weights given by the caller are expected to carry their own.
    companion = spec.weights.companion() if weights is None and spec.weights else None
    tokenizer_source = weights_mod.resolve_weights(companion) if companion else None
    model, tokenizer = _load_hf_clip(main.path, tokenizer_source.path if tokenizer_source else None)
    label = weights_mod.combined_identity(main.identity,
                                          tokenizer=tokenizer_source.identity if tokenizer_source else None)
    return ClipSimilarity(spec, model, tokenizer, clip_center_crop(_image_size(model)), scale=scale,
                          clamp_at_zero=clamp, prefix=prefix, softmax_per_prompt=softmax, weights_label=label,
                          preprocessing_version=CLIP_PREPROCESSING_VERSION, device=device, dtype=dtype)


def load_clipscore_hessel(spec: MetricSpec, **kw: Any) -> ClipSimilarity:
    return _clip_metric(spec, scale=2.5, clamp=True, prefix=HESSEL_PREFIX, **kw)


def load_clipscore_torchmetrics(spec: MetricSpec, **kw: Any) -> ClipSimilarity:
    return _clip_metric(spec, scale=100.0, clamp=True, **kw)


def load_clip_cosine(spec: MetricSpec, **kw: Any) -> ClipSimilarity:
    return _clip_metric(spec, scale=1.0, clamp=False, **kw)


def load_pickscore(spec: MetricSpec, **kw: Any) -> ClipSimilarity:
    return _clip_metric(spec, scale="logit_scale", clamp=False, softmax=True, **kw)


def load_hpsv2(spec: MetricSpec, *, weights: Any = None, revision: str | None = None, tokenizer: Any = None,
               device: str | None = None, dtype: str | None = None) -> ClipSimilarity:
    """HPSv2/v2.1: the open_clip ViT-H-14 checkpoint converted to a CLIPModel on load.

    ``weights``: a .pt checkpoint path or hub id; ``tokenizer``: a tokenizer object or path (default:
    the LAION ViT-H-14 tokenizer, the same BPE as open_clip's)."""
    from transformers import AutoTokenizer

    from pixeljury.metrics.openclip_convert import KNOWN_HEADS, clip_model_from_openclip

    checkpoint = weights_mod.resolve_weights(spec.weights, weights, revision=revision)
    try:
        state = torch.load(checkpoint.path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises RuntimeError/UnpicklingError/EOFError for bad files
        raise MetricUnavailable(f"cannot read HPSv2 checkpoint {checkpoint.path}: {exc}") from exc
    vision_heads, text_heads = KNOWN_HEADS["ViT-H-14"]
    model = clip_model_from_openclip(state, vision_heads=vision_heads, text_heads=text_heads)
    if tokenizer is None or isinstance(tokenizer, (str, Path)):
        assert spec.weights is not None
        source = weights_mod.resolve_weights(spec.weights.companion(), tokenizer)
        tokenizer, tokenizer_label = AutoTokenizer.from_pretrained(source.path), source.identity
    else:
        tokenizer_label = weights_mod.tokenizer_identity(tokenizer)
    scale: Scale = "logit_scale" if spec.convention.endswith("x-logit-scale") else 1.0
    return ClipSimilarity(spec, model, tokenizer, hpsv2_transform(_image_size(model)), scale=scale,
                          clamp_at_zero=False,
                          weights_label=weights_mod.combined_identity(checkpoint.identity, tokenizer=tokenizer_label),
                          preprocessing_version=HPSV2_PREPROCESSING_VERSION, device=device, dtype=dtype)


def hpsv2_from_openclip_state(spec: MetricSpec, state: dict[str, torch.Tensor], tokenizer: Any, *,
                              vision_heads: int, text_heads: int, **kw: Any) -> ClipSimilarity:
    """HPSv2 scoring from an in-memory open_clip state dict (any size; used by tests and benchmarks)."""
    from pixeljury.metrics.openclip_convert import clip_model_from_openclip

    model = clip_model_from_openclip(state, vision_heads=vision_heads, text_heads=text_heads)
    scale: Scale = "logit_scale" if spec.convention.endswith("x-logit-scale") else 1.0
    return ClipSimilarity(spec, model, tokenizer, hpsv2_transform(_image_size(model)), scale=scale,
                          clamp_at_zero=False, preprocessing_version=HPSV2_PREPROCESSING_VERSION, **kw)


__all__ = [
    "CLIP_PREPROCESSING_VERSION", "HESSEL_PREFIX", "HPSV2_PREPROCESSING_VERSION", "ClipSimilarity", "hpsv2_from_openclip_state", "load_clip_cosine", "load_clipscore_hessel",
    "load_clipscore_torchmetrics", "load_hpsv2", "load_pickscore",
]
