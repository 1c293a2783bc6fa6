from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from metrics_tiny import GOLDEN_IMAGES, in_repo_images, photo_like, random_images, save_tiny_clip, tiny_clip_model, tiny_clip_tokenizer
from pixeljury.metrics.clip import HESSEL_PREFIX, ClipSimilarity
from pixeljury.metrics.preprocess import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, clip_center_crop, hpsv2_transform
from pixeljury.metrics.registry import get_spec, load_metric

pytestmark = pytest.mark.slow

PROMPTS = ["a red cube", "two cats at a window", "a red cube", "an ocean with birds", "a red cube"]


def _normalise(arr_uint8: np.ndarray) -> np.ndarray:
    x = arr_uint8.astype(np.float64) / 255.0
    return (x - np.array(OPENAI_CLIP_MEAN)) / np.array(OPENAI_CLIP_STD)


def _reference_cosines(model, tokenizer, prompts, pixel_values, prefix=""):
    """cos via the model's own full forward: logits_per_image = exp(logit_scale) * cos."""
    tokens = tokenizer([prefix + p for p in prompts], padding="max_length", truncation=True, max_length=24,
                       return_tensors="pt")
    with torch.no_grad():
        out = model(input_ids=tokens.input_ids, attention_mask=tokens.attention_mask, pixel_values=pixel_values)
        return (torch.diagonal(out.logits_per_image) / model.logit_scale.exp()).double()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tok")
    return tiny_clip_model(seed=3), tiny_clip_tokenizer(folder)


def _pixels(images, transform):
    return torch.stack([transform(img) for img in images])


@pytest.mark.parametrize("convention,scale,clamp,prefix", [
    ("clipscore@hessel-2.5x", 2.5, True, HESSEL_PREFIX),
    ("clipscore@torchmetrics-100x", 100.0, True, ""),
    ("clip@raw-cos", 1.0, False, ""),
])
def test_clip_scores_match_the_formula(tiny, convention, scale, clamp, prefix):
    model, tokenizer = tiny
    images = random_images(5)
    metric = ClipSimilarity(get_spec(convention), model, tokenizer, clip_center_crop(32), scale=scale,
                            clamp_at_zero=clamp, prefix=prefix, device="cpu")
    results = metric.score(PROMPTS, images, batch_size=2)
    cos = _reference_cosines(model, tokenizer, PROMPTS, _pixels(images, clip_center_crop(32)), prefix)
    expected = scale * (cos.clamp(min=0) if clamp else cos)
    assert [r.convention for r in results] == [convention] * 5
    np.testing.assert_allclose([r.value for r in results], expected.numpy(), rtol=1e-5, atol=1e-6)
    if clamp:
        assert all(r.value >= 0 for r in results)


def test_clamp_zeroes_negative_cosines(tiny):
    """Negating the text projection flips every cosine's sign, so each item is clamped in one of the two."""
    import copy

    model, tokenizer = tiny
    flipped = copy.deepcopy(model)
    with torch.no_grad():
        flipped.text_projection.weight.neg_()
    images = random_images(5)
    cos = _reference_cosines(model, tokenizer, PROMPTS, _pixels(images, clip_center_crop(32)), HESSEL_PREFIX)
    values = []
    for m in (model, flipped):
        metric = ClipSimilarity(get_spec("clipscore"), m, tokenizer, clip_center_crop(32), scale=2.5,
                                clamp_at_zero=True, prefix=HESSEL_PREFIX, device="cpu")
        values.append(np.array([r.value for r in metric.score(PROMPTS, images)]))
    np.testing.assert_allclose(values[0], 2.5 * np.maximum(cos.numpy(), 0), atol=1e-6)
    np.testing.assert_allclose(values[1], 2.5 * np.maximum(-cos.numpy(), 0), atol=1e-6)
    assert (np.minimum(values[0], values[1]) == 0).all()


def test_pickscore_scale_and_softmax_per_prompt(tiny):
    model, tokenizer = tiny
    images = random_images(5)
    metric = ClipSimilarity(get_spec("pickscore"), model, tokenizer, clip_center_crop(32), scale="logit_scale",
                            clamp_at_zero=False, softmax_per_prompt=True, device="cpu")
    results = metric.score(PROMPTS, images, batch_size=3)
    cos = _reference_cosines(model, tokenizer, PROMPTS, _pixels(images, clip_center_crop(32)))
    scores = float(model.logit_scale.detach().exp()) * cos
    np.testing.assert_allclose([r.value for r in results], scores.numpy(), rtol=1e-5)
    # "a red cube" is items 0, 2, 4: their probabilities are the softmax of their three scores.
    cube = torch.softmax(scores[[0, 2, 4]], dim=0)
    np.testing.assert_allclose([results[i].extras["probability"] for i in (0, 2, 4)], cube.numpy(), rtol=1e-6)
    assert results[1].extras["probability"] == pytest.approx(1.0)


def test_load_metric_from_a_local_checkpoint_folder(tmp_path, tiny):
    folder = save_tiny_clip(tmp_path / "clip", seed=3)
    metric = load_metric("clipscore@torchmetrics-100x", weights=str(folder), device="cpu")
    model, tokenizer = tiny
    images = random_images(3)
    got = [r.value for r in metric.score(PROMPTS[:3], images)]
    cos = _reference_cosines(model, tokenizer, PROMPTS[:3], _pixels(images, clip_center_crop(32)))
    np.testing.assert_allclose(got, (100 * cos.clamp(min=0)).numpy(), rtol=1e-5, atol=1e-5)
    assert metric.weights_label().startswith("local:")


def test_hpsv2_checkpoint_from_open_clip_converts_exactly(tmp_path):
    open_clip = pytest.importorskip("open_clip", reason="open_clip_torch (pixeljury[openclip]) not installed")
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

    from pixeljury.metrics.clip import hpsv2_from_openclip_state

    torch.manual_seed(7)
    reference = CLIP(embed_dim=16,
                     vision_cfg=CLIPVisionCfg(layers=2, width=32, head_width=16, patch_size=8, image_size=32),
                     text_cfg=CLIPTextCfg(context_length=24, vocab_size=514, width=32, heads=4, layers=2)).eval()
    checkpoint = {"state_dict": {f"module.{k}": v for k, v in reference.state_dict().items()}}  # HPSv2 layout
    tokenizer = tiny_clip_tokenizer(tmp_path / "tok")
    images = [Image.open(GOLDEN_IMAGES / "painter-faithful-0.png").convert("RGB")]
    images += random_images(2, seed=5)
    prompts = PROMPTS[:3]
    for convention in ("hpsv2@raw-cos", "hpsv2@x-logit-scale"):
        metric = hpsv2_from_openclip_state(get_spec(convention), checkpoint, tokenizer, vision_heads=2, text_heads=4,
                                           device="cpu")
        got = [r.value for r in metric.score(prompts, images)]
        tokens = tokenizer(prompts, padding="max_length", truncation=True, max_length=24, return_tensors="pt")
        with torch.no_grad():
            img = reference.encode_image(_pixels(images, hpsv2_transform(32)), normalize=True)
            txt = reference.encode_text(tokens.input_ids, normalize=True)
        cos = (img * txt).sum(-1).double()
        scale = float(reference.logit_scale.detach().exp()) if convention.endswith("x-logit-scale") else 1.0
        np.testing.assert_allclose(got, (scale * cos).numpy(), rtol=1e-4, atol=1e-5)


# -- preprocessing on images of real sizes ------------------------------------------------------------

def test_clip_center_crop_matches_a_hand_made_pil_pipeline():
    for img in in_repo_images():
        w, h = img.size
        short = min(w, h)
        new_w, new_h = (224, int(224 * h / w)) if w == short else (int(224 * w / h), 224)
        resized = np.asarray(img.resize((new_w, new_h), Image.Resampling.BICUBIC))
        top, left = int(round((new_h - 224) / 2)), int(round((new_w - 224) / 2))
        expected = _normalise(resized[top : top + 224, left : left + 224]).transpose(2, 0, 1)
        got = clip_center_crop(224)(img).numpy()
        np.testing.assert_allclose(got, expected, atol=1e-5)


def test_hpsv2_keeps_the_whole_non_square_image_with_black_bars():
    img = photo_like((1920, 1280))
    canvas = np.zeros((1920, 1920, 3), dtype=np.uint8)
    canvas[320:1600] = np.asarray(img)
    expected = np.asarray(Image.fromarray(canvas).resize((224, 224), Image.Resampling.BICUBIC))
    got = hpsv2_transform(224)(img).numpy()
    np.testing.assert_allclose(got, _normalise(expected).transpose(2, 0, 1), atol=1e-5)
    black = _normalise(np.zeros((1, 1, 3), dtype=np.uint8))[0, 0]
    np.testing.assert_allclose(got[:, :30, :].mean(axis=(1, 2)), black, atol=1e-5)  # the top bar is padding


def test_aesthetic_is_the_mlp_on_the_normalised_image_embedding(tmp_path, tiny):
    from pixeljury.metrics.heads import RewardMLP

    model, _ = tiny
    torch.manual_seed(11)
    head = RewardMLP(16)
    head_file = tmp_path / "head.pth"
    torch.save(head.state_dict(), head_file)  # the original checkpoint layout: layers.N.weight/bias
    clip_dir = save_tiny_clip(tmp_path / "clip", seed=3)
    metric = load_metric("aesthetic", weights=str(head_file), clip_weights=str(clip_dir), device="cpu")
    images = random_images(4)
    got = [r.value for r in metric.score(None, images, batch_size=3)]
    with torch.no_grad():
        emb = model.get_image_features(pixel_values=_pixels(images, clip_center_crop(32)))
        emb = getattr(emb, "pooler_output", emb).double().numpy()
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    x = emb
    linears = [m for m in head.layers if isinstance(m, torch.nn.Linear)]  # dropout is identity at inference
    for layer in linears:
        x = x @ layer.weight.detach().double().numpy().T + layer.bias.detach().double().numpy()
    np.testing.assert_allclose(got, x[:, 0], rtol=1e-4, atol=1e-5)
    assert [r.convention for r in metric.score(None, images[:1])] == ["aesthetic@laion-v2-l14"]


# -- prompts over the text encoder's limit ------------------------------------------------------------

THIRTY_WORDS = " ".join("abcdefghijklmnopqrstuvwxyz"[i % 26] for i in range(30))  # 30 one-letter tokens


def test_prompts_over_the_context_length_are_truncated_and_flagged(tiny):
    """The tiny text encoder takes 24 tokens: start + 22 + end. 30 one-letter words are 32 tokens, so 8
    are dropped, and the score is that of the first 22 words (the head is kept, the end token too)."""
    model, tokenizer = tiny
    image, other = random_images(2, seed=6)
    metric = ClipSimilarity(get_spec("clip"), model, tokenizer, clip_center_crop(32), scale=1.0,
                            clamp_at_zero=False, device="cpu")
    first_22_words = THIRTY_WORDS[: 2 * 22 - 1]
    results = metric.score(["a red cube", THIRTY_WORDS, first_22_words], [other, image, image], batch_size=2)
    assert [r.tokens_dropped for r in results] == [0, 8, 0]
    assert [r.truncated for r in results] == [False, True, False]
    assert {r.token_limit for r in results} == {24}
    assert results[1].value == pytest.approx(results[2].value, abs=1e-6)


def test_the_hessel_prefix_counts_toward_the_limit(tiny):
    model, tokenizer = tiny
    metric = ClipSimilarity(get_spec("clipscore"), model, tokenizer, clip_center_crop(32), scale=2.5,
                            clamp_at_zero=True, prefix=HESSEL_PREFIX, device="cpu")
    # "A photo depicts " is 13 tokens: with start and end, "a red cube" makes 23, "two cats at a window" 31.
    results = metric.score(["a red cube", "two cats at a window"], random_images(2))
    assert [(r.tokens_dropped, r.truncated) for r in results] == [(0, False), (7, True)]


def test_metrics_without_a_text_limit_report_none(tmp_path, tiny):
    from pixeljury.metrics.heads import RewardMLP

    head_file = tmp_path / "head.pth"
    torch.save(RewardMLP(16).state_dict(), head_file)
    metric = load_metric("aesthetic", weights=str(head_file), clip_weights=str(save_tiny_clip(tmp_path / "c")),
                         device="cpu")
    result = metric.score(None, random_images(1))[0]
    assert (result.tokens_dropped, result.token_limit, result.truncated) == (None, None, False)
