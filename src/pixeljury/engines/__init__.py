"""Engines run judge models; see :mod:`pixeljury.engines.base` for the interface."""

from pixeljury.engines.base import (
    AsyncEngine,
    ChatRequest,
    Engine,
    EngineError,
    EngineUnavailable,
    Generation,
    GenerationParams,
    ImagePart,
    TextPart,
)

__all__ = [
    "AsyncEngine",
    "ChatRequest",
    "Engine",
    "EngineError",
    "EngineUnavailable",
    "Generation",
    "GenerationParams",
    "ImagePart",
    "TextPart",
]
