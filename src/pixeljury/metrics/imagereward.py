"""ImageReward v1.0: BLIP ViT-L image encoder, BERT text encoder cross-attending to the image, MLP head.

The original ``ImageReward.pt`` (keys ``blip.visual_encoder.*`` timm-style ViT, ``blip.text_encoder.*``
BLIP "med" BERT, ``mlp.layers.*``) is converted on load into transformers' BlipVisionModel and
BlipTextModel; the reward is the head on the text encoder's [CLS] state, then normalised.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from pixeljury.metrics import weights as weights_mod
from pixeljury.metrics.base import MetricResult, MetricSpec, MetricUnavailable
from pixeljury.metrics.heads import RewardMLP, load_head
from pixeljury.metrics.preprocess import clip_center_crop
from pixeljury.metrics.torch_base import TorchMetric, default_device

REWARD_MEAN = 0.16717362830052426
REWARD_STD = 1.0333394966054072
TEXT_MAX_LENGTH = 35  # ImageReward pads/truncates prompts to 35 tokens
# Part of every result key: bump when the image transform or the prompt tokenisation changes values.
PREPROCESSING_VERSION = "imagereward-clip-center-crop-bert35.1"
HEAD_DIM = 64  # BLIP ViT and BERT heads are 64 wide; head counts are width / 64


class ImageReward(TorchMetric):
    default_batch_size = 32
    preprocessing_version = PREPROCESSING_VERSION

    def __init__(self, spec: MetricSpec, vision: Any, text: Any, head: RewardMLP, tokenizer: Any, *,
                 weights_label: str | None = None, device: str | None = None, dtype: str | None = None):
        self.spec = spec
        self.vision, self.text, self.head, self.tokenizer = vision, text, head, tokenizer
        self.transform = clip_center_crop(int(vision.config.image_size))
        self._weights_label = weights_label
        self.modules = [vision, text, head]
        self.to(device=device or default_device(), dtype=dtype or "float32")

    def raw_rewards(self, prompts: list[str], images: list[Image.Image]) -> torch.Tensor:
        """The head's output before normalisation, float32, shape (N,)."""
        image_embeds = self.vision(pixel_values=self.pixel_batch([self.transform(i) for i in images])).last_hidden_state
        image_mask = torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=self.device)
        tokens = self.tokenizer(prompts, padding="max_length", truncation=True, max_length=TEXT_MAX_LENGTH,
                                return_tensors="pt")
        text_out = self.text(input_ids=tokens["input_ids"].to(self.device),
                             attention_mask=tokens["attention_mask"].to(self.device),
                             encoder_hidden_states=image_embeds, encoder_attention_mask=image_mask)
        cls_state = text_out.last_hidden_state[:, 0, :]
        return self.head(cls_state.to(next(self.head.parameters()).dtype)).float().squeeze(-1)

    def tokens_dropped(self, prompts: list[str]) -> list[int]:
        """Tokens of each prompt ([CLS] and [SEP] included) beyond :data:`TEXT_MAX_LENGTH`: what the
        tokenizer's truncation cuts off the end (keeping [SEP]), as the official package does."""
        # verbose=False: the over-length warning is what this count replaces.
        ids = self.tokenizer(prompts, truncation=False, verbose=False)["input_ids"]
        return [max(0, len(tokens) - TEXT_MAX_LENGTH) for tokens in ids]

    def _score_batch(self, prompts: list[str], images: list[Image.Image]) -> list[MetricResult]:
        values = ((self.raw_rewards(prompts, images) - REWARD_MEAN) / REWARD_STD).tolist()
        return [MetricResult(self.name, self.convention, value, tokens_dropped=dropped, token_limit=TEXT_MAX_LENGTH)
                for value, dropped in zip(values, self.tokens_dropped(prompts))]


# -- conversion of the original checkpoint ---------------------------------------------------------

_VIT_BLOCK = {
    "norm1": "layer_norm1", "norm2": "layer_norm2", "attn.qkv": "self_attn.qkv",
    "attn.proj": "self_attn.projection", "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2",
}


def convert_blip_vit(sd: dict[str, torch.Tensor], prefix: str = "blip.visual_encoder.") -> dict[str, torch.Tensor]:
    """timm-style BLIP ViT names -> BlipVisionModel names (same tensors, no reshapes)."""
    out: dict[str, torch.Tensor] = {}
    for key, tensor in sd.items():
        if not key.startswith(prefix):
            continue
        name = key[len(prefix):]
        block = re.match(r"blocks\.(\d+)\.(.+)\.(weight|bias)$", name)
        if block:
            layer, module, leaf = block.groups()
            out[f"encoder.layers.{layer}.{_VIT_BLOCK[module]}.{leaf}"] = tensor
        elif name == "cls_token":
            out["embeddings.class_embedding"] = tensor
        elif name == "pos_embed":
            out["embeddings.position_embedding"] = tensor
        elif name.startswith("patch_embed.proj."):
            out["embeddings.patch_embedding." + name.rsplit(".", 1)[1]] = tensor
        elif name.startswith("norm."):
            out["post_layernorm." + name.rsplit(".", 1)[1]] = tensor
        else:
            raise ValueError(f"unexpected BLIP ViT tensor {key}")
    return out


def _count(sd: dict[str, torch.Tensor], pattern: str) -> int:
    found = {int(m.group(1)) for k in sd for m in [re.match(pattern, k)] if m}
    return max(found) + 1 if found else 0


def configs_from_checkpoint(sd: dict[str, torch.Tensor]) -> tuple[Any, Any]:
    from transformers import BlipTextConfig, BlipVisionConfig

    v, t = "blip.visual_encoder.", "blip.text_encoder."
    width, _, patch, _ = sd[v + "patch_embed.proj.weight"].shape
    grid = int(round((sd[v + "pos_embed"].shape[1] - 1) ** 0.5))
    vision = BlipVisionConfig(
        hidden_size=width, num_attention_heads=width // HEAD_DIM, patch_size=patch, image_size=patch * grid,
        num_hidden_layers=_count(sd, re.escape(v) + r"blocks\.(\d+)\."),
        intermediate_size=sd[v + "blocks.0.mlp.fc1.weight"].shape[0],
        layer_norm_eps=1e-6,  # BLIP's ViT builds its LayerNorms with eps=1e-6
    )
    vocab, hidden = sd[t + "embeddings.word_embeddings.weight"].shape
    text = BlipTextConfig(
        vocab_size=vocab, hidden_size=hidden, num_attention_heads=hidden // HEAD_DIM,
        num_hidden_layers=_count(sd, re.escape(t) + r"encoder\.layer\.(\d+)\."),
        intermediate_size=sd[t + "encoder.layer.0.intermediate.dense.weight"].shape[0],
        encoder_hidden_size=sd[t + "encoder.layer.0.crossattention.self.key.weight"].shape[1],
        max_position_embeddings=sd[t + "embeddings.position_embeddings.weight"].shape[0],
        layer_norm_eps=1e-12, is_decoder=True,  # is_decoder only makes the cross-attention layers exist
        bos_token_id=None, sep_token_id=None, pad_token_id=0,
    )
    return vision, text


def imagereward_from_state_dict(spec: MetricSpec, sd: dict[str, torch.Tensor], tokenizer: Any,
                                **kw: Any) -> ImageReward:
    """Build the metric from an original-format state dict (strict: every tensor must be used)."""
    from transformers import BlipTextModel, BlipVisionModel

    if isinstance(sd.get("state_dict"), dict):
        sd = sd["state_dict"]
    if "blip.visual_encoder.patch_embed.proj.weight" not in sd:
        raise MetricUnavailable("not an ImageReward checkpoint (no blip.visual_encoder.patch_embed.proj.weight)")
    vision_cfg, text_cfg = configs_from_checkpoint(sd)
    vision = BlipVisionModel(vision_cfg)
    vision.load_state_dict(convert_blip_vit(sd), strict=True)
    text = BlipTextModel(text_cfg, add_pooling_layer=False)
    prefix = "blip.text_encoder."
    text_sd = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix) and "pooler" not in k
               and not k.endswith("position_ids")}  # a buffer, rebuilt by the model
    missing, unexpected = text.load_state_dict(text_sd, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise MetricUnavailable(f"ImageReward text encoder mismatch: missing {missing[:5]}, unexpected {unexpected[:5]}")
    head = load_head(RewardMLP(text_cfg.hidden_size), sd, prefix="mlp.")
    return ImageReward(spec, vision.eval(), text.eval(), head, tokenizer, **kw)


def load_imagereward(spec: MetricSpec, *, weights: Any = None, tokenizer: Any = None, revision: str | None = None,
                     device: str | None = None, dtype: str | None = None) -> ImageReward:
    """``weights``: ImageReward.pt path or hub id (default THUDM/ImageReward); ``tokenizer``: a tokenizer or
    path (default bert-base-uncased, which BLIP's tokenizer extends only with [DEC]/[ENC])."""
    from transformers import AutoTokenizer

    assert spec.weights is not None
    checkpoint = weights_mod.resolve_weights(spec.weights, weights, revision=revision)
    try:
        sd = torch.load(checkpoint.path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for unreadable files
        raise MetricUnavailable(f"cannot read ImageReward checkpoint {checkpoint.path}: {exc}") from exc
    if tokenizer is None or isinstance(tokenizer, (str, Path)):
        source = weights_mod.resolve_weights(spec.weights.companion(), tokenizer)
        tokenizer, tokenizer_label = AutoTokenizer.from_pretrained(source.path), source.identity
    else:
        tokenizer_label = weights_mod.tokenizer_identity(tokenizer)
    label = weights_mod.combined_identity(checkpoint.identity, tokenizer=tokenizer_label)
    return imagereward_from_state_dict(spec, sd, tokenizer, weights_label=label, device=device, dtype=dtype)


__all__ = ["PREPROCESSING_VERSION", "REWARD_MEAN", "REWARD_STD", "ImageReward", "convert_blip_vit", "imagereward_from_state_dict",
           "load_imagereward"]
