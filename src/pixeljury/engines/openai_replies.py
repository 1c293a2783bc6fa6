"""The reply side of the OpenAI-compatible engine: reading chat completions into generations, and
turning failed requests (HTTP status, malformed bodies, retry hints) into recorded errors."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from pixeljury.engines.base import Generation

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
MAX_RETRY_AFTER_SECONDS = 120.0


@dataclass
class Failure:
    """Why one request failed for good (after retries)."""

    message: str
    status: int | None = None


def generation_from_response(request_id: str, body: Any, seconds: float | None = None) -> Generation:
    """One chat-completions response body -> :class:`Generation`.

    The answer comes in one of two forms: thinking inline in ``content`` (server without a reasoning
    parser), or thinking apart in ``reasoning`` (vLLM >= 0.11) / ``reasoning_content`` (SGLang,
    LMDeploy, older vLLM). A body that is not a completion is a recorded error naming what is wrong
    with it, never a score and never an exception that would cost the rest of the batch.
    """
    problem, choice, message = completion_parts(body)
    if problem is not None:
        return error_generation(
            request_id, f"response is not a chat completion: {problem}: {excerpt(body)}", seconds
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
                f"{json_kind(value)}, not a string: {excerpt(body)}",
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
        prompt_tokens=usage_count(usage.get("prompt_tokens")),
        completion_tokens=usage_count(usage.get("completion_tokens")),
        reasoning=reasoning,
        seconds=seconds,
    )


def completion_parts(body: Any) -> tuple[str | None, dict[str, Any] | None, dict[str, Any] | None]:
    """``(problem, choices[0], choices[0].message)``; ``problem`` says what is malformed, or is None."""
    if not isinstance(body, dict):
        return f"the body is {json_kind(body)}, not an object", None, None
    choices = body.get("choices")
    if choices is None:
        return "it has no choices", None, None
    if not isinstance(choices, list):
        return f"choices is {json_kind(choices)}, not a list", None, None
    if not choices:
        return "choices is empty", None, None
    choice = choices[0]
    if not isinstance(choice, dict):
        return f"choices[0] is {json_kind(choice)}, not an object", None, None
    message = choice.get("message")
    if not isinstance(message, dict):
        return f"choices[0].message is {json_kind(message)}, not an object", None, None
    return None, choice, message


def json_kind(value: Any) -> str:
    """What a JSON value is, in words."""
    if value is None:
        return "null"
    for types, word in ((bool, "a boolean"), (str, "a string"), ((int, float), "a number"), (list, "a list"),
                        (dict, "an object")):
        if isinstance(value, types):
            return word
    return type(value).__name__


def excerpt(body: Any) -> str:
    return repr(str(body)[:200])


def usage_count(value: Any) -> int | None:
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


def failure_text(outcome: Failure) -> tuple[str, bool]:
    """``(message, retryable)`` for a request that failed for good: a prompt longer than the
    server's context fails the same way on every rerun."""
    too_long = outcome.status == 400 and CONTEXT_TOO_LONG.search(outcome.message) is not None
    prefix = "the prompt does not fit the judge's context on the server: " if too_long else ""
    return prefix + outcome.message, not too_long
