"""In-process vLLM (``pip install 'pixeljury[vllm]'``): continuous batching, paged KV cache, prefix
caching, for batch jobs on a GPU machine.

Every request of a batch goes to one ``LLM.chat`` call so vLLM schedules them together: the pipeline
hands over all five dimensions of an image at once, and with the image's content hash as its
multimodal uuid and prefix caching on, the shared system prompt and image are encoded once.

The engine is blocking: ``agenerate``/``ascore`` (from :class:`~pixeljury.engines.base.Engine`) run
each batch on the engine's worker thread, one batch at a time. vLLM's own async engine (``AsyncLLM``),
which would interleave requests of many callers inside one running batch, is not used here.
"""

from __future__ import annotations

import logging
import os
import re
import time
from typing import Any

from pixeljury.data.images import to_rgb
from pixeljury.engines.base import (
    ChatRequest,
    chat_messages,
    Engine,
    EngineCapabilities,
    EngineError,
    EngineUnavailable,
    Generation,
    GenerationParams,
    ImagePart,
    ScoreRequest,
    Scores,
)
from pixeljury.engines.checkpoints import judge_identity, local_model_dir
from pixeljury.engines.guards import SpecialTokenGuard

logger = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'pixeljury[vllm]' (on CPU-only machines: see scripts/setup_vllm_env.sh)"
# guidance keeps JSON strictly valid with a weak model (xgrammar let control characters into
# strings in our tests); no free whitespace stops a model from spending its tokens on blanks.
DEFAULT_STRUCTURED_OUTPUTS_CONFIG = {"backend": "guidance", "disable_any_whitespace": True}


def build_conversation(request: ChatRequest) -> list[dict[str, Any]]:
    """The request as an OpenAI-style conversation with the PIL image in place; the image's content
    hash is its uuid, so vLLM's multimodal cache recognises an image it has already processed."""

    def image_entry(part: ImagePart) -> dict[str, Any]:
        image = part.image if part.image.mode == "RGB" else to_rgb(part.image)
        return {"type": "image_pil", "image_pil": image, "uuid": part.sha256}

    return chat_messages(request, image_entry)


def sampling_kwargs(
    params: GenerationParams, json_schema: dict[str, Any] | None, min_new_tokens: int | None = None
) -> dict[str, Any]:
    """``vllm.SamplingParams`` keyword arguments for one request (the structured-outputs constraint
    comes back as a plain ``{"json": schema}`` dict; the engine wraps it)."""
    kwargs: dict[str, Any] = params.sampling()
    if params.json_schema_constrained:
        if json_schema is None:
            raise ValueError("constrained output asked for, but the request carries no JSON schema")
        # With a reasoning parser configured, vLLM applies the grammar only after `</think>`.
        kwargs["structured_outputs"] = {"json": json_schema}
    if params.thinking_budget is not None:
        kwargs["thinking_token_budget"] = params.thinking_budget
    if min_new_tokens is not None:
        kwargs["min_tokens"] = min_new_tokens
    return kwargs


def generation_from_request_output(request_id: str, output: Any, seconds: float | None = None) -> Generation:
    """A ``vllm.RequestOutput`` -> :class:`Generation`. Offline vLLM returns the raw text (thinking
    inline, ``</think>`` kept because Qwen tokenizers do not mark it special)."""
    completion = output.outputs[0]
    prompt_ids = getattr(output, "prompt_token_ids", None)
    return Generation(
        request_id=request_id,
        text=completion.text,
        finish_reason=completion.finish_reason or "unknown",
        prompt_tokens=len(prompt_ids) if prompt_ids is not None else None,
        completion_tokens=len(completion.token_ids),
        seconds=seconds,
    )


class VLLMEngine(Engine):
    """A ``vllm.LLM`` held for the life of the engine; call :meth:`close` (or use ``with``) to free it."""

    name = "vllm"

    def __init__(
        self,
        model: str,
        *,
        revision: str | None = None,
        dtype: str = "auto",
        max_model_len: int = 8192,
        max_num_seqs: int | None = None,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.9,
        max_pixels: int | None = None,
        enforce_eager: bool = False,
        min_new_tokens: int | None = None,
        max_images_per_request: int = 1,
        reasoning_parser: str | None = "qwen3",
        **llm_kwargs: Any,
    ) -> None:
        """``max_images_per_request``: vLLM's ``limit_mm_per_prompt`` for images (1 for the judges;
        UnifiedReward-Edit needs 3). ``reasoning_parser``: how vLLM splits thinking off, which decides
        where a JSON grammar or thinking budget starts (None: no parser)."""
        if max_images_per_request < 1:
            raise ValueError("max_images_per_request must be at least 1")
        try:
            import vllm
        except ImportError as exc:
            raise EngineUnavailable(f"the vLLM engine needs vLLM: {INSTALL_HINT} ({exc})") from exc
        self._vllm = vllm
        local = local_model_dir(model)
        self.max_pixels = max_pixels
        # Not part of any protocol: lets tests keep a random model from ending inside its thinking.
        self.min_new_tokens = min_new_tokens
        settings: dict[str, Any] = {
            "model": os.path.abspath(local) if local is not None else model,
            "revision": revision,
            "dtype": dtype,
            "max_model_len": max_model_len,
            "tensor_parallel_size": tensor_parallel_size,
            "gpu_memory_utilization": gpu_memory_utilization,
            "enforce_eager": enforce_eager,
            "enable_prefix_caching": True,
            # As many images as a request of the evaluator holds, and no video: vLLM sizes its encoder
            # cache and profiling run from these limits, so its defaults would reserve memory never used.
            "limit_mm_per_prompt": {"image": max_images_per_request, "video": 0},
            "structured_outputs_config": dict(DEFAULT_STRUCTURED_OUTPUTS_CONFIG),
        }
        if reasoning_parser is not None:
            settings["reasoning_parser"] = reasoning_parser
        if max_num_seqs is not None:
            settings["max_num_seqs"] = max_num_seqs
        if max_pixels is not None:
            # The same knob as the HF image processor's size["longest_edge"]; vLLM fills the other
            # edge from the model's own processor config, as transformers does.
            settings["mm_processor_kwargs"] = {"images_kwargs": {"max_pixels": max_pixels}}
        settings.update(llm_kwargs)
        self._settings = settings
        self.preferred_batch_size = max_num_seqs or 128
        self._llm: Any = vllm.LLM(**settings)
        self._special_tokens: SpecialTokenGuard | None = None  # built from vLLM's tokenizer when first needed
        # After loading: vLLM has fetched the weights into the cache by now, so the cache's commit
        # for the revision is the one it loaded.
        try:
            self.model_id, self.revision = vllm_identity(model, revision, settings.get("download_dir"))
        except BaseException:
            self.close()
            raise

    def describe(self) -> dict[str, Any]:
        recorded = {k: v for k, v in self._settings.items() if k not in ("model", "revision")}
        return {
            **super().describe(),
            "vllm_version": getattr(self._vllm, "__version__", None),
            "settings": recorded,
            "min_new_tokens": self.min_new_tokens,
        }

    @property
    def capabilities(self) -> EngineCapabilities:
        limit = (self._settings.get("limit_mm_per_prompt") or {}).get("image")
        return EngineCapabilities(kinds=frozenset({"chat", "score"}), max_images_per_request=limit)

    def tokenizer(self) -> Any:
        if self._llm is None:
            raise EngineError("the vLLM engine was closed", retryable=False)
        return self._llm.get_tokenizer()

    def refusal_reason(self, request: ChatRequest | ScoreRequest, params: GenerationParams | None = None) -> str | None:
        """Why a request is not sent (None: it is): special tokens in its text, more images than the
        engine was started for, or (constrained or thinking-budgeted) another reasoning split than the
        engine's parser. The same request fails the same way on every rerun."""
        if self._special_tokens is None:
            self._special_tokens = SpecialTokenGuard(self.tokenizer(), self.name)
        reason = self._special_tokens.refusal_reason(request)
        if reason is not None:
            return reason
        limit = self.capabilities.max_images_per_request
        images = sum(isinstance(p, ImagePart) for p in request.user)
        if limit is not None and images > limit:
            return (f"not sent: the request holds {images} images and the vLLM engine was started for at most "
                    f"{limit} per request (max_images_per_request)")
        parser = self._settings.get("reasoning_parser")
        wants_split = params is not None and (params.json_schema_constrained or params.thinking_budget is not None)
        if wants_split and isinstance(request, ChatRequest) and request.reasoning not in (None, parser):
            return (f"not sent: the request splits thinking off as {request.reasoning!r}, the vLLM engine was "
                    f"started with reasoning parser {parser!r}, and constrained output and thinking budgets "
                    "start where that parser finds the end of thinking")
        return None

    def score(self, requests: list[ScoreRequest]) -> list[Scores]:
        """Log-probabilities without generating (see :mod:`pixeljury.engines.vllm_scoring`)."""
        if not requests:
            return []
        if self._llm is None:
            raise EngineError("the vLLM engine was closed", retryable=False)
        from pixeljury.engines.vllm_scoring import score_requests

        return score_requests(self, requests)

    def _sampling_params(self, params: GenerationParams, request: ChatRequest) -> Any:
        kwargs = sampling_kwargs(params, request.json_schema, self.min_new_tokens)
        if "structured_outputs" in kwargs:
            from vllm.sampling_params import StructuredOutputsParams

            kwargs["structured_outputs"] = StructuredOutputsParams(**kwargs["structured_outputs"])
        return self._vllm.SamplingParams(**kwargs)

    def _chat(self, requests: list[ChatRequest], params: GenerationParams) -> list[Any]:
        return self._llm.chat(
            [build_conversation(r) for r in requests],
            [self._sampling_params(params, r) for r in requests],
            use_tqdm=False,
            chat_template_kwargs={"enable_thinking": params.enable_thinking},
        )

    def generate(self, requests: list[ChatRequest], params: GenerationParams) -> list[Generation]:
        """One generation per request. A request whose text holds special tokens of the tokenizer comes
        back with a not retryable error without being sent; when vLLM rejects a batch, its requests are
        sent one by one, so only a request rejected alone comes back with an error."""
        if not requests:
            return []
        if self._llm is None:
            raise EngineError("the vLLM engine was closed", retryable=False)
        results: list[Generation | None] = []
        for request in requests:
            reason = self.refusal_reason(request, params)
            results.append(None if reason is None else Generation(
                request_id=request.request_id, text="", finish_reason="error", retryable=False, error=reason))
        sent = [i for i, g in enumerate(results) if g is None]
        for i, generation in zip(sent, self._generate_sent([requests[i] for i in sent], params)):
            results[i] = generation
        return results  # type: ignore[return-value] - every position is filled

    def _generate_sent(self, requests: list[ChatRequest], params: GenerationParams) -> list[Generation]:
        if not requests:
            return []
        from vllm.v1.engine.exceptions import EngineDeadError

        started = time.perf_counter()
        try:
            outputs = self._chat(requests, params)
        except EngineDeadError as exc:
            raise EngineError(f"vLLM engine died: {exc}", retryable=False) from exc
        except Exception as batch_exc:  # noqa: BLE001 - narrowed below, request by request
            if len(requests) == 1:
                return [_failed(requests[0], batch_exc, time.perf_counter() - started)]
            # LLM.chat validates the whole batch up front, so one bad request (an over-long prompt,
            # an unreadable image) fails them all; run them one by one to keep the good ones.
            return self._generate_one_by_one(requests, params)
        seconds = time.perf_counter() - started
        return [generation_from_request_output(r.request_id, o, seconds) for r, o in zip(requests, outputs)]

    def _generate_one_by_one(self, requests: list[ChatRequest], params: GenerationParams) -> list[Generation]:
        results: list[Generation] = []
        for position, request in enumerate(requests):
            try:
                results.append(self._generate_sent([request], params)[0])
            except EngineError as exc:
                # The engine died part-way: what finished is kept, the rest is recorded as failed
                # (and retried by the next run); the next batch will raise.
                results.extend(_failed(r, exc, 0.0) for r in requests[position:])
                break
        return results

    def close(self) -> None:
        """Shut the engine core down so the accelerator memory is free for whatever comes next (after
        a batch still running on the worker thread of :meth:`agenerate` has finished)."""
        super().close()
        llm, self._llm = self._llm, None
        if llm is None:
            return
        engine = getattr(llm, "llm_engine", None)
        shutdown = getattr(engine, "shutdown", None)
        if callable(shutdown):
            shutdown()
        del llm


def vllm_identity(model: str, revision: str | None, download_dir: str | None = None) -> tuple[str, str | None]:
    """``(model_id, revision)`` of the judge vLLM loads, recorded as the transformers engine records
    it (:func:`pixeljury.engines.checkpoints.judge_identity`): a local directory is its absolute path and
    content fingerprint; a hub id is the id and the commit the HF cache holds for ``revision``
    (``download_dir`` is vLLM's cache folder when set). Warns when no revision can be tied to it."""
    use_modelscope = os.environ.get("VLLM_USE_MODELSCOPE", "").lower() in ("1", "true")
    source = "modelscope" if use_modelscope and local_model_dir(model) is None else "auto"
    model_id, resolved = judge_identity(model, revision, source, cache_dir=download_dir)
    if download_dir is not None and resolved == revision:
        # vLLM puts the weights in download_dir but transformers fetches the config to the HF cache.
        model_id, resolved = judge_identity(model, revision, source)
    if resolved is None:
        logger.warning(
            "could not tell which revision of %r vLLM loaded (no --revision given, and the local "
            "Hugging Face cache does not name it): results are recorded without a weights revision, so "
            "they cannot be told from those of other weights under the same name; pass --revision",
            model,
        )
    return model_id, resolved


# How vLLM words its refusal of a prompt that does not fit max_model_len: the chat renderer counts
# the rendered text's tokens (or, first, its characters), the input processor the tokens with the
# image's tokens expanded (vllm/renderers/params.py, vllm/v1/engine/input_processor.py).
_CONTEXT_TOO_SMALL = (
    re.compile(r"maximum context length is (?P<limit>\d+) tokens\. However, your prompt contains "
               r"(?P<at_least>at least )?(?P<n>\d+) (?P<unit>input tokens|characters)"),
    re.compile(r"prompt \(length (?P<n>\d+)\)(?: plus the number of requested output tokens)?.*?"
               r"longer than the maximum model length of (?P<limit>\d+)", re.DOTALL),
)


def _over_long(request: ChatRequest, exc: BaseException, seconds: float) -> Generation | None:
    """The request vLLM refused because its prompt leaves no room in ``max_model_len``, as a not
    retryable failure in plain words (the same prompt fails the same way on every rerun); None for
    any other refusal."""
    for pattern in _CONTEXT_TOO_SMALL:
        match = pattern.search(str(exc))
        if match is None:
            continue
        fields = match.groupdict()
        n, limit, unit = int(fields["n"]), int(fields["limit"]), fields.get("unit") or "input tokens"
        exact = unit == "input tokens" and not fields.get("at_least")  # the renderer stops counting at limit + 1
        size = f"{n} characters" if unit == "characters" else f"{'' if exact else 'at least '}{n} tokens"
        return Generation(
            request_id=request.request_id, text="", finish_reason="error", seconds=seconds,
            prompt_tokens=n if exact else None, retryable=False,
            error=f"vLLM rejected the request: the prompt is {size}, which leaves no room for an answer in the "
                  f"judge's context of {limit} tokens (max_model_len)",
        )
    return None


def _failed(request: ChatRequest, exc: BaseException, seconds: float) -> Generation:
    """A request vLLM refused on its own (retryable), or one too long for the context (not)."""
    too_long = _over_long(request, exc, seconds)
    if too_long is not None:
        return too_long
    return Generation(
        request_id=request.request_id,
        text="",
        finish_reason="error",
        seconds=seconds,
        error=f"vLLM rejected the request: {type(exc).__name__}: {exc}",
    )


__all__ = [
    "VLLMEngine",
    "build_conversation",
    "vllm_identity",
    "generation_from_request_output",
    "sampling_kwargs",
]
