"""Tiny randomly initialised models with the real architectures, built locally (no downloads)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

SHARED_IMAGES = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "images"

_BOS, _EOS = 512, 513


def _byte_chars() -> list[str]:
    """The 256 printable stand-ins CLIP's byte-level BPE uses for bytes (GPT-2 scheme)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    codes = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            codes.append(256 + extra)
            extra += 1
    return [chr(c) for c in codes]


def write_tiny_clip_tokenizer(folder: Path) -> Path:
    """A byte-level CLIP BPE vocabulary with no merges: 514 tokens, EOS is the highest id."""
    folder.mkdir(parents=True, exist_ok=True)
    chars = _byte_chars()
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": 256 + i for i, c in enumerate(chars)})
    vocab["<|startoftext|>"] = _BOS
    vocab["<|endoftext|>"] = _EOS
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    return folder


def tiny_clip_tokenizer(folder: Path):
    from transformers import CLIPTokenizer

    write_tiny_clip_tokenizer(folder)
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))


def tiny_clip_model(seed: int = 0, image_size: int = 32):
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(seed)
    config = CLIPConfig(
        text_config=dict(vocab_size=514, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=24, bos_token_id=_BOS, eos_token_id=_EOS,
                         pad_token_id=_EOS),
        vision_config=dict(hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                           image_size=image_size, patch_size=8),
        projection_dim=16,
    )
    return CLIPModel(config).eval()


def save_tiny_clip(folder: Path, seed: int = 0) -> Path:
    """A transformers CLIP checkpoint folder (weights + tokenizer), loadable with from_pretrained."""
    model = tiny_clip_model(seed)
    model.save_pretrained(folder)
    tiny_clip_tokenizer(folder / "_tok").save_pretrained(folder)
    return folder


def random_images(n: int, seed: int = 0, sizes: tuple[tuple[int, int], ...] = ((48, 40), (40, 64), (50, 50))):
    from PIL import Image
    import numpy as np

    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        w, h = sizes[i % len(sizes)]
        out.append(Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB"))
    return out
