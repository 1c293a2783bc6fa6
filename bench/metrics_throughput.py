"""Throughput of pixeljury's batched metric scoring vs a one-image-at-a-time loop of the same model.

Full-size architectures with random weights (no downloads): CLIP ViT-B/32 (clipscore), ViT-L/14
(clipscore@torchmetrics, aesthetic), ViT-H/14 (pickscore, hpsv2), BLIP ViT-L + BERT (imagereward).
Runs on CUDA when present, else CPU. Example:

    python bench/metrics_throughput.py --metrics clipscore,pickscore,imagereward --images 512 --batch-size 64
    python bench/metrics_throughput.py --device cpu --images 16 --loop-images 8 --batch-size 16   # reduced
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from pixeljury.metrics.registry import get_spec  # noqa: E402

PROMPT = "a painting of an ocean with clouds and birds, day time, low depth field effect"
IMAGES_PER_PROMPT = 4  # the usual T2I evaluation: several generations of each prompt


def _byte_level_tokenizer(folder: Path):
    """A CLIP BPE tokenizer without merges (ids < 514): the token count, not the vocabulary, drives cost."""
    from transformers import CLIPTokenizer

    printable = [*range(33, 127), *range(161, 173), *range(174, 256)]
    codes, extra = printable[:], 0
    for b in range(256):
        if b not in printable:
            codes.append(256 + extra)
            extra += 1
    chars = [chr(c) for c in codes]
    vocab = {c: i for i, c in enumerate(chars)} | {c + "</w>": 256 + i for i, c in enumerate(chars)}
    vocab |= {"<|startoftext|>": 512, "<|endoftext|>": 513}
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))


def _clip(vision: tuple[int, int, int, int], text: tuple[int, int, int], proj: int, act: str):
    from transformers import CLIPConfig, CLIPModel

    width, layers, heads, patch = vision
    t_width, t_layers, t_heads = text
    config = CLIPConfig(
        text_config=dict(hidden_size=t_width, num_hidden_layers=t_layers, num_attention_heads=t_heads,
                         intermediate_size=4 * t_width, hidden_act=act, eos_token_id=2),
        vision_config=dict(hidden_size=width, num_hidden_layers=layers, num_attention_heads=heads, patch_size=patch,
                           intermediate_size=4 * width if width != 1280 else 5120, image_size=224, hidden_act=act),
        projection_dim=proj,
    )
    return CLIPModel(config).eval()


def build(name: str, tmp: Path, device: str, dtype: str):
    from pixeljury.metrics.clip import HESSEL_PREFIX, ClipSimilarity
    from pixeljury.metrics.preprocess import clip_center_crop, hpsv2_transform

    tokenizer = _byte_level_tokenizer(tmp)
    if name == "clipscore":
        model = _clip((768, 12, 12, 32), (512, 12, 8), 512, "quick_gelu")
        return ClipSimilarity(get_spec(name), model, tokenizer, clip_center_crop(224), scale=2.5, clamp_at_zero=True,
                              prefix=HESSEL_PREFIX, device=device, dtype=dtype)
    if name == "clipscore@torchmetrics-100x":
        model = _clip((1024, 24, 16, 14), (768, 12, 12), 768, "quick_gelu")
        return ClipSimilarity(get_spec(name), model, tokenizer, clip_center_crop(224), scale=100.0, clamp_at_zero=True,
                              device=device, dtype=dtype)
    if name in ("pickscore", "hpsv2"):
        model = _clip((1280, 32, 16, 14), (1024, 24, 16), 1024, "gelu")
        transform = clip_center_crop(224) if name == "pickscore" else hpsv2_transform(224)
        return ClipSimilarity(get_spec(name), model, tokenizer, transform, scale="logit_scale", clamp_at_zero=False,
                              softmax_per_prompt=name == "pickscore", device=device, dtype=dtype)
    if name == "imagereward":
        from transformers import BertTokenizer, BlipTextConfig, BlipTextModel, BlipVisionConfig, BlipVisionModel

        from pixeljury.metrics.heads import RewardMLP
        from pixeljury.metrics.imagereward import ImageReward

        words = sorted(set(PROMPT.replace(",", " ").split()) | {"#", *map(str, range(10))})
        (tmp / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]))
        vision = BlipVisionModel(BlipVisionConfig(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                                                  intermediate_size=4096, patch_size=16, image_size=224,
                                                  layer_norm_eps=1e-6))
        text = BlipTextModel(BlipTextConfig(vocab_size=30524, encoder_hidden_size=1024, is_decoder=True,
                                            bos_token_id=None, sep_token_id=None), add_pooling_layer=False)
        return ImageReward(get_spec(name), vision.eval(), text.eval(), RewardMLP(768),
                           BertTokenizer(str(tmp / "vocab.txt")), device=device, dtype=dtype)
    raise SystemExit(f"unknown benchmark metric {name}")


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def run(name: str, images: list[Image.Image], loop_images: int, batch_size: int, device: str, dtype: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        metric = build(name, Path(tmp), device, dtype)
    prompts = [f"{PROMPT} #{i // IMAGES_PER_PROMPT}" for i in range(len(images))]
    metric.score(prompts[:2], images[:2], batch_size=2)  # warm-up (kernels, allocator)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    _sync(device)
    start = time.perf_counter()
    metric.score(prompts, images, batch_size=batch_size)
    _sync(device)
    batched = len(images) / (time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None
    start = time.perf_counter()
    for i in range(loop_images):
        metric.score(prompts[i : i + 1], images[i : i + 1], batch_size=1)
    _sync(device)
    loop = loop_images / (time.perf_counter() - start)
    del metric
    return {"metric": name, "batched_img_s": batched, "loop_img_s": loop, "speedup": batched / loop,
            "peak_gpu_gib": peak, "batch_size": batch_size, "images": len(images), "loop_images": loop_images}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--metrics", default="clipscore,clipscore@torchmetrics-100x,pickscore,hpsv2,imagereward")
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--loop-images", type=int, default=64, help="images scored one at a time")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default=None, help="default: float16 on CUDA, float32 on CPU")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args()
    dtype = args.dtype or ("float16" if args.device.startswith("cuda") else "float32")
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (512, 640, 3), dtype=np.uint8)) for _ in range(args.images)]
    where = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    print(f"device: {where}; dtype {dtype}; torch {torch.__version__}; images 640x512 incl. preprocessing")
    print("| metric | batch | batched img/s | loop img/s | speedup | peak GPU GiB |")
    print("|---|---|---|---|---|---|")
    rows = []
    for name in [m.strip() for m in args.metrics.split(",") if m.strip()]:
        row = run(name, images, min(args.loop_images, args.images), args.batch_size, args.device, dtype)
        rows.append(row)
        peak = "-" if row["peak_gpu_gib"] is None else f"{row['peak_gpu_gib']:.2f}"
        print(f"| {name} | {args.batch_size} | {row['batched_img_s']:.2f} | {row['loop_img_s']:.2f} | "
              f"{row['speedup']:.1f}x | {peak} |", flush=True)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"peak process RSS: {rss:.1f} GiB")
    if args.json:
        args.json.write_text(json.dumps({"device": where, "dtype": dtype, "rows": rows, "peak_rss_gib": rss}, indent=1))


if __name__ == "__main__":
    main()
