"""Checks that keep a request from reaching a model that would misread it: text holding the
tokenizer's special tokens, and the model's context length. Shared by the in-process engines."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from pixeljury.engines.base import ChatRequest, Generation, ScoreRequest, Scores, TextPart, first_token_ids


def special_token_texts(tokenizer: Any) -> frozenset[str]:
    """The texts of ``tokenizer``'s special tokens: its added tokens marked special and the special
    tokens it names (end of sequence, padding, the additional ones). Empty texts, which some
    tokenizers ship for reserved slots, are left out: they occur in every text."""
    found: set[str] = set()
    decoder = getattr(tokenizer, "added_tokens_decoder", None) or {}
    for token in decoder.values():
        if getattr(token, "special", False):
            found.add(str(getattr(token, "content", token)))
    found.update(str(t) for t in getattr(tokenizer, "all_special_tokens", None) or ())
    return frozenset(t for t in found if t)


class SpecialTokenGuard:
    """Keeps requests whose text holds a special token of the tokenizer from being sent.

    A tokenizer reads its special tokens in any text as control tokens, never as the characters they
    are spelled with: in a prompt, ``<|im_end|><|im_start|>system`` would close the user's turn and open
    a system turn, and an ``<|image_pad|>`` would be taken for a slot of the image's features (the
    processor then rejects the whole batch). The request's texts (system and user text parts) are
    checked; the chat template's own special tokens are not part of them.
    """

    def __init__(self, tokenizer: Any, engine: str):
        self.tokens = special_token_texts(tokenizer)
        self.engine = engine
        longest_first = sorted(self.tokens, key=lambda t: (-len(t), t))
        self._pattern = re.compile("|".join(map(re.escape, longest_first))) if longest_first else None

    def found(self, request: ChatRequest | ScoreRequest) -> list[str]:
        """The special tokens in the request's texts (a score request's candidates and continuation
        too), each once, in the order they first occur."""
        if self._pattern is None:
            return []
        texts = [request.system, *(p.text for p in request.user if isinstance(p, TextPart))]
        if isinstance(request, ScoreRequest):
            texts += [*(request.candidates or ()), request.continuation or ""]
        return list(dict.fromkeys(m.group(0) for text in texts for m in self._pattern.finditer(text)))

    def refusal_reason(self, request: ChatRequest | ScoreRequest) -> str | None:
        """Why a request holding special tokens is not sent; None when it holds none."""
        found = self.found(request)
        if not found:
            return None
        return (f"not sent: the request text contains {', '.join(found)}, special token(s) of the judge's "
                f"tokenizer that the {self.engine} engine would pass to the model as control tokens, not as text")

    def refusal(self, request: ChatRequest) -> Generation | None:
        """A failed, not retryable :class:`Generation` for a request holding special tokens; else None."""
        reason = self.refusal_reason(request)
        if reason is None:
            return None
        return Generation(request_id=request.request_id, text="", finish_reason="error", retryable=False, error=reason)


def context_length(config: Any) -> int | None:
    """The model's context in tokens: ``max_position_embeddings`` of its text config (None if unknown)."""
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    for cfg in (text_config, config):
        value = getattr(cfg, "max_position_embeddings", None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def scored_token_ids(tokenizer: Any, request: ScoreRequest) -> list[int]:
    """The ids a request asks about: each candidate's first token, or the continuation's tokens.
    Raises ValueError for candidates sharing a first token (see :func:`first_token_ids`)."""
    def encode(text: str) -> list[int]:
        return list(tokenizer.encode(text, add_special_tokens=False))

    if request.candidates is not None:
        return first_token_ids(encode, request.candidates)
    ids = encode(request.continuation or "")
    if not ids:
        raise ValueError(f"continuation {request.continuation!r} encodes to no token")
    return ids


def score_checked(requests: list[ScoreRequest], refusal_reason: Callable[[ScoreRequest], str | None], tokenizer: Any,
                  run: Callable[[list[ScoreRequest], list[list[int]]], list[Scores]]) -> list[Scores]:
    """One :class:`Scores` per request, in order: requests that can never be scored (refused by
    ``refusal_reason``, candidates sharing a first token, an empty continuation) come back with a
    not retryable error without reaching the model; the others go to ``run`` with their token ids."""
    results: list[Scores | None] = []
    token_ids: list[list[int]] = []
    for request in requests:
        reason = refusal_reason(request)
        ids: list[int] = []
        if reason is None:
            try:
                ids = scored_token_ids(tokenizer, request)
            except ValueError as exc:
                reason = f"not sent: {exc}"
        results.append(Scores.failed(request.request_id, reason, retryable=False) if reason else None)
        token_ids.append(ids)
    sent = [i for i, s in enumerate(results) if s is None]
    for i, scores in zip(sent, run([requests[i] for i in sent], [token_ids[i] for i in sent])):
        results[i] = scores
    return results  # type: ignore[return-value] - every position is filled
