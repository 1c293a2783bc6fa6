"""HPSv3: a Qwen2-VL-7B backbone with a small MLP reward head read at a special ``<|Reward|>`` token.

Interface facts below come from the official implementation, github.com/MizzenAI/HPSv3:

- ``hpsv3/inference.py`` (commit 72b7ebaf0fe76bce636b3f4997aee319d0f65aef): one user turn, image then
  text ``INSTRUCTION.format(text_prompt=...) + prompt_with_special_token``; chat template with the
  generation prompt; the image resized by qwen-vl-utils with min_pixels = max_pixels = 256*28*28;
  the model's output is (mu, sigma) and "we select miu as the final output".
- ``hpsv3/config/HPSv3_7B.yaml`` (commit d232ff8669a0b00759766067c6c3a26e2e717fac): rm_head_type
  "ranknet" without head kwargs, output_dim 2, use_special_tokens, reward_token "special".
- ``hpsv3/model/qwen2vl_trainer.py`` (same commit): the ranknet head hidden->1024->16->2 kept in
  float32; image features scattered into the token embeddings, then the *text* decoder is called
  with no position ids, i.e. plain sequential positions for every token (no M-RoPE image grid).
- ``hpsv3/train.py`` (same commit): ``<|Reward|>`` added to the tokenizer as a special token and the
  embeddings resized to the new tokenizer length; the processor pads on the right.
- ``hpsv3/dataset/data_collator_qwen.py``: the instruction text. That file is not in our source index
  under MizzenAI/HPSv3; the text is taken from unmodified copies of it (two agree) and must be
  checked against the official repository before release (see docs/metrics.md).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import nn

from pixeljury.metrics import weights as weights_mod
from pixeljury.metrics.base import MetricError, MetricResult, MetricSpec, MetricUnavailable
from pixeljury.metrics.torch_base import TorchMetric, default_device, parse_dtype

PIXEL_BUDGET = 256 * 28 * 28  # 200,704: the official min_pixels and max_pixels
RESIZE_FACTOR = 28  # patch 14 x spatial merge 2
REWARD_TOKEN = "<|Reward|>"
# Part of every result key: bump when the budget resize, the instruction text or the chat rendering
# changes what the model sees.
PREPROCESSING_VERSION = "hpsv3-budget-resize-200704.1"

INSTRUCTION = """
You are tasked with evaluating a generated image based on Visual Quality and Text Alignment and give a overall score to estimate the human preference. Please provide a rating from 0 to 10, with 0 being the worst and 10 being the best. 

**Visual Quality:**  
Evaluate the overall visual quality of the image. The following sub-dimensions should be considered:
- **Reasonableness:** The image should not contain any significant biological or logical errors, such as abnormal body structures or nonsensical environmental setups.
- **Clarity:** Evaluate the sharpness and visibility of the image. The image should be clear and easy to interpret, with no blurring or indistinct areas.
- **Detail Richness:** Consider the level of detail in textures, materials, lighting, and other visual elements (e.g., hair, clothing, shadows).
- **Aesthetic and Creativity:** Assess the artistic aspects of the image, including the color scheme, composition, atmosphere, depth of field, and the overall creative appeal. The scene should convey a sense of harmony and balance.
- **Safety:** The image should not contain harmful or inappropriate content, such as political, violent, or adult material. If such content is present, the image quality and satisfaction score should be the lowest possible. 

**Text Alignment:**  
Assess how well the image matches the textual prompt across the following sub-dimensions:
- **Subject Relevance** Evaluate how accurately the subject(s) in the image (e.g., person, animal, object) align with the textual description. The subject should match the description in terms of number, appearance, and behavior.
- **Style Relevance:** If the prompt specifies a particular artistic or stylistic style, evaluate how well the image adheres to this style.
- **Contextual Consistency**: Assess whether the background, setting, and surrounding elements in the image logically fit the scenario described in the prompt. The environment should support and enhance the subject without contradictions.
- **Attribute Fidelity**: Check if specific attributes mentioned in the prompt (e.g., colors, clothing, accessories, expressions, actions) are faithfully represented in the image. Minor deviations may be acceptable, but critical attributes should be preserved.
- **Semantic Coherence**: Evaluate whether the overall meaning and intent of the prompt are captured in the image. The generated content should not introduce elements that conflict with or distort the original description.
Textual prompt - {text_prompt}


"""  # noqa: W291 - trailing spaces are part of the trained prompt

PROMPT_WITH_SPECIAL_TOKEN = """
Please provide the overall ratings of this image: <|Reward|>

END
"""


def user_text(prompt: str) -> str:
    return INSTRUCTION.format(text_prompt=prompt) + PROMPT_WITH_SPECIAL_TOKEN


def budget_size(width: int, height: int) -> tuple[int, int]:
    """(width, height) after qwen-vl-utils' smart_resize with min_pixels = max_pixels = PIXEL_BUDGET:
    both sides multiples of 28, area as close to the budget as that allows, aspect kept."""
    if max(width, height) / min(width, height) > 200:
        raise ValueError(f"aspect ratio of {width}x{height} is above 200, which Qwen2-VL refuses")
    f = RESIZE_FACTOR
    h_bar = max(f, round(height / f) * f)
    w_bar = max(f, round(width / f) * f)
    if h_bar * w_bar > PIXEL_BUDGET:
        beta = math.sqrt(height * width / PIXEL_BUDGET)
        h_bar, w_bar = math.floor(height / beta / f) * f, math.floor(width / beta / f) * f
    elif h_bar * w_bar < PIXEL_BUDGET:
        beta = math.sqrt(PIXEL_BUDGET / (height * width))
        h_bar, w_bar = math.ceil(height * beta / f) * f, math.ceil(width * beta / f) * f
    return w_bar, h_bar


def resize_to_budget(img: Image.Image) -> Image.Image:
    # qwen-vl-utils calls PIL's resize with its default filter, which is bicubic for RGB images.
    return img.resize(budget_size(*img.size), Image.BICUBIC)


class RankNetHead(nn.Sequential):
    """The official 'ranknet' head without kwargs; indices 0, 3, 5 match the checkpoint's rm_head keys."""

    def __init__(self, hidden_size: int, output_dim: int = 2):
        super().__init__(nn.Linear(hidden_size, 1024), nn.ReLU(), nn.Dropout(0.05), nn.Linear(1024, 16), nn.ReLU(),
                         nn.Linear(16, output_dim))


def convert_official_state_dict(sd: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(backbone, head) state dicts for transformers' ``Qwen2VLModel`` and :class:`RankNetHead`.

    The checkpoint is a whole ``Qwen2VLRewardModelBT``; depending on the transformers version it was
    saved with, the vision tower is ``visual.*`` or ``model.visual.*`` and the decoder ``model.*`` or
    ``model.language_model.*``. ``lm_head`` is unused for a reward and dropped.
    """
    if isinstance(sd.get("model"), dict):
        sd = sd["model"]  # the official loader unwraps this too
    backbone: dict[str, torch.Tensor] = {}
    head: dict[str, torch.Tensor] = {}
    unknown = []
    for key, tensor in sd.items():
        if key.startswith("rm_head."):
            head[key[len("rm_head."):]] = tensor
        elif key.startswith("lm_head."):
            continue
        elif key.startswith(("model.visual.", "model.language_model.")):
            backbone[key[len("model."):]] = tensor
        elif key.startswith("visual."):
            backbone[key] = tensor
        elif key.startswith("model."):
            backbone["language_model." + key[len("model."):]] = tensor
        else:
            unknown.append(key)
    if unknown or not head or "language_model.embed_tokens.weight" not in backbone:
        raise MetricUnavailable(f"not an HPSv3 checkpoint: unknown keys {unknown[:5]}, head keys {sorted(head)[:6]}")
    return backbone, head


class HPSv3(TorchMetric):
    default_batch_size = 8
    preprocessing_version = PREPROCESSING_VERSION

    def __init__(self, spec: MetricSpec, backbone: Any, head: RankNetHead, processor: Any, *, weights_label: str,
                 device: str | None = None, dtype: str | None = None):
        self.spec = spec
        self.backbone = backbone
        self.head = head
        self.processor = processor
        self.processor.tokenizer.padding_side = "right"  # sequential positions assume right padding
        self.reward_token_id = int(processor.tokenizer.convert_tokens_to_ids(REWARD_TOKEN))
        self.image_token_id = int(backbone.config.image_token_id)
        self._weights_label = weights_label
        self.modules = [backbone]
        self.to(device=device or default_device(), dtype=dtype or "float32")

    def to(self, *, device: str | None = None, dtype: str | torch.dtype | None = None) -> "HPSv3":
        super().to(device=device, dtype=dtype)
        self.head.to(device=self.device, dtype=torch.float32).eval()  # the official head always runs in float32
        return self

    def _score_batch(self, prompts: list[str], images: list[Image.Image]) -> list[MetricResult]:
        resized = [resize_to_budget(img) for img in images]
        messages = [[{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": user_text(p)}]}]
                    for p in prompts]
        texts = [self.processor.apply_chat_template(m, tokenize=False, add_generation_prompt=True) for m in messages]
        batch = self.processor(text=texts, images=resized, padding=True, return_tensors="pt")
        self._check_grid(batch["image_grid_thw"], resized)
        input_ids = batch["input_ids"].to(self.device)
        attention_mask = batch["attention_mask"].to(self.device)
        reward_at = self._reward_positions(input_ids, prompts)
        embeds = self.backbone.get_input_embeddings()(input_ids)
        features = self.backbone.get_image_features(batch["pixel_values"].to(self.device, self.dtype),
                                                    batch["image_grid_thw"].to(self.device))
        image_embeds = torch.cat(list(features.pooler_output)).to(embeds.dtype)
        image_mask = (input_ids == self.image_token_id).unsqueeze(-1).expand_as(embeds)
        embeds = embeds.masked_scatter(image_mask, image_embeds)
        # Sequential positions for all tokens, as the official forward gets from calling the decoder
        # without position ids (see module docstring); with right padding they are 0..n-1 per row.
        positions = torch.arange(input_ids.shape[1], device=self.device).expand_as(input_ids)
        hidden = self.backbone.language_model(inputs_embeds=embeds, attention_mask=attention_mask,
                                              position_ids=positions).last_hidden_state
        pooled = hidden[torch.arange(len(prompts), device=self.device), reward_at].float()
        out = self.head(pooled)
        return [MetricResult(self.name, self.convention, float(mu), {"sigma": float(sigma)})
                for mu, sigma in out.tolist()]

    def _reward_positions(self, input_ids: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        hits = input_ids == self.reward_token_id
        counts = hits.sum(dim=1).tolist()
        for i, count in enumerate(counts):
            if count != 1:
                raise MetricError(f"{self.name}: chunk item {i} (prompt {prompts[i]!r}) has {count} {REWARD_TOKEN} "
                                  "tokens, expected exactly one (does the prompt contain it?)")
        return hits.int().argmax(dim=1)

    @staticmethod
    def _check_grid(grid: torch.Tensor, resized: list[Image.Image]) -> None:
        # The processor must not resize again: the budget resize is the protocol.
        expected = [[1, img.height // 14, img.width // 14] for img in resized]
        if grid.tolist() != expected:
            raise MetricError(f"image processor changed the budget-resized images: grids {grid.tolist()}, "
                              f"expected {expected}")


def hpsv3_from_state_dict(spec: MetricSpec, sd: dict[str, torch.Tensor], base: str | Path, **kw: Any) -> HPSv3:
    """Build from an official checkpoint and a Qwen2-VL base directory (config + processor)."""
    from transformers import AutoConfig, AutoProcessor, Qwen2VLModel

    backbone_sd, head_sd = convert_official_state_dict(sd)
    config = AutoConfig.from_pretrained(base)
    rows = backbone_sd["language_model.embed_tokens.weight"].shape[0]
    config.text_config.vocab_size = rows  # official training resized the embeddings to the tokenizer length
    processor = AutoProcessor.from_pretrained(base)
    processor.tokenizer.add_special_tokens({"additional_special_tokens": [REWARD_TOKEN]})
    token_id = processor.tokenizer.convert_tokens_to_ids(REWARD_TOKEN)
    if token_id >= rows:
        raise MetricUnavailable(f"{REWARD_TOKEN} has id {token_id} but the checkpoint has {rows} embeddings")
    # Built on the CPU (not the meta device): the rotary buffers are not in the checkpoint.
    backbone = Qwen2VLModel(config)
    backbone.load_state_dict(backbone_sd, strict=True)
    head = RankNetHead(head_sd["0.weight"].shape[1], head_sd["5.weight"].shape[0])
    head.load_state_dict(head_sd, strict=True)
    return HPSv3(spec, backbone.eval(), head.float().eval(), processor, **kw)


def load_hpsv3(spec: MetricSpec, *, weights: Any = None, base: Any = None, revision: str | None = None,
               device: str | None = None, dtype: str | None = None) -> HPSv3:
    """``weights``: HPSv3.safetensors (path, hub id or ``modelscope:<id>``; default MizzenAI/HPSv3);
    ``base``: the Qwen2-VL-7B-Instruct directory or id whose config and processor it was trained with."""
    assert spec.weights is not None
    checkpoint = weights_mod.resolve_weights(spec.weights, weights, revision=revision)
    base_source = weights_mod.resolve_weights(spec.weights.companion(), base)
    path = checkpoint.path
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(str(path), device="cpu")
        else:
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # safetensors and torch raise several types for unreadable files
        raise MetricUnavailable(f"cannot read HPSv3 checkpoint {path}: {exc}") from exc
    label = weights_mod.combined_identity(checkpoint.identity, base=base_source.identity)
    parse_dtype(dtype)  # fail on a bad dtype before building a 7B model
    return hpsv3_from_state_dict(spec, sd, base_source.path, weights_label=label, device=device, dtype=dtype)


__all__ = ["HPSv3", "INSTRUCTION", "PIXEL_BUDGET", "PREPROCESSING_VERSION", "PROMPT_WITH_SPECIAL_TOKEN", "RankNetHead", "budget_size",
           "convert_official_state_dict", "hpsv3_from_state_dict", "load_hpsv3", "resize_to_budget", "user_text"]
