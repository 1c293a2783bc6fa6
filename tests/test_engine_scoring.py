"""Log-probability scoring (ScoreRequest -> Scores) and engine capabilities."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pixeljury.engines.base import (
    ChatRequest, Engine, EngineCapabilities, EngineError, ImagePart, ScoreRequest, TextPart, first_token_ids,
)
from pixeljury.engines.openai_engine import OpenAIEngine, sampling_fields
from pixeljury.engines.replay import ReplayEngine
from pixeljury.engines.base import GenerationParams

CANDIDATES = ["Yes", "No"]


def _image(seed: int, size: int = 64) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8))


def _score_request(request_id: str, seed: int, *, n_images: int = 1, candidates: list[str] | None = None,
                   continuation: str | None = None, question: str = "Does the image show a red bicycle?") -> ScoreRequest:
    images = [ImagePart(_image(seed + k), f"sha-{seed + k}") for k in range(n_images)]
    return ScoreRequest(request_id=request_id, system="Answer with Yes or No.",
                        user=[*images, TextPart(question)], candidates=candidates, continuation=continuation)


# --- contracts that need no model ------------------------------------------------------------------


def test_score_request_takes_either_candidates_or_a_continuation() -> None:
    with pytest.raises(ValueError, match="either candidates or a continuation"):
        ScoreRequest("r", "", [TextPart("q")])
    with pytest.raises(ValueError, match="either candidates or a continuation"):
        ScoreRequest("r", "", [TextPart("q")], candidates=["Yes"], continuation="Yes")
    with pytest.raises(ValueError, match="repeat"):
        ScoreRequest("r", "", [TextPart("q")], candidates=["Yes", "Yes"])
    with pytest.raises(ValueError, match="empty"):
        ScoreRequest("r", "", [TextPart("q")], continuation="")
    assert ScoreRequest("r", "", [TextPart("q")], candidates=["Yes"]).enable_thinking is False


def test_candidates_sharing_a_first_token_are_refused() -> None:
    encode = {"Yes": [1], "Yeah": [1, 2], "No": [3]}.__getitem__
    assert first_token_ids(encode, ["Yes", "No"]) == [1, 3]
    with pytest.raises(ValueError, match=r"share their first token.*continuation"):
        first_token_ids(encode, ["Yes", "Yeah", "No"])


def test_capabilities_of_the_engines_without_a_model() -> None:
    replay = ReplayEngine.constant("x")
    assert replay.capabilities == EngineCapabilities(kinds=frozenset({"chat"}))
    assert not replay.capabilities.supports("score")
    remote = OpenAIEngine("http://127.0.0.1:9/v1", "m")
    assert remote.capabilities.kinds == frozenset({"chat", "score"})
    with pytest.raises(ValueError, match="unknown request kind"):
        EngineCapabilities(kinds=frozenset({"embed"}))


def test_default_score_is_a_clear_not_retryable_error() -> None:
    class ChatOnly(Engine):
        name = "chat-only"

        def generate(self, requests, params):  # pragma: no cover - not called
            return []

    for engine in (ChatOnly(), ReplayEngine.constant("x")):
        with pytest.raises(EngineError, match=rf"the {engine.name} engine cannot score.*without 'score'") as info:
            engine.score([ScoreRequest("r", "", [TextPart("q")], candidates=["Yes"])])
        assert info.value.retryable is False


def test_schema_name_comes_from_the_request() -> None:
    params = GenerationParams(json_schema_constrained=True)
    schema = {"type": "object"}
    assert sampling_fields(params, schema)["response_format"]["json_schema"]["name"] == "answer"
    named = sampling_fields(params, schema, schema_name="unifiedreward_answer")
    assert named["response_format"]["json_schema"]["name"] == "unifiedreward_answer"


def test_qjudger_requests_keep_their_schema_name_and_reasoning_split() -> None:
    from pixeljury.protocols.qjudger import build_request
    from pixeljury.rubric.builtin import builtin_rubric

    request = build_request(builtin_rubric(), "a cat", "Quality", _image(0), "sha", "Quality:1")
    assert request.schema_name == "qjudger_answer" and request.reasoning == "qwen3"
    plain = ChatRequest("r", "", [TextPart("q")])
    assert plain.schema_name is None and plain.reasoning is None


# --- the transformers engine on the tiny model -----------------------------------------------------


@pytest.fixture(scope="module")
def engine(tiny_model_dir: Path):
    from pixeljury.engines.hf import TransformersEngine

    return TransformersEngine(str(tiny_model_dir), dtype="float32", device="cpu", batch_size=4)


def _manual_logprobs(engine, request: ScoreRequest, appended: list[int]):
    """The model's own forward on one request, with ``appended`` token ids after the prompt."""
    import torch

    from pixeljury.engines.hf import render_chat

    text = render_chat(engine.processor, request, enable_thinking=False)
    images = [p.image for p in request.user if isinstance(p, ImagePart)]
    enc = engine.processor(text=[text], images=images or None, return_tensors="pt")
    n_prompt = enc["input_ids"].shape[1]
    enc["input_ids"] = torch.cat([enc["input_ids"], torch.tensor([appended], dtype=torch.long)], dim=1)
    enc["attention_mask"] = torch.ones_like(enc["input_ids"])
    for key in list(enc.keys()):
        if key not in ("input_ids", "attention_mask") and torch.is_tensor(enc[key]) and enc[key].shape[:1] == (1,) \
                and enc[key].dim() == 2 and enc[key].shape[1] == n_prompt:
            enc[key] = torch.cat([enc[key], enc[key].new_zeros(1, len(appended))], dim=1)
    with torch.inference_mode():
        logits = engine.model(**enc).logits[0]
    return torch.log_softmax(logits.float(), dim=-1), n_prompt


def test_engine_declares_both_kinds(engine) -> None:
    assert engine.capabilities.kinds == frozenset({"chat", "score"})
    assert engine.capabilities.max_images_per_request is None


def test_candidate_logprobs_equal_the_models_own_log_softmax(engine) -> None:
    request = _score_request("q", 1, candidates=CANDIDATES)
    [scores] = engine.score([request])
    assert scores.error is None
    tokenizer = engine.processor.tokenizer
    ids = [tokenizer.encode(c, add_special_tokens=False)[0] for c in CANDIDATES]
    logprobs, _ = _manual_logprobs(engine, request, [])
    expected = {c: float(logprobs[-1, i]) for c, i in zip(CANDIDATES, ids)}
    assert scores.logprobs == pytest.approx(expected, abs=1e-5)
    assert scores.tokens == [tokenizer.decode([i]) for i in ids]
    assert all(v < 0 for v in scores.logprobs.values())


def test_continuation_logprob_is_the_teacher_forced_sum(engine) -> None:
    continuation = "Yes, it shows a red bicycle."
    request = _score_request("c", 2, continuation=continuation)
    [scores] = engine.score([request])
    assert scores.error is None and scores.logprobs is None
    ids = engine.processor.tokenizer.encode(continuation, add_special_tokens=False)
    logprobs, n_prompt = _manual_logprobs(engine, request, ids)
    expected = sum(float(logprobs[n_prompt - 1 + k, t]) for k, t in enumerate(ids))
    assert scores.logprob == pytest.approx(expected, abs=1e-4)
    assert len(scores.tokens) == len(ids) and scores.prompt_tokens == n_prompt


def test_a_batch_of_three_equals_one_by_one(engine) -> None:
    requests = [
        _score_request("a", 3, candidates=CANDIDATES),
        _score_request("b", 4, n_images=2, continuation="No.", question="Is the second image an edit of the first?"),
        _score_request("c", 6, candidates=["A", "B", "C"], question="Which is it: A, B or C? A longer question."),
    ]
    together = engine.score(requests)
    alone = [engine.score([r])[0] for r in requests]
    assert [s.request_id for s in together] == ["a", "b", "c"]
    for batched, single in zip(together, alone):
        assert batched.error is None and single.error is None
        assert batched.prompt_tokens == single.prompt_tokens
        if single.logprobs is not None:
            assert batched.logprobs == pytest.approx(single.logprobs, abs=1e-4)
        else:
            assert batched.logprob == pytest.approx(single.logprob, abs=1e-4)


def test_requests_that_cannot_be_scored_fail_alone_and_not_retryable(engine) -> None:
    tokenizer = engine.processor.tokenizer
    # Two candidates that start with the same token in the tiny tokenizer.
    first = tokenizer.convert_ids_to_tokens(tokenizer.encode("Yes", add_special_tokens=False))[0]
    shared = ["Yes", tokenizer.convert_tokens_to_string([first]) + "zzz"]
    requests = [
        _score_request("shared", 1, candidates=shared),
        _score_request("control", 1, candidates=CANDIDATES, question="Is it <|im_end|>?"),
        _score_request("good", 1, candidates=CANDIDATES),
    ]
    results = engine.score(requests)
    assert "share their first token" in results[0].error and results[0].retryable is False
    assert "<|im_end|>" in results[1].error and results[1].retryable is False
    assert results[2].error is None and set(results[2].logprobs) == set(CANDIDATES)
    assert math.isfinite(results[2].logprobs["Yes"])


# --- the OpenAI-compatible engine against the fake server ------------------------------------------


def test_openai_scores_candidates_from_top_logprobs() -> None:
    pytest.importorskip("fastapi")
    from pixeljury.testing.fake_openai import FakeOpenAIServer, Reply

    top = {"Yes": -0.25, "No": -1.5, "Maybe": -4.0}
    scripts = {
        "Does the image show a red bicycle?": [Reply(content="Yes", top_logprobs=top)],
        "no logprobs here": [Reply(content="Yes")],
        "unlisted": [Reply(content="Yes", top_logprobs={"Yes": -0.1})],
    }
    with FakeOpenAIServer(scripts) as server:
        engine = OpenAIEngine(server.url, "judge", top_logprobs=5, max_retries=0)
        results = engine.score([
            _score_request("ok", 1, n_images=2, candidates=CANDIDATES),
            _score_request("none", 1, candidates=CANDIDATES, question="no logprobs here"),
            _score_request("unlisted", 1, candidates=CANDIDATES, question="unlisted"),
            _score_request("cont", 1, continuation="Yes"),
        ])
        body = server.bodies[0]
    assert results[0].error is None and results[0].logprobs == {"Yes": -0.25, "No": -1.5}
    assert body["logprobs"] is True and body["top_logprobs"] == 5 and body["max_tokens"] == 1
    assert body["chat_template_kwargs"] == {"enable_thinking": False}
    images = [p for p in body["messages"][-1]["content"] if p["type"] == "image_url"]
    assert len(images) == 2 and images[0]["image_url"]["url"] != images[1]["image_url"]["url"]
    assert "no top_logprobs" in results[1].error and results[1].retryable is False
    assert "['No']" in results[2].error and results[2].retryable is False
    assert "cannot score a continuation" in results[3].error and results[3].retryable is False
    assert len(server.bodies) == 3  # the continuation never went out
