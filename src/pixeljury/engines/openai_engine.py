"""Any OpenAI-compatible chat-completions server: ``vllm serve``, SGLang, LMDeploy, a hosted endpoint.

The engine is natively async (:class:`~pixeljury.engines.base.AsyncEngine`): requests go out
concurrently over an async HTTP client, and at most ``concurrency`` of them are in flight at once per
event loop, however many callers await :meth:`OpenAIEngine.agenerate` together. Each request is retried
on its own (429, 5xx, timeouts, connection errors) and a request that still fails comes back as a
:class:`Generation` with ``error`` set, so one bad request never costs the rest of the batch.

Bodies are built in :mod:`pixeljury.engines.openai_requests`, replies read in
:mod:`pixeljury.engines.openai_replies`.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
import weakref
from typing import Any

import httpx

from pixeljury.engines.base import (
    AsyncEngine,
    ChatRequest,
    EngineCapabilities,
    EngineError,
    Generation,
    GenerationParams,
    ScoreRequest,
    Scores,
)
from pixeljury.engines.openai_replies import (
    CONFIG_ERROR_STATUSES,
    RETRYABLE_STATUSES,
    Failure,
    error_generation,
    failure_text,
    generation_from_response,
    retry_after_seconds,
)
from pixeljury.engines.openai_requests import (
    build_messages,
    chat_body,
    chat_completions_url,
    encode_images,
    png_data_url,
    redact_url,
    sampling_fields,
)

MAX_BACKOFF_SECONDS = 30.0
# OpenAI caps top_logprobs at 20, and vLLM's default max_logprobs is 20.
DEFAULT_TOP_LOGPROBS = 20


class OpenAIEngine(AsyncEngine):
    """Chat completions against ``endpoint`` (e.g. ``http://127.0.0.1:8000/v1``) for ``model``."""

    name = "openai"

    def __init__(
        self,
        endpoint: str,
        model: str,
        *,
        api_key: str | None = None,
        concurrency: int = 16,
        timeout: float = 600.0,
        max_retries: int = 4,
        revision: str | None = None,
        backoff_base: float = 1.0,
        min_new_tokens: int | None = None,
        top_logprobs: int = DEFAULT_TOP_LOGPROBS,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        self.url = chat_completions_url(endpoint)
        self.model_id = model
        self.revision = revision
        self.concurrency = concurrency
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        # Not part of any protocol: lets tests keep a random model from ending inside its thinking.
        self.min_new_tokens = min_new_tokens
        self.top_logprobs = top_logprobs  # how many first tokens a scoring request asks the server to list
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        # Enough requests per batch to keep every concurrent slot busy most of the time.
        self.preferred_batch_size = max(8, concurrency * 4)
        # One semaphore per event loop (an asyncio semaphore belongs to one loop; each sync call runs
        # its own), shared by every caller on that loop.
        self._slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
            weakref.WeakKeyDictionary())
        self._slots_lock = threading.Lock()

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "endpoint": redact_url(self.url),
            "concurrency": self.concurrency,
            "timeout": self.timeout,
            "max_retries": self.max_retries,
            "min_new_tokens": self.min_new_tokens,
        }

    async def agenerate(self, requests: list[ChatRequest], params: GenerationParams) -> list[Generation]:
        if not requests:
            return []
        started = time.perf_counter()
        # PNG encoding is CPU work: off the event loop, so other callers are served meanwhile.
        image_urls = await asyncio.to_thread(encode_images, requests)
        bodies = [chat_body(self.model_id, r, params, image_urls, self.min_new_tokens) for r in requests]
        outcomes = await self.send_all(bodies)
        seconds = time.perf_counter() - started
        results: list[Generation] = []
        for request, outcome in zip(requests, outcomes):
            if isinstance(outcome, Failure):
                message, retryable = failure_text(outcome)
                results.append(error_generation(request.request_id, message, seconds, retryable=retryable))
            else:
                try:
                    results.append(generation_from_response(request.request_id, outcome, seconds))
                except Exception as exc:  # noqa: BLE001 - a reply of a shape no one foresaw: that request only
                    results.append(error_generation(
                        request.request_id, f"could not read the response: {type(exc).__name__}: {exc}", seconds
                    ))
        self.stop_on_configuration_error(outcomes)
        return results

    @property
    def capabilities(self) -> EngineCapabilities:
        """Chat, and scoring of one-token candidates where the server returns logprobs (continuations
        need prompt log-probabilities, which chat completions do not return)."""
        return EngineCapabilities(kinds=frozenset({"chat", "score"}), max_images_per_request=None)

    async def ascore(self, requests: list[ScoreRequest]) -> list[Scores]:
        """Candidates' log-probabilities from one-token chat completions with ``logprobs``
        (see :mod:`pixeljury.engines.openai_scoring`)."""
        from pixeljury.engines.openai_scoring import score_requests

        return await score_requests(self, requests)

    def stop_on_configuration_error(self, outcomes: list[Any]) -> None:
        """When every request was refused with 401/403/404, the key, URL or model name is wrong."""
        failures = [o for o in outcomes if isinstance(o, Failure)]
        if failures and len(failures) == len(outcomes) and all(f.status in CONFIG_ERROR_STATUSES for f in failures):
            raise EngineError(
                f"every request to {redact_url(self.url)} was refused: {failures[0].message}", retryable=False
            )

    def _semaphore(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        with self._slots_lock:
            semaphore = self._slots.get(loop)
            if semaphore is None:
                semaphore = self._slots[loop] = asyncio.Semaphore(self.concurrency)
            return semaphore

    async def send_all(self, bodies: list[dict[str, Any]]) -> list[Any]:
        """Each body's parsed reply, or a :class:`Failure` after retries, in order."""
        limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
        semaphore = self._semaphore()
        async with httpx.AsyncClient(timeout=self.timeout, limits=limits, headers=self._headers) as client:

            async def bounded(body: dict[str, Any]) -> Any:
                async with semaphore:
                    return await self._send_one(client, body)

            return await asyncio.gather(*(bounded(b) for b in bodies))

    async def _send_one(self, client: httpx.AsyncClient, body: dict[str, Any]) -> Any:
        """The parsed JSON body of a successful response, or a :class:`Failure` after retries."""
        failure = Failure("not attempted")
        for attempt in range(self.max_retries + 1):
            wait: float | None = None
            try:
                response = await client.post(self.url, json=body)
            except httpx.TimeoutException as exc:
                failure = Failure(f"timed out after {self.timeout}s ({type(exc).__name__})")
            except httpx.TransportError as exc:
                failure = Failure(f"cannot reach {redact_url(self.url)}: {type(exc).__name__}: {exc}")
            else:
                if response.status_code == 200:
                    try:
                        return response.json()
                    except ValueError:
                        # A 200 with a body that is not JSON: recorded, not retried, since a
                        # deterministic server would likely send the same again.
                        return Failure(f"malformed JSON in response body: {response.text[:200]!r}", 200)
                failure = Failure(f"HTTP {response.status_code}: {response.text[:300]}", response.status_code)
                if response.status_code not in RETRYABLE_STATUSES:
                    return failure
                wait = retry_after_seconds(response)
            if attempt == self.max_retries:
                break
            if wait is None:
                # Exponential backoff with full jitter, so many clients don't retry in lockstep.
                wait = random.uniform(0, min(MAX_BACKOFF_SECONDS, self.backoff_base * 2**attempt))
            await asyncio.sleep(wait)
        failure.message += f" (after {self.max_retries + 1} attempts)"
        return failure


__all__ = [
    "OpenAIEngine",
    "build_messages",
    "chat_completions_url",
    "generation_from_response",
    "png_data_url",
    "retry_after_seconds",
    "sampling_fields",
]
