from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pixeljury.data.images import ImageLoadError, load_for_judge, open_image, target_size, to_rgb


def save(img: Image.Image, path, **kw):
    img.save(path, **kw)
    return path


def test_target_size_parity_and_keep_aspect():
    assert target_size(1920, 1280) == (1024, 1024)  # official: square, aspect not kept
    assert target_size(1024, 700) == (1024, 700)
    assert target_size(1920, 1280, keep_aspect=True) == (1024, 683)
    assert target_size(800, 2000, keep_aspect=True) == (410, 1024)


def photo_like_jpeg_named_png(folder: Path) -> Path:
    """A 1920x1280 JPEG saved under a .png name: smooth gradients plus seeded noise, like a photo."""
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:1280, 0:1920]
    base = np.stack([x * 255 / 1919, y * 255 / 1279, (x + y) * 255 / 3198], axis=-1)
    arr = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
    path = folder / "photo.png"
    Image.fromarray(arr, "RGB").save(path, format="JPEG", quality=90)
    return path


def test_wrong_extension_jpeg_named_png_just_works(tmp_path):
    path = photo_like_jpeg_named_png(tmp_path)
    assert path.read_bytes()[:3] == b"\xff\xd8\xff"
    img, info = load_for_judge(path)
    assert info.format == "JPEG" and (info.width, info.height) == (1920, 1280)
    assert img.mode == "RGB" and img.size == (1024, 1024)


def test_parity_resize_matches_pil_lanczos_directly(tmp_path):
    path = photo_like_jpeg_named_png(tmp_path)
    img, _ = load_for_judge(path)
    ref = Image.open(path).convert("RGB").resize((1024, 1024), Image.LANCZOS)
    assert np.array_equal(np.asarray(img), np.asarray(ref))
    # not trivially equal: the resize changed the pixels
    assert not np.array_equal(np.asarray(img), np.asarray(Image.open(path).convert("RGB").resize((1024, 1024))))


def test_real_camera_jpeg_named_png_from_the_shared_data(shared_data):
    """The same two checks on a real generator's JPEG that came named .png (../shared/data)."""
    path = shared_data / "images" / "t2v_metrics" / "0.png"
    img, info = load_for_judge(path)
    assert info.format == "JPEG" and (info.width, info.height) == (1920, 1280)
    ref = Image.open(path).convert("RGB").resize((1024, 1024), Image.LANCZOS)
    assert img.mode == "RGB" and np.array_equal(np.asarray(img), np.asarray(ref))


def test_rgba_composited_over_white(tmp_path):
    arr = np.zeros((4, 4, 4), dtype=np.uint8)
    arr[..., 0] = 200  # red channel under full transparency
    arr[0, 0] = [10, 20, 30, 255]  # one opaque pixel
    img, _ = load_for_judge(save(Image.fromarray(arr, "RGBA"), tmp_path / "a.png"))
    out = np.asarray(img)
    assert out[0, 0].tolist() == [10, 20, 30] and out[1, 1].tolist() == [255, 255, 255]


def test_palette_grayscale_cmyk(tmp_path):
    p = Image.new("P", (3, 3))
    p.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    p.putpixel((1, 1), 1)
    out = np.asarray(load_for_judge(save(p, tmp_path / "p.png"))[0])
    assert out[1, 1].tolist() == [0, 255, 0] and out[0, 0].tolist() == [0, 0, 0]
    g = np.asarray(load_for_judge(save(Image.new("L", (2, 2), 77), tmp_path / "g.png"))[0])
    assert g[0, 0].tolist() == [77, 77, 77]
    c = np.asarray(load_for_judge(save(Image.new("CMYK", (2, 2), (0, 255, 255, 0)), tmp_path / "c.jpg", quality=100))[0])
    assert c[0, 0, 0] > 240 and c[0, 0, 1] < 15 and c[0, 0, 2] < 15  # pure red


def test_16bit_grayscale_scaled_not_clipped(tmp_path):
    arr = np.array([[0, 32768], [65535, 1000]], dtype=np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(arr).save(path)
    assert Image.open(path).mode.startswith("I")
    out = np.asarray(load_for_judge(path)[0])[..., 0]
    assert out.tolist() == [[0, 128], [255, 4]]  # round(v * 255 / 65535)


def test_to_rgb_palette_with_transparency():
    p = Image.new("P", (2, 1))
    p.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    p.putpixel((1, 0), 1)
    p.info["transparency"] = 1
    assert np.asarray(to_rgb(p))[0].tolist() == [[255, 0, 0], [255, 255, 255]]


def test_decompression_bomb_refused_before_decoding(tmp_path):
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 10)) + chunk(b"IEND", b"")
    path = tmp_path / "bomb.png"
    path.write_bytes(png)
    with pytest.raises(ImageLoadError, match="decompression bomb"):
        open_image(path)


def test_corrupt_missing_and_not_an_image(tmp_path):
    good = tmp_path / "g.png"
    Image.new("RGB", (64, 64), (1, 2, 3)).save(good)
    trunc = tmp_path / "t.png"
    trunc.write_bytes(good.read_bytes()[:60])
    with pytest.raises(ImageLoadError, match="corrupt or truncated|not an image"):
        open_image(trunc)
    text = tmp_path / "x.png"
    text.write_text("hello")
    with pytest.raises(ImageLoadError, match="not an image format"):
        open_image(text)
    with pytest.raises(ImageLoadError, match="does not exist"):
        open_image(tmp_path / "nope.png")
