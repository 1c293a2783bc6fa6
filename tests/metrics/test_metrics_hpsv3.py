from __future__ import annotations

import math

import pytest
import torch
from PIL import Image

from metrics_tiny import save_tiny_hpsv3
from pj_testpaths import GOLDEN_IMAGES, SHARED_DATA, need_shared
from pixeljury.data.parity_patterns import pattern
from pixeljury.metrics.base import MetricUnavailable
from pixeljury.metrics.hpsv3 import INSTRUCTION, PIXEL_BUDGET, budget_size, convert_official_state_dict, resize_to_budget
from pixeljury.metrics.registry import load_metric

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return save_tiny_hpsv3(tmp_path_factory.mktemp("hpsv3"))


def _expected_by_hand(base, checkpoint, prompt: str, image: Image.Image) -> tuple[float, float]:
    """Independent path: transformers' own smart_resize and full Qwen2VLModel forward (image features
    merged by transformers, sequential positions as the official forward uses), hidden state at
    <|Reward|>, and the head applied from the raw checkpoint tensors."""
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoProcessor, Qwen2VLModel
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

    sd = load_file(str(checkpoint))
    config = AutoConfig.from_pretrained(base)
    config.text_config.vocab_size = sd["model.embed_tokens.weight"].shape[0]
    model = Qwen2VLModel(config).eval()
    own = {("visual." + k[7:] if k.startswith("visual.") else "language_model." + k[6:]): v
           for k, v in sd.items() if k.startswith(("visual.", "model."))}
    model.load_state_dict({k.replace("language_model.visual.", "visual."): v for k, v in own.items()}, strict=True)
    processor = AutoProcessor.from_pretrained(base)
    processor.tokenizer.add_special_tokens({"additional_special_tokens": ["<|Reward|>"]})
    h, w = smart_resize(image.height, image.width, factor=28, min_pixels=PIXEL_BUDGET, max_pixels=PIXEL_BUDGET)
    text = INSTRUCTION.replace("{text_prompt}", prompt) + (
        "\nPlease provide the overall ratings of this image: <|Reward|>\n\nEND\n")
    chat = ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
            f"<|vision_start|><|image_pad|><|vision_end|>{text}<|im_end|>\n<|im_start|>assistant\n")
    batch = processor(text=[chat], images=[image.resize((w, h), Image.BICUBIC)], return_tensors="pt")
    ids = batch["input_ids"]
    positions = torch.arange(ids.shape[1])[None, None, :].expand(3, 1, -1)
    with torch.no_grad():
        hidden = model(input_ids=ids, attention_mask=batch["attention_mask"], pixel_values=batch["pixel_values"],
                       image_grid_thw=batch["image_grid_thw"], position_ids=positions).last_hidden_state[0]
    at = (ids[0] == processor.tokenizer.convert_tokens_to_ids("<|Reward|>")).nonzero().item()
    x = hidden[at]
    x = torch.relu(x @ sd["rm_head.0.weight"].T + sd["rm_head.0.bias"])
    x = torch.relu(x @ sd["rm_head.3.weight"].T + sd["rm_head.3.bias"])
    mu, sigma = (x @ sd["rm_head.5.weight"].T + sd["rm_head.5.bias"]).tolist()
    return mu, sigma


def test_score_is_mu_at_the_reward_token_in_a_batch_with_padding(tiny):
    base, checkpoint = tiny
    metric = load_metric("hpsv3", weights=str(checkpoint), base=str(base), device="cpu")
    # A non-square image shrunk to the budget and a small one enlarged to it (in-repo, no ../shared).
    images = [pattern(1920, 1275), Image.open(GOLDEN_IMAGES / "painter-faithful-1.png").convert("RGB")]  # 240x240
    prompts = ["a long prompt about a lighthouse on a cliff at dusk, oil painting", "a cat"]
    results = metric.score(prompts, images, batch_size=2)  # different lengths: right padding in play
    for result, prompt, image in zip(results, prompts, images):
        mu, sigma = _expected_by_hand(base, checkpoint, prompt, image)
        assert result.value == pytest.approx(mu, rel=1e-4, abs=1e-4)
        assert result.extras["sigma"] == pytest.approx(sigma, rel=1e-4, abs=1e-4)
    assert abs(results[0].value - results[1].value) > 1e-3
    assert metric.convention == "hpsv3@mu" and metric.weights_label().startswith("local:")


def test_both_checkpoint_layouts_convert_to_the_same_weights(tmp_path, tiny):
    from safetensors.torch import load_file

    _, new_ck = save_tiny_hpsv3(tmp_path, new_layout=True)
    old_backbone, old_head = convert_official_state_dict(load_file(str(tiny[1])))
    new_backbone, new_head = convert_official_state_dict(load_file(str(new_ck)))
    assert sorted(old_backbone) == sorted(new_backbone) and sorted(old_head) == ["0.bias", "0.weight", "3.bias",
                                                                                 "3.weight", "5.bias", "5.weight"]
    assert all(torch.equal(old_backbone[k], new_backbone[k]) for k in old_backbone)
    with pytest.raises(MetricUnavailable, match="not an HPSv3 checkpoint"):
        convert_official_state_dict({"text_projection.weight": torch.zeros(1)})


def _check_budget_resize(sizes_and_images) -> None:
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

    for label, img in sizes_and_images:
        w, h = img.size
        out = resize_to_budget(img.convert("RGB"))
        hh, ww = smart_resize(h, w, factor=28, min_pixels=PIXEL_BUDGET, max_pixels=PIXEL_BUDGET)
        assert out.size == (ww, hh) == budget_size(w, h), label
        assert ww % 28 == 0 and hh % 28 == 0
        assert abs(ww * hh - PIXEL_BUDGET) / PIXEL_BUDGET < 0.15, label
        assert math.isclose(ww / hh, w / h, rel_tol=0.1), label


# The sizes of the shared benchmark images (t2v_metrics, imagereward, tifa), the golden drawings and a portrait.
BUDGET_SIZES = [(1920, 1275), (1920, 1280), (1024, 1024), (256, 256), (512, 512), (768, 768), (240, 240), (1080, 1920)]


def test_budget_resize_on_drawn_images():
    _check_budget_resize((f"{w}x{h}", pattern(w, h)) for w, h in BUDGET_SIZES)
    assert budget_size(1024, 1024) == (448, 448) and 448 * 448 == PIXEL_BUDGET
    assert budget_size(1920, 1275) == (532, 364) and budget_size(1080, 1920) == (336, 588)  # 28-multiples near the budget
    assert budget_size(256, 256) == (448, 448)  # a small square image is enlarged to the budget


@pytest.mark.shared_data
def test_budget_resize_on_real_images():
    paths = sorted(p for p in need_shared(SHARED_DATA / "images").rglob("*") if p.suffix in (".png", ".jpg", ".webp"))
    sizes = {Image.open(p).size for p in paths}
    assert (1920, 1275) in sizes and (256, 256) in sizes  # non-square and upscaled cases are covered
    assert sizes <= set(BUDGET_SIZES)  # the drawn test covers every real size
    opened = [(str(p), Image.open(p)) for p in paths]
    try:
        _check_budget_resize(opened)
    finally:
        for _, img in opened:
            img.close()
