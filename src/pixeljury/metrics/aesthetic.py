"""LAION improved aesthetic predictor: an MLP on the L2-normalised OpenAI CLIP ViT-L/14 image embedding."""

from __future__ import annotations

from typing import Any

import torch
from PIL import Image

from pixeljury.metrics import weights as weights_mod
from pixeljury.metrics.base import MetricSpec, MetricUnavailable
from pixeljury.metrics.heads import RewardMLP, load_head
from pixeljury.metrics.preprocess import clip_center_crop
from pixeljury.metrics.torch_base import TorchMetric, default_device

# Part of every result key: bump when the image transform or the embedding normalisation changes values.
PREPROCESSING_VERSION = "laion-aesthetic-clip-center-crop.1"


class AestheticPredictor(TorchMetric):
    default_batch_size = 64
    preprocessing_version = PREPROCESSING_VERSION

    def __init__(self, spec: MetricSpec, clip_model: Any, head: RewardMLP, *, weights_label: str | None = None,
                 device: str | None = None, dtype: str | None = None):
        self.spec = spec
        self.clip = clip_model
        self.head = head
        self.transform = clip_center_crop(int(clip_model.config.vision_config.image_size))
        self._weights_label = weights_label
        self.modules = [clip_model, head]
        self.to(device=device or default_device(), dtype=dtype or "float32")

    def image_embeddings(self, images: list[Image.Image]) -> torch.Tensor:
        pixels = self.pixel_batch([self.transform(img) for img in images])
        feats = self.clip.get_image_features(pixel_values=pixels)
        feats = getattr(feats, "pooler_output", feats).float()
        return feats / feats.norm(dim=-1, keepdim=True)

    def _score_batch(self, prompts: list[str], images: list[Image.Image]) -> list[float]:
        embeds = self.image_embeddings(images)
        # The head ran in float32 on normalised float32 embeddings when it was trained.
        head_dtype = next(self.head.parameters()).dtype
        return self.head(embeds.to(head_dtype)).float().squeeze(-1).tolist()


def load_aesthetic(spec: MetricSpec, *, weights: Any = None, clip_weights: Any = None, revision: str | None = None,
                   device: str | None = None, dtype: str | None = None) -> AestheticPredictor:
    """``weights``: the head's .pth (default: the original sac+logos+ava1-l14-linearMSE.pth);
    ``clip_weights``: the CLIP ViT-L/14 folder or hub id (default openai/clip-vit-large-patch14)."""
    from transformers import CLIPModel

    assert spec.weights is not None
    head_source = weights_mod.resolve_weights(spec.weights, weights, revision=revision)
    clip_source = weights_mod.resolve_weights(spec.weights.companion(), clip_weights)
    try:
        state = torch.load(head_source.path, map_location="cpu", weights_only=True)
        clip_model = CLIPModel.from_pretrained(clip_source.path).eval()
    except (OSError, RuntimeError, ValueError) as exc:
        raise MetricUnavailable(
            f"cannot load the aesthetic predictor ({head_source.path}, {clip_source.path}): {exc}") from exc
    head = load_head(RewardMLP(int(clip_model.config.projection_dim)), state)
    label = weights_mod.combined_identity(head_source.identity, clip=clip_source.identity)
    return AestheticPredictor(spec, clip_model, head, weights_label=label, device=device, dtype=dtype)


__all__ = ["PREPROCESSING_VERSION", "AestheticPredictor", "load_aesthetic"]
