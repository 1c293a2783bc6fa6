"""OpenAIEngine against a scripted fake server: request format, answer forms, retries, failures."""

from __future__ import annotations

import asyncio
import base64
import io
import time

import numpy as np
import pytest
from PIL import Image

from pixeljury.engines.base import ChatRequest, EngineError, GenerationParams, ImagePart, TextPart
from pixeljury.engines.openai_engine import (
    OpenAIEngine,
    chat_completions_url,
    generation_from_response,
    redact_url,
    retry_after_seconds,
)
from pixeljury.testing.fake_openai import FakeOpenAIServer, Reply, free_port

ANSWER = '{"Realism": {"Physical Logic": {"score": 2}}}'


def image(seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (24, 32, 3), dtype=np.uint8))


def request(key: str, img: Image.Image | None = None, sha: str = "sha-a") -> ChatRequest:
    """The first text part is the fake server's script key."""
    return ChatRequest(
        request_id=f"id-{key}",
        system="You are a judge.",
        user=[TextPart(key), ImagePart(image=img or image(), sha256=sha), TextPart("after the image")],
    )


def fast_engine(url: str, **kwargs: object) -> OpenAIEngine:
    settings: dict[str, object] = {"timeout": 5.0, "max_retries": 3, "backoff_base": 0.01}
    settings.update(kwargs)
    return OpenAIEngine(url, "judge-model", **settings)  # type: ignore[arg-type]


def test_request_body_carries_every_parameter_where_vllm_and_sglang_read_it() -> None:
    img = image(3)
    with FakeOpenAIServer({"k": [Reply(content=ANSWER)]}) as server:
        fast_engine(server.url, api_key="secret").generate([request("k", img)], GenerationParams())
    (body,) = server.bodies
    assert body["model"] == "judge-model"
    assert body["messages"][0] == {"role": "system", "content": "You are a judge."}
    text1, picture, text2 = body["messages"][1]["content"]
    assert text1 == {"type": "text", "text": "k"} and text2 == {"type": "text", "text": "after the image"}
    url = picture["image_url"]["url"]
    assert picture["type"] == "image_url" and url.startswith("data:image/png;base64,")
    decoded = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert np.array_equal(np.asarray(decoded), np.asarray(img))  # lossless: the very same pixels
    assert body["max_tokens"] == 4096 and body["temperature"] == 0.0 and body["top_p"] == 1.0
    assert body["top_k"] == 1 and body["repetition_penalty"] == 1.05 and body["seed"] == 42
    assert body["chat_template_kwargs"] == {"enable_thinking": True}
    for opt_in in ("structured_outputs", "response_format", "thinking_token_budget", "min_tokens"):
        assert opt_in not in body


def test_constrained_request_sends_the_schema_both_ways_plus_budget() -> None:
    schema = {"type": "object", "properties": {"A": {"type": "object"}}, "required": ["A"]}
    req = request("k")
    req.json_schema = schema
    params = GenerationParams(json_schema_constrained=True, thinking_budget=64, enable_thinking=True)
    with FakeOpenAIServer({"k": [Reply(content=ANSWER)]}) as server:
        fast_engine(server.url, min_new_tokens=65).generate([req], params)
    (body,) = server.bodies
    assert body["structured_outputs"] == {"json": schema}
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["schema"] == schema
    assert body["thinking_token_budget"] == 64 and body["min_tokens"] == 65


def test_constrained_without_a_schema_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="no JSON schema"):
        fast_engine("http://127.0.0.1:9/v1").generate([request("k")], GenerationParams(json_schema_constrained=True))


def test_reads_inline_and_split_reasoning_and_usage() -> None:
    scripts = {
        "inline": [Reply(content=f"I look closely.\n</think>\n\n{ANSWER}", completion_tokens=30)],
        "split": [Reply(content=ANSWER, reasoning="I look closely.")],
        "split-rc": [Reply(content=ANSWER, reasoning="I look closely.", reasoning_field="reasoning_content")],
        "unclosed": [Reply(content=None, reasoning="still thinking", finish_reason="length")],
    }
    with FakeOpenAIServer(scripts) as server:
        out = fast_engine(server.url).generate([request(k) for k in scripts], GenerationParams())
    inline, split, split_rc, unclosed = out
    assert inline.reasoning is None and inline.text.endswith(ANSWER) and inline.completion_tokens == 30
    assert split.reasoning == "I look closely." and split.text == ANSWER
    assert split_rc.reasoning == "I look closely." and split_rc.text == ANSWER
    assert split.full_text == "I look closely.\n</think>\n\n" + ANSWER
    assert split.prompt_tokens == 11 and split.finish_reason == "stop"
    # No `</think>` was written, so none is invented: the raw thinking is the text.
    assert unclosed.text == "still thinking" and unclosed.reasoning is None and unclosed.truncated


def test_failures_are_retried_or_recorded_and_never_cost_the_batch() -> None:
    scripts = {
        "ok": [Reply(content=ANSWER)],
        "500-then-ok": [Reply(status=500), Reply(content=ANSWER)],
        "503-forever": [Reply(status=503)],
        "429-retry-after": [Reply(status=429, headers={"Retry-After": "1"}), Reply(content=ANSWER)],
        "malformed": [Reply(raw_body='{"choices": [')],
        "not-a-completion": [Reply(raw_body='{"object": "error"}')],
        "bad-request": [Reply(status=400)],
        "slow-once": [Reply(delay=3.0, content="late"), Reply(content=ANSWER)],
        "slow-forever": [Reply(delay=3.0, content="late")],
    }
    with FakeOpenAIServer(scripts) as server:
        engine = fast_engine(server.url, timeout=0.5, max_retries=2)
        started = time.monotonic()
        out = {g.request_id.removeprefix("id-"): g for g in engine.generate([request(k) for k in scripts], GenerationParams())}
        elapsed = time.monotonic() - started

    assert list(out) == list(scripts)  # every request answered, in order
    for key in ("ok", "500-then-ok", "429-retry-after", "slow-once"):
        assert out[key].error is None and out[key].text == ANSWER, key
    assert server.hits["500-then-ok"] == 2 and server.hits["429-retry-after"] == 2
    assert elapsed >= 1.0  # the 429's Retry-After was honoured (backoff alone is ~10 ms)

    assert out["503-forever"].error and "HTTP 503" in out["503-forever"].error
    assert server.hits["503-forever"] == 3  # max_retries=2: three attempts
    assert out["slow-forever"].error and "timed out" in out["slow-forever"].error
    assert out["malformed"].error and "malformed JSON" in out["malformed"].error
    assert server.hits["malformed"] == 1
    assert out["not-a-completion"].error and "not a chat completion" in out["not-a-completion"].error
    assert out["bad-request"].error and "HTTP 400" in out["bad-request"].error
    assert server.hits["bad-request"] == 1  # a 400 will not get better: not retried
    for key in ("503-forever", "slow-forever", "malformed", "not-a-completion", "bad-request"):
        assert out[key].finish_reason == "error" and out[key].text == ""


def test_server_down_is_recorded_per_request_not_raised() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    out = fast_engine(url, max_retries=1).generate([request("a"), request("b")], GenerationParams())
    assert [g.request_id for g in out] == ["id-a", "id-b"]
    for generation in out:
        assert generation.finish_reason == "error"
        assert generation.error and "cannot reach" in generation.error and "2 attempts" in generation.error


def test_wrong_credentials_everywhere_stop_the_run() -> None:
    with FakeOpenAIServer({}, default=Reply(status=401)) as server:
        with pytest.raises(EngineError, match="refused") as caught:
            fast_engine(server.url).generate([request("a"), request("b")], GenerationParams())
    assert caught.value.retryable is False


def test_concurrency_is_bounded() -> None:
    with FakeOpenAIServer({}, default=Reply(content=ANSWER, delay=0.2)) as server:
        out = fast_engine(server.url, concurrency=3).generate([request(f"r{i}") for i in range(10)], GenerationParams())
    assert all(g.error is None for g in out)
    assert server.max_in_flight == 3


def test_each_image_is_encoded_once_per_batch() -> None:
    with FakeOpenAIServer({}, default=Reply(content=ANSWER)) as server:
        fast_engine(server.url).generate([request(f"d{i}", image(1), sha="same") for i in range(5)], GenerationParams())
    urls = {b["messages"][1]["content"][1]["image_url"]["url"] for b in server.bodies}
    assert len(server.bodies) == 5 and len(urls) == 1


def test_generate_works_inside_a_running_event_loop() -> None:
    async def caller() -> str:
        with FakeOpenAIServer({"k": [Reply(content=ANSWER)]}) as server:
            return fast_engine(server.url).generate([request("k")], GenerationParams())[0].text

    assert asyncio.run(caller()) == ANSWER


def test_url_helpers_and_retry_after_forms() -> None:
    assert chat_completions_url("http://h:8000/v1/") == "http://h:8000/v1/chat/completions"
    assert chat_completions_url("http://h/v1/chat/completions") == "http://h/v1/chat/completions"
    assert redact_url("https://user:pw@h:9/v1") == "https://h:9/v1"
    import httpx

    assert retry_after_seconds(httpx.Response(429, headers={"Retry-After": "7"})) == 7.0
    assert retry_after_seconds(httpx.Response(429, headers={"Retry-After": "99999"})) == 120.0
    assert retry_after_seconds(httpx.Response(429, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})) == 0.0
    assert retry_after_seconds(httpx.Response(429, headers={"Retry-After": "soon"})) is None
    assert retry_after_seconds(httpx.Response(429)) is None


def test_describe_never_leaks_credentials() -> None:
    engine = OpenAIEngine("https://user:pw@judge.example/v1", "m", api_key="sk-123", revision="abc")
    described = engine.describe()
    assert described["engine"] == "openai" and described["model_id"] == "m" and described["revision"] == "abc"
    assert "pw" not in str(described) and "sk-123" not in str(described)


def test_generation_from_response_rejects_empty_choices() -> None:
    generation = generation_from_response("r", {"choices": []})
    assert generation.error and generation.finish_reason == "error"
