"""Constrained decoding for the transformers engine (engines/hf_constrained.py): a thinking phase that
is free but capped, a forced ``</think>`` and answer prefix, then only the dimension's JSON schema.

The first tests drive the logits processor with random scores (no model: many random paths in a
second); the others run the tiny random Qwen3-VL's own ``generate`` with it, batched and left-padded.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("llguidance")

from PIL import Image  # noqa: E402

from pixeljury.engines.base import ChatRequest, GenerationParams, TextPart  # noqa: E402
from pixeljury.engines.hf_constrained import (  # noqa: E402
    ThinkThenAnswer,
    answer_prefix,
    build_logits_processor,
    schema_matcher,
)
from pixeljury.protocols import qjudger  # noqa: E402
from pixeljury.protocols.qjudger_schema import dimension_schema  # noqa: E402
from pixeljury.rubric import resolve_rubric  # noqa: E402
from pixeljury.rubric.taxonomy import L1_NAMES  # noqa: E402

OK = ("scored", "all_na")  # statuses of an answer that was read (the rest: parse_failure, error)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The tiny model's matrices are too small for a second thread to pay for its synchronisation."""
    from pixeljury.demo import one_torch_thread

    with one_torch_thread():
        yield


@pytest.fixture(scope="module")
def rubric():
    return resolve_rubric("builtin")


@pytest.fixture(scope="module")
def processor(tiny_model_dir):
    from transformers import AutoProcessor

    proc = AutoProcessor.from_pretrained(tiny_model_dir)
    proc.tokenizer.padding_side = "left"
    return proc


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    from transformers import AutoModelForImageTextToText

    return AutoModelForImageTextToText.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()


def _eos(model) -> set[int]:
    eos = model.generation_config.eos_token_id
    return set(eos if isinstance(eos, list) else [eos])


def _requests(rubric, dims, *, schema=True, image=None) -> list[ChatRequest]:
    image = image or Image.new("RGB", (96, 64), (200, 40, 40))
    out = []
    for i, dim in enumerate(dims):
        req = qjudger.build_request(rubric, f"a red circle number {i}", dim, image, "0" * 64, f"{dim}:{i}")
        req.json_schema = dimension_schema(rubric, dim) if schema else None
        out.append(req)
    return out


def _thinking_tokens(tokenizer, prompt: list[int], new: list[int]) -> int:
    """Tokens after the prompt's last ``<think>`` and before the first generated ``</think>``."""
    start = tokenizer.convert_tokens_to_ids("<think>")
    end = tokenizer.convert_tokens_to_ids("</think>")
    after_start = len(prompt) - 1 - prompt[::-1].index(start)
    in_prompt = len(prompt) - after_start - 1
    return in_prompt + (new.index(end) if end in new else len(new))


# -- the processor alone, on random scores ----------------------------------------------------------

def _drive(proc: ThinkThenAnswer, prompts: list[list[int]], vocab: int, eos: set[int], pad: int, steps: int,
           seed: int) -> list[list[int]]:
    """What transformers' greedy loop does with a logits processor, on random logits: the argmax of
    the processed scores is appended; a row that chose an end token is padded from then on."""
    width = max(map(len, prompts))
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])
    gen = torch.Generator().manual_seed(seed)
    done = [False] * len(prompts)
    for _ in range(steps):
        scores = proc(ids, torch.randn(len(prompts), vocab, generator=gen))
        assert torch.isfinite(scores).any(dim=1).all(), "a row with no token allowed"
        nxt = scores.argmax(dim=1)
        for i in range(len(prompts)):
            if done[i]:
                nxt[i] = pad
            elif int(nxt[i]) in eos:
                done[i] = True
        ids = torch.cat([ids, nxt[:, None]], dim=1)
        if all(done):
            break
    return [row[width:] for row in ids.tolist()]


def _text(tokenizer, new: list[int], eos: set[int]) -> str:
    cut = next((i for i, t in enumerate(new) if t in eos), len(new))
    return tokenizer.decode(new[: cut + 1], skip_special_tokens=True)


@pytest.mark.parametrize("seed", range(6))
def test_random_scores_always_give_an_answer_that_parses(processor, rubric, seed):
    tok = processor.tokenizer
    eos = {tok.convert_tokens_to_ids("<|im_end|>"), tok.pad_token_id}
    dims = list(L1_NAMES) * 2
    # prompts of different lengths: the batch is left-padded
    prompts = [tok.encode("<|im_start|>user\n" + "rate it " * (1 + i % 3) + "<|im_end|>\n<|im_start|>assistant\n<think>\n",
                          add_special_tokens=False) for i in range(len(dims))]
    reqs = _requests(rubric, dims)
    params = GenerationParams(json_schema_constrained=True, thinking_budget=7 + seed)
    [proc] = build_logits_processor(processor, reqs, params, eos_ids=eos)
    outs = _drive(proc, prompts, len(tok), eos, tok.pad_token_id, steps=900, seed=seed)
    spent = []
    for dim, req, prompt, new in zip(dims, reqs, prompts, outs):
        text = _text(tok, new, eos)
        assert text.count("</think>") == 1 and "</think>\n\n{" in text, text[:200]
        result = qjudger.parse_generation(text, dim)
        assert result.status in OK, (dim, result.error, text)
        spent.append(_thinking_tokens(tok, prompt, new))
        # the answer has exactly the rubric's facets, nothing else
        assert set(result.parsed) == set(req.json_schema["properties"])
    assert max(spent) == params.thinking_budget and all(n <= params.thinking_budget for n in spent)
    assert all(e is None for e in proc.errors)


def test_logits_wider_than_the_tokenizer_never_allow_the_extra_columns_in_the_answer(processor, rubric):
    tok = processor.tokenizer
    off = tok.encode("<|im_start|>assistant\n<think>\n\n</think>\n\n", add_special_tokens=False)
    [proc] = build_logits_processor(processor, _requests(rubric, ["Quality"]),
                                    GenerationParams(json_schema_constrained=True))
    out = proc(torch.tensor([off]), torch.zeros(1, len(tok) + 40))
    assert torch.isneginf(out[0, len(tok):]).all() and torch.isfinite(out[0, : len(tok)]).any()


def test_the_model_closing_its_thinking_itself_gets_the_prefix_and_the_schema(processor, rubric):
    tok = processor.tokenizer
    end = tok.convert_tokens_to_ids("</think>")
    eos = {tok.convert_tokens_to_ids("<|im_end|>")}
    prompt = tok.encode("<|im_start|>assistant\n<think>\n", add_special_tokens=False)
    [proc] = build_logits_processor(processor, _requests(rubric, ["Quality"]), GenerationParams(json_schema_constrained=True),
                                    eos_ids=eos)
    ids = torch.tensor([prompt])
    scores = torch.zeros(1, len(tok))
    out = proc(ids, scores.clone())
    assert torch.isneginf(out[0, sorted(eos)]).all() and torch.isfinite(out[0]).sum() == len(tok) - 1  # thinking: free but no end
    ids = torch.cat([ids, torch.tensor([[end]])], dim=1)  # the model writes </think>
    forced = []
    for _ in range(2):
        out = proc(ids, scores.clone())
        allowed = torch.isfinite(out[0]).nonzero().flatten().tolist()
        assert len(allowed) == 1
        forced.append(allowed[0])
        ids = torch.cat([ids, torch.tensor([allowed])], dim=1)
    assert tok.decode(forced) == "\n\n"
    out = proc(ids, scores.clone())
    allowed = torch.isfinite(out[0]).nonzero().flatten().tolist()
    assert all(tok.decode([t]).startswith("{") for t in allowed)


def test_thinking_budget_zero_closes_at_once_and_thinking_off_starts_in_the_answer(processor, rubric):
    tok = processor.tokenizer
    eos = {tok.convert_tokens_to_ids("<|im_end|>")}
    end = tok.convert_tokens_to_ids("</think>")
    req = _requests(rubric, ["Aesthetics"])
    thinking = tok.encode("<|im_start|>assistant\n<think>\n", add_special_tokens=False)
    [proc] = build_logits_processor(processor, req, GenerationParams(json_schema_constrained=True, thinking_budget=1),
                                    eos_ids=eos)
    out = proc(torch.tensor([thinking]), torch.zeros(1, len(tok)))  # the prompt's "\n" spent the budget
    assert torch.isfinite(out[0]).nonzero().flatten().tolist() == [end]
    off = tok.encode("<|im_start|>assistant\n<think>\n\n</think>\n\n", add_special_tokens=False)
    [proc] = build_logits_processor(processor, req, GenerationParams(json_schema_constrained=True, thinking_budget=0),
                                    eos_ids=eos)
    out = proc(torch.tensor([off]), torch.zeros(1, len(tok)))
    allowed = torch.isfinite(out[0]).nonzero().flatten().tolist()
    assert allowed and all(tok.decode([t]).startswith("{") for t in allowed)


def test_budget_alone_forces_the_close_and_leaves_the_answer_free(processor, rubric):
    tok = processor.tokenizer
    eos = {tok.convert_tokens_to_ids("<|im_end|>"), tok.pad_token_id}
    prompt = tok.encode("<|im_start|>assistant\n<think>\n", add_special_tokens=False)
    reqs = _requests(rubric, ["Quality", "Alignment"], schema=False)
    [proc] = build_logits_processor(processor, reqs, GenerationParams(thinking_budget=5), eos_ids=eos)
    outs = _drive(proc, [prompt, prompt], len(tok), eos, tok.pad_token_id, steps=40, seed=3)
    for new in outs:
        text = tok.decode(new, skip_special_tokens=True)
        assert text.count("</think>\n\n") >= 1 and _thinking_tokens(tok, prompt, new) == 5


def test_nothing_asked_nothing_built_and_a_missing_schema_is_an_error(processor, rubric):
    assert list(build_logits_processor(processor, _requests(rubric, ["Quality"]), GenerationParams())) == []
    with pytest.raises(ValueError, match="carries no JSON schema"):
        build_logits_processor(processor, _requests(rubric, ["Quality"], schema=False),
                               GenerationParams(json_schema_constrained=True))
    with pytest.raises(ValueError, match=">= 0"):
        build_logits_processor(processor, _requests(rubric, ["Quality"]), GenerationParams(thinking_budget=-1))


def test_answer_prefix_is_read_from_the_chat_template(processor):
    assert answer_prefix(processor) == "\n\n"
    assert answer_prefix(processor.tokenizer) == "\n\n"

    class NoTemplate:
        def apply_chat_template(self, *a, **kw):
            raise ValueError("no chat template")

    assert answer_prefix(NoTemplate()) == ""


def test_schema_matchers_are_compiled_once_and_copied(processor, rubric):
    schema = dimension_schema(rubric, "Quality")
    a = schema_matcher(processor.tokenizer, schema)
    b = schema_matcher(processor.tokenizer, schema)
    assert a is not b and not a.is_error()
    brace = processor.tokenizer.encode("{", add_special_tokens=False)
    assert a.consume_tokens(brace) and not b.is_error()  # copies do not share state


# -- the tiny model's own generate ------------------------------------------------------------------

def _generate(model, processor, requests, params, *, enable_thinking=True):
    from pixeljury.engines.hf import render_chat

    texts = [render_chat(processor, r, enable_thinking=enable_thinking) for r in requests]
    images = [[r.image.image] for r in requests]
    enc = processor(text=texts, images=images, padding=True, return_tensors="pt")
    eos = _eos(model)
    greedy = params.temperature == 0
    kwargs = {} if greedy else {"temperature": params.temperature, "top_k": params.top_k, "top_p": params.top_p}
    torch.manual_seed(params.seed)
    with torch.inference_mode():
        out = model.generate(**enc, max_new_tokens=params.max_new_tokens, do_sample=not greedy,
                             repetition_penalty=params.repetition_penalty, pad_token_id=processor.tokenizer.pad_token_id,
                             logits_processor=build_logits_processor(processor, requests, params, eos_ids=eos), **kwargs)
    width = enc["input_ids"].shape[1]
    prompts = [[t for t, m in zip(row, mask) if m] for row, mask in zip(enc["input_ids"].tolist(),
                                                                     enc["attention_mask"].tolist())]
    news = out[:, width:].tolist()
    return [_text(processor.tokenizer, new, eos) for new in news], prompts, news


@pytest.mark.slow
def test_tiny_judge_answers_parse_for_every_dimension_within_the_budget_in_any_batch(model, processor, rubric):
    dims = list(L1_NAMES)[1:] + list(L1_NAMES)[:2]  # 7 requests: batches of 4 and 3, mixed dimensions
    reqs = _requests(rubric, dims)
    params = GenerationParams(max_new_tokens=640, json_schema_constrained=True, thinking_budget=12)
    batched, prompts, news = [], [], []
    for start in range(0, len(reqs), 4):
        texts, p, n = _generate(model, processor, reqs[start:start + 4], params)
        batched += texts
        prompts += p
        news += n
    one_by_one = [_generate(model, processor, [r], params)[0][0] for r in reqs]
    assert batched == one_by_one  # left padding and the other rows change nothing
    for dim, text, prompt, new in zip(dims, batched, prompts, news):
        result = qjudger.parse_generation(text, dim)
        assert result.status in OK, (dim, result.error, text)
        assert _thinking_tokens(processor.tokenizer, prompt, new) <= 12
        assert text.count("</think>") == 1 and "</think>\n\n{" in text
        assert set(result.parsed) == set(dimension_schema(rubric, dim)["properties"])


@pytest.mark.slow
def test_tiny_judge_sampled_and_thinking_off_also_parse(model, processor, rubric):
    reqs = _requests(rubric, ["Quality", "Real-world Fidelity", "Aesthetics"])
    sampled = GenerationParams(max_new_tokens=400, json_schema_constrained=True, thinking_budget=6, temperature=1.0,
                               top_k=0, seed=7)
    for text, req in zip(_generate(model, processor, reqs, sampled)[0], reqs):
        assert qjudger.parse_generation(text, req.request_id.split(":")[0]).status in OK, text
    off = GenerationParams(max_new_tokens=400, json_schema_constrained=True, enable_thinking=False)
    for text, req in zip(_generate(model, processor, reqs, off, enable_thinking=False)[0], reqs):
        assert text.lstrip().startswith("{"), text
        assert qjudger.parse_generation(text, req.request_id.split(":")[0]).status in OK, text


# -- through the engine and a run (needs TransformersEngine wired to build_logits_processor) ----------

@pytest.mark.slow
def test_transformers_engine_constrains_and_runs_record_it(tiny_model_dir, tmp_path, rubric):
    from pixeljury.engines.hf import TransformersEngine
    from pixeljury.runs.judge import JudgeConfig, run_judge

    engine = TransformersEngine(str(tiny_model_dir), batch_size=5)
    params = GenerationParams(max_new_tokens=640, json_schema_constrained=True, thinking_budget=8)
    gens = engine.generate(_requests(rubric, list(L1_NAMES)), params)
    for g, dim in zip(gens, L1_NAMES):
        assert g.error is None and g.finish_reason == "stop", g
        assert qjudger.parse(g, dim).status in OK, g.text

    Image.new("RGB", (64, 64), "blue").save(tmp_path / "a.png")
    (tmp_path / "in.csv").write_text("prompt,image_path\na blue square,a.png\n")
    config = JudgeConfig(input=tmp_path / "in.csv", out=tmp_path / "run", rubric="builtin", params=params,
                         dimensions=["Quality", "Aesthetics", "Alignment"], batch_size=3, quiet=True)
    summary = run_judge(config, lambda: engine)
    assert summary.complete
    import json

    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["constrained"] is True and manifest["config"]["params"]["thinking_budget"] == 8
    [record] = [json.loads(line) for line in (tmp_path / "run" / "per_image.jsonl").read_text().splitlines()]
    assert record["comparable"] is False
    assert all(d["status"] in OK for d in record["dimensions"].values())
    bench = json.loads(next((tmp_path / "run" / "bench").glob("*.json")).read_text())
    assert bench["comparable"] is False and bench["total"] is not None


def test_requests_with_a_text_part_only_still_get_a_processor(processor, rubric):
    """Nothing in the processor depends on images: a text-only request is constrained the same way."""
    req = ChatRequest("r", "sys", [TextPart("rate it")], json_schema=dimension_schema(rubric, "Quality"))
    [proc] = build_logits_processor(processor, [req], GenerationParams(json_schema_constrained=True))
    assert isinstance(proc, ThinkThenAnswer)


@pytest.mark.slow
def test_judge_command_accepts_constrained_with_the_transformers_engine(tiny_model_dir, tmp_path):
    """`--constrained --thinking-budget` are no longer refused for --engine transformers (the default)."""
    import json

    from typer.testing import CliRunner

    from pixeljury.cli import app

    Image.new("RGB", (64, 64), "green").save(tmp_path / "a.png")
    (tmp_path / "in.csv").write_text("prompt,image_path\na green square,a.png\n")
    res = CliRunner().invoke(app, ["judge", str(tmp_path / "in.csv"), "--model", str(tiny_model_dir), "--rubric",
                                   "builtin", "--dimensions", "Quality", "--constrained", "--thinking-budget", "4",
                                   "--max-new-tokens", "300", "--out", str(tmp_path / "run"), "--quiet"])
    assert res.exit_code == 0, res.output
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["constrained"] is True and manifest["config"]["params"]["thinking_budget"] == 4
    [record] = [json.loads(line) for line in (tmp_path / "run" / "per_image.jsonl").read_text().splitlines()]
    assert record["dimensions"]["Quality"]["status"] in OK and record["comparable"] is False
