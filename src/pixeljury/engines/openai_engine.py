"""Any OpenAI-compatible chat-completions server: ``vllm serve``, SGLang, LMDeploy, a hosted endpoint.

Requests go out concurrently (bounded by ``concurrency``) over one async HTTP client; each request is
retried on its own (429, 5xx, timeouts, connection errors) and a request that still fails comes back
as a :class:`Generation` with ``error`` set, so one bad request never costs the rest of the batch.
"""

from __future__ import annotations

import asyncio
import base64
import io
import random
import re
import threading
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Coroutine, TypeVar
from urllib.parse import urlsplit, urlunsplit

import httpx
from PIL import Image

from pixeljury.data.images import to_rgb
from pixeljury.engines.base import (
    ChatRequest,
    chat_messages,
    Engine,
    EngineCapabilities,
    EngineError,
    Generation,
    GenerationParams,
    ImagePart,
    ScoreRequest,
    Scores,
)

# Worth another try: the server is busy, restarting or briefly unreachable.
RETRYABLE_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})
# When every request of a batch fails with one of these, the configuration is wrong (key, URL,
# model name) and recording thousands of identical failures would only hide it.
CONFIG_ERROR_STATUSES = frozenset({401, 403, 404})
# How servers word a 400 for a prompt that does not fit the model's context: vLLM ("... longer than the
# maximum model length of N", older "This model's maximum context length is N tokens"), SGLang ("...
# longer than the model's context length"), OpenAI (code "context_length_exceeded").
CONTEXT_TOO_LONG = re.compile(r"maximum model length|maximum context length|context length|context_length_exceeded",
                              re.IGNORECASE)
MAX_BACKOFF_SECONDS = 30.0
MAX_RETRY_AFTER_SECONDS = 120.0
# The schema name sent when a request names none (servers only record it).
DEFAULT_SCHEMA_NAME = "answer"
# OpenAI caps top_logprobs at 20, and vLLM's default max_logprobs is 20.
DEFAULT_TOP_LOGPROBS = 20

T = TypeVar("T")


def chat_completions_url(endpoint: str) -> str:
    """``endpoint`` is a base URL as the OpenAI clients take it (``http://host:8000/v1``); a full
    ``.../chat/completions`` URL is accepted as it is."""
    url = endpoint.rstrip("/")
    return url if url.endswith("/chat/completions") else f"{url}/chat/completions"


def redact_url(url: str) -> str:
    """The URL without user:password, for the manifest."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def png_data_url(image: Image.Image) -> str:
    """The image as a ``data:image/png;base64,...`` URL. PNG is lossless, so the server sees the
    same pixels the in-process engines see (non-RGB images go through the loader's own conversion)."""
    if image.mode != "RGB":
        image = to_rgb(image)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def build_messages(request: ChatRequest | ScoreRequest, image_urls: dict[str, str]) -> list[dict[str, Any]]:
    """Chat-completions messages; each image as its (already encoded) data URL."""
    return chat_messages(request, lambda part: {"type": "image_url", "image_url": {"url": image_urls[part.sha256]}})


def sampling_fields(
    params: GenerationParams, json_schema: dict[str, Any] | None, min_new_tokens: int | None = None,
    schema_name: str | None = None,
) -> dict[str, Any]:
    """Generation parameters as vLLM and SGLang read them from a chat-completions body.

    ``top_k``, ``repetition_penalty`` and ``chat_template_kwargs`` are not OpenAI fields; both
    servers accept them at the top level of the body (the OpenAI SDK's ``extra_body``).
    """
    body: dict[str, Any] = {
        "max_tokens": params.max_new_tokens,
        "temperature": params.temperature,
        "top_p": params.top_p,
        "top_k": params.top_k,
        "repetition_penalty": params.repetition_penalty,
        "seed": params.seed,
        "chat_template_kwargs": {"enable_thinking": params.enable_thinking},
    }
    if params.json_schema_constrained:
        if json_schema is None:
            raise ValueError("constrained output asked for, but the request carries no JSON schema")
        # vLLM >= 0.11 reads `structured_outputs`; SGLang, LMDeploy and hosted APIs read the
        # standard `response_format`. vLLM gives `structured_outputs` precedence, so sending
        # both is consistent; the schema is the same object either way.
        body["structured_outputs"] = {"json": json_schema}
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": schema_name or DEFAULT_SCHEMA_NAME, "schema": json_schema, "strict": True},
        }
    if params.thinking_budget is not None:
        body["thinking_token_budget"] = params.thinking_budget
    if min_new_tokens is not None:
        body["min_tokens"] = min_new_tokens
    return body


def generation_from_response(request_id: str, body: Any, seconds: float | None = None) -> Generation:
    """One chat-completions response body -> :class:`Generation`.

    The answer comes in one of two forms: thinking inline in ``content`` (server without a reasoning
    parser), or thinking apart in ``reasoning`` (vLLM >= 0.11) / ``reasoning_content`` (SGLang,
    LMDeploy, older vLLM). A body that is not a completion is a recorded error naming what is wrong
    with it, never a score and never an exception that would cost the rest of the batch.
    """
    problem, choice, message = _completion_parts(body)
    if problem is not None:
        return error_generation(
            request_id, f"response is not a chat completion: {problem}: {_excerpt(body)}", seconds
        )
    assert choice is not None and message is not None
    content = message.get("content")
    reasoning = message.get("reasoning")
    if reasoning is None:
        reasoning = message.get("reasoning_content")
    for field_name, value in (("content", content), ("reasoning", reasoning)):
        if value is not None and not isinstance(value, str):
            return error_generation(
                request_id,
                f"response is not a chat completion: choices[0].message.{field_name} is "
                f"{_kind(value)}, not a string: {_excerpt(body)}",
                seconds,
            )
    if content is None and reasoning is not None:
        # The reasoning parser found no end of thinking: the model never wrote `</think>`. Return
        # the raw text, as the in-process engines do, rather than a `</think>` the model never wrote.
        content, reasoning = reasoning, None
    usage = body.get("usage")
    usage = usage if isinstance(usage, dict) else {}
    finish_reason = choice.get("finish_reason")
    return Generation(
        request_id=request_id,
        text=content or "",
        finish_reason=finish_reason if isinstance(finish_reason, str) and finish_reason else "unknown",
        prompt_tokens=_count(usage.get("prompt_tokens")),
        completion_tokens=_count(usage.get("completion_tokens")),
        reasoning=reasoning,
        seconds=seconds,
    )


def _completion_parts(body: Any) -> tuple[str | None, dict[str, Any] | None, dict[str, Any] | None]:
    """``(problem, choices[0], choices[0].message)``; ``problem`` says what is malformed, or is None."""
    if not isinstance(body, dict):
        return f"the body is {_kind(body)}, not an object", None, None
    choices = body.get("choices")
    if choices is None:
        return "it has no choices", None, None
    if not isinstance(choices, list):
        return f"choices is {_kind(choices)}, not a list", None, None
    if not choices:
        return "choices is empty", None, None
    choice = choices[0]
    if not isinstance(choice, dict):
        return f"choices[0] is {_kind(choice)}, not an object", None, None
    message = choice.get("message")
    if not isinstance(message, dict):
        return f"choices[0].message is {_kind(message)}, not an object", None, None
    return None, choice, message


def _kind(value: Any) -> str:
    """What a JSON value is, in words."""
    if value is None:
        return "null"
    for types, word in ((bool, "a boolean"), (str, "a string"), ((int, float), "a number"), (list, "a list"),
                        (dict, "an object")):
        if isinstance(value, types):
            return word
    return type(value).__name__


def _excerpt(body: Any) -> str:
    return repr(str(body)[:200])


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def error_generation(request_id: str, error: str, seconds: float | None = None, *, retryable: bool = True) -> Generation:
    return Generation(request_id=request_id, text="", finish_reason="error", seconds=seconds, error=error,
                      retryable=retryable)


def retry_after_seconds(response: httpx.Response) -> float | None:
    """The server's ``Retry-After`` (seconds or an HTTP date), capped; None when absent or unreadable."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        delay = float(value)
    except ValueError:
        try:
            delay = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return min(max(delay, 0.0), MAX_RETRY_AFTER_SECONDS)


@dataclass
class _Failure:
    """Why one request failed for good (after retries)."""

    message: str
    status: int | None = None


def _encode_images(requests: list[ChatRequest] | list[ScoreRequest]) -> dict[str, str]:
    """Every distinct image of the batch as a data URL, each encoded once (the pipeline sends all
    dimensions of an image together; an edit judge sends several images per request)."""
    image_urls: dict[str, str] = {}
    for request in requests:
        for part in request.user:
            if isinstance(part, ImagePart) and part.sha256 not in image_urls:
                image_urls[part.sha256] = png_data_url(part.image)
    return image_urls


def _failure_text(outcome: _Failure) -> tuple[str, bool]:
    """``(message, retryable)`` for a request that failed for good: a prompt longer than the
    server's context fails the same way on every rerun."""
    too_long = outcome.status == 400 and CONTEXT_TOO_LONG.search(outcome.message) is not None
    prefix = "the prompt does not fit the judge's context on the server: " if too_long else ""
    return prefix + outcome.message, not too_long


def _run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion from synchronous code, even when this thread already runs an event
    loop (a notebook, the FastAPI service): then it runs on a private loop in a helper thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as exc:  # re-raised in the caller's thread below
            box["error"] = exc

    thread = threading.Thread(target=target, name="pixeljury-openai-engine")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


class OpenAIEngine(Engine):
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

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "endpoint": redact_url(self.url),
            "concurrency": self.concurrency,
            "timeout": self.timeout,
            "max_retries": self.max_retries,
            "min_new_tokens": self.min_new_tokens,
        }

    def generate(self, requests: list[ChatRequest], params: GenerationParams) -> list[Generation]:
        if not requests:
            return []
        started = time.perf_counter()
        image_urls = _encode_images(requests)
        bodies = [
            {
                "model": self.model_id,
                "messages": build_messages(request, image_urls),
                **sampling_fields(params, request.json_schema, self.min_new_tokens, request.schema_name),
            }
            for request in requests
        ]
        outcomes = _run_sync(self._send_all(bodies))
        seconds = time.perf_counter() - started
        results: list[Generation] = []
        for request, outcome in zip(requests, outcomes):
            if isinstance(outcome, _Failure):
                message, retryable = _failure_text(outcome)
                results.append(error_generation(request.request_id, message, seconds, retryable=retryable))
            else:
                try:
                    results.append(generation_from_response(request.request_id, outcome, seconds))
                except Exception as exc:  # noqa: BLE001 - a reply of a shape no one foresaw: that request only
                    results.append(error_generation(
                        request.request_id, f"could not read the response: {type(exc).__name__}: {exc}", seconds
                    ))
        self._stop_on_configuration_error(outcomes)
        return results

    @property
    def capabilities(self) -> EngineCapabilities:
        """Chat, and scoring of one-token candidates where the server returns logprobs (continuations
        need prompt log-probabilities, which chat completions do not return)."""
        return EngineCapabilities(kinds=frozenset({"chat", "score"}), max_images_per_request=None)

    def score(self, requests: list[ScoreRequest]) -> list[Scores]:
        """Candidates' log-probabilities from one-token chat completions with ``logprobs``
        (see :mod:`pixeljury.engines.openai_scoring`)."""
        from pixeljury.engines.openai_scoring import score_requests

        return score_requests(self, requests)

    def _stop_on_configuration_error(self, outcomes: list[Any]) -> None:
        """When every request was refused with 401/403/404, the key, URL or model name is wrong."""
        failures = [o for o in outcomes if isinstance(o, _Failure)]
        if failures and len(failures) == len(outcomes) and all(f.status in CONFIG_ERROR_STATUSES for f in failures):
            raise EngineError(
                f"every request to {redact_url(self.url)} was refused: {failures[0].message}", retryable=False
            )

    async def _send_all(self, bodies: list[dict[str, Any]]) -> list[Any]:
        limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
        semaphore = asyncio.Semaphore(self.concurrency)
        async with httpx.AsyncClient(timeout=self.timeout, limits=limits, headers=self._headers) as client:

            async def bounded(body: dict[str, Any]) -> Any:
                async with semaphore:
                    return await self._send_one(client, body)

            return await asyncio.gather(*(bounded(b) for b in bodies))

    async def _send_one(self, client: httpx.AsyncClient, body: dict[str, Any]) -> Any:
        """The parsed JSON body of a successful response, or a :class:`_Failure` after retries."""
        failure = _Failure("not attempted")
        for attempt in range(self.max_retries + 1):
            wait: float | None = None
            try:
                response = await client.post(self.url, json=body)
            except httpx.TimeoutException as exc:
                failure = _Failure(f"timed out after {self.timeout}s ({type(exc).__name__})")
            except httpx.TransportError as exc:
                failure = _Failure(f"cannot reach {redact_url(self.url)}: {type(exc).__name__}: {exc}")
            else:
                if response.status_code == 200:
                    try:
                        return response.json()
                    except ValueError:
                        # A 200 with a body that is not JSON: recorded, not retried, since a
                        # deterministic server would likely send the same again.
                        return _Failure(f"malformed JSON in response body: {response.text[:200]!r}", 200)
                failure = _Failure(f"HTTP {response.status_code}: {response.text[:300]}", response.status_code)
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
