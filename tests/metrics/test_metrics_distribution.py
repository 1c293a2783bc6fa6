from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch
from PIL import Image

from metrics_tiny import photo_like, random_images
from pixeljury.metrics.distribution import ReferenceStatsCache, SetDistance, resize_for_extractor
from pixeljury.metrics.fid_math import frechet_distance, kernel_distance, statistics
from pixeljury.metrics.registry import get_spec, load_metric


def _scipy_fid(f1: np.ndarray, f2: np.ndarray) -> float:
    mu1, mu2 = f1.mean(0), f2.mean(0)
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def test_fid_matches_scipy_sqrtm_in_float64():
    rng = np.random.default_rng(0)
    f1 = rng.normal(size=(400, 32))
    f2 = rng.normal(loc=0.3, scale=1.4, size=(300, 32)) @ rng.normal(size=(32, 32)) * 0.5
    ours = frechet_distance(*statistics(f1), *statistics(f2))
    assert ours == pytest.approx(_scipy_fid(f1, f2), rel=1e-6)
    assert ours > 1.0


def test_fid_of_identical_sets_is_zero():
    f = np.random.default_rng(1).normal(size=(200, 16))
    assert abs(frechet_distance(*statistics(f), *statistics(f))) < 1e-8


def _mmd_by_pairs(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 with the cubic polynomial kernel, written as explicit pair sums."""
    d = x.shape[1]
    k = lambda a, b: (a @ b / d + 1) ** 3  # noqa: E731
    m = len(x)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    return xx + yy - 2 * xy


def test_kid_is_the_unbiased_polynomial_mmd_and_seeded():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(20, 8)), rng.normal(loc=0.5, size=(20, 8))
    # One subset covering both whole sets: sampling only permutes, so the estimate is exact.
    mean, _ = kernel_distance(x, y, num_subsets=1, subset_size=20, seed=0)
    assert mean == pytest.approx(_mmd_by_pairs(x, y), rel=1e-10)
    a = kernel_distance(x, y, num_subsets=10, subset_size=8, seed=3)
    assert a == kernel_distance(x, y, num_subsets=10, subset_size=8, seed=3)
    assert a != kernel_distance(x, y, num_subsets=10, subset_size=8, seed=4)


class CountingExtractor:
    """A stand-in feature extractor: 4x4 average-pooled pixels (48-d); counts images it saw."""

    name = "test-avgpool"
    version = "1"
    resolution = 16

    def __init__(self) -> None:
        self.seen = 0

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        self.seen += len(batch)
        return torch.nn.functional.adaptive_avg_pool2d(batch, 4).flatten(1)


class UnitExtractor(CountingExtractor):
    """Features in [0, 1], the scale Inception pool features have (KID's cubic kernel is scale-sensitive)."""

    name = "test-avgpool-unit"

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        return super().__call__(batch) / 255.0


def test_reference_statistics_are_cached_and_reused(tmp_path):
    ref = random_images(12, seed=1)
    gen = random_images(10, seed=2)
    extractor = CountingExtractor()
    fid = load_metric("fid", extractor=extractor, cache_dir=tmp_path)
    first = fid.compute(gen, ref, batch_size=5)
    assert first.extras["reference_cache"] == "miss" and extractor.seen == 22
    assert len(list(tmp_path.glob("*.npz"))) == 1
    second = fid.compute(gen, list(reversed(ref)), batch_size=4)  # same set, other order: same key
    assert second.extras["reference_cache"] == "hit" and extractor.seen == 32
    assert second.value == pytest.approx(first.value, rel=1e-12)
    assert first.convention == "fid@clean" and first.value > 0
    # A different resize mode is a different cache entry.
    legacy = SetDistance(get_spec("fid@legacy-pytorch"), extractor, cache=ReferenceStatsCache(tmp_path))
    assert legacy.compute(gen, ref).extras["reference_cache"] == "miss"
    assert len(list(tmp_path.glob("*.npz"))) == 2


def test_fid_and_kid_of_a_set_with_itself_are_about_zero(tmp_path):
    images = random_images(30, seed=4)
    extractor = CountingExtractor()
    value = load_metric("fid", extractor=extractor, cache_dir=tmp_path).compute(images, images).value
    # 30 images, 48-d features: the covariance is singular; zero up to float64 noise relative to its trace.
    from pixeljury.metrics.distribution import extract_features

    trace = np.trace(statistics(extract_features(images, CountingExtractor(), "clean"))[1])
    assert abs(value) < 1e-6 * trace
    kid = load_metric("kid", extractor=UnitExtractor(), cache_dir=tmp_path, num_subsets=20, subset_size=10)
    same = kid.compute(images, images)
    darker = kid.compute([img.point(lambda v: v // 2) for img in images], images)
    assert same.convention == "kid@clean" and "std" in same.extras
    assert abs(same.value) < 0.05 * darker.value


def test_clean_resize_is_float_bicubic_without_uint8_round_trip():
    img = photo_like((1920, 1280))  # a camera-sized JPEG
    got = resize_for_extractor(img, 299, "clean")
    arr = np.asarray(img)
    for c in range(3):
        channel = Image.fromarray(arr[..., c].astype(np.float32), mode="F").resize((299, 299), Image.Resampling.BICUBIC)
        np.testing.assert_allclose(got[..., c], np.clip(np.asarray(channel), 0, 255), atol=1e-4)
    assert not np.allclose(got, np.round(got))  # fractional values survive: no uint8 quantisation
    uint8_path = np.asarray(img.resize((299, 299), Image.Resampling.BICUBIC), dtype=np.float32)
    assert np.abs(got - uint8_path).max() > 0.4
    legacy = resize_for_extractor(img, 299, "legacy-pytorch")
    assert np.abs(got - legacy).mean() > 1.0  # bilinear without antialiasing aliases a 6x downscale


def test_fid_and_kid_from_merged_shards_equal_one_pass_bit_for_bit(tmp_path):
    """Shards of the generated set, extracted apart with their positions as keys and merged through
    their JSON states, give the whole set's FID and KID exactly."""
    import json

    from pixeljury.metrics.fid_math import FeatureAccumulator

    ref = random_images(9, seed=5)
    gen = random_images(11, seed=6)
    for name in ("fid", "kid"):
        metric = load_metric(name, extractor=UnitExtractor(), cache_dir=tmp_path, num_subsets=4, subset_size=6) \
            if name == "kid" else load_metric(name, extractor=UnitExtractor(), cache_dir=tmp_path)
        whole = metric.compute(gen, ref, batch_size=4)
        ref_acc = metric.accumulate(ref, batch_size=3)
        shards = [metric.accumulate(gen[a:b], keys=range(a, b), batch_size=2) for a, b in ((7, 11), (0, 3), (3, 7))]
        states = [json.loads(json.dumps(s.state())) for s in shards]
        merged = metric.compute_from(FeatureAccumulator.merged(states), ref_acc)
        assert merged.value.hex() == whole.value.hex() and merged.extras["n_generated"] == 11
        if name == "kid":
            assert merged.extras["std"] == whole.extras["std"]
