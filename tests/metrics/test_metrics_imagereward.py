"""ImageReward: an original-format tiny checkpoint, scored by pixeljury and by a hand-written forward pass."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from metrics_tiny import random_images
from pixeljury.metrics.imagereward import REWARD_MEAN, REWARD_STD
from pixeljury.metrics.preprocess import clip_center_crop
from pixeljury.metrics.registry import load_metric

pytestmark = pytest.mark.slow

V_WIDTH, T_WIDTH, LAYERS, PATCH, IMAGE, HEADS = 128, 128, 2, 8, 32, 2  # heads = width / 64, as in BLIP
WORDS = ["a", "painting", "of", "an", "ocean", "with", "clouds", "and", "birds", "two", "cats", "red", "cube"]


def _original_checkpoint(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors under ImageReward.pt's own names and shapes."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *shape: torch.randn(*shape, generator=g) * 0.05  # noqa: E731
    ln = lambda n: (1 + r(n), r(n))  # noqa: E731
    sd: dict[str, torch.Tensor] = {}
    v, t = "blip.visual_encoder.", "blip.text_encoder."
    sd[v + "patch_embed.proj.weight"], sd[v + "patch_embed.proj.bias"] = r(V_WIDTH, 3, PATCH, PATCH), r(V_WIDTH)
    sd[v + "cls_token"], sd[v + "pos_embed"] = r(1, 1, V_WIDTH), r(1, (IMAGE // PATCH) ** 2 + 1, V_WIDTH)
    for i in range(LAYERS):
        b = f"{v}blocks.{i}."
        sd[b + "norm1.weight"], sd[b + "norm1.bias"] = ln(V_WIDTH)
        sd[b + "attn.qkv.weight"], sd[b + "attn.qkv.bias"] = r(3 * V_WIDTH, V_WIDTH), r(3 * V_WIDTH)
        sd[b + "attn.proj.weight"], sd[b + "attn.proj.bias"] = r(V_WIDTH, V_WIDTH), r(V_WIDTH)
        sd[b + "norm2.weight"], sd[b + "norm2.bias"] = ln(V_WIDTH)
        sd[b + "mlp.fc1.weight"], sd[b + "mlp.fc1.bias"] = r(2 * V_WIDTH, V_WIDTH), r(2 * V_WIDTH)
        sd[b + "mlp.fc2.weight"], sd[b + "mlp.fc2.bias"] = r(V_WIDTH, 2 * V_WIDTH), r(V_WIDTH)
    sd[v + "norm.weight"], sd[v + "norm.bias"] = ln(V_WIDTH)
    sd[t + "embeddings.word_embeddings.weight"] = r(5 + len(WORDS), T_WIDTH) * 10
    sd[t + "embeddings.position_embeddings.weight"] = r(40, T_WIDTH) * 10
    sd[t + "embeddings.LayerNorm.weight"], sd[t + "embeddings.LayerNorm.bias"] = ln(T_WIDTH)
    for i in range(LAYERS):
        b = f"{t}encoder.layer.{i}."
        for part, kv_width in (("attention", T_WIDTH), ("crossattention", V_WIDTH)):
            sd[b + f"{part}.self.query.weight"], sd[b + f"{part}.self.query.bias"] = r(T_WIDTH, T_WIDTH), r(T_WIDTH)
            for name in ("key", "value"):
                sd[b + f"{part}.self.{name}.weight"], sd[b + f"{part}.self.{name}.bias"] = r(T_WIDTH, kv_width), r(T_WIDTH)
            sd[b + f"{part}.output.dense.weight"], sd[b + f"{part}.output.dense.bias"] = r(T_WIDTH, T_WIDTH), r(T_WIDTH)
            sd[b + f"{part}.output.LayerNorm.weight"], sd[b + f"{part}.output.LayerNorm.bias"] = ln(T_WIDTH)
        sd[b + "intermediate.dense.weight"], sd[b + "intermediate.dense.bias"] = r(2 * T_WIDTH, T_WIDTH), r(2 * T_WIDTH)
        sd[b + "output.dense.weight"], sd[b + "output.dense.bias"] = r(T_WIDTH, 2 * T_WIDTH), r(T_WIDTH)
        sd[b + "output.LayerNorm.weight"], sd[b + "output.LayerNorm.bias"] = ln(T_WIDTH)
    widths = [T_WIDTH, 1024, 128, 64, 16, 1]
    for idx, (i, o) in zip((0, 2, 4, 6, 7), zip(widths, widths[1:])):
        sd[f"mlp.layers.{idx}.weight"], sd[f"mlp.layers.{idx}.bias"] = r(o, i) * 4, r(o)
    return sd


def _attention(q, k, v, heads, mask=None):
    b, n, d = q.shape
    split = lambda x: x.reshape(b, x.shape[1], heads, d // heads).transpose(1, 2)  # noqa: E731
    scores = split(q) @ split(k).transpose(-1, -2) / math.sqrt(d // heads)
    if mask is not None:
        scores = scores.masked_fill(mask[:, None, None, :] == 0, float("-inf"))
    return (scores.softmax(-1) @ split(v)).transpose(1, 2).reshape(b, n, d)


def _reference_reward(sd, pixels, ids, mask) -> torch.Tensor:
    """BLIP ViT + BERT-with-cross-attention + MLP, written from the papers' definitions."""
    v, t = "blip.visual_encoder.", "blip.text_encoder."
    lin = lambda x, name: F.linear(x, sd[name + ".weight"], sd[name + ".bias"])  # noqa: E731
    norm = lambda x, name, eps: F.layer_norm(x, x.shape[-1:], sd[name + ".weight"], sd[name + ".bias"], eps)  # noqa: E731
    x = F.conv2d(pixels, sd[v + "patch_embed.proj.weight"], sd[v + "patch_embed.proj.bias"], stride=PATCH)
    x = torch.cat([sd[v + "cls_token"].expand(len(x), -1, -1), x.flatten(2).transpose(1, 2)], 1) + sd[v + "pos_embed"]
    for i in range(LAYERS):
        b = f"{v}blocks.{i}."
        q, k, val = lin(norm(x, b + "norm1", 1e-6), b + "attn.qkv").chunk(3, dim=-1)
        x = x + lin(_attention(q, k, val, HEADS), b + "attn.proj")
        x = x + lin(F.gelu(lin(norm(x, b + "norm2", 1e-6), b + "mlp.fc1")), b + "mlp.fc2")
    image = norm(x, v + "norm", 1e-6)
    h = sd[t + "embeddings.word_embeddings.weight"][ids] + sd[t + "embeddings.position_embeddings.weight"][: ids.shape[1]]
    h = norm(h, t + "embeddings.LayerNorm", 1e-12)
    for i in range(LAYERS):
        b = f"{t}encoder.layer.{i}."
        for part, kv, m in (("attention", h, mask), ("crossattention", image, None)):
            ctx = _attention(lin(h, b + f"{part}.self.query"), lin(kv, b + f"{part}.self.key"),
                             lin(kv, b + f"{part}.self.value"), HEADS, m)
            h = norm(lin(ctx, b + f"{part}.output.dense") + h, b + f"{part}.output.LayerNorm", 1e-12)
        h = norm(lin(F.gelu(lin(h, b + "intermediate.dense")), b + "output.dense") + h, b + "output.LayerNorm", 1e-12)
    y = h[:, 0]
    for idx in (0, 2, 4, 6, 7):  # dropout layers are identity at inference
        y = lin(y, f"mlp.layers.{idx}")
    return (y[:, 0] - REWARD_MEAN) / REWARD_STD


def _tokenizer(folder):
    from transformers import BertTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    return BertTokenizer(str(folder / "vocab.txt"))


def test_imagereward_matches_a_hand_written_forward(tmp_path):
    sd = _original_checkpoint()
    checkpoint = tmp_path / "ImageReward.pt"
    torch.save(sd, checkpoint)
    tokenizer = _tokenizer(tmp_path / "tok")
    metric = load_metric("imagereward", weights=str(checkpoint), tokenizer=tokenizer, device="cpu")
    prompts = ["a painting of an ocean with clouds and birds", "two cats", "a red cube", "two red cats"]
    images = random_images(4, seed=3)
    results = metric.score(prompts, images, batch_size=3)
    tokens = tokenizer(prompts, padding="max_length", truncation=True, max_length=35, return_tensors="pt")
    pixels = torch.stack([clip_center_crop(IMAGE)(img) for img in images])
    with torch.no_grad():
        expected = _reference_reward(sd, pixels, tokens.input_ids, tokens.attention_mask)
    np.testing.assert_allclose([r.value for r in results], expected.numpy(), rtol=1e-4, atol=1e-4)
    assert np.std([r.value for r in results]) > 1e-3  # the prompts and images really change the reward
    assert results[0].convention == "imagereward@v1.0-normalized"
    # Keyed on the checkpoint's content and, for a tokenizer given as an object, its class and vocabulary.
    from pixeljury.metrics.weights import content_fingerprint, tokenizer_identity

    assert metric.weights_label() == (f"local:{checkpoint.resolve()}@{content_fingerprint(checkpoint)}"
                                      f"+tokenizer={tokenizer_identity(tokenizer)}")


def test_imagereward_refuses_a_foreign_checkpoint(tmp_path):
    from pixeljury.metrics.base import MetricUnavailable

    path = tmp_path / "other.pt"
    torch.save({"visual.conv1.weight": torch.zeros(1)}, path)
    with pytest.raises(MetricUnavailable, match="not an ImageReward checkpoint"):
        load_metric("imagereward", weights=str(path), tokenizer=_tokenizer(tmp_path / "tok"), device="cpu")


def test_prompts_over_35_tokens_are_truncated_and_flagged(tmp_path):
    checkpoint = tmp_path / "ImageReward.pt"
    torch.save(_original_checkpoint(), checkpoint)
    tokenizer = _tokenizer(tmp_path / "tok")
    metric = load_metric("imagereward", weights=str(checkpoint), tokenizer=tokenizer, device="cpu")
    forty_words = " ".join(WORDS[i % len(WORDS)] for i in range(40))  # [CLS] + 40 + [SEP] = 42 tokens
    first_33_words = " ".join(forty_words.split()[:33])  # [CLS] + 33 + [SEP] = 35: exactly the limit
    image = random_images(1, seed=2)[0]
    results = metric.score(["two cats", forty_words, first_33_words], [image] * 3)
    assert [r.tokens_dropped for r in results] == [0, 7, 0]
    assert [r.truncated for r in results] == [False, True, False]
    assert {r.token_limit for r in results} == {35}
    assert results[1].value == pytest.approx(results[2].value, abs=1e-5)
