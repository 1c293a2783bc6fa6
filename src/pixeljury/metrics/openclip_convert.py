"""Load open_clip (OpenAI-layout) CLIP checkpoints into transformers' ``CLIPModel``.

HPSv2 ships open_clip ViT-H-14 state dicts; converting them on load lets every CLIP-family metric
run through one batched implementation. Only tensors are renamed/split/transposed; no numerics change.
"""

from __future__ import annotations

import re
from typing import Any

import torch
from transformers import CLIPConfig, CLIPModel

# Head counts cannot be read from tensor shapes; these are the open_clip model configs.
KNOWN_HEADS = {"ViT-H-14": (16, 16), "ViT-L-14": (16, 12), "ViT-B-32": (12, 8), "ViT-B-16": (12, 8)}


def unwrap_state_dict(obj: Any) -> dict[str, torch.Tensor]:
    """Accept a bare state dict or a training checkpoint ({'state_dict': ...}); drop DDP 'module.' prefixes."""
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not obj:
        raise ValueError("checkpoint holds no state dict")
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in obj.items()}


def _count_layers(sd: dict[str, torch.Tensor], prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    found = {int(m.group(1)) for k in sd for m in [pattern.match(k)] if m}
    return max(found) + 1 if found else 0


def config_from_openclip(sd: dict[str, torch.Tensor], *, vision_heads: int, text_heads: int,
                         hidden_act: str = "gelu") -> CLIPConfig:
    """A CLIPConfig with the sizes read from the tensors. ``hidden_act``: open_clip's LAION models use
    exact GELU ("gelu"); OpenAI's use QuickGELU ("quick_gelu")."""
    if "visual.conv1.weight" not in sd or "token_embedding.weight" not in sd:
        raise ValueError("not an open_clip ViT state dict (no visual.conv1.weight / token_embedding.weight)")
    vocab, text_width = sd["token_embedding.weight"].shape
    vision_width, _, patch, _ = sd["visual.conv1.weight"].shape
    grid = int(round((sd["visual.positional_embedding"].shape[0] - 1) ** 0.5))
    text = dict(
        vocab_size=vocab, hidden_size=text_width, num_attention_heads=text_heads,
        num_hidden_layers=_count_layers(sd, "transformer.resblocks."),
        intermediate_size=sd["transformer.resblocks.0.mlp.c_fc.weight"].shape[0],
        max_position_embeddings=sd["positional_embedding"].shape[0], hidden_act=hidden_act,
        # eos id 2 selects transformers' argmax pooling: open_clip pools at the highest token id (EOT).
        eos_token_id=2, bos_token_id=vocab - 2, pad_token_id=0,
    )
    vision = dict(
        hidden_size=vision_width, num_attention_heads=vision_heads, patch_size=patch, image_size=patch * grid,
        num_hidden_layers=_count_layers(sd, "visual.transformer.resblocks."),
        intermediate_size=sd["visual.transformer.resblocks.0.mlp.c_fc.weight"].shape[0], hidden_act=hidden_act,
    )
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=sd["text_projection"].shape[1])


def _convert_block(sd: dict[str, torch.Tensor], src: str, dst: str, out: dict[str, torch.Tensor]) -> None:
    q, k, v = sd[f"{src}attn.in_proj_weight"].chunk(3, dim=0)
    qb, kb, vb = sd[f"{src}attn.in_proj_bias"].chunk(3, dim=0)
    for name, w, b in (("q_proj", q, qb), ("k_proj", k, kb), ("v_proj", v, vb)):
        out[f"{dst}self_attn.{name}.weight"] = w
        out[f"{dst}self_attn.{name}.bias"] = b
    renames = {
        "attn.out_proj": "self_attn.out_proj", "ln_1": "layer_norm1", "ln_2": "layer_norm2",
        "mlp.c_fc": "mlp.fc1", "mlp.c_proj": "mlp.fc2",
    }
    for old, new in renames.items():
        for leaf in ("weight", "bias"):
            out[f"{dst}{new}.{leaf}"] = sd[f"{src}{old}.{leaf}"]


def convert_openclip_state_dict(sd: dict[str, torch.Tensor], config: CLIPConfig) -> dict[str, torch.Tensor]:
    """open_clip names -> transformers CLIPModel names. Projections are stored as x @ P in open_clip and
    as Linear weights (P transposed) in transformers."""
    out: dict[str, torch.Tensor] = {
        "logit_scale": sd["logit_scale"].reshape(()),
        "text_model.embeddings.token_embedding.weight": sd["token_embedding.weight"],
        "text_model.embeddings.position_embedding.weight": sd["positional_embedding"],
        "text_model.final_layer_norm.weight": sd["ln_final.weight"],
        "text_model.final_layer_norm.bias": sd["ln_final.bias"],
        "text_projection.weight": sd["text_projection"].t().contiguous(),
        "vision_model.embeddings.class_embedding": sd["visual.class_embedding"],
        "vision_model.embeddings.patch_embedding.weight": sd["visual.conv1.weight"],
        "vision_model.embeddings.position_embedding.weight": sd["visual.positional_embedding"],
        "vision_model.pre_layrnorm.weight": sd["visual.ln_pre.weight"],
        "vision_model.pre_layrnorm.bias": sd["visual.ln_pre.bias"],
        "vision_model.post_layernorm.weight": sd["visual.ln_post.weight"],
        "vision_model.post_layernorm.bias": sd["visual.ln_post.bias"],
        "visual_projection.weight": sd["visual.proj"].t().contiguous(),
    }
    for i in range(config.text_config.num_hidden_layers):
        _convert_block(sd, f"transformer.resblocks.{i}.", f"text_model.encoder.layers.{i}.", out)
    for i in range(config.vision_config.num_hidden_layers):
        _convert_block(sd, f"visual.transformer.resblocks.{i}.", f"vision_model.encoder.layers.{i}.", out)
    return out


def clip_model_from_openclip(sd: dict[str, torch.Tensor], *, vision_heads: int, text_heads: int,
                             hidden_act: str = "gelu") -> CLIPModel:
    """Build a CLIPModel and load the converted tensors strictly (a missing or extra tensor is an error)."""
    sd = unwrap_state_dict(sd)
    config = config_from_openclip(sd, vision_heads=vision_heads, text_heads=text_heads, hidden_act=hidden_act)
    model = CLIPModel(config)
    converted = convert_openclip_state_dict(sd, config)
    expected = set(model.state_dict())
    unused = sorted(k for k in converted if k not in expected)
    missing = sorted(k for k in expected if k not in converted and not k.endswith("position_ids"))
    if unused or missing:
        raise ValueError(f"open_clip conversion mismatch: missing {missing[:5]}, unused {unused[:5]}")
    model.load_state_dict(converted, strict=False)
    return model.eval()


__all__ = ["KNOWN_HEADS", "clip_model_from_openclip", "config_from_openclip", "convert_openclip_state_dict",
           "unwrap_state_dict"]
