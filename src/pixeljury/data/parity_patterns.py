"""Synthetic test images for checking that images reach the judge as under upstream's Pillow.

Shared by the start-up self-check (:func:`pixeljury.data.images.pixel_parity`), the parity tests and
scripts/image_parity_golden.py, which loads this file by its path under a bare Pillow 11.3.0: so it
imports nothing but numpy and Pillow.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import numpy as np
from PIL import Image

# Portrait, landscape, square and odd sizes; 700x1500 widens while it shrinks in height; 1024x768
# is left alone.
OFFICIAL_SIZES = [
    (1080, 1920), (512, 2048), (300, 4000), (800, 5000),
    (1920, 1080), (2048, 512), (4000, 300),
    (2048, 2048), (1025, 1025),
    (1031, 3001), (3001, 1031), (700, 1500), (1023, 1025), (1024, 768),
]
# Small cases for the check pixeljury runs at start-up: (source size, target size).
SELF_CHECK_CASES = [((45, 120), (32, 32)), ((120, 45), (32, 32)), ((77, 77), (64, 64)), ((20, 90), (32, 32)),
                    ((33, 97), (29, 41))]


def pattern(width: int, height: int) -> Image.Image:
    """A deterministic RGB test image: smooth gradients mixed with hashed high-frequency noise, so
    that any difference in resampling shows up in the bytes. Integer arithmetic only."""
    y, x = np.mgrid[0:height, 0:width].astype(np.uint32)
    noise = (x * np.uint32(2654435761) + y * np.uint32(40503) + (x ^ y) * np.uint32(97)) >> np.uint32(24)
    red = (x * 255 // max(width - 1, 1)).astype(np.uint32)
    green = (y * 255 // max(height - 1, 1)).astype(np.uint32)
    blue = noise
    mix = ((noise & np.uint32(3)) == 0)  # a quarter of the pixels are pure noise on every channel
    rgb = np.stack([np.where(mix, noise, red), np.where(mix, 255 - noise, green), blue], axis=-1)
    return Image.frombytes("RGB", (width, height), rgb.astype(np.uint8).tobytes())


def self_check_sha256(resize: Callable[[Image.Image, tuple[int, int]], Image.Image]) -> str:
    """One digest over the self-check cases, each resized by ``resize(image, size)``."""
    h = hashlib.sha256()
    for source, target in SELF_CHECK_CASES:
        h.update(resize(pattern(*source), target).tobytes())
    return h.hexdigest()
