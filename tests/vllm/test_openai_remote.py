"""OpenAIEngine against a real ``vllm serve`` of the tiny model (reasoning parser on)."""

from __future__ import annotations

from typing import Any

from judge_fixtures import MIN_NEW_TOKENS, THINKING_BUDGET, dimension_of, judge_requests, noise_image
from conftest import SERVED_MODEL_NAME
from pixeljury.engines.base import GenerationParams
from pixeljury.engines.openai_engine import OpenAIEngine
from pixeljury.protocols.qjudger import build_request, parse
from pixeljury.rubric.builtin import builtin_rubric

UNCONSTRAINED = GenerationParams(max_new_tokens=40)
# The tiny tokenizer spends about one token per character: Creative Generation's answer needs ~700.
CONSTRAINED = GenerationParams(max_new_tokens=1500, json_schema_constrained=True, thinking_budget=THINKING_BUDGET)


def engine_for(url: str) -> OpenAIEngine:
    return OpenAIEngine(url, SERVED_MODEL_NAME, concurrency=8, timeout=120, min_new_tokens=MIN_NEW_TOKENS)


def test_unconstrained_generations_keep_order_usage_and_finish_reason(vllm_server: str, real_outputs: dict[str, Any]) -> None:
    requests = judge_requests(2, with_schema=False)
    generations = engine_for(vllm_server).generate(requests, UNCONSTRAINED)

    assert [g.request_id for g in generations] == [r.request_id for r in requests]
    for generation in generations:
        assert generation.error is None
        assert generation.finish_reason == "length"
        assert generation.completion_tokens == 40
        assert generation.prompt_tokens is not None and generation.prompt_tokens > 200
        assert generation.full_text
    # Different dimensions carry different checklists, so their prompts differ in length.
    assert len({g.prompt_tokens for g in generations[:5]}) == 5
    real_outputs["remote_unconstrained"] = {g.request_id: g.full_text for g in generations}


def test_constrained_answers_all_parse_with_thinking_budget(vllm_server: str, real_outputs: dict[str, Any]) -> None:
    rubric = builtin_rubric()
    requests = judge_requests(8, with_schema=True)  # 40 requests
    generations = engine_for(vllm_server).generate(requests, CONSTRAINED)

    results = [parse(g, dimension_of(g.request_id)) for g in generations]
    statuses = [r.status for r in results]
    assert statuses.count("scored") + statuses.count("all_na") == len(requests) == 40, statuses
    for generation, result in zip(generations, results):
        assert generation.error is None and generation.finish_reason == "stop"
        # The reasoning parser split the thinking off; the grammar only started after it.
        assert generation.reasoning is not None
        assert generation.text.startswith("{")
        expected = {l2: set(l3s) for l2, l3s in rubric.facets[result.dimension].items()}
        assert {l2: set(facets) for l2, facets in result.parsed.items()} == expected
        assert result.repairs == [] and result.unknown_facets == []
    real_outputs["remote_constrained"] = {g.request_id: g.full_text for g in generations}


def test_over_long_request_is_recorded_and_the_rest_of_the_batch_kept(vllm_server: str) -> None:
    rubric = builtin_rubric()
    image = noise_image(99)
    good = build_request(rubric, "a cat", "Quality", image, "img99", "good")
    too_long = build_request(rubric, "a cat " * 3000, "Quality", image, "img99", "too-long")
    generations = engine_for(vllm_server).generate([good, too_long], UNCONSTRAINED)

    assert generations[0].error is None and generations[0].completion_tokens == 40
    assert generations[1].finish_reason == "error"
    assert generations[1].error is not None and "HTTP 400" in generations[1].error
