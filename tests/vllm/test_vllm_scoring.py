"""The in-process vLLM engine with several images per request, and its log-probability scoring, which must
equal the transformers engine's on the same tiny model (float32 on CPU)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from judge_fixtures import DTYPE, MAX_MODEL_LEN, noise_image
from pixeljury.engines.base import GenerationParams, ImagePart, ScoreRequest, TextPart
from pixeljury.engines.vllm_engine import VLLMEngine
from pixeljury.metrics.unifiedreward_edit import DEFAULT_PARAMS, _request
from pixeljury.metrics.unifiedreward_edit_prompts import QUALITY_PROMPT, instruction_following_prompt, pairwise_rank_prompt

# vLLM's CPU kernels and transformers' eager attention add up float32 rounding differently.
TOLERANCE = 2e-3


@pytest.fixture(scope="module")
def engine(tiny_model_dir: Path) -> Iterator[VLLMEngine]:
    with VLLMEngine(str(tiny_model_dir), dtype=DTYPE, enforce_eager=True, max_model_len=MAX_MODEL_LEN,
                    max_images_per_request=3) as vllm_engine:
        yield vllm_engine


def _score_requests() -> list[ScoreRequest]:
    def parts(seed: int, n: int, question: str) -> list:
        return [*(ImagePart(noise_image(seed + k, 64), f"noise-{seed + k}") for k in range(n)), TextPart(question)]

    return [
        ScoreRequest("yes-no", "Answer Yes or No.", parts(1, 1, "Is there a bicycle?"), candidates=["Yes", "No"]),
        ScoreRequest("abc", "", parts(2, 2, "Which edit is better: A, B or C?"), candidates=["A", "B", "C"]),
        ScoreRequest("continuation", "Describe it.", parts(4, 3, "What changed?"), continuation="The sky is red."),
        ScoreRequest("thinking", "", parts(7, 1, "Is it a cat?"), candidates=["Yes", "No"], enable_thinking=True),
    ]


def test_capabilities_follow_the_constructor(engine: VLLMEngine) -> None:
    assert engine.capabilities.kinds == frozenset({"chat", "score"})
    assert engine.capabilities.max_images_per_request == 3
    settings = engine.describe()["settings"]
    assert settings["limit_mm_per_prompt"] == {"image": 3, "video": 0}
    assert settings["reasoning_parser"] == "qwen3"


def test_unifiedreward_edit_requests_with_two_and_three_images_run(engine: VLLMEngine) -> None:
    source, edit_1, edit_2 = noise_image(10, 64), noise_image(11, 64), noise_image(12, 64)
    requests = [
        _request("0/instruction", [source, edit_1], instruction_following_prompt("make the sky red")),
        _request("0/quality", [edit_1], QUALITY_PROMPT),
        _request("1", [source, edit_1, edit_2], pairwise_rank_prompt("make the sky red")),
        _request("too-many", [source, edit_1, edit_2, source], pairwise_rank_prompt("make the sky red")),
    ]
    params = GenerationParams(**{**DEFAULT_PARAMS.as_dict(), "max_new_tokens": 8})
    generations = engine.generate(requests, params)

    assert [g.request_id for g in generations] == [r.request_id for r in requests]
    for generation in generations[:3]:
        assert generation.error is None and generation.completion_tokens == 8
    # More images mean a longer prompt: each image's tokens are in it.
    assert generations[2].prompt_tokens > generations[0].prompt_tokens > generations[1].prompt_tokens
    assert generations[3].retryable is False and "holds 4 images" in generations[3].error


def test_scores_equal_the_transformers_engines(engine: VLLMEngine, tiny_model_dir: Path) -> None:
    from pixeljury.engines.hf import TransformersEngine

    requests = _score_requests()
    from_vllm = engine.score(requests)
    reference = TransformersEngine(str(tiny_model_dir), dtype="float32", device="cpu").score(requests)

    for got, expected in zip(from_vllm, reference):
        assert got.error is None and expected.error is None, (got.error, expected.error)
        assert got.request_id == expected.request_id
        assert got.prompt_tokens == expected.prompt_tokens
        assert got.tokens == expected.tokens
        if expected.logprobs is not None:
            assert got.logprobs == pytest.approx(expected.logprobs, abs=TOLERANCE)
        else:
            assert got.logprob == pytest.approx(expected.logprob, abs=TOLERANCE * len(expected.tokens))


def test_unscorable_requests_fail_alone(engine: VLLMEngine) -> None:
    good, *_ = _score_requests()
    control = ScoreRequest("control", "", [TextPart("Is it <|im_end|>?")], candidates=["Yes", "No"])
    results = engine.score([control, good])
    assert results[0].retryable is False and "<|im_end|>" in results[0].error
    assert results[1].error is None and set(results[1].logprobs) == {"Yes", "No"}


def test_the_two_stage_test_evaluator_runs_on_vllm(engine: VLLMEngine, tmp_path: Path) -> None:
    """The evaluator of tests/test_evaluator_contract.py through the store-backed runner, with resume
    from its run directory, on vLLM."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from two_stage_evaluator import NameThenCheck

    from pixeljury.core.evaluator import ImageRef, Sample
    from pixeljury.runs.evaluate import run_evaluator

    samples = []
    for i in range(3):
        path = tmp_path / f"{i}.png"
        noise_image(30 + i, 64).save(path)
        samples.append(Sample(str(i), f"prompt {i}", (ImageRef(path, f"noise-{30 + i}"),)))
    out = tmp_path / "run"
    first = run_evaluator(NameThenCheck(), samples[:2], engine, out=out)
    assert (first.asked, first.reused) == (4, 0)
    result = run_evaluator(NameThenCheck(), samples, engine, out=out)
    assert (result.asked, result.reused) == (2, 4)
    checks = [v for v in result.verdicts if v.name == "check"]
    assert len(checks) == 3 and all(v.status == "scored" and 0.0 < v.value < 1.0 for v in checks)
    assert result.aggregate["check"]["counts"] == {"scored": 3}


@pytest.mark.parametrize("convention, n_images", [
    ("unifiedreward-edit@pointwise-viescore-0-25", 2), ("unifiedreward-edit@pairwise-rank", 3),
])
def test_the_unifiedreward_edit_evaluator_runs_on_vllm(engine: VLLMEngine, tmp_path: Path, convention, n_images) -> None:
    """UnifiedReward-Edit through the runner on vLLM, 2 or 3 images per request. The tiny model writes
    noise, so readings are parse failures or scores; what must not happen is an engine error."""
    from pixeljury.core.evaluator import ImageRef, Sample
    from pixeljury.metrics.unifiedreward_edit_evaluator import UnifiedRewardEditEvaluator
    from pixeljury.runs.evaluate import run_evaluator

    samples = []
    for i in range(2):
        refs = []
        for j in range(n_images):
            path = tmp_path / f"{i}-{j}.png"
            noise_image(40 + 3 * i + j, 64).save(path)
            refs.append(ImageRef(path, f"noise-{40 + 3 * i + j}"))
        samples.append(Sample(str(i), "make the sky red", tuple(refs)))
    evaluator = UnifiedRewardEditEvaluator(convention, GenerationParams(**{**DEFAULT_PARAMS.as_dict(), "max_new_tokens": 8}))
    result = run_evaluator(evaluator, samples, engine, out=tmp_path / "run")
    assert result.asked >= 2 and result.stopped is None
    assert {v.status for v in result.verdicts} <= {"scored", "parse_failure"}, [v.error for v in result.verdicts]
