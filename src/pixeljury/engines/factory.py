"""Build the engine a command line asked for. Heavy imports happen only for the engine chosen."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pixeljury.engines.base import Engine, EngineUnavailable

ENGINES = ("transformers", "vllm", "openai", "replay")


@dataclass
class EngineSpec:
    engine: str = "transformers"
    model: str = ""
    revision: str | None = None
    source: str = "auto"  # transformers: auto | hf | modelscope | local
    dtype: str = "auto"
    device: str = "auto"
    batch_size: int = 4
    endpoint: str | None = None
    api_key: str | None = None
    concurrency: int = 16
    timeout: float = 600.0
    # The judge's context in tokens: vLLM allocates for it (default 8192); the transformers engine
    # refuses longer requests (default: the model config's max_position_embeddings).
    max_model_len: int | None = None
    replay_file: str | None = None
    extra: dict[str, Any] | None = None


def create_engine(spec: EngineSpec) -> Engine:
    if spec.engine == "transformers":
        from pixeljury.engines.hf import TransformersEngine

        return TransformersEngine(spec.model, revision=spec.revision, source=spec.source, dtype=spec.dtype,
                                  device=spec.device, batch_size=spec.batch_size, max_model_len=spec.max_model_len)
    if spec.engine == "vllm":
        try:
            from pixeljury.engines.vllm_engine import VLLMEngine
        except ImportError as exc:
            raise EngineUnavailable(f"the vLLM engine is not available: {exc}") from exc
        return VLLMEngine(spec.model, revision=spec.revision, dtype=spec.dtype, max_model_len=spec.max_model_len or 8192,
                          **(spec.extra or {}))
    if spec.engine == "openai":
        if not spec.endpoint:
            raise EngineUnavailable("--engine openai needs --endpoint URL (e.g. http://127.0.0.1:8000/v1)")
        from pixeljury.engines.openai_engine import OpenAIEngine

        return OpenAIEngine(spec.endpoint, spec.model, api_key=spec.api_key, concurrency=spec.concurrency,
                            timeout=spec.timeout, revision=spec.revision)
    if spec.engine == "replay":
        if not spec.replay_file:
            raise EngineUnavailable("--engine replay needs --replay-file F (JSON lines: image_sha256, dimension, text)")
        from pixeljury.engines.replay import ReplayEngine

        return ReplayEngine.from_jsonl(spec.replay_file, batch_size=spec.batch_size)
    raise EngineUnavailable(f"unknown engine {spec.engine!r}; choose from {', '.join(ENGINES)}")
