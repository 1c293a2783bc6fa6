"""Golden checksums of the image Q-Judger's official loader produces, for pixeljury's parity tests.

Run it under the Pillow that upstream pins (11.3.0), in a venv of its own, with nothing of
pixeljury installed (the loader below is written from upstream's description, not imported)::

    python3 -m venv /tmp/pillow-11.3 && /tmp/pillow-11.3/bin/pip install pillow==11.3.0 numpy
    /tmp/pillow-11.3/bin/python scripts/image_parity_golden.py

It prints one JSON object: the Pillow version, the SHA-256 of the RGB bytes sent to the judge for
each test size (``official``), and of the small self-check set (``self_check``). Those values are
copied into tests/test_image_parity.py and ``pixeljury.data.images.SELF_CHECK_SHA256``.

The official loader (Qwen-Image-Bench ``judge.py``): open the file, convert to RGB when the mode is
anything else, and when the long side exceeds 1024 resize to exactly 1024x1024 with LANCZOS.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
from pathlib import Path

from PIL import Image

# The test images live in the library (the start-up self-check uses them too); the module is loaded
# by its path so that this script runs without pixeljury or its dependencies installed.
_PATTERNS = Path(__file__).resolve().parents[1] / "src" / "pixeljury" / "data" / "parity_patterns.py"
_spec = importlib.util.spec_from_file_location("parity_patterns", _PATTERNS)
patterns = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(patterns)


def official_load(img: Image.Image) -> Image.Image:
    if img.mode != "RGB":
        img = img.convert("RGB")
    if max(img.size) > 1024:
        img = img.resize((1024, 1024), Image.LANCZOS)
    return img


def sha256_of(img: Image.Image) -> str:
    return hashlib.sha256(img.tobytes()).hexdigest()


def main() -> None:
    import PIL

    golden = {f"{w}x{h}": sha256_of(official_load(patterns.pattern(w, h))) for w, h in patterns.OFFICIAL_SIZES}
    check = patterns.self_check_sha256(lambda img, size: img.resize(size, Image.LANCZOS))
    json.dump({"pillow": PIL.__version__, "official": golden, "self_check": check}, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
