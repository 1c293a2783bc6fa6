"""UnifiedReward-Edit as an evaluator, through the runner with a scripted engine: the official
requests (images first, 2 or 3 per request), the VIEScore of the two pointwise stages, pairwise
readings, unreadable answers as parse failures, and resume without asking again."""

from __future__ import annotations

import math

import pytest
from PIL import Image

from pixeljury.core.evaluator import ImageRef, Sample
from pixeljury.engines.base import ChatRequest, Engine, Generation, GenerationParams, ImagePart, TextPart
from pixeljury.engines.replay import ReplayEngine
from pixeljury.metrics.unifiedreward_edit_evaluator import UnifiedRewardEditEvaluator
from pixeljury.metrics.unifiedreward_edit_prompts import QUALITY_PROMPT, instruction_following_prompt
from pixeljury.runs.evaluate import run_evaluator


class Scripted(Engine):
    name, model_id, revision, preferred_batch_size = "scripted", "test/ur-edit", "r1", 4

    def __init__(self, answer):
        self.answer, self.seen = answer, []

    def generate(self, requests: list[ChatRequest], params: GenerationParams) -> list[Generation]:
        self.seen += requests
        return [Generation(r.request_id, self.answer(r), "stop") for r in requests]


def _samples(tmp_path, n_images):
    out = []
    for i in range(2):
        refs = []
        for j in range(n_images):
            path = tmp_path / f"{i}-{j}.png"
            Image.new("RGB", (12, 10), (40 * i, 30 * j, 9)).save(path)
            refs.append(ImageRef(path, f"sha-{i}-{j}"))
        out.append(Sample(str(i), f"make the sky red {i}", tuple(refs)))
    return out


def test_pointwise_asks_instruction_then_quality_and_combines_them(tmp_path):
    def answer(req):
        text = req.user[-1].text
        if text == QUALITY_PROMPT:
            return '{"score" : [16, 9]}'
        return '{"score" : [25, 4]}' if req.request_id.startswith("0/") else "no scores here"

    engine = Scripted(answer)
    samples = _samples(tmp_path, 2)
    result = run_evaluator(UnifiedRewardEditEvaluator("unifiedreward-edit@pointwise-viescore-0-25"), samples, engine,
                           out=tmp_path / "run")
    first = [r for r in engine.seen if r.request_id == "0/instruction"][0]
    assert [type(p) for p in first.user] == [ImagePart, ImagePart, TextPart]
    assert [p.sha256 for p in first.user[:2]] == ["sha-0-0", "sha-0-1"]
    assert first.user[2].text == instruction_following_prompt("make the sky red 0")
    quality = [r for r in engine.seen if r.request_id == "0/quality"][0]
    assert [p.sha256 for p in quality.user[:1]] == ["sha-0-1"] and len(quality.user) == 2  # the edit alone
    by = {(v.sample_id, v.name): v for v in result.verdicts}
    assert by[("0", "unifiedreward-edit@pointwise-viescore-0-25")].value == math.sqrt(4 * 9) == 6.0
    assert by[("1", "instruction")].status == "parse_failure" and "no '\"score\"" in by[("1", "instruction")].error
    assert ("1", "quality") not in by  # no follow-up from an unreadable answer
    again = Scripted(answer)
    rerun = run_evaluator(UnifiedRewardEditEvaluator("unifiedreward-edit@pointwise-viescore-0-25"), samples, again,
                          out=tmp_path / "run")
    assert again.seen == [] and rerun.reused == 3
    assert rerun.aggregate == result.aggregate


@pytest.mark.parametrize("convention, answer, value", [
    ("unifiedreward-edit@pairwise-rank", "<answer>Edited image 2 is better</answer>", 0.0),
    ("unifiedreward-edit@pairwise-score-margin", "Image 1: 7.5, Image 2: 5.0", 2.5),
])
def test_pairwise_tasks_send_three_images_and_read_one_value(tmp_path, convention, answer, value):
    engine = Scripted(lambda _r: answer)
    result = run_evaluator(UnifiedRewardEditEvaluator(convention), _samples(tmp_path, 3), engine)
    assert all(len([p for p in r.user if isinstance(p, ImagePart)]) == 3 for r in engine.seen)
    assert [v.value for v in result.verdicts] == [value, value]


def test_a_sample_with_the_wrong_number_of_images_is_refused(tmp_path):
    with pytest.raises(ValueError, match="takes 3 images"):
        run_evaluator(UnifiedRewardEditEvaluator("unifiedreward-edit@pairwise-rank"), _samples(tmp_path, 2),
                      Scripted(lambda _r: ""))


@pytest.mark.parametrize("convention, stages", [
    ("unifiedreward-edit@pairwise-rank", 1), ("unifiedreward-edit@pointwise-viescore-0-25", 2),
])
def test_failures_count_under_the_convention_so_its_counts_add_up(tmp_path, convention, stages):
    def answer(req):
        sample = req.request_id.split("/")[0]
        if sample == "1":
            return None  # no answer at all: an error
        if sample == "2":
            return "nothing readable"
        return '{"score" : [9, 9]}' if stages == 2 else "Edited image 1 is better"

    base = _samples(tmp_path, 2 if stages == 2 else 3)
    samples = [*base, Sample("2", "make it blue", base[0].images)]  # 0 reads, 1 gets no answer, 2 is unreadable
    result = run_evaluator(UnifiedRewardEditEvaluator(convention), samples, ReplayEngine(answer))
    counts = result.aggregate[convention]["counts"]
    assert counts == {"error": 1, "parse_failure": 1, "scored": 1}
    assert result.aggregate[convention]["mean"] == (9.0 if stages == 2 else 1.0)
