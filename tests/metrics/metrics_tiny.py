"""Tiny randomly initialised models with the real architectures, built locally (no downloads)."""

from __future__ import annotations

import json
from pathlib import Path

import io

import numpy as np
import torch
from PIL import Image

GOLDEN_IMAGES = Path(__file__).resolve().parents[1] / "fixtures" / "golden" / "images"


def photo_like(size: tuple[int, int], seed: int = 0) -> Image.Image:
    """A camera-sized RGB image with smooth gradients and fine texture, through a JPEG round trip
    (what real photos are): resampling code meets the structure it meets on real images."""
    w, h = size
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([128 + 100 * np.sin(x / (37 + 11 * c) + y / (53 + 7 * c) + c) for c in range(3)], axis=-1)
    grain = rng.normal(0, 12, (h, w, 3))
    buf = io.BytesIO()
    Image.fromarray(np.clip(base + grain, 0, 255).astype(np.uint8)).save(buf, format="JPEG", quality=90)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def in_repo_images() -> list[Image.Image]:
    """Images of the shapes metrics meet, all made here: a 1920x1280 photo, a 1080x1920 portrait, the
    1100x160 RGBA banner and a 240x240 drawing of tests/fixtures/golden."""
    return [photo_like((1920, 1280)), photo_like((1080, 1920), seed=1),
            Image.open(GOLDEN_IMAGES / "banner.png").convert("RGB"),
            Image.open(GOLDEN_IMAGES / "painter-faithful-0.png").convert("RGB")]

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


# A Qwen2-VL-style template: default system turn, vision tokens in place, plain generation prompt.
QWEN2VL_TEMPLATE = (
    "{%- if messages[0]['role'] != 'system' -%}{{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' -}}"
    "{%- endif -%}"
    "{%- for message in messages -%}{{- '<|im_start|>' + message['role'] + '\\n' -}}"
    "{%- if message['content'] is string -%}{{- message['content'] -}}"
    "{%- else -%}{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'text' -%}{{- part['text'] -}}"
    "{%- else -%}{{- '<|vision_start|><|image_pad|><|vision_end|>' -}}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}{{- '<|im_end|>\\n' -}}{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)


def save_tiny_hpsv3(folder: Path, seed: int = 0, *, new_layout: bool = False) -> tuple[Path, Path]:
    """A tiny Qwen2-VL base directory (config + processor, patch 14 / merge 2 like the 7B) and an
    HPSv3-format checkpoint for it (``visual.*``/``model.*``, or ``model.visual.*``/``model.language_model.*``
    with ``new_layout``; ``lm_head`` and a ranknet ``rm_head``), embeddings one row longer for <|Reward|>."""
    from safetensors.torch import save_file
    from transformers import PreTrainedTokenizerFast, Qwen2VLConfig, Qwen2VLImageProcessor, Qwen2VLModel
    from transformers import Qwen2VLProcessor, Qwen2VLVideoProcessor

    from pixeljury.metrics.hpsv3 import RankNetHead
    from pixeljury.testing.tiny import SPECIAL_TOKENS, _train_tokenizer

    base = folder / "base"
    base.mkdir(parents=True, exist_ok=True)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=_train_tokenizer(vocab_size=600), eos_token="<|im_end|>",
                                        pad_token="<|endoftext|>", additional_special_tokens=SPECIAL_TOKENS[1:])
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    config = Qwen2VLConfig(
        text_config={"vocab_size": len(tokenizer), "hidden_size": 64, "intermediate_size": 128,
                     "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1,
                     "rope_parameters": {"rope_type": "default", "rope_theta": 1_000_000.0, "mrope_section": [4, 6, 6]},
                     "pad_token_id": ids["<|endoftext|>"], "bos_token_id": None,
                     "eos_token_id": ids["<|im_end|>"]},
        vision_config={"depth": 1, "embed_dim": 32, "hidden_size": 64, "num_heads": 2, "mlp_ratio": 2,
                       "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2},
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
    )
    config.save_pretrained(base)
    processor = Qwen2VLProcessor(image_processor=Qwen2VLImageProcessor(), tokenizer=tokenizer,
                                 video_processor=Qwen2VLVideoProcessor(), chat_template=QWEN2VL_TEMPLATE)
    processor.save_pretrained(base)

    torch.manual_seed(seed)
    config.text_config.vocab_size = len(tokenizer) + 1
    backbone = Qwen2VLModel(config).float().eval()
    head = RankNetHead(64).float()
    for p in head.parameters():  # larger than default init so the test sees the head at work
        torch.nn.init.normal_(p, std=0.5)
    sd: dict[str, torch.Tensor] = {}
    for key, value in backbone.state_dict().items():
        if key.startswith("visual."):
            sd[("model." if new_layout else "") + key] = value
        else:
            sd[("model.language_model." if new_layout else "model.") + key[len("language_model."):]] = value
    sd["lm_head.weight"] = torch.zeros(len(tokenizer) + 1, 64)
    sd.update({f"rm_head.{k}": v for k, v in head.state_dict().items()})
    checkpoint = folder / "HPSv3.safetensors"
    save_file({k: v.contiguous() for k, v in sd.items()}, str(checkpoint))
    return base, checkpoint
