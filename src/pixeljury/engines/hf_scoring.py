"""Log-probability scoring on the transformers engine: one forward pass per batch, nothing generated.

Each request's chat is rendered with the assistant's generation prompt (thinking off unless the
request asks for it) and encoded by the processor, images expanded. A candidates request reads the
log-softmax at the last position for each candidate's first token; a continuation request has its
tokens appended to the prompt (token ids, so no merge across the boundary) and sums their
teacher-forced log-probabilities. Rows are left-padded, so every row's last position is the batch's
last, and only the logits of the positions read are computed (``logits_to_keep``).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from pixeljury.engines.base import ImagePart, ScoreRequest, Scores
from pixeljury.engines.guards import score_checked

if TYPE_CHECKING:
    from pixeljury.engines.hf import TransformersEngine

logger = logging.getLogger(__name__)


def score_requests(engine: "TransformersEngine", requests: list[ScoreRequest]) -> list[Scores]:
    """One :class:`Scores` per request, in order. Requests that can never be scored (special tokens
    in their text, candidates sharing a first token, longer than the context) come back with a not
    retryable error without reaching the model; a batch the processor or the model fails on is run
    one by one, so only a request that fails alone comes back with (a retryable) error."""
    return score_checked(requests, engine.special_tokens.refusal_reason, engine.processor.tokenizer,
                         lambda sent, ids: _score_fitting(engine, sent, ids))


def _score_fitting(engine: "TransformersEngine", requests: list[ScoreRequest], token_ids: list[list[int]]) -> list[Scores]:
    if not requests:
        return []
    started = time.perf_counter()
    try:
        enc = _encode(engine, requests)
        prompts = [row[mask.bool()].tolist() for row, mask in zip(enc["input_ids"], enc["attention_mask"])]
        limit = engine.max_model_len
        too_long = [limit is not None and len(p) + _appended(r, ids) > limit
                    for p, r, ids in zip(prompts, requests, token_ids)]
        if any(too_long):
            results: list[Scores | None] = [
                Scores.failed(r.request_id, retryable=False, error=(
                    f"not sent: the prompt is {len(p)} tokens (image tokens included) and the scored text "
                    f"{_appended(r, ids)} more, which exceeds the judge's context of {limit} tokens"))
                if long else None for r, p, ids, long in zip(requests, prompts, token_ids, too_long)
            ]
            fitting = [i for i, s in enumerate(results) if s is None]
            for i, scores in zip(fitting, _score_fitting(engine, [requests[i] for i in fitting],
                                                         [token_ids[i] for i in fitting])):
                results[i] = scores
            return results  # type: ignore[return-value]
        logprobs = _forward(engine, enc, prompts, requests, token_ids)
    except Exception as exc:  # noqa: BLE001 - narrowed below, request by request
        reason = f"{type(exc).__name__}: {exc}"
        if len(requests) == 1:
            return [Scores.failed(requests[0].request_id, f"scoring failed on the request: {reason}",
                                  seconds=time.perf_counter() - started)]
        logger.warning("scoring failed on a batch of %d (%s); scoring its requests one by one", len(requests), reason)
        return [s for r, ids in zip(requests, token_ids) for s in _score_fitting(engine, [r], [ids])]
    seconds = time.perf_counter() - started
    tokenizer = engine.processor.tokenizer
    out = []
    for request, prompt, ids, values in zip(requests, prompts, token_ids, logprobs):
        scores = Scores(request_id=request.request_id, tokens=[tokenizer.decode([t]) for t in ids],
                        prompt_tokens=len(prompt), seconds=seconds)
        if request.candidates is not None:
            scores.logprobs = dict(zip(request.candidates, values))
        else:
            scores.logprob = float(sum(values))
        out.append(scores)
    return out


def _appended(request: ScoreRequest, ids: list[int]) -> int:
    """Tokens appended to the prompt: the continuation's (a candidate is read at the next position)."""
    return len(ids) if request.continuation is not None else 0


def _encode(engine: "TransformersEngine", requests: list[ScoreRequest]) -> Any:
    from pixeljury.engines.hf import render_chat

    texts = [render_chat(engine.processor, r, enable_thinking=r.enable_thinking) for r in requests]  # type: ignore[arg-type]
    images = [[p.image for p in r.user if isinstance(p, ImagePart)] for r in requests]
    return engine.processor(text=texts, images=images if any(images) else None, padding=True, return_tensors="pt")


def _forward(engine: "TransformersEngine", enc: Any, prompts: list[list[int]], requests: list[ScoreRequest],
             token_ids: list[list[int]]) -> list[list[float]]:
    """The log-probabilities each request asks for, from one forward pass over the batch."""
    import torch

    rows = [p + (ids if r.continuation is not None else []) for p, r, ids in zip(prompts, requests, token_ids)]
    width = max(len(row) for row in rows)
    pad = engine.pad_id if engine.pad_id is not None else 0
    input_ids = torch.tensor([[pad] * (width - len(row)) + row for row in rows])
    attention_mask = torch.tensor([[0] * (width - len(row)) + [1] * len(row) for row in rows])
    extra: dict[str, Any] = {}
    old_shape = tuple(enc["input_ids"].shape)
    for key, value in enc.items():
        if key in ("input_ids", "attention_mask"):
            continue
        if torch.is_tensor(value) and tuple(value.shape) == old_shape:
            # Per-token companions of input_ids (e.g. multimodal token types): re-padded alike.
            value = torch.stack([
                torch.cat([value.new_zeros(width - len(row)), v[m.bool()],
                           value.new_zeros(len(row) - int(m.sum()))])
                for row, v, m in zip(rows, value, enc["attention_mask"])
            ])
        extra[key] = value
    keep = 1 + max(_appended(r, ids) for r, ids in zip(requests, token_ids))
    with torch.inference_mode():
        logits = engine.model(input_ids=input_ids.to(engine.device), attention_mask=attention_mask.to(engine.device),
                              **{k: v.to(engine.device) if torch.is_tensor(v) else v for k, v in extra.items()},
                              logits_to_keep=keep).logits
        logprobs = torch.log_softmax(logits.float(), dim=-1).cpu()
    values: list[list[float]] = []
    for i, (request, ids) in enumerate(zip(requests, token_ids)):
        if request.continuation is None:
            values.append(logprobs[i, -1, ids].tolist())
        else:
            # The logits at position t predict the token at t + 1: the continuation's n tokens are
            # predicted by the n positions before the last.
            n = len(ids)
            predicted = logprobs[i, keep - n - 1 : keep - 1]
            values.append(predicted[torch.arange(n), torch.tensor(ids)].tolist())
    return values
