"""Same text, same verdict: every engine's "raw output -> Generation" path must lead ``parse`` to the
same structures and scores for the same generated text.

* remote (OpenAIEngine): through a fake server answering in both forms, thinking inline in
  ``content`` and thinking split off into ``reasoning`` / ``reasoning_content``;
* vLLM (VLLMEngine): through its RequestOutput conversion, fed an object shaped like vLLM's;
* transformers (TransformersEngine, ``pixeljury.engines.hf``): its decode step
  ``generation_from_tokens`` on the token ids of the text, with the tiny test tokenizer.

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


@pytest.fixture(scope="module")
def tiny_tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def transformers_generation(tokenizer, name: str, text: str, finish_reason: str) -> Generation:
    """TransformersEngine's own decode step (``generation_from_tokens``) on the token ids of ``text``,
    followed by end-of-sequence when the case finished normally."""
    from pixeljury.engines.hf import generation_from_tokens

    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    ids = tokenizer(text, add_special_tokens=False)["input_ids"] + ([eos] if finish_reason == "stop" else [])
    gen = generation_from_tokens(tokenizer, name, ids, {eos}, prompt_tokens=5)
    assert gen.text == text and gen.finish_reason == finish_reason
    return gen


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
def test_every_engine_path_gives_the_same_verdict(name: str, remote: dict[str, dict[str, Generation]],
                                                 tiny_tokenizer) -> None:
    dimension, answer, finish = CASES[name]
    text = raw_text(answer)
    reference = verdict(transformers_generation(tiny_tokenizer, name, text, finish), dimension)
    assert verdict(vllm_generation(name, text, finish), dimension) == reference
    for form, generations in remote.items():
        assert generations[name].error is None
        assert verdict(generations[name], dimension) == reference, form


def test_the_cases_cover_every_outcome(tiny_tokenizer) -> None:
    """The parity above means something only if the verdicts themselves differ in kind."""
    outcomes = {}
    for name, (dimension, answer, finish) in CASES.items():
        outcomes[name] = verdict(transformers_generation(tiny_tokenizer, name, raw_text(answer), finish), dimension)
    assert outcomes["clean"]["status"] == "scored" and outcomes["clean"]["level1"] == pytest.approx(
        ((0 + 100) / 2 + 60) / 2
    )
    assert outcomes["needs-repair"]["repairs"] and outcomes["needs-repair"]["status"] == "scored"
    assert outcomes["l1-wrapped"]["repairs"] == ["unwrapped L1 key 'Aesthetics'"]
    assert outcomes["all-na"]["status"] == "all_na"
    assert outcomes["invalid-value"]["invalid"]
    assert outcomes["broken-json"]["status"] == "parse_failure" and outcomes["broken-json"]["truncated"]
    assert outcomes["no-answer"]["status"] == "parse_failure"

