"""In-process transformers engine: AutoModelForImageTextToText + AutoProcessor, batched and left-padded.

The engine is blocking: ``agenerate``/``ascore`` (from :class:`~pixeljury.engines.base.Engine`) run
each batch on the engine's worker thread, one batch at a time, so concurrent callers share the one
model safely."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from pixeljury.engines.base import chat_messages as base_chat_messages
from pixeljury.engines.base import (
    ChatRequest,
    Engine,
    EngineCapabilities,
    EngineUnavailable,
    Generation,
    GenerationParams,
    ImagePart,
    ScoreRequest,
    Scores,
)
from pixeljury.engines.checkpoints import fetch_weights, judge_identity
from pixeljury.engines.guards import SpecialTokenGuard, context_length

logger = logging.getLogger(__name__)


def chat_messages(request: ChatRequest) -> list[dict[str, Any]]:
    """The request as chat messages in the transformers multimodal format (PIL image inline)."""
    return base_chat_messages(request, lambda part: {"type": "image", "image": part.image})


def render_chat(processor: Any, request: ChatRequest | ScoreRequest, *, enable_thinking: bool = True) -> str:
    """The exact text the model is prompted with (before image tokens are expanded)."""
    return processor.apply_chat_template(
        chat_messages(request), tokenize=False, add_generation_prompt=True, enable_thinking=enable_thinking
    )


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
        max_model_len: int | None = None,
    ):
        """``max_model_len``: the context, in tokens, that a request's prompt (image tokens included)
        plus ``max_new_tokens`` must fit in; default the model's ``max_position_embeddings``. A longer
        request is refused before it reaches the model."""
        try:
            import torch
            from transformers import AutoModelForImageTextToText, AutoProcessor
        except ImportError as exc:
            raise EngineUnavailable("the transformers engine needs `pip install 'pixeljury[torch]'`") from exc
        local = fetch_weights(model, revision, source)
        self.model_id, self.revision = judge_identity(model, revision, source, snapshot=local)
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
        self.max_model_len = max_model_len or context_length(self.model.config)
        self.special_tokens = SpecialTokenGuard(self.processor.tokenizer, self.name)

    def describe(self) -> dict[str, Any]:
        import torch

        info = super().describe()
        info.update(device=self.device, dtype=self.dtype, torch=torch.__version__, max_model_len=self.max_model_len)
        from pixeljury.engines.hf_constrained import describe as constrained_decoding

        info["constrained_decoding"] = constrained_decoding()
        if self.device.startswith("cuda"):
            info["gpu"] = torch.cuda.get_device_name(0)
        return info

    @property
    def capabilities(self) -> EngineCapabilities:
        return EngineCapabilities(kinds=frozenset({"chat", "score"}), max_images_per_request=None)

    def score(self, requests: list[ScoreRequest]) -> list[Scores]:
        """Log-probabilities from one forward pass per batch (see :mod:`pixeljury.engines.hf_scoring`)."""
        from pixeljury.engines.hf_scoring import score_requests

        return score_requests(self, requests)

    def render(self, request: ChatRequest, params: GenerationParams) -> str:
        return render_chat(self.processor, request, enable_thinking=params.enable_thinking)

    def generate(self, requests: list[ChatRequest], params: GenerationParams) -> list[Generation]:
        """One generation per request. A request whose text holds special tokens, or that does not
        fit the context, comes back with a not retryable error without reaching the model; when the
        processor or the model fails on a batch, its requests are run one by one, so only a request
        that fails alone comes back with an error (the others get their answers)."""
        if params.json_schema_constrained:
            from pixeljury.engines.hf_constrained import require_llguidance

            require_llguidance()  # a missing extra stops the run with the install command
        results: list[Generation | None] = [self.special_tokens.refusal(r) for r in requests]
        sent = [i for i, g in enumerate(results) if g is None]
        for i, generation in zip(sent, self._generate_fitting([requests[i] for i in sent], params)):
            results[i] = generation
        return results  # type: ignore[return-value] - every position is filled

    def _encode(self, requests: list[ChatRequest], params: GenerationParams) -> Any:
        texts = [self.render(r, params) for r in requests]
        images = [[p.image for p in r.user if isinstance(p, ImagePart)] for r in requests]
        return self.processor(text=texts, images=images if any(images) else None, padding=True, return_tensors="pt")

    def _generate_fitting(self, requests: list[ChatRequest], params: GenerationParams) -> list[Generation]:
        """Encode the batch, refuse the requests longer than the context, generate the rest."""
        if not requests:
            return []
        started = time.perf_counter()
        try:
            enc = self._encode(requests, params)
        except Exception as exc:  # noqa: BLE001 - narrowed below, request by request
            failure = _failure("the processor rejected", exc)
        else:
            failure = None
        if failure is not None:
            return self._one_by_one(requests, params, failure, started)
        # Prompt tokens per request as the model would see them: image tokens expanded, padding not counted.
        counts = [int(n) for n in enc["attention_mask"].sum(dim=1).tolist()]
        limit = self.max_model_len
        if limit is not None and any(n + params.max_new_tokens > limit for n in counts):
            del enc
            results: list[Generation | None] = [
                self._too_long(r, n, params) if n + params.max_new_tokens > limit else None
                for r, n in zip(requests, counts)
            ]
            fitting = [i for i, g in enumerate(results) if g is None]
            for i, generation in zip(fitting, self._generate_fitting([requests[i] for i in fitting], params)):
                results[i] = generation
            return results  # type: ignore[return-value]
        try:
            out, prompt_len = self._run_model(enc, params, requests)
        except Exception as exc:  # noqa: BLE001 - narrowed below, request by request
            # Only a description is kept: the exception's traceback holds the failed batch's tensors,
            # which are freed (with the batch's inputs) before its requests are tried alone.
            failure = _failure("generation failed on", exc)
        if failure is not None:
            del enc
            if failure.out_of_memory:
                import torch

                torch.cuda.empty_cache()
            return self._one_by_one(requests, params, failure, started)
        seconds = time.perf_counter() - started
        new_tokens = out[:, prompt_len:].tolist()
        return [
            generation_from_tokens(self.processor.tokenizer, req.request_id, toks, self.eos_ids, n_prompt, seconds)
            for req, toks, n_prompt in zip(requests, new_tokens, counts)
        ]

    def _run_model(self, enc: Any, params: GenerationParams, requests: list[ChatRequest]) -> tuple[Any, int]:
        import torch

        from pixeljury.engines.hf_constrained import build_logits_processor

        enc = enc.to(self.device)
        greedy = params.temperature == 0 or params.top_k == 1
        gen_kwargs: dict[str, Any] = {
            "max_new_tokens": params.max_new_tokens,
            "repetition_penalty": params.repetition_penalty,
            "do_sample": not greedy,
            "pad_token_id": self.pad_id,
            # --constrained / --thinking-budget (engines/hf_constrained.py); empty without them.
            "logits_processor": build_logits_processor(self.processor, requests, params, eos_ids=self.eos_ids),
        }
        if not greedy:
            gen_kwargs.update(temperature=params.temperature, top_k=params.top_k, top_p=params.top_p)
        torch.manual_seed(params.seed)
        with torch.inference_mode():
            return self.model.generate(**enc, **gen_kwargs), enc["input_ids"].shape[1]

    def _one_by_one(self, requests: list[ChatRequest], params: GenerationParams, failure: "_BatchFailure",
                    started: float) -> list[Generation]:
        """A batch the processor or the model failed on: each request again on its own, so that one bad
        request (or one too large for memory) costs only itself. A request that fails alone comes
        back with the error, retryable (memory, for one, may be free next time)."""
        if len(requests) == 1:
            error = (f"out of accelerator memory on this request alone: {failure.reason}" if failure.out_of_memory
                     else f"{failure.what} the request: {failure.reason}")
            return [Generation(request_id=requests[0].request_id, text="", finish_reason="error",
                               seconds=time.perf_counter() - started, error=error)]
        logger.warning("%s a batch of %d (%s); running its requests one by one%s", failure.what, len(requests),
                       failure.reason, " (a lower --batch-size avoids this)" if failure.out_of_memory else "")
        return [g for r in requests for g in self._generate_fitting([r], params)]

    def _too_long(self, request: ChatRequest, prompt_tokens: int, params: GenerationParams) -> Generation:
        return Generation(
            request_id=request.request_id, text="", finish_reason="error", prompt_tokens=prompt_tokens,
            retryable=False,
            error=f"not sent: the prompt is {prompt_tokens} tokens (image tokens included); with max_new_tokens "
                  f"{params.max_new_tokens} that exceeds the judge's context of {self.max_model_len} tokens",
        )


@dataclass(frozen=True)
class _BatchFailure:
    what: str  # "the processor rejected" | "generation failed on"
    reason: str  # the exception, as text
    out_of_memory: bool


def _failure(what: str, exc: BaseException) -> _BatchFailure:
    import torch

    return _BatchFailure(what, f"{type(exc).__name__}: {exc}",
                         isinstance(exc, torch.cuda.OutOfMemoryError))  # type: ignore[attr-defined]
