"""A micro-batcher: many callers' small ``agenerate``/``ascore`` calls become the engine's large batches.

A service receives requests one caller at a time, but an engine works best on batches of its
``preferred_batch_size`` (one ``LLM.chat`` call, one padded forward pass). :class:`MicroBatcher` waits a
short window after the first pending request, or until a batch is full, then hands everything pending
to the engine in batches of at most ``max_batch_size`` requests, and gives each caller its own
answers, in its own order, under its own request ids.

Only requests that can share a batch are coalesced: chat requests with equal
:class:`~pixeljury.engines.base.GenerationParams`, or score requests. A batch the engine fails as a
whole (an :class:`~pixeljury.engines.base.EngineError`) fails every caller with a request in it, with
the same error; a request that failed alone comes back to its caller as a failed generation, as from
the engine itself.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from pixeljury.engines.base import ChatRequest, Engine, EngineError, Generation, GenerationParams, ScoreRequest, Scores

DEFAULT_MAX_WAIT_SECONDS = 0.01


@dataclass(eq=False)  # compared and hashed by identity: one entry per call
class _Entry:
    """One caller's call: its requests and the future its answers go to."""

    requests: list[Any]
    future: asyncio.Future
    answers: list[Any] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.answers = [None] * len(self.requests)


@dataclass
class _Pending:
    """Requests waiting for a batch, in arrival order, as (call, position in the call)."""

    call: Callable[[list[Any]], Awaitable[list[Any]]]
    slots: list[tuple[_Entry, int]] = field(default_factory=list)
    timer: asyncio.TimerHandle | None = None


class MicroBatcher:
    """Coalesces concurrent calls to ``engine`` (use one batcher per event loop).

    ``max_batch_size``: the most requests per engine batch (default the engine's
    ``preferred_batch_size``); ``max_wait``: how long, in seconds, the first pending request waits for
    others before its batch goes out unfilled.
    """

    def __init__(self, engine: Engine, *, max_batch_size: int | None = None,
                 max_wait: float = DEFAULT_MAX_WAIT_SECONDS) -> None:
        size = engine.preferred_batch_size if max_batch_size is None else max_batch_size
        if size < 1:
            raise ValueError(f"max_batch_size must be at least 1, got {size}")
        if max_wait < 0:
            raise ValueError(f"max_wait must be >= 0 seconds, got {max_wait}")
        self.engine = engine
        self.max_batch_size = size
        self.max_wait = max_wait
        self.batches_sent = 0  # engine calls made, for tests and metrics
        self._pending: dict[Hashable, _Pending] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task] = set()

    async def agenerate(self, requests: list[ChatRequest], params: GenerationParams) -> list[Generation]:
        """``engine.agenerate(requests, params)``, batched with other callers' requests."""
        return await self._submit(("chat", params), requests, lambda batch: self.engine.agenerate(batch, params))

    async def ascore(self, requests: list[ScoreRequest]) -> list[Scores]:
        """``engine.ascore(requests)``, batched with other callers' requests."""
        return await self._submit(("score",), requests, self.engine.ascore)

    async def _submit(self, key: Hashable, requests: list[Any], call: Callable[[list[Any]], Awaitable[list[Any]]]) -> list[Any]:
        if not requests:
            return []
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        elif self._loop is not loop:
            raise RuntimeError("a MicroBatcher serves one event loop; create one per loop")
        entry = _Entry(list(requests), loop.create_future())
        pending = self._pending.setdefault(key, _Pending(call))
        pending.slots.extend((entry, i) for i in range(len(requests)))
        # Full batches go out at once; what is left waits for more, at most max_wait after the first.
        while len(pending.slots) >= self.max_batch_size:
            self._send(pending.call, pending.slots[:self.max_batch_size])
            del pending.slots[:self.max_batch_size]
        if not pending.slots:
            self._drop(key)
        elif pending.timer is None:
            pending.timer = loop.call_later(self.max_wait, self._flush, key)
        return await entry.future

    def _flush(self, key: Hashable) -> None:
        """The wait window is over: send what is pending, however few."""
        pending = self._drop(key)
        if pending is not None and pending.slots:
            self._send(pending.call, pending.slots)

    def _drop(self, key: Hashable) -> _Pending | None:
        pending = self._pending.pop(key, None)
        if pending is not None and pending.timer is not None:
            pending.timer.cancel()
        return pending

    def _send(self, call: Callable[[list[Any]], Awaitable[list[Any]]], slots: list[tuple[_Entry, int]]) -> None:
        task = asyncio.ensure_future(self._run(call, list(slots)))
        self._tasks.add(task)  # held until done: the loop keeps only weak references to tasks
        task.add_done_callback(self._tasks.discard)

    async def _run(self, call: Callable[[list[Any]], Awaitable[list[Any]]], slots: list[tuple[_Entry, int]]) -> None:
        # Request ids are unique within one caller's call only, so the batch gets its own ids, and each
        # answer is given back under the caller's id.
        batch = [dataclasses.replace(entry.requests[i], request_id=str(n)) for n, (entry, i) in enumerate(slots)]
        self.batches_sent += 1
        try:
            answers = await call(batch)
            if [a.request_id for a in answers] != [r.request_id for r in batch]:
                raise EngineError(f"the {self.engine.name} engine answered {len(answers)} of {len(batch)} requests "
                                  "or out of order", retryable=True)
        except asyncio.CancelledError:
            for entry in dict.fromkeys(entry for entry, _ in slots):
                entry.future.cancel()
            raise
        except Exception as exc:  # handed to every caller with a request in this batch
            for entry in dict.fromkeys(entry for entry, _ in slots):
                if not entry.future.done():
                    entry.future.set_exception(exc)
            return
        for (entry, i), answer in zip(slots, answers):
            entry.answers[i] = dataclasses.replace(answer, request_id=entry.requests[i].request_id)
            if not entry.future.done() and all(a is not None for a in entry.answers):
                entry.future.set_result(entry.answers)
