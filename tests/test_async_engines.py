"""The async engine interface: many concurrent callers, the sync wrappers, errors, the replay engine's tags."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
import time

import numpy as np
import pytest
from PIL import Image

from pixeljury.engines.base import (
    AsyncEngine,
    ChatRequest,
    EngineError,
    Generation,
    GenerationParams,
    ImagePart,
    ScoreRequest,
    TextPart,
    run_sync,
)
from pixeljury.engines.openai_engine import OpenAIEngine
from pixeljury.engines.replay import ReplayEngine
from pixeljury.testing.fake_openai import FakeOpenAIServer, Reply

PARAMS = GenerationParams()


def image(seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (8, 8, 3), dtype=np.uint8))


def request(key: str, rid: str | None = None, **kw: object) -> ChatRequest:
    """The first text part is the key: the fake server's script key and the echo engine's answer."""
    return ChatRequest(rid or f"id-{key}", "system", [TextPart(key), ImagePart(image(), "sha"), TextPart("end")],
                       **kw)  # type: ignore[arg-type]


def first_text(req: ChatRequest) -> str:
    return next(p.text for p in req.user if isinstance(p, TextPart))


def without_time(gens: list[Generation]) -> list[Generation]:
    return [dataclasses.replace(g, seconds=None) for g in gens]


class SlowEcho(ReplayEngine):
    """Echoes the key after a short sleep and records how many batches ran at once, and on which thread."""

    def __init__(self, delay: float = 0.002) -> None:
        super().__init__(lambda req: f"answer to {first_text(req)}")
        self.delay = delay
        self.running = 0
        self.most_running = 0
        self.threads: set[str] = set()
        self.began = threading.Event()  # set when a batch starts
        self.finished_at = 0.0

    def generate(self, requests: list[ChatRequest], params: GenerationParams) -> list[Generation]:
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        self.threads.add(threading.current_thread().name)
        self.began.set()
        time.sleep(self.delay)
        try:
            return super().generate(requests, params)
        finally:
            self.running -= 1
            self.finished_at = time.perf_counter()


def callers(n: int, per_caller: int) -> list[list[ChatRequest]]:
    return [[request(f"c{c}-r{r}") for r in range(per_caller)] for c in range(n)]


def test_many_concurrent_callers_of_a_blocking_engine_get_their_own_answers_one_batch_at_a_time() -> None:
    engine = SlowEcho()
    batches = callers(40, 3)

    async def main() -> list[list[Generation]]:
        return await asyncio.gather(*(engine.agenerate(b, PARAMS) for b in batches))

    with engine:
        answers = asyncio.run(main())
    assert [[g.request_id for g in a] for a in answers] == [[r.request_id for r in b] for b in batches]
    assert [[g.text for g in a] for a in answers] == [[f"answer to c{c}-r{r}" for r in range(3)] for c in range(40)]
    assert engine.calls == 120
    assert engine.most_running == 1  # serialised: the model is never used by two batches at once
    assert len(engine.threads) == 1 and next(iter(engine.threads)).startswith("pixeljury-replay")
    assert engine._worker is None  # close() stopped the worker thread


def test_a_blocking_batch_leaves_the_event_loop_free() -> None:
    engine = SlowEcho(delay=0.3)
    ticks: list[float] = []

    async def ticker() -> None:
        for _ in range(5):
            ticks.append(time.perf_counter())
            await asyncio.sleep(0.02)

    async def main() -> list[Generation]:
        answer, _ = await asyncio.gather(engine.agenerate([request("k")], PARAMS), ticker())
        return answer

    with engine:
        (gen,) = asyncio.run(main())
    assert gen.text == "answer to k"
    assert len(ticks) == 5 and ticks[-1] < engine.finished_at  # the loop kept running while the batch slept


def test_sync_and_async_give_the_same_generations() -> None:
    batch = [request(f"k{i}") for i in range(5)]
    with ReplayEngine(lambda req: f"text {first_text(req)}") as engine:
        assert without_time(engine.generate(batch, PARAMS)) == without_time(asyncio.run(engine.agenerate(batch, PARAMS)))
    scripts = {f"k{i}": [Reply(content=f"answer {i}", reasoning=f"thought {i}")] for i in range(5)}
    with FakeOpenAIServer(scripts) as server:
        engine = OpenAIEngine(server.url, "judge", max_retries=0, timeout=5.0)
        sync = engine.generate(batch, PARAMS)
        async_ = asyncio.run(engine.agenerate(batch, PARAMS))
    assert without_time(sync) == without_time(async_)
    assert [(g.text, g.reasoning, g.finish_reason) for g in sync] == [
        (f"answer {i}", f"thought {i}", "stop") for i in range(5)]


def test_many_concurrent_callers_of_the_openai_engine_share_its_concurrency_bound() -> None:
    batches = callers(12, 4)
    scripts = {f"c{c}-r{r}": [Reply(content=f"answer {c}.{r}", delay=0.02)] for c in range(12) for r in range(4)}
    with FakeOpenAIServer(scripts) as server:
        engine = OpenAIEngine(server.url, "judge", concurrency=3, max_retries=0, timeout=10.0)

        async def main() -> list[list[Generation]]:
            return await asyncio.gather(*(engine.agenerate(b, PARAMS) for b in batches))

        answers = asyncio.run(main())
    assert [[g.request_id for g in a] for a in answers] == [[r.request_id for r in b] for b in batches]
    assert [[g.text for g in a] for a in answers] == [[f"answer {c}.{r}" for r in range(4)] for c in range(12)]
    assert len(server.bodies) == 48
    assert server.max_in_flight == 3  # the bound holds across callers, not per call


def test_sync_wrapper_inside_a_running_loop_runs_on_a_helper_thread() -> None:
    seen: list[str] = []

    async def where() -> str:
        seen.append(threading.current_thread().name)
        return "done"

    async def caller() -> str:
        return run_sync(where())

    assert run_sync(where()) == "done" and seen == [threading.current_thread().name]
    assert asyncio.run(caller()) == "done"
    assert seen[-1] == "pixeljury-run-sync"

    async def failing() -> None:
        raise EngineError("gone", retryable=False)

    async def caller_of_failing() -> None:
        run_sync(failing())

    with pytest.raises(EngineError, match="^gone$") as caught:
        asyncio.run(caller_of_failing())
    assert caught.value.retryable is False


def test_openai_generate_inside_a_running_loop_equals_agenerate() -> None:
    with FakeOpenAIServer({"k": [Reply(content="yes")]}) as server:
        engine = OpenAIEngine(server.url, "judge", max_retries=0, timeout=5.0)

        async def both() -> tuple[list[Generation], list[Generation]]:
            return engine.generate([request("k")], PARAMS), await engine.agenerate([request("k")], PARAMS)

        sync, async_ = asyncio.run(both())
    assert without_time(sync) == without_time(async_) and sync[0].text == "yes"


class Failing(ReplayEngine):
    def __init__(self, retryable: bool) -> None:
        super().__init__(lambda req: "never")
        self.retryable = retryable

    def generate(self, requests: list[ChatRequest], params: GenerationParams) -> list[Generation]:
        raise EngineError(f"device lost (retryable={self.retryable})", retryable=self.retryable)


@pytest.mark.parametrize("retryable", [True, False])
def test_an_engine_error_in_the_worker_reaches_each_async_caller_with_retryable(retryable: bool) -> None:
    async def main() -> list[object]:
        with Failing(retryable) as engine:
            return await asyncio.gather(*(engine.agenerate([request(f"k{i}")], PARAMS) for i in range(3)),
                                        return_exceptions=True)

    errors = asyncio.run(main())
    assert all(isinstance(e, EngineError) for e in errors)
    assert [e.retryable for e in errors] == [retryable] * 3  # type: ignore[attr-defined]
    assert str(errors[0]) == f"device lost (retryable={retryable})"


def test_an_openai_configuration_error_reaches_the_async_caller_not_retryable() -> None:
    with FakeOpenAIServer({}, default=Reply(status=401, raw_body='{"error": "bad key"}')) as server:
        engine = OpenAIEngine(server.url, "judge", max_retries=2, timeout=5.0)
        with pytest.raises(EngineError, match="every request to .* was refused: HTTP 401") as caught:
            asyncio.run(engine.agenerate([request("a"), request("b")], PARAMS))
    assert caught.value.retryable is False
    assert len(server.bodies) == 2  # 401 is not retried


def test_ascore_without_the_capability_is_a_not_retryable_error() -> None:
    score = ScoreRequest("s", "", [TextPart("q")], candidates=["Yes", "No"])

    class ChatOnlyAsync(AsyncEngine):
        name = "chat-only"

        async def agenerate(self, requests: list[ChatRequest], params: GenerationParams) -> list[Generation]:
            return [Generation(r.request_id, "x", "stop") for r in requests]

    for engine in (ReplayEngine.constant("x"), ChatOnlyAsync()):
        with pytest.raises(EngineError, match="cannot score log-probabilities: its capabilities are \\['chat'\\]") as caught:
            asyncio.run(engine.ascore([score]))
        assert caught.value.retryable is False
        with pytest.raises(EngineError, match="cannot score"):
            engine.score([score])
        assert [g.text for g in engine.generate([request("k")], PARAMS)] == ["x"]


def test_openai_ascore_equals_score() -> None:
    top = {"Yes": -0.25, "No": -1.5}
    with FakeOpenAIServer({"q": [Reply(content="Yes", top_logprobs=top)]}) as server:
        engine = OpenAIEngine(server.url, "judge", max_retries=0, timeout=5.0)
        req = ScoreRequest("s", "", [TextPart("q")], candidates=["Yes", "No"])
        sync = engine.score([req])
        async_ = asyncio.run(engine.ascore([req]))
    assert sync[0].logprobs == async_[0].logprobs == {"Yes": -0.25, "No": -1.5}


def test_close_waits_for_the_running_batch() -> None:
    engine = SlowEcho(delay=0.2)
    results: list[list[Generation]] = []
    thread = threading.Thread(target=lambda: results.append(asyncio.run(engine.agenerate([request("k")], PARAMS))))
    thread.start()
    assert engine.began.wait(timeout=10)
    engine.close()
    assert engine.running == 0 and engine.calls == 1  # the batch had finished when close() returned
    thread.join()
    assert results[0][0].text == "answer to k"


def test_replay_from_jsonl_matches_by_the_dimension_tag_not_the_request_id(tmp_path) -> None:
    path = tmp_path / "answers.jsonl"
    path.write_text("\n".join(json.dumps({"image_sha256": "sha", "dimension": d, "text": f"{d} answer"})
                              for d in ("Realism", "Text")) + "\n", encoding="utf-8")
    engine = ReplayEngine.from_jsonl(path)
    gens = engine.generate([
        request("a", rid="opaque-1", tags={"dimension": "Text"}),
        request("b", rid="Realism:looks-like-a-dimension"),  # no tag: no recording, whatever the id says
        request("c", rid="opaque-2", tags={"dimension": "Realism"}),
    ], PARAMS)
    assert [(g.text, g.error) for g in gens] == [
        ("Text answer", None), ("", "no recorded answer for this request"), ("Realism answer", None)]


def test_qjudger_requests_carry_their_dimension_as_a_tag(fixture_rubric) -> None:
    from pixeljury.protocols.qjudger import build_request

    dim = next(iter(fixture_rubric.checklists))
    req = build_request(fixture_rubric, "a red bicycle", dim, image(), "sha", "opaque")
    assert req.tags == {"dimension": dim}


@pytest.mark.slow
def test_tiny_transformers_judge_serves_concurrent_callers_like_generate(tiny_model_dir) -> None:
    from pixeljury.engines.hf import TransformersEngine

    params = GenerationParams(max_new_tokens=4)
    batches = [[request(f"caller {c} item {i}") for i in range(2)] for c in range(3)]
    with TransformersEngine(str(tiny_model_dir), batch_size=2) as engine:
        expected = [engine.generate(b, params) for b in batches]

        async def main() -> list[list[Generation]]:
            return await asyncio.gather(*(engine.agenerate(b, params) for b in batches))

        answers = asyncio.run(main())
    assert [[(g.request_id, g.text, g.completion_tokens) for g in a] for a in answers] == [
        [(g.request_id, g.text, g.completion_tokens) for g in e] for e in expected]
