"""Every (image, L1) request of the benchmark renders byte-identically to an independent rendering."""

import json

import pytest
from PIL import Image

from pixeljury.data.metadata import BenchMetadata
from pixeljury.protocols.qjudger import build_request

pytestmark = pytest.mark.slow

VISION = "<|vision_start|><|image_pad|><|vision_end|>"


def independent_rendering(module, prompt: str, dim: str) -> str:
    """The chat as the official judge.py + a Qwen3.5 template produce it, built by plain string work
    from the imported fixture module (no pixeljury code involved)."""
    user = module.USER_PROMPT_TEMPLATE.format(prompt=prompt, level1_dim=dim, format_checklist=module.DIM_TO_CHECKLIST[dim])
    user = user.replace("\n<image>\n", "\n" + VISION + "\n", 1)
    return (f"<|im_start|>system\n{module.SYSTEM_PROMPT}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n"
            f"<|im_start|>assistant\n<think>\n")


def official_dims(dims_en: str) -> list[str]:
    """L1 order of first appearance, computed independently of pixeljury's parser."""
    out = []
    for part in dims_en.split(";"):
        l1 = part.split(" / ")[0].strip()
        if l1 and l1 not in out:
            out.append(l1)
    return out


def test_all_4105_requests_render_identically(tiny_model_dir, fixture_rubric, fixture_module, metadata_path):
    from transformers import AutoProcessor

    from pixeljury.engines.hf import render_chat

    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    meta = BenchMetadata.load(metadata_path)
    prompts = {}
    prompts_file = metadata_path.parent / "prompts_en.jsonl"
    for line in prompts_file.read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        prompts[rec["ID"]] = rec["prompt"]
    image = Image.new("RGB", (8, 8))
    n = 0
    for bench_id, dims_en in meta.dims_by_id.items():
        dims = meta.dimensions(bench_id)
        assert dims == official_dims(dims_en)
        for dim in dims:
            req = build_request(fixture_rubric, prompts[bench_id], dim, image, "0" * 64, f"{dim}:{bench_id}")
            rendered = render_chat(processor, req, enable_thinking=True)
            expected = independent_rendering(fixture_module, prompts[bench_id], dim)
            assert rendered == expected, f"ID {bench_id} {dim}"
            n += 1
    assert n == 4105
