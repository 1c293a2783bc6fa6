"""Image loading: content hash, safe decoding, colour conversion, and the official resize rule."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

PARITY_LONG_SIDE = 1024
# Above this many pixels an image is refused as a decompression bomb. None: Pillow's own limit,
# Image.MAX_IMAGE_PIXELS (about 89.5 million pixels, read at call time, so raising it raises ours).
DEFAULT_MAX_PIXELS: int | None = None


class ImageLoadError(ValueError):
    """One image cannot be used; the message says why (missing, corrupt, too large...)."""


@dataclass(frozen=True)
class ImageInfo:
    sha256: str  # of the file's bytes
    format: str | None  # what the bytes are (PNG, JPEG...), whatever the file is called
    mode: str  # colour mode as stored
    width: int  # as stored
    height: int


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def target_size(width: int, height: int, *, keep_aspect: bool = False, long_side: int = PARITY_LONG_SIDE) -> tuple[int, int]:
    """Size sent to the judge. Parity mode (official): an image whose long side exceeds 1024 becomes
    exactly 1024x1024 (aspect not kept). ``keep_aspect`` scales the long side to 1024 instead."""
    if max(width, height) <= long_side:
        return width, height
    if not keep_aspect:
        return long_side, long_side
    scale = long_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB the way a viewer would see it.

    16-bit and 32-bit integer images are scaled to 8 bits (PIL's own convert clips them to 255);
    transparency is composited over white; palette, CMYK, grayscale go through PIL's converters.
    """
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        import numpy as np

        arr = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        arr = np.clip(np.rint(arr * (255.0 / peak)), 0, 255).astype("uint8")
        return Image.fromarray(arr, mode="L").convert("RGB")
    if mode == "F":
        import numpy as np

        arr = np.asarray(img, dtype=np.float64)
        scale = 255.0 if arr.max(initial=0) <= 1.0 else 1.0
        return Image.fromarray(np.clip(np.rint(arr * scale), 0, 255).astype("uint8"), mode="L").convert("RGB")
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        mode = img.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def open_image(path: Path, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> tuple[Image.Image, ImageInfo]:
    """Open and fully decode one image, refusing bombs before decoding. Raises :class:`ImageLoadError`."""
    if not path.exists():
        raise ImageLoadError(f"image file {path} does not exist")
    if not path.is_file():
        raise ImageLoadError(f"image path {path} is not a file")
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    limit = Image.MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
    try:
        # Image.open reads the header only; the format comes from the bytes, not the file name.
        # Pillow itself warns above MAX_IMAGE_PIXELS and refuses twice that; our own check below
        # refuses above ``limit`` before any pixel is decoded. (No warnings filter here: changing
        # filters is not thread-safe, and images are decoded on several threads.)
        img = Image.open(io.BytesIO(data))
        width, height = img.size
        if limit and width * height > limit:
            raise ImageLoadError(
                f"image {path} claims {width}x{height} pixels (over {limit:,}): refused as a decompression bomb"
            )
        img.load()
    except ImageLoadError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageLoadError(f"image {path} refused as a decompression bomb: {exc}") from None
    except UnidentifiedImageError:
        raise ImageLoadError(f"image {path} is not an image format Pillow can read") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageLoadError(f"image {path} is corrupt or truncated: {exc}") from None
    info = ImageInfo(digest, img.format, img.mode, width, height)
    return img, info


def load_for_judge(
    path: Path, *, keep_aspect: bool = False, max_pixels: int | None = DEFAULT_MAX_PIXELS
) -> tuple[Image.Image, ImageInfo]:
    """Decode, convert to RGB and resize as Q-Judger's official loader does (LANCZOS)."""
    img, info = open_image(path, max_pixels=max_pixels)
    try:
        rgb = to_rgb(img)
    except (OSError, ValueError) as exc:
        raise ImageLoadError(f"image {path} ({img.mode}) cannot be converted to RGB: {exc}") from None
    size = target_size(*rgb.size, keep_aspect=keep_aspect)
    if size != rgb.size:
        rgb = rgb.resize(size, Image.Resampling.LANCZOS)
    return rgb, info


__all__ = [
    "DEFAULT_MAX_PIXELS",
    "ImageInfo",
    "ImageLoadError",
    "load_for_judge",
    "open_image",
    "sha256_file",
    "target_size",
    "to_rgb",
]
