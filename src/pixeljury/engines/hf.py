"""In-process transformers engine: AutoModelForImageTextToText + AutoProcessor, batched and left-padded."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pixeljury.engines.base import chat_messages as base_chat_messages
from pixeljury.engines.base import (
    ChatRequest,
    Engine,
    EngineUnavailable,
    Generation,
    GenerationParams,
    ImagePart,
    TextPart,
)

logger = logging.getLogger(__name__)


def chat_messages(request: ChatRequest) -> list[dict[str, Any]]:
    """The request as chat messages in the transformers multimodal format (PIL image inline)."""
    return base_chat_messages(request, lambda part: {"type": "image", "image": part.image})


def render_chat(processor: Any, request: ChatRequest, *, enable_thinking: bool = True) -> str:
    """The exact text the model is prompted with (before image tokens are expanded)."""
    return processor.apply_chat_template(
        chat_messages(request), tokenize=False, add_generation_prompt=True, enable_thinking=enable_thinking
    )


def local_model_dir(model: str, source: str = "auto") -> Path | None:
    """``model`` as a local weights directory, or None when it names a hub repository."""
    path = Path(model).expanduser()
    return path if source in ("auto", "local") and path.is_dir() else None


def fetch_weights(model: str, revision: str | None, source: str) -> str:
    """The local directory holding the weights, downloading them first when ``model`` is a repository id.
    ``source``: ``auto`` (local path, else HF hub), ``local``, ``hf``, ``modelscope``."""
    local = local_model_dir(model, source)
    if local is not None:
        return str(local)
    if source == "local":
        raise EngineUnavailable(f"judge model directory {Path(model).expanduser()} does not exist")
    if source == "modelscope":
        try:
            from modelscope import snapshot_download as ms_download
        except ImportError as exc:
            raise EngineUnavailable("ModelScope weights need `pip install 'pixeljury[modelscope]'`") from exc
        try:
            return ms_download(model, revision=revision or "master")
        except Exception as exc:  # noqa: BLE001 - modelscope raises many types; re-raised with context
            raise EngineUnavailable(f"could not fetch {model!r} from ModelScope: {exc}") from exc
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(model, revision=revision)
    except Exception as exc:  # noqa: BLE001 - hub errors vary (offline, 401, 404); re-raised with advice
        raise EngineUnavailable(
            f"could not get judge weights {model!r} (revision {revision or 'main'}) from the Hugging Face hub: "
            f"{type(exc).__name__}: {exc}. Download them where the hub is reachable "
            f"(`hf download {model}`) and pass the local directory, or use --model-source modelscope."
        ) from exc


def judge_identity(
    model: str,
    revision: str | None,
    source: str = "auto",
    *,
    snapshot: str | None = None,
    cache_dir: str | None = None,
) -> tuple[str, str | None]:
    """``(model_id, revision)`` as results are keyed on them, for every engine that loads weights.

    * local directory: its absolute path (so ``./ckpt`` and ``/abs/ckpt`` are one judge), and
      ``revision`` if given, else :func:`local_revision`, a fingerprint of the directory's content;
    * ModelScope id: the id, and ``revision`` if given, else the fingerprint of ``snapshot`` (the
      downloaded directory) when there is one;
    * Hugging Face hub id: the id, and the 40-hex commit: that of ``snapshot`` (a hub snapshot
      directory) or else the one the local HF cache (``cache_dir``, default the HF cache) holds for
      ``revision`` (default ``main``); failing both, ``revision`` as given (possibly None).

    Never downloads anything.
    """
    local = local_model_dir(model, source)
    if local is not None:
        return os.path.abspath(local), revision or local_revision(local)
    if source == "modelscope":
        return model, revision or (local_revision(Path(snapshot)) if snapshot else None)
    if snapshot is not None and _is_commit(Path(snapshot).name):  # .../snapshots/<commit sha>
        return model, Path(snapshot).name
    return model, cached_hub_commit(model, revision, cache_dir) or revision


def cached_hub_commit(model: str, revision: str | None, cache_dir: str | None = None) -> str | None:
    """The commit the local HF cache holds for ``model`` at ``revision`` (a branch, tag or commit;
    default ``main``), or None when the cache does not know it. Offline: reads the cache only."""
    if _is_commit(revision):
        return revision
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(model, "config.json", cache_dir=cache_dir, revision=revision)
    except Exception:  # noqa: BLE001 - no hub library, or an id the cache cannot name: nothing known
        return None
    if not isinstance(found, str):
        return None
    commit = Path(found).parent.name  # <cache>/models--org--name/snapshots/<commit>/config.json
    return commit if _is_commit(commit) else None


def _is_commit(value: str | None) -> bool:
    return value is not None and len(value) == 40 and all(c in "0123456789abcdef" for c in value)


def resolve_weights(model: str, revision: str | None, source: str) -> tuple[str, str | None]:
    """(local directory, resolved revision). ``source``: ``auto`` (local path, else HF hub), ``hf``, ``modelscope``."""
    local = fetch_weights(model, revision, source)
    return local, judge_identity(model, revision, source, snapshot=local)[1]


# Files whose bytes are the model: fingerprinted by name, size and sampled content.
WEIGHT_SUFFIXES = frozenset(
    {".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf", ".ggml", ".h5", ".msgpack", ".onnx", ".npz", ".npy"}
)
# Files that decide how the model is built, prompted and tokenised (config, tokenizer, chat
# template, processor, remote code): read in full.
CONFIG_SUFFIXES = frozenset({".json", ".jinja", ".txt", ".model", ".tiktoken", ".py"})
SAMPLE_EDGE_BYTES = 1 << 20  # the first and the last MiB of a weight file
SAMPLE_BLOCK_BYTES = 64 << 10  # and this many bytes at each of SAMPLE_BLOCKS evenly spaced places
SAMPLE_BLOCKS = 16
FULL_READ_LIMIT = 64 << 20  # a config-like file larger than this is sampled like weights


def local_revision(path: Path) -> str:
    """A revision for a local weights directory: a hash of its config, tokenizer, chat template and
    processor files in full, and of each weight file's name, size and sampled content (first and last
    MiB, 16 blocks of 64 KiB between). A checkpoint overwritten in place with same-size weights gets
    a new revision; a copy of the directory elsewhere keeps it (times are not hashed). Reads a few
    MiB per file, so a 54 GB checkpoint takes well under a second from a warm disk."""
    h = hashlib.sha256(b"pixeljury-local-revision-v2\0")
    for f in sorted(Path(path).iterdir(), key=lambda p: p.name):
        suffix = f.suffix.lower()
        if not f.is_file() or suffix not in WEIGHT_SUFFIXES | CONFIG_SUFFIXES:
            continue
        size = f.stat().st_size
        sample = suffix in WEIGHT_SUFFIXES or size > FULL_READ_LIMIT
        h.update(f"{f.name}\0{size}\0".encode())
        h.update(sampled_file_digest(f, size) if sample else hashlib.sha256(f.read_bytes()).digest())
    return "local-" + h.hexdigest()[:16]


def sampled_file_digest(f: Path, size: int) -> bytes:
    """sha256 of the first and last :data:`SAMPLE_EDGE_BYTES` of ``f`` and of
    :data:`SAMPLE_BLOCKS` evenly spaced blocks between; the whole file when it is about that small."""
    h = hashlib.sha256()
    with open(f, "rb") as fh:
        if size <= 2 * SAMPLE_EDGE_BYTES + SAMPLE_BLOCKS * SAMPLE_BLOCK_BYTES:
            while chunk := fh.read(SAMPLE_EDGE_BYTES):
                h.update(chunk)
            return h.digest()
        inner = size - 2 * SAMPLE_EDGE_BYTES - SAMPLE_BLOCK_BYTES
        spans = [(0, SAMPLE_EDGE_BYTES)]
        spans += [(SAMPLE_EDGE_BYTES + inner * i // (SAMPLE_BLOCKS - 1), SAMPLE_BLOCK_BYTES) for i in range(SAMPLE_BLOCKS)]
        spans.append((size - SAMPLE_EDGE_BYTES, SAMPLE_EDGE_BYTES))
        for offset, length in spans:
            fh.seek(offset)
            h.update(fh.read(length))
    return h.digest()


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


def special_token_texts(tokenizer: Any) -> frozenset[str]:
    """The texts of ``tokenizer``'s special tokens: its added tokens marked special and the special
    tokens it names (end of sequence, padding, the additional ones). Empty texts, which some
    tokenizers ship for reserved slots, are left out: they occur in every text."""
    found: set[str] = set()
    decoder = getattr(tokenizer, "added_tokens_decoder", None) or {}
    for token in decoder.values():
        if getattr(token, "special", False):
            found.add(str(getattr(token, "content", token)))
    found.update(str(t) for t in getattr(tokenizer, "all_special_tokens", None) or ())
    return frozenset(t for t in found if t)


class SpecialTokenGuard:
    """Keeps requests whose text holds a special token of the tokenizer from being sent.

    A tokenizer reads its special tokens in any text as control tokens, never as the characters they
    are spelled with: in a prompt, ``<|im_end|><|im_start|>system`` would close the user's turn and open
    a system turn, and an ``<|image_pad|>`` would be taken for a slot of the image's features (the
    processor then rejects the whole batch). The request's texts (system and user text parts) are
    checked; the chat template's own special tokens are not part of them.
    """

    def __init__(self, tokenizer: Any, engine: str):
        self.tokens = special_token_texts(tokenizer)
        self.engine = engine
        longest_first = sorted(self.tokens, key=lambda t: (-len(t), t))
        self._pattern = re.compile("|".join(map(re.escape, longest_first))) if longest_first else None

    def found(self, request: ChatRequest) -> list[str]:
        """The special tokens in the request's texts, each once, in the order they first occur."""
        if self._pattern is None:
            return []
        texts = [request.system, *(p.text for p in request.user if isinstance(p, TextPart))]
        return list(dict.fromkeys(m.group(0) for text in texts for m in self._pattern.finditer(text)))

    def refusal(self, request: ChatRequest) -> Generation | None:
        """A failed, not retryable :class:`Generation` for a request holding special tokens; else None."""
        found = self.found(request)
        if not found:
            return None
        return Generation(
            request_id=request.request_id, text="", finish_reason="error", retryable=False,
            error=f"not sent: the request text contains {', '.join(found)}, special token(s) of the judge's "
                  f"tokenizer that the {self.engine} engine would pass to the model as control tokens, not as text",
        )


def context_length(config: Any) -> int | None:
    """The model's context in tokens: ``max_position_embeddings`` of its text config (None if unknown)."""
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    for cfg in (text_config, config):
        value = getattr(cfg, "max_position_embeddings", None)
        if isinstance(value, int) and value > 0:
            return value
    return None


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
