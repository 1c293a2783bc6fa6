"""The one interface every engine implements, for two kinds of request.

- chat generation: :class:`ChatRequest` in, :class:`Generation` out (:meth:`Engine.generate`);
- log-probability scoring: :class:`ScoreRequest` in, :class:`Scores` out (:meth:`Engine.score`), the
  probabilities of given answers at the next position, or of a given continuation, from a forward pass.

Evaluators build requests and read results; engines turn the former into the latter. Neither side
knows the other's internals: per-request settings (the images, how thinking is split off, the schema
name) travel with the request, and an engine says what it can do in :attr:`Engine.capabilities`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

# The request types live in the core (evaluators use them without importing an engine); engines and
# older callers import them from here.
from pixeljury.core.requests import (
    TextPart,
    ImagePart,
    Part,
    GenerationParams,
    ChatRequest,
    ScoreRequest,
    Scores,
    REQUEST_KINDS,
    EngineCapabilities,
    first_token_ids,
    Generation,
    chat_messages,
    EngineError,
    EngineUnavailable,
)


class Engine(ABC):
    """Runs a judge model. Subclasses set ``name``, ``model_id`` and ``revision``."""

    name: str = "engine"
    model_id: str = ""
    revision: str | None = None
    preferred_batch_size: int = 8  # how many requests the pipeline hands over at once

    @property
    def capabilities(self) -> EngineCapabilities:
        """Chat generation only, unless the engine says more."""
        return EngineCapabilities()

    @abstractmethod
    def generate(self, requests: list[ChatRequest], params: GenerationParams) -> list[Generation]:
        """One generation per request, in the same order.

        Raise :class:`EngineError` when the whole batch failed; return a :class:`Generation` with
        ``error`` set (and ``finish_reason="error"``) for a request that failed on its own."""

    def score(self, requests: list[ScoreRequest]) -> list[Scores]:
        """One :class:`Scores` per request, in the same order (engines with the "score" capability)."""
        raise EngineError(
            f"the {self.name} engine cannot score log-probabilities: its capabilities are "
            f"{sorted(self.capabilities.kinds)}, without 'score'", retryable=False,
        )

    def describe(self) -> dict[str, Any]:
        """What the manifest records about this engine."""
        return {"engine": self.name, "model_id": self.model_id, "revision": self.revision}

    def close(self) -> None:  # noqa: B027 - optional hook
        pass

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["Engine", "TextPart", "ImagePart", "Part", "GenerationParams", "ChatRequest", "ScoreRequest", "Scores", "REQUEST_KINDS", "EngineCapabilities", "first_token_ids", "Generation", "chat_messages", "EngineError", "EngineUnavailable"]
