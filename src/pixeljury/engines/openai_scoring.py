"""Log-probability scoring on an OpenAI-compatible server: one-token chat completions with
``logprobs: true`` and ``top_logprobs: K``, read from ``choices[0].logprobs.content[0]``.

Only candidates can be scored: chat completions return no log-probabilities of given text, so a
continuation is refused (not retryable), as is a reply without logprobs. The server's tokenizer is not
visible here, so a candidate counts when a listed token's text equals it.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from pixeljury.engines.base import ScoreRequest, Scores
from pixeljury.engines.openai_replies import Failure, completion_parts, excerpt, failure_text, usage_count
from pixeljury.engines.openai_requests import encode_images, score_body

if TYPE_CHECKING:
    from pixeljury.engines.openai_engine import OpenAIEngine


async def score_requests(engine: "OpenAIEngine", requests: list[ScoreRequest]) -> list[Scores]:
    """One :class:`Scores` per request, in order (greedy, one token, thinking as the request says)."""
    if not requests:
        return []
    started = time.perf_counter()
    # PNG encoding is CPU work: off the event loop, so other callers are served meanwhile.
    image_urls = await asyncio.to_thread(encode_images, requests)
    asked = [r for r in requests if r.candidates is not None]
    bodies = [score_body(engine.model_id, r, image_urls, engine.top_logprobs) for r in asked]
    outcomes = iter(await engine.send_all(bodies) if bodies else [])
    seconds = time.perf_counter() - started
    results: list[Scores] = []
    sent = []
    for request in requests:
        if request.candidates is None:
            results.append(Scores.failed(request.request_id, retryable=False, error=(
                "the openai engine cannot score a continuation: chat completions return no log-probabilities "
                "of given text (score it with the transformers or vLLM engine)")))
            continue
        outcome = next(outcomes)
        sent.append(outcome)
        if isinstance(outcome, Failure):
            message, retryable = failure_text(outcome)
            results.append(Scores.failed(request.request_id, message, retryable=retryable, seconds=seconds))
        else:
            results.append(scores_from_response(request, outcome, seconds))
    engine.stop_on_configuration_error(sent)
    return results


def scores_from_response(request: ScoreRequest, body: Any, seconds: float | None = None) -> Scores:
    """A chat completion asked with ``logprobs`` and ``max_tokens: 1`` -> the candidates' log-probabilities
    at the first generated position, read from ``choices[0].logprobs.content[0].top_logprobs``.

    A candidate counts when a listed token's text equals it: the server's tokenizer is not visible
    here, so a candidate must be one token, and one outside the top ``top_logprobs`` cannot be read.
    Both are recorded as not retryable errors, as is a server that returns no logprobs."""
    problem, choice, _message = completion_parts(body)
    if problem is not None:
        return Scores.failed(request.request_id, f"response is not a chat completion: {problem}: {excerpt(body)}",
                             seconds=seconds)
    assert choice is not None
    logprobs = choice.get("logprobs")
    content = logprobs.get("content") if isinstance(logprobs, dict) else None
    first = content[0] if isinstance(content, list) and content else None
    top = first.get("top_logprobs") if isinstance(first, dict) else None
    if not isinstance(top, list):
        return Scores.failed(request.request_id, retryable=False, seconds=seconds, error=(
            "the server returned no top_logprobs for the answer's first token, so it cannot score "
            f"candidates: {excerpt(body)}"))
    listed: dict[str, float] = {}
    for entry in [first, *top]:
        if isinstance(entry, dict) and isinstance(entry.get("token"), str) and isinstance(entry.get("logprob"), (int, float)):
            listed.setdefault(entry["token"], float(entry["logprob"]))
    candidates = request.candidates or []
    missing = [c for c in candidates if c not in listed]
    if missing:
        return Scores.failed(request.request_id, retryable=False, seconds=seconds, error=(
            f"candidate(s) {missing} are not among the {len(top)} most likely first tokens the server "
            "listed (a candidate must be one token of the server's tokenizer)"))
    usage = body.get("usage") if isinstance(body.get("usage"), dict) else {}
    return Scores(request_id=request.request_id, logprobs={c: listed[c] for c in candidates},
                  tokens=list(candidates), prompt_tokens=usage_count(usage.get("prompt_tokens")), seconds=seconds)
