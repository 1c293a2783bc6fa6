"""Shared machinery of torch metrics: device/dtype placement, inference mode, out-of-memory back-off."""

from __future__ import annotations

import torch
from PIL import Image

from pixeljury.metrics.base import Metric

_DTYPES = {
    "float32": torch.float32, "fp32": torch.float32,
    "float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
}


def parse_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    try:
        return _DTYPES[dtype.lower()]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r}; use one of {', '.join(sorted(_DTYPES))}") from None


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


class TorchMetric(Metric):
    """A metric backed by ``torch.nn.Module`` s listed in :attr:`modules`.

    Scoring runs under ``torch.inference_mode``; a CUDA out-of-memory error halves the chunk and
    retries (down to one item, which then re-raises), so the caller's batch size is a ceiling.
    """

    modules: list[torch.nn.Module]
    device: torch.device = torch.device("cpu")
    dtype: torch.dtype = torch.float32
    # The resolved identity of the files the loader read (see weights.resolve_weights). A metric
    # built from in-memory modules has none, and says so rather than naming the default repository.
    _weights_label: str | None = None

    def weights_label(self) -> str:
        return self._weights_label or "in-memory:unidentified"

    def dtype_label(self) -> str:
        return str(self.dtype).removeprefix("torch.")

    def to(self, *, device: str | None = None, dtype: str | torch.dtype | None = None) -> "TorchMetric":
        if device is not None:
            self.device = torch.device(device)
        resolved = parse_dtype(dtype)
        if resolved is not None:
            self.dtype = resolved
        for module in self.modules:
            module.to(device=self.device, dtype=self.dtype)
            module.eval()
        return self

    def _score_chunk(self, prompts: list[str], images: list[Image.Image]) -> list[float]:
        with torch.inference_mode():
            try:
                return self._score_batch(prompts, images)
            except torch.cuda.OutOfMemoryError:
                if len(images) == 1:
                    raise
            torch.cuda.empty_cache()
            half = len(images) // 2
            return self._score_chunk(prompts[:half], images[:half]) + self._score_chunk(prompts[half:], images[half:])

    def pixel_batch(self, tensors: list[torch.Tensor]) -> torch.Tensor:
        """Stack preprocessed images and move them where the model is."""
        return torch.stack(tensors).to(device=self.device, dtype=self.dtype)


__all__ = ["TorchMetric", "default_device", "parse_dtype"]
