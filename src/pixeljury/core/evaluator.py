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

:func:`evaluate` drives an evaluator over samples with one engine, in batches, stage by stage. It
holds no store: a front end that resumes passes ``lookup``/``commit`` callbacks (the run store), so
an answer already committed under an ask's key is read, not recomputed. No torch here.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, Union

from pixeljury.core.accumulator import Accumulator, ExactMean
from pixeljury.core.requests import (
    ChatRequest, EngineCapabilities, EngineError, Generation, GenerationParams, ScoreRequest, Scores,
)

Answer = Union[Generation, Scores]


class RequestEngine(Protocol):
    """What the driver needs of an engine (every :class:`pixeljury.engines.base.Engine` is one)."""

    name: str
    preferred_batch_size: int

    @property
    def capabilities(self) -> EngineCapabilities: ...

    def generate(self, requests: list[ChatRequest], params: GenerationParams) -> list[Generation]: ...

    def score(self, requests: list[ScoreRequest]) -> list[Scores]: ...
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
    request: ChatRequest | ScoreRequest
    context: Mapping[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return "score" if isinstance(self.request, ScoreRequest) else "chat"


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


class Evaluator(ABC):
    """Subclasses set :attr:`identity` and implement :meth:`plan`, :meth:`read` and :meth:`accumulator`."""

    identity: EvaluatorIdentity
    params: GenerationParams = GenerationParams()  # decoding settings of its chat requests

    @abstractmethod
    def plan(self, sample: Sample) -> list[Ask]:
        """The first-stage requests ``sample`` needs (may be empty: nothing to ask)."""

    @abstractmethod
    def read(self, sample: Sample, ask: Ask, answer: Answer) -> Reading:
        """Read the engine's answer to ``ask``. Answers that carry an ``error`` never reach here."""

    @abstractmethod
    def accumulator(self) -> Accumulator:
        """A fresh accumulator that takes this evaluator's verdicts."""

    def ask_key(self, sample: Sample, ask: Ask) -> str:
        """The content key of an ask: the evaluator's identity, the sample's content (prompt and
        image hashes) and the ask's name and request text. Equal keys mean equal answers can be reused."""
        request = ask.request
        texts = [request.system, *(getattr(p, "text", None) or getattr(p, "sha256", "") for p in request.user)]
        extra = (request.candidates, request.continuation) if isinstance(request, ScoreRequest) else self.params.as_dict()
        payload = {**self.identity.as_dict(), "prompt": sample.prompt, "images": [i.sha256 for i in sample.images],
                   "ask": ask.name, "kind": ask.kind, "texts": texts, "extra": extra}
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


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
    asked: int  # answers computed by the engine in this call
    reused: int  # answers read through ``lookup``


def evaluate(
    evaluator: Evaluator,
    samples: Iterable[Sample],
    engine: RequestEngine,
    *,
    batch_size: int | None = None,
    lookup: Callable[[str], Answer | None] | None = None,
    commit: Callable[[str, Answer], None] | None = None,
    max_stages: int = 8,
) -> EvaluationResult:
    """Run ``evaluator`` over ``samples`` on ``engine``: plan, batch by request kind, read, follow up
    (at most ``max_stages`` rounds), accumulate. An ask the engine fails on becomes an ``error``
    verdict (never a score); an engine that lacks a request kind the evaluator needs is refused
    before anything runs."""
    samples = list(samples)
    pending: list[tuple[Sample, Ask]] = [(s, a) for s in samples for a in evaluator.plan(s)]
    _check_capabilities(engine, (a for _, a in pending))
    verdicts: list[Verdict] = []
    asked = reused = 0
    size = max(1, batch_size or engine.preferred_batch_size)
    for _stage in range(max_stages):
        if not pending:
            break
        follow: list[tuple[Sample, Ask]] = []
        answers: list[tuple[Sample, Ask, Answer]] = []
        todo: list[tuple[Sample, Ask, str]] = []
        for sample, ask in pending:
            key = evaluator.ask_key(sample, ask)
            stored = lookup(key) if lookup else None
            if stored is not None:
                answers.append((sample, ask, stored))
                reused += 1
            else:
                todo.append((sample, ask, key))
        for kind in ("chat", "score"):
            group = [t for t in todo if t[1].kind == kind]
            for start in range(0, len(group), size):
                batch = group[start : start + size]
                for (sample, ask, key), answer in zip(batch, _run(engine, evaluator, [a for _, a, _ in batch])):
                    asked += 1
                    if answer.error is None and commit is not None:
                        commit(key, answer)
                    answers.append((sample, ask, answer))
        for sample, ask, answer in answers:
            if answer.error is not None:
                verdicts.append(Verdict(sample.sample_id, ask.name, "error", error=answer.error,
                                        retryable=answer.retryable))
                continue
            reading = evaluator.read(sample, ask, answer)
            verdicts.extend(reading.verdicts)
            follow.extend((sample, a) for a in reading.follow_ups)
        _check_capabilities(engine, (a for _, a in follow))
        pending = follow
    if pending:
        raise EngineError(f"{evaluator.identity.name} still asked follow-ups after {max_stages} stages", retryable=False)
    acc = evaluator.accumulator()
    acc.update_many(verdicts)
    return EvaluationResult(verdicts, acc.compute(), asked, reused)


def _check_capabilities(engine: RequestEngine, asks: Iterable[Ask]) -> None:
    caps = engine.capabilities
    for ask in asks:
        if not caps.supports(ask.kind):
            raise EngineError(f"the {engine.name} engine cannot serve {ask.kind!r} requests (ask {ask.name!r}); "
                              f"it supports {sorted(caps.kinds)}", retryable=False)
        n_images = len([p for p in ask.request.user if getattr(p, "type", "") == "image"])
        if caps.max_images_per_request is not None and n_images > caps.max_images_per_request:
            raise EngineError(f"ask {ask.name!r} holds {n_images} images; the {engine.name} engine takes at most "
                              f"{caps.max_images_per_request} per request", retryable=False)


def _run(engine: RequestEngine, evaluator: Evaluator, asks: Sequence[Ask]) -> list[Answer]:
    """One batch of one kind; a batch the engine raises on becomes one error answer per ask."""
    requests = [a.request for a in asks]
    try:
        if asks[0].kind == "score":
            out: list[Answer] = list(engine.score(requests))  # type: ignore[arg-type]
        else:
            out = list(engine.generate(requests, evaluator.params))  # type: ignore[arg-type]
    except EngineError as exc:
        return [Generation(r.request_id, "", "error", error=str(exc), retryable=exc.retryable) for r in requests]
    if [a.request_id for a in out] != [r.request_id for r in requests]:
        raise EngineError(f"the {engine.name} engine returned answers out of order or missing", retryable=False)
    return out


__all__ = [
    "Answer", "Ask", "RequestEngine", "EvaluationResult", "Evaluator", "EvaluatorIdentity", "ImageRef", "Reading", "Sample",
    "Verdict", "VerdictMeans", "evaluate",
]
