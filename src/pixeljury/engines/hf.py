"""In-process transformers engine: AutoModelForImageTextToText + AutoProcessor, batched and left-padded."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Any

from pixeljury.engines.base import chat_messages as base_chat_messages
from pixeljury.engines.base import (
    ChatRequest,
    Engine,
    EngineError,
    EngineUnavailable,
    Generation,
    GenerationParams,
    ImagePart,
)


def chat_messages(request: ChatRequest) -> list[dict[str, Any]]:
    """The request as chat messages in the transformers multimodal format (PIL image inline)."""
    return base_chat_messages(request, lambda part: {"type": "image", "image": part.image})


def render_chat(processor: Any, request: ChatRequest, *, enable_thinking: bool = True) -> str:
    """The exact text the model is prompted with (before image tokens are expanded)."""
    return processor.apply_chat_template(
        chat_messages(request), tokenize=False, add_generation_prompt=True, enable_thinking=enable_thinking
    )


def resolve_weights(model: str, revision: str | None, source: str) -> tuple[str, str | None]:
    """(local directory, resolved revision). ``source``: ``auto`` (local path, else HF hub), ``hf``, ``modelscope``."""
    path = Path(model).expanduser()
    if source in ("auto", "local") and path.is_dir():
        return str(path), revision or local_revision(path)
    if source == "local":
        raise EngineUnavailable(f"judge model directory {path} does not exist")
    if source == "modelscope":
        try:
            from modelscope import snapshot_download as ms_download
        except ImportError as exc:
            raise EngineUnavailable("ModelScope weights need `pip install 'pixeljury[modelscope]'`") from exc
        try:
            local = ms_download(model, revision=revision or "master")
        except Exception as exc:  # noqa: BLE001 - modelscope raises many types; re-raised with context
            raise EngineUnavailable(f"could not fetch {model!r} from ModelScope: {exc}") from exc
        return local, revision or local_revision(Path(local))
    from huggingface_hub import snapshot_download

    try:
        local = snapshot_download(model, revision=revision)
    except Exception as exc:  # noqa: BLE001 - hub errors vary (offline, 401, 404); re-raised with advice
        raise EngineUnavailable(
            f"could not get judge weights {model!r} (revision {revision or 'main'}) from the Hugging Face hub: "
            f"{type(exc).__name__}: {exc}. Download them where the hub is reachable "
            f"(`hf download {model}`) and pass the local directory, or use --model-source modelscope."
        ) from exc
    snapshot = Path(local).name  # .../snapshots/<commit sha>
    return local, snapshot if len(snapshot) == 40 else revision


def local_revision(path: Path) -> str:
    """A revision for a local directory: hash of its config and of its weight files' names and sizes."""
    h = hashlib.sha256()
    for f in sorted(path.iterdir()):
        if f.is_file() and (f.suffix in (".json", ".safetensors", ".bin", ".jinja")):
            h.update(f.name.encode())
            h.update(str(f.stat().st_size).encode())
            if f.suffix in (".json", ".jinja"):
                h.update(f.read_bytes())
    return "local-" + h.hexdigest()[:16]


def generation_from_tokens(tokenizer: Any, request_id: str, new_tokens: list[int], eos_ids: set[int],
                           prompt_tokens: int, seconds: float | None = None) -> Generation:
    """Generated token ids -> :class:`Generation`: cut at the first end-of-sequence token, decode
    without special tokens (``</think>`` is an ordinary token in Qwen3 tokenizers and survives)."""
    stop_at = next((i for i, t in enumerate(new_tokens) if t in eos_ids), None)
    kept = new_tokens if stop_at is None else new_tokens[: stop_at + 1]
    return Generation(
        request_id=request_id,
        text=tokenizer.decode(kept, skip_special_tokens=True),
        finish_reason="stop" if stop_at is not None else "length",
        prompt_tokens=prompt_tokens,
        completion_tokens=len(kept),
        seconds=seconds,
    )


class TransformersEngine(Engine):
    name = "transformers"

    def __init__(
        self,
        model: str,
        *,
        revision: str | None = None,
        source: str = "auto",
        dtype: str = "auto",
        device: str = "auto",
        batch_size: int = 4,
        attn_implementation: str | None = None,
    ):
        try:
            import torch
            from transformers import AutoModelForImageTextToText, AutoProcessor
        except ImportError as exc:
            raise EngineUnavailable("the transformers engine needs `pip install 'pixeljury[torch]'`") from exc
        local, resolved = resolve_weights(model, revision, source)
        self.model_id = model if not Path(model).expanduser().is_dir() else os.path.abspath(model)
        self.revision = resolved
        self.preferred_batch_size = max(1, batch_size)
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        torch_dtype: Any = dtype
        if dtype == "auto":
            torch_dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
        elif isinstance(dtype, str):
            torch_dtype = getattr(torch, dtype)
        try:
            self.processor = AutoProcessor.from_pretrained(local)
            kwargs: dict[str, Any] = {"dtype": torch_dtype}
            if attn_implementation:
                kwargs["attn_implementation"] = attn_implementation
            self.model = AutoModelForImageTextToText.from_pretrained(local, **kwargs).to(device).eval()
        except (OSError, ValueError) as exc:
            raise EngineUnavailable(f"could not load judge model from {local}: {exc}") from exc
        self.processor.tokenizer.padding_side = "left"
        self.device = device
        self.dtype = str(torch_dtype).replace("torch.", "")
        eos = self.model.generation_config.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos]) - {None}
        self.pad_id = self.processor.tokenizer.pad_token_id

    def describe(self) -> dict[str, Any]:
        import torch

        info = super().describe()
        info.update(device=self.device, dtype=self.dtype, torch=torch.__version__)
        if self.device.startswith("cuda"):
            info["gpu"] = torch.cuda.get_device_name(0)
        return info

    def render(self, request: ChatRequest, params: GenerationParams) -> str:
        return render_chat(self.processor, request, enable_thinking=params.enable_thinking)

    def generate(self, requests: list[ChatRequest], params: GenerationParams) -> list[Generation]:
        import torch

        if params.json_schema_constrained:
            raise EngineError("the transformers engine does not constrain output; use --engine vllm or openai",
                              retryable=False)
        started = time.perf_counter()
        texts = [self.render(r, params) for r in requests]
        images = [[p.image for p in r.user if isinstance(p, ImagePart)] for r in requests]
        try:
            enc = self.processor(text=texts, images=images if any(images) else None, padding=True, return_tensors="pt")
            enc = enc.to(self.device)
            greedy = params.temperature == 0 or params.top_k == 1
            gen_kwargs: dict[str, Any] = {
                "max_new_tokens": params.max_new_tokens,
                "repetition_penalty": params.repetition_penalty,
                "do_sample": not greedy,
                "pad_token_id": self.pad_id,
            }
            if not greedy:
                gen_kwargs.update(temperature=params.temperature, top_k=params.top_k, top_p=params.top_p)
            torch.manual_seed(params.seed)
            with torch.inference_mode():
                out = self.model.generate(**enc, **gen_kwargs)
        except torch.cuda.OutOfMemoryError as exc:  # type: ignore[attr-defined]
            raise EngineError(f"out of GPU memory on a batch of {len(requests)}: lower --batch-size ({exc})") from exc
        except RuntimeError as exc:
            raise EngineError(f"generation failed on a batch of {len(requests)}: {exc}") from exc
        seconds = time.perf_counter() - started
        prompt_len = enc["input_ids"].shape[1]
        new_tokens = out[:, prompt_len:].tolist()
        prompt_counts = enc["attention_mask"].sum(dim=1).tolist()
        return [
            generation_from_tokens(self.processor.tokenizer, req.request_id, toks, self.eos_ids, int(n_prompt), seconds)
            for req, toks, n_prompt in zip(requests, new_tokens, prompt_counts)
        ]
