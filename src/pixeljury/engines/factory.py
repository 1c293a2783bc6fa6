"""Build the engine a command line asked for. Heavy imports happen only for the engine chosen.

Engines are looked up in the registry (pixeljury.core.registry): each entry's target is a builder
taking an :class:`EngineSpec`, so a plugin adds an engine by registering its own builder.
"""

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


def build_transformers(spec: EngineSpec) -> Engine:
    from pixeljury.engines.hf import TransformersEngine

    return TransformersEngine(spec.model, revision=spec.revision, source=spec.source, dtype=spec.dtype,
                              device=spec.device, batch_size=spec.batch_size, max_model_len=spec.max_model_len)


def build_vllm(spec: EngineSpec) -> Engine:
    try:
        from pixeljury.engines.vllm_engine import VLLMEngine
    except ImportError as exc:
        raise EngineUnavailable(f"the vLLM engine is not available: {exc}") from exc
    return VLLMEngine(spec.model, revision=spec.revision, dtype=spec.dtype, max_model_len=spec.max_model_len or 8192,
                      **(spec.extra or {}))


def build_openai(spec: EngineSpec) -> Engine:
    if not spec.endpoint:
        raise EngineUnavailable("--engine openai needs --endpoint URL (e.g. http://127.0.0.1:8000/v1)")
    from pixeljury.engines.openai_engine import OpenAIEngine

    return OpenAIEngine(spec.endpoint, spec.model, api_key=spec.api_key, concurrency=spec.concurrency,
                        timeout=spec.timeout, revision=spec.revision)


def build_replay(spec: EngineSpec) -> Engine:
    if not spec.replay_file:
        raise EngineUnavailable("--engine replay needs --replay-file F (JSON lines: image_sha256, dimension, text)")
    from pixeljury.engines.replay import ReplayEngine

    return ReplayEngine.from_jsonl(spec.replay_file, batch_size=spec.batch_size)


def create_engine(spec: EngineSpec) -> Engine:
    """Build ``spec.engine`` through its registry entry (built-in or a plugin's builder)."""
    from pixeljury.core.registry import RegistryError, registry, unknown_message

    entries = registry()
    entry = entries.find("engine", spec.engine)
    if entry is None:
        raise EngineUnavailable(unknown_message("engine", spec.engine, entries.names("engine"), lead="choose from"))
    try:
        builder = entry.load()
    except RegistryError as exc:
        raise EngineUnavailable(str(exc)) from exc
    return builder(spec)
