"""FID and KID over image sets: clean-fid resizing, float64 statistics, cached reference statistics.

Resize modes (part of the convention, because they change the number):
  * ``clean``: each channel resized as a float32 PIL image with bicubic (antialiased), no uint8
    round trip -- clean-fid's default.
  * ``legacy-pytorch``: torch bilinear interpolation without antialiasing, as pytorch-fid does inside
    its Inception; aliasing makes it differ from ``clean``. Kept only to compare with older papers.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import torch
from PIL import Image

from pixeljury.metrics import weights as weights_mod
from pixeljury.metrics.base import ImageInput, MetricInputError, MetricResult, MetricSpec, MetricUnavailable, load_rgb
from pixeljury.metrics.fid_math import (
    FeatureAccumulator,
    FeatureKey,
    feature_accumulator,
    frechet_distance,
    kernel_distance,
    statistics,
)
from pixeljury.metrics.torch_base import default_device

ResizeMode = Literal["clean", "legacy-pytorch"]
STATS_VERSION = "1"  # bump when anything that changes cached statistics changes
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


class FeatureExtractor(Protocol):
    name: str
    version: str
    resolution: int

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        """(N, 3, R, R) float in [0, 255] -> (N, D) features."""


def resize_for_extractor(img: Image.Image, size: int, mode: ResizeMode) -> np.ndarray:
    """(size, size, 3) float32 in [0, 255]."""
    if mode == "clean":
        channels = [
            np.asarray(Image.fromarray(np.asarray(img.getchannel(c), dtype=np.float32), mode="F")
                       .resize((size, size), Image.Resampling.BICUBIC))
            for c in range(3)
        ]
        return np.clip(np.stack(channels, axis=-1), 0, 255)  # clean-fid clips bicubic overshoot too
    if mode == "legacy-pytorch":
        tensor = torch.from_numpy(np.asarray(img, dtype=np.float32)).permute(2, 0, 1)[None]
        resized = torch.nn.functional.interpolate(tensor, size=(size, size), mode="bilinear", align_corners=False)
        return resized[0].permute(1, 2, 0).numpy()
    raise ValueError(f"unknown resize mode {mode!r}; use 'clean' or 'legacy-pytorch'")


class CleanFIDInception:
    """clean-fid's TorchScript port of the TF Inception (2015-12-05): 2048-d pool3 features.

    Takes [0, 255] float images at 299x299 and normalises them itself."""

    name = "inception-v3-tf-2015-12-05"
    version = "clean-fid-0.1.0"
    resolution = 299

    def __init__(self, path: Path, device: str):
        try:
            self.module = torch.jit.load(str(path), map_location=device).eval()
        except (RuntimeError, ValueError) as exc:
            raise MetricUnavailable(f"{path} is not clean-fid's TorchScript Inception: {exc}") from exc
        self.device = device

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        return self.module(batch.to(self.device), return_features=True).reshape(len(batch), -1)


def load_inception(weights: Any = None, device: str | None = None) -> CleanFIDInception:
    from pixeljury.metrics.registry import get_spec

    path = weights_mod.resolve(get_spec("fid").weights, weights)
    return CleanFIDInception(path, device or default_device())


def expand_images(images: str | Path | Sequence[ImageInput]) -> list[ImageInput]:
    """A directory (its image files, sorted) or a sequence of paths / PIL images."""
    if isinstance(images, (str, Path)):
        folder = Path(images)
        if not folder.is_dir():
            raise MetricInputError(f"{folder} is not a directory of images")
        found = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not found:
            raise MetricInputError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under {folder}")
        return list(found)
    return list(images)


def image_set_hash(images: Sequence[ImageInput]) -> str:
    """Order-independent content hash of a set: sha256 of the sorted per-image hashes."""
    from pixeljury.data.images import sha256_file

    digests = []
    for i, item in enumerate(images):
        if isinstance(item, Image.Image):
            digests.append(hashlib.sha256(f"{item.mode}{item.size}".encode() + item.tobytes()).hexdigest())
        elif Path(item).is_file():
            digests.append(sha256_file(Path(item)))
        else:
            raise MetricInputError(f"reference item {i}: {item} is not a file")
    return hashlib.sha256("\n".join(sorted(digests)).encode()).hexdigest()


def extract_features(images: Sequence[ImageInput], extractor: FeatureExtractor, mode: ResizeMode,
                     batch_size: int = 64) -> np.ndarray:
    rows: list[np.ndarray] = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            chunk = [resize_for_extractor(load_rgb(img, start + j), extractor.resolution, mode)
                     for j, img in enumerate(images[start : start + batch_size])]
            batch = torch.from_numpy(np.stack(chunk)).permute(0, 3, 1, 2).contiguous()
            rows.append(extractor(batch).double().cpu().numpy())
    return np.concatenate(rows)


class ReferenceStatsCache:
    """``<cache>/fid-stats/<key>.npz`` holding mu, sigma (float64) and the features (for KID)."""

    def __init__(self, root: Path | None = None):
        self.root = root or weights_mod.cache_dir() / "fid-stats"

    @staticmethod
    def key(set_hash: str, resolution: int, mode: str, extractor: FeatureExtractor) -> str:
        fields = {"set": set_hash, "resolution": resolution, "mode": mode, "extractor": extractor.name,
                  "extractor_version": extractor.version, "stats_version": STATS_VERSION}
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:32]

    def load(self, key: str) -> np.ndarray | None:
        path = self.root / f"{key}.npz"
        if not path.is_file():
            return None
        with np.load(path) as data:
            return data["features"]

    def save(self, key: str, features: np.ndarray) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        mu, sigma = statistics(features)
        partial = self.root / f"{key}.tmp.npz"
        np.savez(partial, features=features, mu=mu, sigma=sigma)
        final = self.root / f"{key}.npz"
        partial.replace(final)  # atomic: a crash never leaves a half-written cache entry
        return final


class SetDistance:
    """FID or KID between a generated set and a reference set."""

    def __init__(self, spec: MetricSpec, extractor: FeatureExtractor, *, cache: ReferenceStatsCache | None = None,
                 num_subsets: int = 100, subset_size: int = 1000, seed: int = 0):
        self.spec = spec
        self.extractor = extractor
        self.mode: ResizeMode = "legacy-pytorch" if spec.convention.endswith("legacy-pytorch") else "clean"
        self.cache = cache or ReferenceStatsCache()
        self.num_subsets, self.subset_size, self.seed = num_subsets, subset_size, seed

    def reference_features(self, reference: Sequence[ImageInput], batch_size: int) -> tuple[np.ndarray, bool]:
        key = self.cache.key(image_set_hash(reference), self.extractor.resolution, self.mode, self.extractor)
        cached = self.cache.load(key)
        if cached is not None:
            return cached, True
        features = extract_features(reference, self.extractor, self.mode, batch_size)
        self.cache.save(key, features)
        return features, False

    def accumulate(self, images: Sequence[ImageInput], *, keys: Sequence[FeatureKey] | None = None,
                   batch_size: int = 64, into: FeatureAccumulator | None = None) -> FeatureAccumulator:
        """Features of a shard of a set, keyed by ``keys`` (default: positions 0..N-1), added to
        ``into`` or a new accumulator. Give shards of one set disjoint keys (e.g. each item's position
        in the whole set); merged, they give the FID of the whole set bit for bit (see
        ``FeatureAccumulator``)."""
        items = list(images)
        keys = list(range(len(items))) if keys is None else list(keys)
        if len(keys) != len(items):
            raise ValueError(f"{len(keys)} keys for {len(items)} images")
        acc = into if into is not None else FeatureAccumulator()
        return acc.add_batch(keys, extract_features(items, self.extractor, self.mode, batch_size)) if items else acc

    def compute_from(self, generated: FeatureAccumulator, reference: FeatureAccumulator,
                     extras: dict[str, Any] | None = None) -> MetricResult:
        """FID or KID from two feature accumulators (whole sets, or shards merged)."""
        gen_feats, ref_feats = generated.features(), reference.features()
        extras = {"n_generated": len(generated), "n_reference": len(reference), **(extras or {}),
                  "extractor": self.extractor.name, "resize": self.mode}
        if self.spec.name == "kid":
            value, std = kernel_distance(gen_feats, ref_feats, num_subsets=self.num_subsets,
                                         subset_size=self.subset_size, seed=self.seed)
            extras.update(std=std, seed=self.seed, num_subsets=self.num_subsets)
        else:
            value = frechet_distance(*statistics(gen_feats), *statistics(ref_feats))
        return MetricResult(self.spec.name, self.spec.convention, value, extras)

    def compute(self, generated: str | Path | Sequence[ImageInput], reference: str | Path | Sequence[ImageInput],
                *, batch_size: int = 64) -> MetricResult:
        gen_items, ref_items = expand_images(generated), expand_images(reference)
        ref_feats, hit = self.reference_features(ref_items, batch_size)
        generated_acc = self.accumulate(gen_items, batch_size=batch_size)
        return self.compute_from(generated_acc, feature_accumulator(ref_feats),
                                 {"reference_cache": "hit" if hit else "miss"})


def load_fid(spec: MetricSpec, *, weights: Any = None, extractor: FeatureExtractor | None = None,
             device: str | None = None, cache_dir: str | Path | None = None, **kw: Any) -> SetDistance:
    cache = ReferenceStatsCache(Path(cache_dir)) if cache_dir else None
    return SetDistance(spec, extractor or load_inception(weights, device), cache=cache, **kw)


load_kid = load_fid

__all__ = ["CleanFIDInception", "FeatureAccumulator", "ReferenceStatsCache", "SetDistance", "extract_features",
           "image_set_hash", "load_fid", "load_inception", "load_kid", "resize_for_extractor"]
