"""Log-probability scoring on the in-process vLLM engine, without generating an answer.

The chat is rendered with vLLM's tokenizer (assistant generation prompt, thinking off unless asked)
and sent as token ids with the images beside them, so the tokens scored are exactly those the
transformers engine scores (no text merge across the prompt's end):

- candidates: one one-token request per candidate, ``allowed_token_ids=[its first token]`` and
  ``logprobs=0``. vLLM reports the sampled token's log-probability from the raw logits (before the
  allowed-token mask; ``logprobs_mode="raw_logprobs"``, its default), i.e. the full-vocabulary
  log-softmax. ``logprobs=N`` alone would list the top N tokens, which need not include the candidates.
  The candidates share their prompt, so prefix caching computes it once.
- continuation: the continuation's tokens appended to the prompt, ``prompt_logprobs=0``; the sum of
  the log-probabilities vLLM reports for those prompt positions.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from pixeljury.data.images import to_rgb
from pixeljury.engines.base import ScoreRequest, Scores, chat_messages
from pixeljury.engines.guards import score_checked

if TYPE_CHECKING:
    from pixeljury.engines.vllm_engine import VLLMEngine


def _hf_messages(request: ScoreRequest) -> list[dict[str, Any]]:
    return chat_messages(request, lambda part: {"type": "image"})


def _prompt_ids(tokenizer: Any, request: ScoreRequest) -> list[int]:
    text = tokenizer.apply_chat_template(_hf_messages(request), tokenize=False, add_generation_prompt=True,
                                         enable_thinking=request.enable_thinking)
    return list(tokenizer.encode(text, add_special_tokens=False))


def _tokens_prompt(ids: list[int], request: ScoreRequest) -> dict[str, Any]:
    images = request.images
    prompt: dict[str, Any] = {"prompt_token_ids": ids}
    if images:
        prompt["multi_modal_data"] = {"image": [p.image if p.image.mode == "RGB" else to_rgb(p.image) for p in images]}
        prompt["multi_modal_uuids"] = {"image": [p.sha256 for p in images]}
    return prompt


def score_requests(engine: "VLLMEngine", requests: list[ScoreRequest]) -> list[Scores]:
    """One :class:`Scores` per request, in order; a request that can never be scored (special tokens,
    candidates sharing a first token, too many images) fails alone and not retryable; when vLLM refuses
    a batch, its requests are scored one by one."""
    return score_checked(requests, engine.refusal_reason, engine.tokenizer(),
                         lambda sent, ids: _score_sent(engine, sent, ids))


def _score_sent(engine: "VLLMEngine", requests: list[ScoreRequest], scored: list[list[int]]) -> list[Scores]:
    if not requests:
        return []
    from vllm.v1.engine.exceptions import EngineDeadError

    from pixeljury.engines.base import EngineError
    from pixeljury.engines.vllm_engine import _failed

    vllm = engine._vllm
    tokenizer = engine.tokenizer()
    started = time.perf_counter()
    prompts: list[dict[str, Any]] = []
    sampling: list[Any] = []
    for request, ids in zip(requests, scored):
        prompt_ids = _prompt_ids(tokenizer, request)
        if request.candidates is not None:
            for token in ids:
                prompts.append(_tokens_prompt(prompt_ids, request))
                sampling.append(vllm.SamplingParams(max_tokens=1, temperature=0.0, logprobs=0,
                                                    allowed_token_ids=[token]))
        else:
            prompts.append(_tokens_prompt(prompt_ids + ids, request))
            sampling.append(vllm.SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0))
    try:
        outputs = iter(engine._llm.generate(prompts, sampling, use_tqdm=False))
    except EngineDeadError as exc:
        raise EngineError(f"vLLM engine died: {exc}", retryable=False) from exc
    except Exception as exc:  # noqa: BLE001 - narrowed below, request by request
        if len(requests) == 1:
            failed = _failed(requests[0], exc, time.perf_counter() - started)  # type: ignore[arg-type]
            return [Scores.failed(requests[0].request_id, failed.error or str(exc), retryable=failed.retryable,
                                  seconds=failed.seconds)]
        return [s for r, ids in zip(requests, scored) for s in _score_sent(engine, [r], [ids])]
    seconds = time.perf_counter() - started
    results = []
    for request, ids in zip(requests, scored):
        scores = Scores(request_id=request.request_id, tokens=[tokenizer.decode([t]) for t in ids], seconds=seconds)
        if request.candidates is not None:
            values = []
            for token in ids:
                output = next(outputs)
                step = output.outputs[0].logprobs[0]  # {token id: Logprob} at the one generated position
                values.append(float(step[token].logprob))
            scores.logprobs = dict(zip(request.candidates, values))
            appended = 0
        else:
            output = next(outputs)
            positions = output.prompt_logprobs[-len(ids):]
            scores.logprob = float(sum(position[token].logprob for position, token in zip(positions, ids)))
            appended = len(ids)
        # vLLM's prompt ids have each image's tokens expanded, as the transformers engine counts them.
        scores.prompt_tokens = len(output.prompt_token_ids) - appended
        results.append(scores)
    return results
