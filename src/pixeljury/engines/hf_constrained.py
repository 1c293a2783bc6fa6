"""Constrained decoding for the transformers engine: ``--constrained`` and ``--thinking-budget``.

One :class:`ThinkThenAnswer` logits processor serves a whole left-padded batch; every row keeps its
own state and its own JSON schema (rows of one batch are often different dimensions). A row goes
through these phases, the way vLLM with a reasoning parser and structured outputs treats it:

``think``
    The prompt ended inside ``<think>`` (thinking on). Tokens are free, except the end-of-sequence
    tokens: ending the turn here would leave no answer at all, so a constrained row may not (vLLM
    does not withhold them; a real judge does not end inside its thinking anyway). The thinking
    budget counts the tokens after the prompt's last ``<think>`` as vLLM's ``thinking_token_budget``
    does (the ``\\n`` the template puts after ``<think>`` included); when it is spent the row
    moves to ``close``.
``close``
    Forced tokens: ``</think>`` when the budget ran out, then the chat template's answer prefix
    (what the template itself writes after ``</think>`` when thinking is off: ``\\n\\n`` for Qwen3).
    A row whose model writes ``</think>`` on its own gets the prefix forced the same way.
``answer``
    With a schema, only tokens the schema's grammar allows (llguidance, compiled as vLLM's
    ``guidance`` backend compiles it with ``disable_any_whitespace``); once the JSON is complete
    only end-of-sequence is allowed. Without a schema (a thinking budget alone) tokens are free.
``done``
    The row has ended; transformers pads it and the processor leaves it alone.

A prompt that does not end inside ``<think>`` (thinking off: the template already wrote
``<think>\\n\\n</think>\\n\\n``; or a model without thinking) starts in ``answer``.

The grammar is `llguidance <https://github.com/guidance-ai/llguidance>`_ (``pip install
'pixeljury[torch]'``): a dependency-free Rust wheel, the library behind vLLM's ``guidance``
structured-outputs backend (which pixeljury's vLLM engine uses), so both engines constrain answers
with the same grammar compiler and the same whitespace rule.
"""

from __future__ import annotations

import json
import threading
import weakref
from dataclasses import dataclass, field
from typing import Any

from transformers import LogitsProcessor, LogitsProcessorList

from pixeljury.engines.base import ChatRequest, EngineError, GenerationParams

THINK_START = "<think>"
THINK_END = "</think>"
# What vLLM's structured outputs config is in pixeljury (engines/vllm_engine.py): no free whitespace,
# so a model cannot spend its tokens on blanks inside the JSON.
GRAMMAR_DEFAULTS = {"whitespace_flexible": False}
INSTALL_HINT = "constrained decoding with the transformers engine needs llguidance: pip install 'pixeljury[torch]'"


def _llguidance():
    try:
        import llguidance
        import llguidance.hf
    except ImportError as exc:  # pragma: no cover - llguidance is part of the torch extra
        raise ImportError(INSTALL_HINT) from exc
    return llguidance


def require_llguidance() -> None:
    """Raise a not retryable :class:`EngineError` naming the extra to install when llguidance is missing."""
    try:
        _llguidance()
    except ImportError as exc:
        raise EngineError(str(exc), retryable=False) from exc


def answer_prefix(template_owner: Any) -> str:
    """What the chat template writes between ``</think>`` and the answer, read off the template
    itself: the generation prompt it renders with thinking off (Qwen3: ``<think>\\n\\n</think>\\n\\n``)
    after its last ``</think>``. ``""`` when the template has no such form (or no template)."""
    try:
        text = template_owner.apply_chat_template(
            [{"role": "user", "content": [{"type": "text", "text": "x"}]}],
            tokenize=False, add_generation_prompt=True, enable_thinking=False,
        )
    except Exception:  # noqa: BLE001 - no chat template, or one that wants other messages: no prefix known
        return ""
    if not isinstance(text, str):
        return ""
    cut = text.rfind(THINK_END)
    return text[cut + len(THINK_END):] if cut != -1 else ""


class _Grammars:
    """An llguidance tokenizer and the matchers compiled for it, one per schema (copied per request)."""

    def __init__(self, ll_tok: Any):
        self.ll_tok = ll_tok
        self.matchers: dict[str, Any] = {}


# Per Hugging Face tokenizer (for its lifetime) and (vocabulary size, end tokens): building the
# llguidance tokenizer is the slow part (about a second for a 150k-token vocabulary), and each
# schema is compiled once; a batch only copies the compiled matchers.
_CACHE: "weakref.WeakKeyDictionary[Any, dict[tuple, _Grammars]]" = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def _grammars(tokenizer: Any, vocab_size: int | None, eos_ids: list[int] | None) -> _Grammars:
    llg = _llguidance()
    n_vocab = max(vocab_size or 0, len(tokenizer))
    eos = sorted(eos_ids) if eos_ids else None
    key = (n_vocab, tuple(eos or ()))
    with _LOCK:
        per = _CACHE.setdefault(tokenizer, {})
        if key not in per:
            per[key] = _Grammars(llg.hf.from_tokenizer(tokenizer, n_vocab, eos_token=eos))
        return per[key]


def ll_tokenizer(tokenizer: Any, vocab_size: int | None = None, eos_ids: list[int] | None = None) -> Any:
    """The llguidance tokenizer for a fast Hugging Face ``tokenizer`` whose model scores
    ``vocab_size`` tokens (default ``len(tokenizer)``) and ends on ``eos_ids`` (default the
    tokenizer's end-of-sequence token); cached for the tokenizer's lifetime."""
    return _grammars(tokenizer, vocab_size, eos_ids).ll_tok


def schema_matcher(tokenizer: Any, schema: dict[str, Any], vocab_size: int | None = None,
                   eos_ids: list[int] | None = None) -> Any:
    """A fresh llguidance ``LLMatcher`` for answers of ``schema`` in ``tokenizer``'s tokens, compiled
    as vLLM's ``guidance`` backend compiles it (no free whitespace). Raises ``ValueError`` when
    llguidance cannot compile the schema."""
    llg = _llguidance()
    grammars = _grammars(tokenizer, vocab_size, eos_ids)
    key = json.dumps(schema, sort_keys=True)
    with _LOCK:
        template = grammars.matchers.get(key)
        if template is None:
            grammar = llg.LLMatcher.grammar_from_json_schema(schema, defaults=dict(GRAMMAR_DEFAULTS))
            template = llg.LLMatcher(grammars.ll_tok, grammar, log_level=0)
            if template.is_error():
                raise ValueError(f"llguidance cannot compile the answer schema {schema.get('title', '')!r}: "
                                 f"{template.get_error()}")
            grammars.matchers[key] = template
    return template.deep_copy()


def _token_ids(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer.encode(text, add_special_tokens=False)) if text else []


def _last_index(tokens: list[int], needle: list[int]) -> int:
    """Start of the last occurrence of ``needle`` in ``tokens``, -1 when absent (or needle empty)."""
    n = len(needle)
    if n == 0:
        return -1
    for i in range(len(tokens) - n, -1, -1):
        if tokens[i:i + n] == needle:
            return i
    return -1


@dataclass
class _Row:
    """One request's state. ``phase``: think, close, answer, done (see the module docstring), or
    stop: the grammar refused a token (a bug, never seen), so the row is ended with end-of-sequence."""

    phase: str
    matcher: Any = None  # LLMatcher, or None: free answer
    think_count: int = 0  # thinking tokens so far (prompt's after <think> included)
    forced: list[int] = field(default_factory=list)  # the close phase's queue
    recent: list[int] = field(default_factory=list)  # last tokens, to spot a multi-token </think>
    error: str | None = None


class ThinkThenAnswer(LogitsProcessor):
    """The transformers logits processor for one batch of one ``generate`` call; build it with
    :func:`build_logits_processor`.

    Greedy and sampled decoding both work: forbidden tokens get ``-inf`` before temperature, top-k
    and top-p, which transformers applies after custom processors. Not for beam search or assisted
    decoding (one new token per row per step is assumed, and checked).
    """

    def __init__(self, tokenizer: Any, schemas: list[dict[str, Any] | None], *, thinking_budget: int | None,
                 eos_ids: set[int], vocab_size: int | None = None, prefix: str = "\n\n"):
        import torch

        if thinking_budget is not None and thinking_budget < 0:
            raise ValueError(f"thinking budget must be >= 0 tokens, got {thinking_budget}")
        self.budget = thinking_budget
        self.eos_ids = sorted(eos_ids)
        self.start_ids = _token_ids(tokenizer, THINK_START)
        self.end_ids = _token_ids(tokenizer, THINK_END)
        self.prefix_ids = _token_ids(tokenizer, prefix)
        constrained = any(s is not None for s in schemas)
        self.ll_tok = ll_tokenizer(tokenizer, vocab_size, self.eos_ids) if constrained else None
        self.matchers = [None if s is None else schema_matcher(tokenizer, s, vocab_size, self.eos_ids) for s in schemas]
        self.rows: list[_Row] = []
        self._length: int | None = None
        self._bits = torch.arange(32, dtype=torch.int32)

    # -- state -------------------------------------------------------------------------------------
    def _start(self, prompt: list[int], matcher: Any) -> _Row:
        start, end = _last_index(prompt, self.start_ids), _last_index(prompt, self.end_ids)
        if start > end:  # the prompt ends inside the thinking
            row = _Row("think", matcher, think_count=len(prompt) - start - len(self.start_ids))
            self._check_budget(row)
            return row
        return _Row("answer", matcher)

    def _check_budget(self, row: _Row) -> None:
        if row.phase == "think" and self.budget is not None and row.think_count >= self.budget:
            self._close(row, list(self.end_ids))

    def _close(self, row: _Row, end_tokens: list[int]) -> None:
        row.forced = end_tokens + list(self.prefix_ids)
        row.phase = "close" if row.forced else "answer"

    def _observe(self, row: _Row, token: int) -> None:
        """Advance ``row`` past the token the model just chose."""
        if row.phase == "think":
            row.recent = (row.recent + [token])[-max(1, len(self.end_ids)):]
            if self.end_ids and row.recent == self.end_ids:
                self._close(row, [])
            else:
                row.think_count += 1
                self._check_budget(row)
        elif row.phase == "close":
            if token != row.forced[0]:  # only that token was allowed
                self._fail(row, f"forced token {row.forced[0]} but the model chose {token}")
                return
            row.forced.pop(0)
            if not row.forced:
                row.phase = "answer"
        elif row.phase == "answer":
            if token in self.eos_ids:
                row.phase = "done"
            elif row.matcher is not None and not row.matcher.consume_token(token):
                self._fail(row, row.matcher.get_error() or f"grammar refused token {token}")
        elif row.phase == "stop":
            row.phase = "done"

    def _fail(self, row: _Row, error: str) -> None:
        row.error = error
        row.phase = "stop" if self.eos_ids else "done"

    # -- masking -----------------------------------------------------------------------------------
    def _grammar_masks(self, matchers: list[Any], width: int) -> Any:
        """The tokens each matcher allows next, as a bool tensor ``(len(matchers), width)``; logits
        columns past the tokenizer's vocabulary are never allowed."""
        import torch

        words = (self.ll_tok.vocab_size + 31) // 32
        bitmask = torch.full((len(matchers), words), -1, dtype=torch.int32)
        for j, matcher in enumerate(matchers):
            # What llguidance.torch.fill_next_token_bitmask does, without importing that module
            # (it compiles a kernel with torch.compile on import: seconds, for nothing here).
            row = bitmask[j]
            matcher.unsafe_compute_mask_ptr(row.data_ptr(), row.numel() * row.element_size())
        allowed = ((bitmask.unsqueeze(-1) >> self._bits) & 1).bool().view(len(matchers), -1)
        if allowed.shape[1] >= width:
            return allowed[:, :width]
        return torch.cat([allowed, allowed.new_zeros((len(matchers), width - allowed.shape[1]))], dim=1)

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        batch, length = input_ids.shape
        if self._length is None:
            if batch != len(self.matchers):
                raise ValueError(f"logits processor built for {len(self.matchers)} requests, called with {batch}")
            self.rows = [self._start(p, m) for p, m in zip(input_ids.tolist(), self.matchers)]
        else:
            if length != self._length + 1:
                raise RuntimeError("ThinkThenAnswer expects one new token per row per step (no beam search)")
            for row, token in zip(self.rows, input_ids[:, -1].tolist()):
                self._observe(row, int(token))
        self._length = length

        width = scores.shape[-1]
        thinking = [i for i, r in enumerate(self.rows) if r.phase == "think"]
        forced = [(i, r.forced[0] if r.phase == "close" else self.eos_ids[0])
                  for i, r in enumerate(self.rows) if r.phase in ("close", "stop")]
        grammar = [i for i, r in enumerate(self.rows) if r.phase == "answer" and r.matcher is not None]
        if not (thinking and self.eos_ids) and not forced and not grammar:
            return scores
        keep = torch.ones(batch, width, dtype=torch.bool)
        eos = [t for t in self.eos_ids if t < width]
        if thinking and eos:
            keep[torch.tensor(thinking).unsqueeze(1), torch.tensor(eos)] = False
        for i, token in forced:
            keep[i] = False
            keep[i, token] = True
        if grammar:
            keep[grammar] = self._grammar_masks([self.rows[i].matcher for i in grammar], width)
        return scores.masked_fill(~keep.to(scores.device), float("-inf"))

    @property
    def errors(self) -> list[str | None]:
        """Per row: why its constraint gave up (a token the grammar refused), else None."""
        return [r.error for r in self.rows] if self.rows else [None] * len(self.matchers)


def build_logits_processor(processor: Any, requests: list[ChatRequest], params: GenerationParams, *,
                           eos_ids: set[int] | list[int] | None = None, vocab_size: int | None = None,
                           prefix: str | None = None) -> LogitsProcessorList:
    """The logits processors for one ``model.generate`` call over ``requests`` (in batch order):
    empty when ``params`` asks for neither ``json_schema_constrained`` nor ``thinking_budget``, else
    one :class:`ThinkThenAnswer` for the whole batch. Build a new one for every call: it keeps state.

    ``processor``: the model's processor (its ``tokenizer`` and chat template are used) or a
    tokenizer. ``eos_ids``: the model's end-of-sequence tokens (default the tokenizer's);
    ``vocab_size``: the model's vocabulary when it is larger than the tokenizer's (optional: logits
    columns past the tokenizer are never allowed in the answer); ``prefix``: the chat template's
    answer prefix (default :func:`answer_prefix` of ``processor``).
    Raises ``ValueError`` when a constrained request carries no schema or llguidance cannot compile it.
    """
    if not params.json_schema_constrained and params.thinking_budget is None:
        return LogitsProcessorList()
    tokenizer = getattr(processor, "tokenizer", processor)
    schemas: list[dict[str, Any] | None] = []
    for request in requests:
        if params.json_schema_constrained and request.json_schema is None:
            raise ValueError(f"constrained output asked for, but request {request.request_id} carries no JSON schema")
        schemas.append(request.json_schema if params.json_schema_constrained else None)
    if eos_ids is None:
        eos_ids = {tokenizer.eos_token_id} - {None}
    if prefix is None:
        prefix = answer_prefix(processor)
    return LogitsProcessorList([
        ThinkThenAnswer(tokenizer, schemas, thinking_budget=params.thinking_budget, eos_ids=set(eos_ids),
                        vocab_size=vocab_size, prefix=prefix)
    ])


def describe() -> dict[str, Any]:
    """What the manifest records about the constraint machinery (library, version, grammar options)."""
    try:
        llg = _llguidance()
    except ImportError:
        return {"library": "llguidance", "version": None}
    return {"library": "llguidance", "version": llg.__version__, "grammar_defaults": dict(GRAMMAR_DEFAULTS)}


__all__ = ["ThinkThenAnswer", "answer_prefix", "build_logits_processor", "describe", "ll_tokenizer",
           "require_llguidance", "schema_matcher"]
