from __future__ import annotations

import hashlib
import math

import pytest
from PIL import Image

from pixeljury.engines.base import ChatRequest, Engine, Generation, GenerationParams, ImagePart, TextPart
from pixeljury.metrics.base import MetricError, MetricUnavailable
from pixeljury.metrics.registry import load_metric
from pixeljury.metrics.unifiedreward_edit_prompts import (
    QUALITY_PROMPT, instruction_following_prompt, pairwise_rank_prompt, pairwise_score_prompt, parse_pair_scores,
    parse_rank, parse_score_list,
)


class ScriptedEngine(Engine):
    name = "scripted"
    model_id = "test/unifiedreward-edit"
    revision = "r1"
    preferred_batch_size = 2

    def __init__(self, answers: list[str]):
        self.answers = list(answers)
        self.seen: list[ChatRequest] = []

    def generate(self, requests: list[ChatRequest], params: GenerationParams) -> list[Generation]:
        self.seen.extend(requests)
        return [Generation(r.request_id, self.answers.pop(0), "stop") for r in requests]


def _img(color: str) -> Image.Image:
    return Image.new("RGB", (8, 8), color)


def _sha(img: Image.Image) -> str:
    return hashlib.sha256(f"{img.mode}{img.size}".encode() + img.tobytes()).hexdigest()


def test_prompts_match_the_official_scripts_byte_for_byte():
    # sha256 of the official `problem` strings (instruction = "INSTR") of CodeGoat24/UnifiedReward
    # UnifiedReward-Edit/*.py at commit 57aabd3c6a4700f1f5a270df7e4c2061a39b9320, computed from that source.
    expected = {
        "rank": "9c5acad321c65b010baa37aafa173d2aeabd022e332d59720060726d5490abfb",
        "score": "28c6fd30771e89637abd7e9eafb35fbee111bee12306b25e48fadbaa10a63a11",
        "ifollow": "e7b874e29f4537a660e91a7801aad4c5c0b4ba554864d2b7a2935cd6ad163270",
        "quality": "ddb40baa511dbf2fd619474e5a0fcd043c6325f976bfc8fd1f8b9fbf4c521113",
    }
    texts = {"rank": pairwise_rank_prompt("INSTR"), "score": pairwise_score_prompt("INSTR"),
             "ifollow": instruction_following_prompt("INSTR"), "quality": QUALITY_PROMPT}
    assert {k: hashlib.sha256(v.encode()).hexdigest() for k, v in texts.items()} == expected


def test_pointwise_combines_the_two_answers_as_viescore_does_and_sends_the_right_images():
    answers = ['{"reasoning": "ok", "score": [20, 16]}', '{\n"reasoning" : "fine",\n"score" : [25, 9],\n}',
               '"score" : [4.5, 10]', '"score": [1, 2]']
    engine = ScriptedEngine(answers)
    metric = load_metric("unifiedreward-edit", engine=engine)
    src, edit, src2, edit2 = _img("red"), _img("blue"), _img("green"), _img("white")
    results = metric.score_edits(["make it blue", "make it white"], [src, src2], [edit, edit2])
    assert results[0].value == pytest.approx(math.sqrt(16 * 9))
    assert results[1].value == pytest.approx(math.sqrt(4.5 * 1))
    assert results[0].extras["editing_success"] == 20 and results[0].extras["artifacts"] == 9
    following, quality = engine.seen[0], engine.seen[1]
    assert [p.sha256 for p in following.user if isinstance(p, ImagePart)] == [_sha(src), _sha(edit)]
    assert following.user[-1] == TextPart(instruction_following_prompt("make it blue"))
    assert [p.sha256 for p in quality.user if isinstance(p, ImagePart)] == [_sha(edit)]
    assert quality.user[-1].text == QUALITY_PROMPT
    assert metric.weights_label() == "test/unifiedreward-edit@r1"


def test_pairwise_rank_and_score():
    engine = ScriptedEngine(["Reasoning... <answer>Edited image 2 is better.</answer>", "EDITED IMAGE 1 IS BETTER"])
    rank = load_metric("unifiedreward-edit@pairwise-rank", engine=engine)
    imgs = [_img("red"), _img("blue"), _img("green")]
    results = rank.rank_pairs(["a", "b"], [imgs[0]] * 2, [imgs[1]] * 2, [imgs[2]] * 2)
    assert [r.value for r in results] == [0.0, 1.0]
    assert [p.sha256 for p in engine.seen[0].user[:3]] == [_sha(i) for i in imgs]
    assert engine.seen[0].user[3].text == pairwise_rank_prompt("a")

    engine = ScriptedEngine(["Image 1: 7.50, Image 2: -2.25"])
    score = load_metric("unifiedreward-edit@pairwise-score-margin", engine=engine)
    (result,) = score.score_pairs(["a"], [imgs[0]], [imgs[1]], [imgs[2]])
    assert (result.extras["score_1"], result.extras["score_2"], result.value) == (7.5, -2.25, 9.75)
    with pytest.raises(MetricUnavailable, match="rank_pairs belongs"):
        score.rank_pairs(["a"], [imgs[0]], [imgs[1]], [imgs[2]])


def test_unreadable_answers_are_errors_naming_the_item():
    engine = ScriptedEngine(["Edited image 1 is better", "I cannot decide."])
    rank = load_metric("unifiedreward-edit@pairwise-rank", engine=engine)
    img = _img("red")
    with pytest.raises(MetricError, match=r"item 1 \(instruction 'second'\): the output says neither"):
        rank.rank_pairs(["first", "second"], [img] * 2, [img] * 2, [img] * 2)
    with pytest.raises(ValueError, match="outside 0-25"):
        parse_score_list('"score": [26, 3]')
    with pytest.raises(ValueError, match="two scores"):
        parse_score_list('"score": [3]')
    with pytest.raises(ValueError, match="two decimal scores"):
        parse_pair_scores("Image 1: 7, Image 2: 3")
    assert parse_rank("edited image 2 is better <answer>Edited image 1 is better</answer>") == 1


def test_score_file_refuses_edit_metrics(tmp_path):
    from pixeljury.metrics.run import score_file

    (tmp_path / "in.jsonl").write_text("")
    with pytest.raises(MetricUnavailable, match="library API"):
        score_file(tmp_path / "in.jsonl", tmp_path / "run", ["unifiedreward-edit"])
