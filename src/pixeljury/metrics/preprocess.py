"""Image preprocessing of the CLIP-family metrics, as their official packages do it.

All transforms take RGB PIL images and return normalised float tensors (3, size, size).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from PIL import Image
from torchvision.transforms import functional as TF
from torchvision.transforms import InterpolationMode

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

ImageTransform = Callable[[Image.Image], torch.Tensor]


def clip_center_crop(size: int, mean: tuple[float, ...] = OPENAI_CLIP_MEAN,
                     std: tuple[float, ...] = OPENAI_CLIP_STD) -> ImageTransform:
    """OpenAI CLIP's ``_transform``: shorter side to ``size`` (PIL bicubic, antialiased), centre crop,
    [0,1] tensor, normalise. HF's CLIPImageProcessor does the same resize; CLIPScore (Hessel),
    torchmetrics, PickScore and the LAION aesthetic predictor all feed CLIP this way."""

    def transform(img: Image.Image) -> torch.Tensor:
        resized = TF.resize(img, size, interpolation=InterpolationMode.BICUBIC)
        cropped = TF.center_crop(resized, [size, size])
        return TF.normalize(TF.to_tensor(cropped), mean, std)

    return transform


def pad_to_square(img: Image.Image, fill: tuple[int, int, int] = (0, 0, 0)) -> Image.Image:
    """Centre ``img`` on a square canvas of its longer side (odd remainders go right/bottom)."""
    width, height = img.size
    side = max(width, height)
    if width == height:
        return img
    canvas = Image.new("RGB", (side, side), fill)
    canvas.paste(img, ((side - width) // 2, (side - height) // 2))
    return canvas


def hpsv2_transform(size: int, mean: tuple[float, ...] = OPENAI_CLIP_MEAN,
                    std: tuple[float, ...] = OPENAI_CLIP_STD) -> ImageTransform:
    """HPSv2's evaluation transform: the whole image is kept (black padding to a square), then
    resized to ``size`` x ``size`` with bicubic; no crop, so wide images lose nothing at the sides."""

    def transform(img: Image.Image) -> torch.Tensor:
        square = pad_to_square(img)
        resized = TF.resize(square, [size, size], interpolation=InterpolationMode.BICUBIC)
        return TF.normalize(TF.to_tensor(resized), mean, std)

    return transform


__all__ = ["OPENAI_CLIP_MEAN", "OPENAI_CLIP_STD", "clip_center_crop", "hpsv2_transform", "pad_to_square"]
