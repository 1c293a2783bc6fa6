"""OpenAIEngine against a server that answers 200 with bodies that are not chat completions: each
malformed reply is one failed request (finish_reason "error", an error naming what is wrong), and
the rest of the batch keeps its results."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from pixeljury.engines.base import ChatRequest, GenerationParams, ImagePart, TextPart
from pixeljury.engines.openai_engine import OpenAIEngine, generation_from_response
from pixeljury.testing.fake_openai import FakeOpenAIServer, Reply

ANSWER = '{"Realism": {"Physical Logic": {"score": 2}}}'


def completion(message: object = None, **choice: object) -> str:
    return json.dumps({"choices": [{"index": 0, "message": message, "finish_reason": "stop", **choice}]})


# script key -> (raw 200 body, words the error must contain)
MALFORMED = {
    "message-string": (completion("just a string"), "choices[0].message is a string, not an object"),
    "message-null": (completion(None), "choices[0].message is null, not an object"),
    "message-list": (completion([{"content": ANSWER}]), "choices[0].message is a list, not an object"),
    "message-missing": (json.dumps({"choices": [{"index": 0, "finish_reason": "stop"}]}),
                        "choices[0].message is null, not an object"),
    "choices-empty": (json.dumps({"choices": []}), "choices is empty"),
    "choices-null": (json.dumps({"choices": None}), "it has no choices"),
    "choices-object": (json.dumps({"choices": {"0": {"message": {"content": ANSWER}}}}),
                       "choices is an object, not a list"),
    "choice-string": (json.dumps({"choices": ["x"]}), "choices[0] is a string, not an object"),
    "body-list": (json.dumps([1, 2]), "the body is a list, not an object"),
    "body-string": (json.dumps("hello"), "the body is a string, not an object"),
    "body-null": ("null", "the body is null, not an object"),
    "content-number": (completion({"role": "assistant", "content": 42}),
                       "choices[0].message.content is a number, not a string"),
    "reasoning-object": (completion({"role": "assistant", "content": ANSWER, "reasoning": {"t": 1}}),
                         "choices[0].message.reasoning is an object, not a string"),
}


def request(key: str) -> ChatRequest:
    img = Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8))
    return ChatRequest(request_id=f"id-{key}", system="You are a judge.",
                       user=[TextPart(key), ImagePart(image=img, sha256="sha"), TextPart("after")])


def test_each_malformed_reply_fails_only_its_own_request() -> None:
    scripts = {key: [Reply(raw_body=body)] for key, (body, _) in MALFORMED.items()}
    scripts["ok-before"] = scripts["ok-after"] = [Reply(content=ANSWER)]
    order = ["ok-before", *MALFORMED, "ok-after"]
    with FakeOpenAIServer(scripts) as server:
        engine = OpenAIEngine(server.url, "judge-model", timeout=5.0, max_retries=2, backoff_base=0.01)
        out = engine.generate([request(k) for k in order], GenerationParams())

    assert [g.request_id for g in out] == [f"id-{k}" for k in order]
    by_key = {g.request_id.removeprefix("id-"): g for g in out}
    for key in ("ok-before", "ok-after"):
        assert by_key[key].error is None and by_key[key].text == ANSWER
    for key, (_, words) in MALFORMED.items():
        generation = by_key[key]
        assert generation.finish_reason == "error" and generation.text == "", key
        assert generation.error and "not a chat completion" in generation.error, key
        assert words in generation.error, (key, generation.error)
        assert server.hits[key] == 1, key  # a 200 is not retried: a deterministic server would repeat it


def test_odd_but_readable_fields_are_tolerated() -> None:
    body = {
        "choices": [{"message": {"content": ANSWER}, "finish_reason": None}],
        "usage": ["not", "an", "object"],
    }
    generation = generation_from_response("r", body)
    assert generation.error is None and generation.text == ANSWER
    assert generation.finish_reason == "unknown" and generation.prompt_tokens is None
    odd_counts = generation_from_response("r", {"choices": [{"message": {"content": "x"}}],
                                                "usage": {"prompt_tokens": "3", "completion_tokens": True}})
    assert odd_counts.prompt_tokens is None and odd_counts.completion_tokens is None


def test_an_unforeseen_reading_failure_is_recorded_for_that_request(monkeypatch: pytest.MonkeyPatch) -> None:
    import pixeljury.engines.openai_engine as openai_engine

    real = openai_engine.generation_from_response

    def flaky(request_id: str, body: object, seconds: float | None = None):
        if request_id == "id-bad":
            raise RuntimeError("boom")
        return real(request_id, body, seconds)

    monkeypatch.setattr(openai_engine, "generation_from_response", flaky)
    with FakeOpenAIServer({}, default=Reply(content=ANSWER)) as server:
        out = OpenAIEngine(server.url, "m", timeout=5.0).generate([request("good"), request("bad")], GenerationParams())
    good, bad = out
    assert good.error is None and good.text == ANSWER
    assert bad.finish_reason == "error" and bad.error and "RuntimeError: boom" in bad.error
