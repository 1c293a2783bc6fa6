"""Tiny, randomly initialised Qwen3-VL judges built locally, for tests and the offline demo.

They have the real architecture, tokenizer format, image processor and a Qwen3.5-style chat template
(thinking on), so every code path of a real judge runs. Their outputs are noise: never read quality
into them.
"""

from __future__ import annotations

import json
from pathlib import Path

SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
# Real Qwen3 tokenizers keep these two as ordinary (non-special) added tokens, so that decoding with
# skip_special_tokens=True still shows where the thinking ends.
THINK_TOKENS = ["<think>", "</think>"]

# A Qwen3.5-style template: string or list content, images as vision tokens in place, and an
# assistant turn that opens with "<think>\n" when thinking is on (the default).
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' -}}"
    "{%- if message['content'] is string -%}{{- message['content'] -}}"
    "{%- else -%}{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'text' -%}{{- part['text'] -}}"
    "{%- elif part['type'] == 'image' or 'image' in part or 'image_url' in part -%}"
    "{{- '<|vision_start|><|image_pad|><|vision_end|>' -}}"
    "{%- endif -%}{%- endfor -%}{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}"
    "{%- if enable_thinking is defined and enable_thinking is false -%}{{- '<think>\\n\\n</think>\\n\\n' -}}"
    "{%- else -%}{{- '<think>\\n' -}}{%- endif -%}{%- endif -%}"
)

_CORPUS = [
    "Quality Aesthetics Alignment Real-world Fidelity Creative Generation score N/A",
    '{"Realism": {"Physical Logic": {"score": 1}}, "Detail": {"Noise": {"score": "N/A"}}}',
    "The image shows a dog, a cat, a tree, the sky, colours, light and text. 0 1 2",
    "You are an expert evaluator of generated images. Respond with a valid JSON object only.",
]


def _train_tokenizer(vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from tokenizers import AddedToken

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS * 4, trainer)
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in THINK_TOKENS])
    return tok


def build_tiny_qwen3vl(out_dir: str | Path, *, seed: int = 0, num_layers: int = 2, image_max_side: int = 128) -> Path:
    """Write a tiny Qwen3-VL judge (weights, config, tokenizer, processors) to ``out_dir``.

    Sizes suit vLLM's CPU kernels too: text hidden 128, head_dim 64, 2 heads / 1 KV head,
    mrope sections summing to head_dim/2, vision out_hidden_size equal to the text hidden size.
    """
    import torch
    from transformers import (
        PreTrainedTokenizerFast,
        Qwen2VLImageProcessor,
        Qwen3VLConfig,
        Qwen3VLForConditionalGeneration,
        Qwen3VLProcessor,
        Qwen3VLVideoProcessor,
    )

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    raw = _train_tokenizer(vocab_size=600)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        additional_special_tokens=SPECIAL_TOKENS[1:],
        model_max_length=32768,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS + THINK_TOKENS}
    vocab = len(tokenizer)

    config = Qwen3VLConfig(
        text_config={
            "vocab_size": vocab,
            "hidden_size": 128,
            "intermediate_size": 256,
            "num_hidden_layers": num_layers,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "head_dim": 64,
            "max_position_embeddings": 32768,
            "rope_parameters": {"rope_type": "default", "rope_theta": 5_000_000.0,
                                "mrope_section": [12, 10, 10], "mrope_interleaved": True},
            "pad_token_id": ids["<|endoftext|>"],
        },
        vision_config={
            "depth": 1,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_heads": 2,
            "patch_size": 16,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "out_hidden_size": 128,
            "num_position_embeddings": 64,
            "deepstack_visual_indexes": [0],
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )
    config.text_config.eos_token_id = ids["<|im_end|>"]
    torch.manual_seed(seed)
    model = Qwen3VLForConditionalGeneration(config).to(torch.float32).eval()
    model.generation_config.eos_token_id = [ids["<|im_end|>"], ids["<|endoftext|>"]]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    model.save_pretrained(out)

    pixels = image_max_side * image_max_side
    size = {"shortest_edge": 32 * 32, "longest_edge": pixels}
    image_processor = Qwen2VLImageProcessor(
        patch_size=16, merge_size=2, temporal_patch_size=2, size=size,
        image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5],
    )
    video_processor = Qwen3VLVideoProcessor(patch_size=16, merge_size=2, temporal_patch_size=2,
                                            size={"shortest_edge": 32 * 32, "longest_edge": pixels * 2})
    processor = Qwen3VLProcessor(
        image_processor=image_processor, tokenizer=tokenizer, video_processor=video_processor,
        chat_template=CHAT_TEMPLATE,
    )
    processor.save_pretrained(out)
    # vLLM and AutoProcessor look the processor class up here.
    cfg_path = out / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["processor_class"] = "Qwen3VLProcessor"
    cfg_path.write_text(json.dumps(cfg, indent=2))
    (out / "PIXELJURY_TINY_MODEL.txt").write_text(
        "Randomly initialised tiny Qwen3-VL built by pixeljury.testing.tiny for tests and demos.\n"
        "Its outputs are noise.\n"
    )
    return out
