"""The image the judge receives is pixel-identical to the official loader under Pillow 11.3.0.

The golden values below were computed with upstream's loader (open, RGB, LANCZOS to 1024x1024 when
the long side exceeds 1024) under Pillow 11.3.0, upstream's pin, by::

    python3 -m venv /tmp/pillow-11.3 && /tmp/pillow-11.3/bin/pip install pillow==11.3.0 numpy
    /tmp/pillow-11.3/bin/python scripts/image_parity_golden.py

Pillow 13 changes the pixels of portrait images (it runs the vertical pass first); pixeljury's resize
must not.
"""

from __future__ import annotations

import hashlib

import PIL
import pytest
from PIL import Image

from pixeljury.data import images
from pixeljury.data.images import load_for_judge, pixel_parity, prepare_for_judge, resize_horizontal_first
from pixeljury.data.parity_patterns import OFFICIAL_SIZES, pattern, self_check_sha256

GOLDEN_PILLOW_11_3 = {
    "1080x1920": "36a9d0ea7ad61845678e8ec26f18b54a0941890d7bc48c3567c699671d19eef2",
    "512x2048": "7445d2433cb95d3df93715f98fc9ee0b91f47261651823d0b8ec710744342537",
    "300x4000": "3e05421216f0be75410ab41858c216ac2ccb5a24384d548b7850a5881e5a1428",
    "800x5000": "75e76905e1ae5ab6cb485037d37a590947f69117a15cfe2636545ca738ae70ce",
    "1920x1080": "4e916eece96be4c7d5149107fba16742dd3141e09ffb39f091c4d660b3ee6fa2",
    "2048x512": "6f3e7375346fd73aaa52549b0075027f7faad10d14e67d1a72921a03396c34d1",
    "4000x300": "2e0777fbb878f9140ababcb7aa900630ba1786a74b632831d5cab5fb5d02d7f2",
    "2048x2048": "1410bed755f2b9782d19914b690ab8a6124c47106bd8b2248b8432646729a46a",
    "1025x1025": "21441df382fda0e5328649839554a846b28db9e25a50f996fefa541a898ffeea",
    "1031x3001": "3298ec16922c00acc38f0cbdc9e9a103a32e9a65e5a29a7c9e3e14a97a39cae8",
    "3001x1031": "881194042488d2bbb203493adf5b79bca4d847f11ae06710f9752dd1d24a0ab9",
    "700x1500": "7ddb72aea10e9ea83cde916470581b83e979fe1731469985b6f52b6d4eca6985",
    "1023x1025": "83afa054e96b1d92813fcc3b80be80fb94cd17c8cf1dcf9b45a58fd39a228620",
    "1024x768": "ddf182783395a0e8beeb36cfeb7775a9dc7ac7a813cef548a6ffb47201acb5c9",
}


def _digest(img: Image.Image) -> str:
    return hashlib.sha256(img.tobytes()).hexdigest()


def test_every_golden_size_is_covered():
    assert set(GOLDEN_PILLOW_11_3) == {f"{w}x{h}" for w, h in OFFICIAL_SIZES}
    kinds = {"portrait": 0, "landscape": 0, "square": 0}
    for w, h in OFFICIAL_SIZES:
        kinds["portrait" if h > w else "landscape" if w > h else "square"] += 1
    assert min(kinds.values()) >= 2


@pytest.mark.parametrize("size", OFFICIAL_SIZES, ids=[f"{w}x{h}" for w, h in OFFICIAL_SIZES])
def test_judge_image_matches_the_official_loader_under_pillow_11_3(size):
    out = prepare_for_judge(pattern(*size))
    assert out.mode == "RGB"
    assert out.size == ((1024, 1024) if max(size) > 1024 else size)
    assert _digest(out) == GOLDEN_PILLOW_11_3[f"{size[0]}x{size[1]}"]


def test_a_file_goes_through_the_same_resize(tmp_path):
    path = tmp_path / "portrait.png"
    pattern(1080, 1920).save(path)
    img, info = load_for_judge(path)
    assert info.width == 1080 and info.height == 1920
    assert _digest(img) == GOLDEN_PILLOW_11_3["1080x1920"]


@pytest.mark.skipif(PIL.__version__.split(".")[0] != "13", reason="shows the Pillow 13 difference")
def test_plain_pillow_13_resize_would_differ_for_portraits():
    # Why the two-pass resize exists: a plain resize under Pillow 13 gives other pixels.
    plain = pattern(1080, 1920).resize((1024, 1024), Image.Resampling.LANCZOS)
    assert _digest(plain) != GOLDEN_PILLOW_11_3["1080x1920"]
    landscape = pattern(1920, 1080).resize((1024, 1024), Image.Resampling.LANCZOS)
    assert _digest(landscape) == GOLDEN_PILLOW_11_3["1920x1080"]


def test_self_check_passes_here():
    parity = pixel_parity()
    assert parity.ok, parity.detail
    assert parity.pillow == PIL.__version__


def test_self_check_catches_a_resize_that_differs():
    def vertical_first(img, size):
        w, h = size
        return img.resize((img.width, h), Image.Resampling.LANCZOS).resize((w, h), Image.Resampling.LANCZOS)

    assert self_check_sha256(resize_horizontal_first) == images.SELF_CHECK_SHA256
    assert self_check_sha256(vertical_first) != images.SELF_CHECK_SHA256


def test_a_failed_self_check_says_why(monkeypatch):
    monkeypatch.setattr(images, "SELF_CHECK_SHA256", "0" * 64)
    images.pixel_parity.cache_clear()
    try:
        parity = pixel_parity()
        assert not parity.ok
        assert "not comparable" in parity.detail and PIL.__version__ in parity.detail
    finally:
        images.pixel_parity.cache_clear()
