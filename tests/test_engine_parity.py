"""Same text, same verdict: every engine's "raw output -> Generation" path must lead ``parse`` to the
same structures and scores for the same generated text.

* remote (OpenAIEngine): through a fake server answering in both forms, thinking inline in
  ``content`` and thinking split off into ``reasoning`` / ``reasoning_content``;
* vLLM (VLLMEngine): through its RequestOutput conversion, fed an object shaped like vLLM's;
* transformers (TransformersEngine, ``pixeljury.engines.hf``): it decodes the new tokens and returns
  them as ``Generation(text=decoded)`` with no split; that contract is what is compared here (this
  branch predates ``hf.py``, whose decoding lives inside ``generate`` with no separate function).

The vLLM suite (tests/vllm) also checks the real server against the real in-process engine.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from PIL import Image

from pixeljury.engines.base import ChatRequest, Generation, GenerationParams, ImagePart, TextPart
from pixeljury.engines.openai_engine import OpenAIEngine
from pixeljury.engines.vllm_engine import generation_from_request_output
from pixeljury.protocols.qjudger import parse
from pixeljury.testing.fake_openai import FakeOpenAIServer, Reply

THINKING = "The dog's shadow falls the wrong way; edges are sharp."
CASES: dict[str, tuple[str, str, str]] = {
    # name: (dimension, answer after </think>, finish_reason)
    "clean": ("Quality", '{"Realism": {"Physical Logic": {"score": 0}, "Material Texture": {"score": 2}},'
                         ' "Detail": {"Noise": {"score": 1}, "Edge Clarity": {"score": "N/A"}}}', "stop"),
    "needs-repair": ("Quality", 'Here you go: {"Physical Logic": {"score": 1}, "Noise": {"score": "2"}} Done.', "stop"),
    "l1-wrapped": ("Aesthetics", '{"Aesthetics": {"Composition": {"Composition": {"score": 2}}}}', "stop"),
    "all-na": ("Alignment", '{"Attribute": {"Quantity": {"score": "N/A"}}}', "stop"),
    "invalid-value": ("Quality", '{"Realism": {"Physical Logic": {"score": 7}, "Material Texture": {"score": 1}}}', "stop"),
    "broken-json": ("Quality", '{"Realism": {"Physical Logic": {"score": 1}', "length"),
    "no-answer": ("Quality", "", "stop"),
}


def raw_text(answer: str) -> str:
    """What the model wrote after the prompt's ``<think>\\n``: thinking, ``</think>``, answer."""
    return f"{THINKING}\n</think>\n\n{answer}"


def transformers_generation(name: str, text: str, finish_reason: str) -> Generation:
    # TransformersEngine.generate: decode(new tokens, skip_special_tokens=True) -> Generation(text=...).
    return Generation(request_id=name, text=text, finish_reason=finish_reason, prompt_tokens=5, completion_tokens=9)


def vllm_generation(name: str, text: str, finish_reason: str) -> Generation:
    output = SimpleNamespace(
        prompt_token_ids=[1, 2, 3, 4, 5],
        outputs=[SimpleNamespace(text=text, token_ids=list(range(9)), finish_reason=finish_reason)],
    )
    return generation_from_request_output(name, output)


def remote_generations(form: str) -> dict[str, Generation]:
    """Each case through the OpenAI engine, the fake server answering in ``form``."""
    scripts: dict[str, list[Reply]] = {}
    for name, (_, answer, finish) in CASES.items():
        if form == "inline":
            reply = Reply(content=raw_text(answer), finish_reason=finish)
        else:  # what vLLM/SGLang's qwen3 reasoning parser sends: thinking apart, answer stripped
            reply = Reply(content=answer, reasoning=THINKING, reasoning_field=form, finish_reason=finish)
        scripts[name] = [reply]
    image = Image.new("RGB", (8, 8), "white")
    requests = [ChatRequest(name, "sys", [TextPart(name), ImagePart(image, "sha"), TextPart("after")]) for name in CASES]
    with FakeOpenAIServer(scripts) as server:
        generations = OpenAIEngine(server.url, "m", timeout=10, max_retries=0).generate(requests, GenerationParams())
    return {g.request_id: g for g in generations}


def verdict(generation: Generation, dimension: str) -> dict[str, Any]:
    return parse(generation, dimension).as_dict()


@pytest.fixture(scope="module")
def remote() -> dict[str, dict[str, Generation]]:
    return {form: remote_generations(form) for form in ("inline", "reasoning", "reasoning_content")}


@pytest.mark.parametrize("name", list(CASES))
def test_every_engine_path_gives_the_same_verdict(name: str, remote: dict[str, dict[str, Generation]]) -> None:
    dimension, answer, finish = CASES[name]
    text = raw_text(answer)
    reference = verdict(transformers_generation(name, text, finish), dimension)
    assert verdict(vllm_generation(name, text, finish), dimension) == reference
    for form, generations in remote.items():
        assert generations[name].error is None
        assert verdict(generations[name], dimension) == reference, form


def test_the_cases_cover_every_outcome() -> None:
    """The parity above means something only if the verdicts themselves differ in kind."""
    outcomes = {}
    for name, (dimension, answer, finish) in CASES.items():
        outcomes[name] = verdict(transformers_generation(name, raw_text(answer), finish), dimension)
    assert outcomes["clean"]["status"] == "scored" and outcomes["clean"]["level1"] == pytest.approx(
        ((0 + 100) / 2 + 60) / 2
    )
    assert outcomes["needs-repair"]["repairs"] and outcomes["needs-repair"]["status"] == "scored"
    assert outcomes["l1-wrapped"]["repairs"] == ["unwrapped L1 key 'Aesthetics'"]
    assert outcomes["all-na"]["status"] == "all_na"
    assert outcomes["invalid-value"]["invalid"]
    assert outcomes["broken-json"]["status"] == "parse_failure" and outcomes["broken-json"]["truncated"]
    assert outcomes["no-answer"]["status"] == "parse_failure"

