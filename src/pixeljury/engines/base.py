"""The one interface every engine implements, for two kinds of request.

- chat generation: :class:`ChatRequest` in, :class:`Generation` out (:meth:`Engine.agenerate`, or
  :meth:`Engine.generate` from synchronous code);
- log-probability scoring: :class:`ScoreRequest` in, :class:`Scores` out (:meth:`Engine.ascore` /
  :meth:`Engine.score`), the probabilities of given answers at the next position, or of a given
  continuation, from a forward pass.

Evaluators build requests and read results; engines turn the former into the latter. Neither side
knows the other's internals: per-request settings (the images, how thinking is split off, the schema
name) travel with the request, and an engine says what it can do in :attr:`Engine.capabilities`.

Every engine can be awaited, so one process (the HTTP service) can serve many callers at once. An
engine has one core, either way round:

- :class:`Engine`, a *blocking* engine (one model in this process: transformers, vLLM; replay):
  implements ``generate``/``score``. Its ``agenerate``/``ascore`` run the batch on the engine's own
  worker thread, one batch at a time, so concurrent callers are served in turn and the model is only
  ever touched by one thread; the caller's event loop stays free meanwhile.
- :class:`AsyncEngine`, a *natively async* engine (a remote server: openai): implements
  ``agenerate``/``ascore``. Its ``generate``/``score`` run the coroutine to completion with
  :func:`run_sync`.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

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

T = TypeVar("T")

# Guards the lazy creation of each engine's worker thread (engines need not call Engine.__init__).
_WORKER_LOCK = threading.Lock()


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion from synchronous code and return its result (or raise its error).

    Without a running event loop in this thread it runs on a fresh loop (``asyncio.run``). Inside a
    running loop (a notebook, an ``async def`` handler calling a sync API) it runs on a private loop in
    a helper thread while this thread waits: it works, but it blocks the calling loop for that long,
    so async code should ``await engine.agenerate(...)`` instead.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread and raised there
            box["error"] = exc

    thread = threading.Thread(target=target, name="pixeljury-run-sync")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


class Engine(ABC):
    """Runs a judge model. Subclasses set ``name``, ``model_id`` and ``revision``.

    This base is for blocking engines: implement :meth:`generate` (and :meth:`score` with the
    "score" capability); :meth:`agenerate`/:meth:`ascore` come for free, run on the engine's worker
    thread. Natively async engines subclass :class:`AsyncEngine` instead.
    """

    name: str = "engine"
    model_id: str = ""
    revision: str | None = None
    preferred_batch_size: int = 8  # how many requests the pipeline hands over at once
    _worker: ThreadPoolExecutor | None = None

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
        raise self._cannot_score()

    async def agenerate(self, requests: list[ChatRequest], params: GenerationParams) -> list[Generation]:
        """:meth:`generate`, awaitable: the batch runs on this engine's worker thread, after the
        batches other callers handed over before it. Errors (:class:`EngineError` with its
        ``retryable``) reach the caller unchanged. A cancelled caller stops waiting, but a batch that
        has started runs to its end (a model cannot be interrupted mid-batch)."""
        return await self.in_worker(self.generate, requests, params)

    async def ascore(self, requests: list[ScoreRequest]) -> list[Scores]:
        """:meth:`score`, awaitable, on the worker thread as :meth:`agenerate`."""
        return await self.in_worker(self.score, requests)

    async def in_worker(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on this engine's single worker thread: calls run one at a time, in the order
        they were handed over, so a model held by the engine is never used by two threads at once."""
        return await asyncio.get_running_loop().run_in_executor(self._worker_thread(), functools.partial(fn, *args))

    def _worker_thread(self) -> ThreadPoolExecutor:
        with _WORKER_LOCK:
            if self._worker is None:
                self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"pixeljury-{self.name}")
            return self._worker

    def _cannot_score(self) -> EngineError:
        return EngineError(
            f"the {self.name} engine cannot score log-probabilities: its capabilities are "
            f"{sorted(self.capabilities.kinds)}, without 'score'", retryable=False,
        )

    def describe(self) -> dict[str, Any]:
        """What the manifest records about this engine."""
        return {"engine": self.name, "model_id": self.model_id, "revision": self.revision}

    def close(self) -> None:
        """Free what the engine holds. Subclasses that override it call ``super().close()``, which
        waits for a batch still running on the worker thread and stops the thread."""
        with _WORKER_LOCK:
            worker, self._worker = self._worker, None
        if worker is not None:
            worker.shutdown(wait=True)

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncEngine(Engine):
    """A natively async engine: implement :meth:`agenerate` (and :meth:`ascore` with the "score"
    capability). The sync :meth:`generate`/:meth:`score` run them with :func:`run_sync`, so they also
    work inside a running event loop (on a helper thread, blocking that loop until done)."""

    @abstractmethod
    async def agenerate(self, requests: list[ChatRequest], params: GenerationParams) -> list[Generation]:
        """One generation per request, in the same order (the contract of :meth:`Engine.generate`)."""

    async def ascore(self, requests: list[ScoreRequest]) -> list[Scores]:
        raise self._cannot_score()

    def generate(self, requests: list[ChatRequest], params: GenerationParams) -> list[Generation]:
        return run_sync(self.agenerate(requests, params))

    def score(self, requests: list[ScoreRequest]) -> list[Scores]:
        return run_sync(self.ascore(requests))


__all__ = ["Engine", "AsyncEngine", "run_sync", "TextPart", "ImagePart", "Part", "GenerationParams", "ChatRequest", "ScoreRequest", "Scores", "REQUEST_KINDS", "EngineCapabilities", "first_token_ids", "Generation", "chat_messages", "EngineError", "EngineUnavailable"]
