"""The evaluator contract: how any judge or metric asks an engine and reads what comes back.

An evaluator knows how to ask and how to read; it knows nothing of how a model runs. Given a
:class:`Sample` (prompt, images, metadata) it

1. **plans** the requests the sample needs (:meth:`Evaluator.plan`: a list of :class:`Ask`);
2. **reads** each answer (a :class:`~pixeljury.core.requests.Generation` for a chat request, a
   :class:`~pixeljury.core.requests.Scores` for a log-probability request) into typed
   :class:`Verdict` objects (:meth:`Evaluator.read`);
3. may **follow up**: reading an answer may return further asks built from it (multi-stage
   evaluators: DynEval writes its questions, then asks them);
4. declares an **identity** (name, version, the settings that change its results), which goes into
   every result key, so results of another version or other settings are never reused;
5. hands out an **accumulator** (:mod:`pixeljury.core.accumulator`) that aggregates its verdicts
   and merges across shards bit for bit.

The contract holds no driver: :func:`pixeljury.runs.evaluate.run_evaluator` runs any evaluator
over samples through the store (resume, retries, failures recorded, events), and ``pixeljury
judge`` runs Q-Judger through the same runner. No torch here, and no other pixeljury package.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Protocol, Union

from PIL import Image

from pixeljury.core.accumulator import Accumulator, ExactMean
from pixeljury.core.requests import (
    ChatRequest, EngineCapabilities, EngineError, Generation, GenerationParams, ImagePart, MeasureRequest, Measurement,
    ScoreRequest, Scores,
)

Answer = Union[Generation, Scores, Measurement]
Request = Union[ChatRequest, ScoreRequest, MeasureRequest]


class RequestEngine(Protocol):
    """What the driver needs of an engine (every :class:`pixeljury.engines.base.Engine` is one)."""

    name: str
    preferred_batch_size: int

    @property
    def capabilities(self) -> EngineCapabilities: ...

    def generate(self, requests: list[ChatRequest], params: GenerationParams) -> list[Generation]: ...

    def score(self, requests: list[ScoreRequest]) -> list[Scores]: ...


class MeasuringEngine(Protocol):
    """An engine that serves ``measure`` requests (a reward model, a CLIP similarity)."""

    def measure(self, requests: list[MeasureRequest]) -> list[Measurement]: ...
VerdictStatus = Literal["scored", "parse_failure", "not_applicable", "error"]


@dataclass(frozen=True)
class ImageRef:
    """An image of a sample: where it is and the SHA-256 of its bytes (the content key)."""

    path: Path
    sha256: str


@dataclass(frozen=True)
class Sample:
    """One thing to evaluate. ``sample_id`` is unique within a call (an input row's index, a
    request id of the service); ``metadata`` holds whatever else the input row carried."""

    sample_id: str
    prompt: str
    images: tuple[ImageRef, ...] = ()
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EvaluatorIdentity:
    """What makes two evaluators' results interchangeable: same name, version and settings."""

    name: str
    version: str
    settings: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"evaluator": self.name, "version": self.version, "settings": dict(self.settings)}


@dataclass
class Ask:
    """A request an evaluator wants answered for one sample. ``name`` is unique within the sample
    (e.g. a dimension, or ``"questions"`` then ``"answer:3"``); ``context`` carries what the
    evaluator needs to read the answer (never sent to the engine)."""

    name: str
    request: ChatRequest | ScoreRequest | MeasureRequest
    context: Mapping[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        if isinstance(self.request, ScoreRequest):
            return "score"
        return "measure" if isinstance(self.request, MeasureRequest) else "chat"


@dataclass
class Verdict:
    """One typed result of an evaluator for one sample: e.g. a Q-Judger dimension, a metric's value."""

    sample_id: str
    name: str
    status: VerdictStatus
    value: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    retryable: bool = True  # with status "error": False when the same input fails the same way again


@dataclass
class Reading:
    """What reading one answer gives: verdicts, and asks that follow from the answer."""

    verdicts: list[Verdict] = field(default_factory=list)
    follow_ups: list[Ask] = field(default_factory=list)


@dataclass(frozen=True)
class StoredForm:
    """How a verdict is kept in a run store: the record's status word, its parsed payload, its error."""

    status: str
    parsed: dict[str, Any]
    error: str | None = None


def content_key(fields: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON of key fields (sorted keys, no whitespace): the result key."""
    blob = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8", "surrogatepass")).hexdigest()


class Evaluator(ABC):
    """Subclasses set :attr:`identity` and implement :meth:`plan`, :meth:`read` and :meth:`accumulator`.

    Image parts of planned requests may be left unloaded (``ImagePart(None, sha256)``, see
    :func:`lazy_image`): the driver loads each with :meth:`load_image` only when the request is
    sent, so planning (and finding what a store already holds) decodes no image."""

    identity: EvaluatorIdentity
    # Decoding settings of its chat requests. The neutral default (greedy, no repetition penalty, no
    # thinking, at most 1024 new tokens) is no protocol's: an evaluator sets its own, as Q-Judger
    # sets its official ones (GenerationParams' defaults, from the run's settings).
    params: GenerationParams = GenerationParams(max_new_tokens=1024, repetition_penalty=1.0, enable_thinking=False)
    # Every request kind its asks may use, follow-ups included ("chat", "score", "measure"); when
    # set, an engine lacking one is refused before anything runs, not when the follow-ups come.
    request_kinds: frozenset[str] | None = None
    # True when plan() gives one ask per sample: failures then name the row alone, not the ask.
    one_ask_per_sample: bool = False
    # Where this evaluator's failures are recorded in the store; None: by what failed ("image",
    # "engine", "parse"). Per-item metrics record theirs under "metric:<name>".
    failure_stage: str | None = None

    @abstractmethod
    def plan(self, sample: Sample) -> list[Ask]:
        """The first-stage requests ``sample`` needs (may be empty: nothing to ask)."""

    @abstractmethod
    def read(self, sample: Sample, ask: Ask, answer: Answer) -> Reading:
        """Read the engine's answer to ``ask``. Answers that carry an ``error`` never reach here."""

    @abstractmethod
    def accumulator(self) -> Accumulator:
        """A fresh accumulator that takes this evaluator's verdicts."""

    def key_fields(self, sample: Sample, ask: Ask, model: str) -> dict[str, Any]:
        """What an ask's result depends on: the evaluator's identity, the model that answers (``model``:
        the engine's model id and revision), the sample's content (prompt and image hashes), the ask's
        name and request text, the decoding settings. Stored with the result."""
        request = ask.request
        texts = [getattr(request, "system", ""),
                 *(getattr(p, "text", None) or getattr(p, "sha256", "") for p in request.user)]
        if isinstance(request, ScoreRequest):
            extra: Any = {"candidates": request.candidates, "continuation": request.continuation,
                          "enable_thinking": request.enable_thinking}
        elif isinstance(request, ChatRequest):
            extra = {"params": self.params.as_dict(), "json_schema": request.json_schema,
                     "schema_name": request.schema_name, "reasoning": request.reasoning}
        else:
            extra = None
        return {**self.identity.as_dict(), "model": model, "prompt": sample.prompt,
                "images": [i.sha256 for i in sample.images], "ask": ask.name, "kind": ask.kind, "texts": texts,
                "extra": extra}

    def ask_key(self, sample: Sample, ask: Ask, model: str) -> str:
        """The content key of an ask (of :meth:`key_fields`). Equal keys mean equal answers can be reused."""
        return content_key(self.key_fields(sample, ask, model))

    def verdict_names(self, ask: Ask) -> list[str]:
        """The verdicts an ask's answer would give, named so: a failed ask gets an ``error`` verdict of
        each, so every name's counts add up to the samples (override when reading gives more than
        the ask's own name, e.g. a combined score)."""
        return [ask.name]

    def load_image(self, ref: ImageRef) -> Image.Image:
        """An image as this evaluator sends it (override for a protocol's own resize). Raise an
        ``ImageLoadError`` (pixeljury.data.images) for a file that cannot be used."""
        with Image.open(ref.path) as img:
            return img.convert("RGB")

    def stored_form(self, verdict: Verdict) -> StoredForm:
        """How a verdict is kept in a run store (override to keep a protocol's own words)."""
        return StoredForm(verdict.status, {"value": verdict.value, **verdict.detail}, verdict.error)


def lazy_image(ref: ImageRef) -> ImagePart:
    """An image part that names an image without holding it; the driver loads it before sending."""
    return ImagePart(None, ref.sha256)  # type: ignore[arg-type]


def unloaded(request: Request) -> list[str]:
    """SHA-256s of the request's image parts that are not loaded yet."""
    return [p.sha256 for p in request.user if isinstance(p, ImagePart) and p.image is None]


def with_images(request: Request, images: Mapping[str, Image.Image]) -> Request:
    """A copy of ``request`` whose unloaded image parts hold ``images[sha256]``."""
    if not unloaded(request):
        return request
    user = [ImagePart(images[p.sha256], p.sha256) if isinstance(p, ImagePart) and p.image is None else p
            for p in request.user]
    return replace(request, user=user)


class VerdictMeans(Accumulator):
    """Per verdict name: the exact mean of the scored values and a count of each status. The default
    accumulator of simple evaluators; mergeable bit for bit (:class:`~pixeljury.core.accumulator.ExactMean`)."""

    kind = "verdict-means"

    def __init__(self) -> None:
        self.means: dict[str, ExactMean] = {}
        self.counts: dict[str, dict[str, int]] = {}

    def update(self, item: Verdict) -> None:
        counts = self.counts.setdefault(item.name, {})
        counts[item.status] = counts.get(item.status, 0) + 1
        if item.status == "scored" and item.value is not None:
            self.means.setdefault(item.name, ExactMean()).update(item.value)

    def merge(self, other: "VerdictMeans | Mapping[str, Any]") -> "VerdictMeans":
        other = self._coerce(other)
        for name, mean in other.means.items():
            self.means.setdefault(name, ExactMean()).merge(mean)
        for name, counts in other.counts.items():
            mine = self.counts.setdefault(name, {})
            for status, n in counts.items():
                mine[status] = mine.get(status, 0) + n
        return self

    def compute(self) -> dict[str, dict[str, Any]]:
        return {name: {"mean": self.means[name].compute() if name in self.means else None,
                       "counts": dict(sorted(counts.items()))} for name, counts in sorted(self.counts.items())}

    def _state_body(self) -> dict[str, Any]:
        return {"means": {k: m.state() for k, m in self.means.items()}, "counts": self.counts}

    @classmethod
    def _from_body(cls, body: Mapping[str, Any]) -> "VerdictMeans":
        out = cls()
        out.means = {k: ExactMean.from_state(v) for k, v in body["means"].items()}
        out.counts = {k: {s: int(n) for s, n in v.items()} for k, v in body["counts"].items()}
        return out


@dataclass
class EvaluationResult:
    verdicts: list[Verdict]
    aggregate: Any
    asked: int  # requests sent to the engine in this call
    reused: int  # answers read from the store instead
    stopped: str | None = None  # why the run stopped before the end, if it did


def check_capabilities(engine: RequestEngine, asks: Iterable[Ask], kinds: Iterable[str] | None = None) -> None:
    """Refuse, before anything runs, asks of a kind the engine lacks or with more images than it
    takes, and (``kinds``: an evaluator's ``request_kinds``) kinds its later stages will need."""
    caps = engine.capabilities
    missing = sorted(set(kinds or ()) - set(caps.kinds))
    if missing:
        raise EngineError(f"the {engine.name} engine cannot serve {missing[0]!r} requests, which this evaluator "
                          f"needs; it supports {sorted(caps.kinds)}", retryable=False)
    for ask in asks:
        if not caps.supports(ask.kind):
            raise EngineError(f"the {engine.name} engine cannot serve {ask.kind!r} requests (ask {ask.name!r}); "
                              f"it supports {sorted(caps.kinds)}", retryable=False)
        n_images = len([p for p in ask.request.user if getattr(p, "type", "") == "image"])
        if caps.max_images_per_request is not None and n_images > caps.max_images_per_request:
            raise EngineError(f"ask {ask.name!r} holds {n_images} images; the {engine.name} engine takes at most "
                              f"{caps.max_images_per_request} per request", retryable=False)


__all__ = [
    "Answer", "Ask", "EvaluationResult", "Evaluator", "EvaluatorIdentity", "ImageRef", "Reading", "RequestEngine", "Sample",
    "StoredForm", "Verdict", "VerdictMeans", "check_capabilities", "content_key", "lazy_image", "unloaded",
    "with_images",
]
