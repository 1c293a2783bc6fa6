"""VLLMEngine (in-process ``vllm.LLM``) on the tiny model, and its agreement with the server."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from judge_fixtures import DTYPE, MAX_MODEL_LEN, MIN_NEW_TOKENS, THINKING_BUDGET, dimension_of, judge_requests, noise_image
from pixeljury.engines.base import GenerationParams
from pixeljury.engines.vllm_engine import VLLMEngine
from pixeljury.protocols.qjudger import build_request, parse
from pixeljury.rubric.builtin import builtin_rubric

_NON_ASCII_RUN = re.compile(r"[^\x00-\x7f]+")
UNCONSTRAINED = GenerationParams(max_new_tokens=40)
# The tiny tokenizer spends about one token per character: Creative Generation's answer needs ~700.
CONSTRAINED = GenerationParams(max_new_tokens=1500, json_schema_constrained=True, thinking_budget=THINKING_BUDGET)


@pytest.fixture(scope="module")
def engine(tiny_model_dir: Path) -> Iterator[VLLMEngine]:
    with VLLMEngine(
        str(tiny_model_dir), dtype=DTYPE, enforce_eager=True, max_model_len=MAX_MODEL_LEN,
        min_new_tokens=MIN_NEW_TOKENS,
    ) as vllm_engine:
        yield vllm_engine


def test_constrained_answers_all_parse_with_thinking_budget(engine: VLLMEngine, real_outputs: dict[str, Any]) -> None:
    rubric = builtin_rubric()
    requests = judge_requests(8, with_schema=True)  # 40 requests
    generations = engine.generate(requests, CONSTRAINED)

    results = [parse(g, dimension_of(g.request_id)) for g in generations]
    statuses = [r.status for r in results]
    assert statuses.count("scored") + statuses.count("all_na") == len(requests) == 40, statuses
    for generation, result in zip(generations, results):
        assert generation.error is None and generation.finish_reason == "stop"
        # Offline vLLM returns the raw text: thinking, the forced `</think>`, then the JSON.
        assert generation.reasoning is None and "</think>" in generation.text
        expected = {l2: set(l3s) for l2, l3s in rubric.facets[result.dimension].items()}
        assert {l2: set(facets) for l2, facets in result.parsed.items()} == expected
    real_outputs["inprocess_constrained"] = {g.request_id: g.full_text for g in generations}


def test_unconstrained_generations_keep_order_usage_and_finish_reason(engine: VLLMEngine, real_outputs: dict[str, Any]) -> None:
    requests = judge_requests(2, with_schema=False)
    generations = engine.generate(requests, UNCONSTRAINED)

    assert [g.request_id for g in generations] == [r.request_id for r in requests]
    for generation in generations:
        assert generation.error is None
        assert generation.finish_reason == "length"
        assert generation.completion_tokens == 40
        assert generation.prompt_tokens is not None and generation.prompt_tokens > 200
    real_outputs["inprocess_unconstrained"] = {g.request_id: g.full_text for g in generations}


def test_over_long_request_is_recorded_and_the_rest_of_the_batch_kept(engine: VLLMEngine) -> None:
    rubric = builtin_rubric()
    image = noise_image(99)
    good = build_request(rubric, "a cat", "Quality", image, "img99", "good")
    too_long = build_request(rubric, "a cat " * 3000, "Quality", image, "img99", "too-long")
    generations = engine.generate([good, too_long], UNCONSTRAINED)

    assert generations[0].error is None and generations[0].completion_tokens == 40
    assert generations[1].finish_reason == "error"
    assert generations[1].error is not None and "vLLM rejected the request" in generations[1].error


def test_concurrent_async_callers_get_what_generate_gives(engine: VLLMEngine) -> None:
    """agenerate runs each caller's batch on the engine's worker thread, one at a time."""
    import asyncio

    requests = judge_requests(2, with_schema=False)  # 10 requests: five callers of two
    calls = [requests[i:i + 2] for i in range(0, len(requests), 2)]
    expected = engine.generate(requests, UNCONSTRAINED)

    async def main() -> list[Any]:
        return await asyncio.gather(*(engine.agenerate(call, UNCONSTRAINED) for call in calls))

    answers = [g for batch in asyncio.run(main()) for g in batch]
    assert [(g.request_id, g.text, g.completion_tokens) for g in answers] == [
        (g.request_id, g.text, g.completion_tokens) for g in expected]


def test_describe_records_the_settings_that_change_results(engine: VLLMEngine) -> None:
    described = engine.describe()
    assert described["engine"] == "vllm" and described["vllm_version"] == "0.32.0"
    settings = described["settings"]
    assert settings["enable_prefix_caching"] is True
    assert settings["limit_mm_per_prompt"] == {"image": 1, "video": 0}
    assert settings["reasoning_parser"] == "qwen3"
    assert settings["max_model_len"] == MAX_MODEL_LEN


@pytest.mark.parametrize("kind", ["unconstrained", "constrained"])
def test_server_and_in_process_engine_generate_the_same_texts(kind: str, real_outputs: dict[str, Any]) -> None:
    """Greedy decoding of the same model and requests: the two vLLM paths must agree text for text,
    and so in parsed results (the server splits the thinking off, `full_text` joins it back)."""
    remote, local = real_outputs.get(f"remote_{kind}"), real_outputs.get(f"inprocess_{kind}")
    if remote is None or local is None:
        pytest.skip("needs both the remote and the in-process tests of this run")
    assert remote.keys() == local.keys()
    for request_id in remote:
        dimension = dimension_of(request_id)
        assert parse_text(remote[request_id], dimension) == parse_text(local[request_id], dimension)
        assert normalise(remote[request_id]) == normalise(local[request_id])


def parse_text(text: str, dimension: str) -> dict[str, Any]:
    from pixeljury.protocols.qjudger import parse_generation

    return parse_generation(text, dimension).as_dict()


def normalise(text: str) -> str:
    """Two differences that are rendering, not generation: the server's reasoning parser trims
    whitespace around `</think>`, and a random model's byte-level tokens often form invalid UTF-8,
    which streaming detokenization (server) and whole-text decoding (offline) render with different
    runs of replacement characters. Real models write valid text."""
    text = _NON_ASCII_RUN.sub("?", text)
    if "</think>" not in text:
        return text.strip()
    thinking, answer = text.split("</think>", 1)
    return thinking.strip() + "</think>" + answer.strip()
