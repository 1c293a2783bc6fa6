"""The request kinds and their answers: what evaluators send and engines return.

- chat generation: :class:`ChatRequest` in, :class:`Generation` out;
- log-probability scoring: :class:`ScoreRequest` in, :class:`Scores` out, the probabilities of given
  answers at the next position, or of a given continuation, from a forward pass.

Per-request settings (the images, how thinking is split off, the schema name) travel with the
request; an engine says what it can do in :class:`EngineCapabilities`. These types belong to the
core: evaluators use them without importing any engine (``pixeljury.engines.base`` re-exports them
beside the :class:`~pixeljury.engines.base.Engine` interface).
"""

from __future__ import annotations

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
    # None while an evaluator's planned request only names the image (core.evaluator.lazy_image);
    # the runner loads it before the request reaches an engine, which always gets the image itself.
    image: Image.Image | None = field(repr=False, compare=False)
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

    def sampling(self) -> dict[str, Any]:
        """The sampling settings under the names vLLM's ``SamplingParams`` and OpenAI-compatible
        servers use."""
        return {"max_tokens": self.max_new_tokens, "temperature": self.temperature, "top_p": self.top_p,
                "top_k": self.top_k, "repetition_penalty": self.repetition_penalty, "seed": self.seed}


@dataclass
class ChatRequest:
    request_id: str  # unique within a call; the pipeline uses the store key
    system: str
    user: list[Part]
    json_schema: dict[str, Any] | None = None  # used only by engines that constrain output
    # The name servers record the schema under (OpenAI's ``response_format.json_schema.name``);
    # None: the engine's neutral default.
    schema_name: str | None = None
    # How the answer's thinking is split off, as a reasoning-parser name ("qwen3"); None: the request
    # does not rely on a split. Engines whose parser is set at load time (vLLM) refuse a constrained
    # or thinking-budgeted request that names another one.
    reasoning: str | None = None
    # Labels the evaluator attaches so engines and tools that need to know what the request is can
    # tell (Q-Judger: {"dimension": ...}; the replay engine matches recordings by it). Never sent to
    # a model, and no part of a result key.
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def image(self) -> ImagePart | None:
        return next((p for p in self.user if isinstance(p, ImagePart)), None)


@dataclass
class ScoreRequest:
    """Log-probabilities from one forward pass, with nothing generated.

    Exactly one of:

    - ``candidates``: answers (``["Yes", "No"]``) whose first token's log-probability at the next
      position after the assistant turn opens is wanted. Candidates whose first tokens coincide
      cannot be told apart at that position; engines refuse such a request (not retryable).
    - ``continuation``: a text whose total log-probability as the start of the assistant's answer is
      wanted (teacher-forced: the sum over its tokens).

    The chat is rendered with the generation prompt and, by default, thinking off (for Qwen3
    templates: the empty ``<think></think>`` block), so the next token is the answer's first.
    """

    request_id: str
    system: str
    user: list[Part]
    candidates: list[str] | None = None
    continuation: str | None = None
    enable_thinking: bool = False

    def __post_init__(self) -> None:
        if (self.candidates is None) == (self.continuation is None):
            raise ValueError(f"score request {self.request_id!r}: give either candidates or a continuation")
        if self.candidates is not None:
            if not self.candidates or any(not isinstance(c, str) or not c for c in self.candidates):
                raise ValueError(f"score request {self.request_id!r}: candidates must be non-empty strings")
            if len(set(self.candidates)) != len(self.candidates):
                raise ValueError(f"score request {self.request_id!r}: candidates repeat: {self.candidates}")
        if self.continuation is not None and not self.continuation:
            raise ValueError(f"score request {self.request_id!r}: the continuation is empty")

    @property
    def image(self) -> ImagePart | None:
        return next((p for p in self.user if isinstance(p, ImagePart)), None)

    @property
    def images(self) -> list[ImagePart]:
        return [p for p in self.user if isinstance(p, ImagePart)]


@dataclass
class Scores:
    """What a :class:`ScoreRequest` got back: ``logprobs`` (natural log, one per candidate, in the
    request's order) or ``logprob`` (the continuation's total), or ``error``."""

    request_id: str
    logprobs: dict[str, float] | None = None
    logprob: float | None = None
    tokens: list[str] | None = None  # the scored tokens as text: each candidate's first, or the continuation's
    prompt_tokens: int | None = None
    seconds: float | None = None
    error: str | None = None
    retryable: bool = True  # as for Generation: False when the request itself is at fault

    @classmethod
    def failed(cls, request_id: str, error: str, *, retryable: bool = True, seconds: float | None = None) -> "Scores":
        return cls(request_id=request_id, error=error, retryable=retryable, seconds=seconds)


@dataclass
class MeasureRequest:
    """One item for a model that maps it to a value in one forward pass, with nothing generated and
    no log-probabilities: a reward model, a CLIP similarity, an aesthetic predictor. ``user`` holds
    the item's image(s) (and text parts when the model reads them); ``prompt`` is the item's prompt."""

    request_id: str
    prompt: str
    user: list[Part]

    @property
    def images(self) -> list[ImagePart]:
        return [p for p in self.user if isinstance(p, ImagePart)]


@dataclass
class Measurement:
    """What a :class:`MeasureRequest` got back: ``value`` in the model's convention, with what the
    model reports beside it (``extras``; prompt truncation for models with a text limit), or ``error``."""

    request_id: str
    value: float | None = None
    extras: dict[str, Any] = field(default_factory=dict)
    tokens_dropped: int | None = None
    token_limit: int | None = None
    seconds: float | None = None
    error: str | None = None
    retryable: bool = True  # as for Generation: False when the item itself is at fault


REQUEST_KINDS = frozenset({"chat", "score", "measure"})


@dataclass(frozen=True)
class EngineCapabilities:
    """What an engine can do: which request kinds it serves, and the most images one request may hold
    (None: no limit the engine knows of)."""

    kinds: frozenset[str] = frozenset({"chat"})
    max_images_per_request: int | None = None

    def __post_init__(self) -> None:
        unknown = set(self.kinds) - REQUEST_KINDS
        if unknown:
            raise ValueError(f"unknown request kind(s) {sorted(unknown)}; known: {sorted(REQUEST_KINDS)}")

    def supports(self, kind: str) -> bool:
        return kind in self.kinds


def first_token_ids(encode: Callable[[str], list[int]], candidates: list[str]) -> list[int]:
    """The first token id of each candidate as ``encode`` (no special tokens) splits it alone.

    Raises ValueError when two candidates start with the same token: at the next position they are one
    event, so their probabilities could not be told apart (ask with a continuation per candidate instead).
    """
    firsts: list[int] = []
    for candidate in candidates:
        ids = encode(candidate)
        if not ids:
            raise ValueError(f"candidate {candidate!r} encodes to no token")
        firsts.append(ids[0])
    shared = [c for c, t in zip(candidates, firsts) if firsts.count(t) > 1]
    if shared:
        raise ValueError(f"candidates {shared} share their first token, so their next-token probabilities "
                         "cannot be told apart; score each as a continuation instead")
    return firsts


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


def chat_messages(request: ChatRequest | ScoreRequest, image_entry: Callable[[ImagePart], dict[str, Any]]) -> list[dict[str, Any]]:
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
