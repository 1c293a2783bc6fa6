"""The one interface every engine implements: a batch of chat requests in, generations out.

Protocols build :class:`ChatRequest` objects and read :class:`Generation` objects; engines turn the
former into the latter. Neither side knows the other's internals.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from collections.abc import Callable
from typing import Any, Literal, Union

from PIL import Image


@dataclass(frozen=True)
class TextPart:
    text: str
    type: Literal["text"] = "text"


@dataclass(frozen=True)
class ImagePart:
    image: Image.Image = field(repr=False, compare=False)
    sha256: str  # content hash of the source file; engines may use it as a cache key (vLLM uuid)
    type: Literal["image"] = "image"


Part = Union[TextPart, ImagePart]


@dataclass(frozen=True)
class GenerationParams:
    """Decoding settings. Defaults are the official Q-Judger settings (greedy, thinking on)."""

    max_new_tokens: int = 4096
    temperature: float = 0.0
    top_k: int = 1
    top_p: float = 1.0
    repetition_penalty: float = 1.05
    seed: int = 42
    enable_thinking: bool = True
    # Opt-in extras (not part of the official protocol); recorded in the key when set.
    json_schema_constrained: bool = False
    thinking_budget: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ChatRequest:
    request_id: str  # unique within a call; the pipeline uses the store key
    system: str
    user: list[Part]
    json_schema: dict[str, Any] | None = None  # used only by engines that constrain output

    @property
    def image(self) -> ImagePart | None:
        return next((p for p in self.user if isinstance(p, ImagePart)), None)


@dataclass
class Generation:
    request_id: str
    text: str  # the answer as the model wrote it (thinking included when the engine returns it inline)
    finish_reason: str  # "stop", "length" (hit max_new_tokens), or an engine's own word
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    reasoning: str | None = None  # thinking, when the engine returned it apart from the answer
    seconds: float | None = None  # wall time of the batch this generation came from, shared
    # Set when this one request failed (after the engine's own retries) while others in the batch
    # succeeded; the pipeline records it as a failure, never as a result, and retries it next run.
    error: str | None = None
    # With ``error``: False when the request itself is at fault (longer than the model's context,
    # text that would act as the judge's control tokens): the same input fails the same way on every
    # rerun, so the run reports it as permanent instead of asking for a rerun.
    retryable: bool = True

    @property
    def truncated(self) -> bool:
        return self.finish_reason == "length"

    @property
    def full_text(self) -> str:
        """Thinking and answer as one text, ``</think>`` between them when the engine split them."""
        if self.reasoning is None:
            return self.text
        return f"{self.reasoning}\n</think>\n\n{self.text}"


def chat_messages(request: ChatRequest, image_entry: Callable[[ImagePart], dict[str, Any]]) -> list[dict[str, Any]]:
    """The request as chat messages: an optional system message and one user message whose content
    keeps the request's [text, image, text] order, so the chat template puts the image where the
    protocol put it. ``image_entry`` gives each engine's own form of an image part.

    An empty system text means "no system message" (what official clients of some reward models
    send); chat templates may render that differently from an empty system message.
    """
    content: list[dict[str, Any]] = []
    for part in request.user:
        if isinstance(part, TextPart):
            content.append({"type": "text", "text": part.text})
        elif isinstance(part, ImagePart):
            content.append(image_entry(part))
        else:  # pragma: no cover - Part is a closed union
            raise TypeError(f"unsupported content part {type(part).__name__}")
    system = [{"role": "system", "content": request.system}] if request.system else []
    return [*system, {"role": "user", "content": content}]


class EngineError(RuntimeError):
    """An engine failed on a batch. ``retryable`` says whether trying again may help."""

    def __init__(self, message: str, *, retryable: bool = True):
        super().__init__(message)
        self.retryable = retryable


class EngineUnavailable(RuntimeError):
    """The engine cannot be used at all here (missing extra, weights not found...)."""


class Engine(ABC):
    """Runs a judge model. Subclasses set ``name``, ``model_id`` and ``revision``."""

    name: str = "engine"
    model_id: str = ""
    revision: str | None = None
    preferred_batch_size: int = 8  # how many requests the pipeline hands over at once

    @abstractmethod
    def generate(self, requests: list[ChatRequest], params: GenerationParams) -> list[Generation]:
        """One generation per request, in the same order.

        Raise :class:`EngineError` when the whole batch failed; return a :class:`Generation` with
        ``error`` set (and ``finish_reason="error"``) for a request that failed on its own."""

    def describe(self) -> dict[str, Any]:
        """What the manifest records about this engine."""
        return {"engine": self.name, "model_id": self.model_id, "revision": self.revision}

    def close(self) -> None:  # noqa: B027 - optional hook
        pass

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
