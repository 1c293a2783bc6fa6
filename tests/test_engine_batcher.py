"""MicroBatcher: concurrent callers' requests coalesced into engine batches, answers handed back per caller."""

from __future__ import annotations

import asyncio

import pytest

from pixeljury.engines.base import (
    ChatRequest,
    EngineCapabilities,
    EngineError,
    Generation,
    GenerationParams,
    ScoreRequest,
    Scores,
    TextPart,
)
from pixeljury.engines.batcher import MicroBatcher
from pixeljury.engines.replay import ReplayEngine

PARAMS = GenerationParams()


def text_of(req: ChatRequest | ScoreRequest) -> str:
    return next(p.text for p in req.user if isinstance(p, TextPart))


def request(text: str, rid: str) -> ChatRequest:
    return ChatRequest(rid, "", [TextPart(text)])


class Recording(ReplayEngine):
    """Echoes each request's text and records the batches it was given."""

    def __init__(self, batch_size: int = 8) -> None:
        super().__init__(lambda req: f"echo {text_of(req)}", batch_size=batch_size)
        self.batches: list[list[str]] = []

    def generate(self, requests: list[ChatRequest], params: GenerationParams) -> list[Generation]:
        self.batches.append([text_of(r) for r in requests])
        if any(text_of(r) == "poison" for r in requests):
            raise EngineError("the batch failed", retryable=False)
        return super().generate(requests, params)

    @property
    def capabilities(self) -> EngineCapabilities:
        return EngineCapabilities(kinds=frozenset({"chat", "score"}))

    def score(self, requests: list[ScoreRequest]) -> list[Scores]:
        self.batches.append([text_of(r) for r in requests])
        return [Scores(r.request_id, logprobs={c: -float(len(text_of(r))) for c in r.candidates or []}) for r in requests]


def test_many_callers_are_coalesced_into_full_batches_and_get_their_own_answers_in_order() -> None:
    engine = Recording(batch_size=8)
    batcher = MicroBatcher(engine, max_wait=0.05)
    # 30 callers of 1-3 requests each; every caller reuses the ids r0, r1...: ids are unique per call only.
    calls = [[request(f"c{c}.{i}", f"r{i}") for i in range(1 + c % 3)] for c in range(30)]

    async def main() -> list[list[Generation]]:
        return await asyncio.gather(*(batcher.agenerate(call, PARAMS) for call in calls))

    answers = asyncio.run(main())
    assert [[(g.request_id, g.text) for g in a] for a in answers] == [
        [(f"r{i}", f"echo c{c}.{i}") for i in range(1 + c % 3)] for c in range(30)]
    total = sum(len(c) for c in calls)  # 60
    assert [len(b) for b in engine.batches] == [8] * (total // 8) + [total % 8]
    assert [t for b in engine.batches for t in b] == [text_of(r) for call in calls for r in call]  # arrival order
    assert batcher.batches_sent == len(engine.batches) == 8


def test_a_lone_caller_goes_out_after_the_wait_window_unfilled() -> None:
    engine = Recording(batch_size=8)
    batcher = MicroBatcher(engine, max_wait=0.01)
    (gen,) = asyncio.run(batcher.agenerate([request("alone", "x")], PARAMS))
    assert (gen.request_id, gen.text) == ("x", "echo alone") and engine.batches == [["alone"]]
    assert asyncio.run(MicroBatcher(engine).agenerate([], PARAMS)) == [] and len(engine.batches) == 1


def test_a_caller_larger_than_a_batch_is_split_and_reassembled() -> None:
    engine = Recording(batch_size=4)
    batcher = MicroBatcher(engine)
    calls = [[request(f"a{i}", f"a{i}") for i in range(10)], [request("b0", "b0")]]

    async def main() -> list[list[Generation]]:
        return await asyncio.gather(*(batcher.agenerate(call, PARAMS) for call in calls))

    first, second = asyncio.run(main())
    assert [g.text for g in first] == [f"echo a{i}" for i in range(10)] and [g.text for g in second] == ["echo b0"]
    assert all(len(b) <= 4 for b in engine.batches) and sum(len(b) for b in engine.batches) == 11


def test_different_params_are_never_mixed_in_one_batch() -> None:
    engine = Recording(batch_size=8)
    batcher = MicroBatcher(engine, max_wait=0.02)
    other = GenerationParams(max_new_tokens=7)

    async def main() -> list[list[Generation]]:
        return await asyncio.gather(batcher.agenerate([request("p1", "1")], PARAMS),
                                    batcher.agenerate([request("q1", "1")], other),
                                    batcher.agenerate([request("p2", "2")], PARAMS))

    answers = asyncio.run(main())
    assert [[g.text for g in a] for a in answers] == [["echo p1"], ["echo q1"], ["echo p2"]]
    assert sorted(engine.batches) == [["p1", "p2"], ["q1"]]


def test_a_failed_batch_fails_every_caller_in_it_with_the_engine_error() -> None:
    engine = Recording(batch_size=3)
    batcher = MicroBatcher(engine, max_wait=0.05)
    calls = [[request("ok1", "a")], [request("poison", "b")], [request("ok2", "c")], [request("ok3", "d")]]

    async def main() -> list[object]:
        return await asyncio.gather(*(batcher.agenerate(call, PARAMS) for call in calls), return_exceptions=True)

    first, second, third, fourth = asyncio.run(main())
    for failed in (first, second, third):  # the first batch of three held the poisoned request
        assert isinstance(failed, EngineError) and failed.retryable is False and str(failed) == "the batch failed"
    assert [g.text for g in fourth] == ["echo ok3"]  # type: ignore[union-attr]


def test_score_requests_are_batched_too() -> None:
    engine = Recording(batch_size=4)
    batcher = MicroBatcher(engine, max_wait=0.05)
    calls = [[ScoreRequest("s", "", [TextPart("x" * n)], candidates=["Yes", "No"])] for n in range(1, 5)]

    async def main() -> list[list[Scores]]:
        return await asyncio.gather(*(batcher.ascore(call) for call in calls))

    answers = asyncio.run(main())
    assert [a[0].logprobs for a in answers] == [{"Yes": -float(n), "No": -float(n)} for n in range(1, 5)]
    assert [a[0].request_id for a in answers] == ["s"] * 4 and len(engine.batches) == 1


def test_settings_are_checked_and_a_batcher_serves_one_loop() -> None:
    engine = Recording()
    with pytest.raises(ValueError, match="max_batch_size must be at least 1"):
        MicroBatcher(engine, max_batch_size=0)
    with pytest.raises(ValueError, match="max_wait must be >= 0"):
        MicroBatcher(engine, max_wait=-1)
    batcher = MicroBatcher(engine, max_wait=0)
    asyncio.run(batcher.agenerate([request("a", "a")], PARAMS))
    with pytest.raises(RuntimeError, match="serves one event loop"):
        asyncio.run(batcher.agenerate([request("b", "b")], PARAMS))
