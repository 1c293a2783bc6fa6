"""UnifiedReward-Edit on the evaluator contract: the three tasks of
:mod:`pixeljury.metrics.unifiedreward_edit` asked through any engine by the runner
(:func:`pixeljury.runs.evaluate.run_evaluator`), with resume, retries and failures by sample.

A sample is one edit: ``prompt`` is the editing instruction, ``images`` the source then the edited
image (pointwise) or the source then two edits (pairwise). The requests are the official ones (the
same prompts and image order as ``UnifiedRewardEdit``); images are named, and loaded when sent.

- pointwise: two stages. The instruction-following answer (source + edit) is read first; the
  visual-quality ask (the edit alone) follows, and its reading gives the VIEScore
  ``sqrt(min(instruction scores) * min(quality scores))`` on 0-25. A stage that fails counts under
  the convention too, so its counts add up to the samples.
- pairwise rank: 1.0 when edit 1 is preferred, 0.0 when edit 2.
- pairwise score: score of edit 1 minus score of edit 2.

An answer that cannot be read is a ``parse_failure`` verdict with the reason, never a score.
"""

from __future__ import annotations

import math
from typing import Any

from pixeljury.core.evaluator import (
    Ask, Evaluator, EvaluatorIdentity, Reading, Sample, Verdict, VerdictMeans, lazy_image,
)
from pixeljury.core.requests import ChatRequest, Generation, GenerationParams, TextPart
from pixeljury.metrics.unifiedreward_edit import DEFAULT_PARAMS, TASK_BY_CONVENTION
from pixeljury.metrics.unifiedreward_edit_prompts import (
    QUALITY_PROMPT, instruction_following_prompt, pairwise_rank_prompt, pairwise_score_prompt, parse_pair_scores,
    parse_rank, parse_score_list,
)

_IMAGES = {"pointwise": 2, "pairwise-rank": 3, "pairwise-score": 3}


class UnifiedRewardEditEvaluator(Evaluator):
    """One UnifiedReward-Edit convention (``TASK_BY_CONVENTION``) as an evaluator."""

    def __init__(self, convention: str, params: GenerationParams = DEFAULT_PARAMS):
        if convention not in TASK_BY_CONVENTION:
            raise ValueError(f"unknown UnifiedReward-Edit convention {convention!r}; choose from "
                             f"{', '.join(TASK_BY_CONVENTION)}")
        self.convention, self.task, self.params = convention, TASK_BY_CONVENTION[convention], params
        self.identity = EvaluatorIdentity("unifiedreward-edit", "1", {"convention": convention})

    def plan(self, sample: Sample) -> list[Ask]:
        want = _IMAGES[self.task]
        if len(sample.images) != want:
            raise ValueError(f"sample {sample.sample_id}: {self.convention} takes {want} images (the source, then "
                             f"{'the edit' if want == 2 else 'two edits'}), got {len(sample.images)}")
        if not sample.prompt.strip():
            raise ValueError(f"sample {sample.sample_id}: the editing instruction (prompt) is empty")
        if self.task == "pointwise":
            return [self._ask(sample, "instruction", sample.images, instruction_following_prompt(sample.prompt))]
        prompt = pairwise_rank_prompt if self.task == "pairwise-rank" else pairwise_score_prompt
        return [self._ask(sample, self.convention, sample.images, prompt(sample.prompt))]

    def _ask(self, sample: Sample, name: str, images: Any, text: str, context: dict | None = None) -> Ask:
        # Images first, then the text, as the official client builds its user turn.
        request = ChatRequest(f"{sample.sample_id}/{name}", "", [*(lazy_image(ref) for ref in images), TextPart(text)])
        return Ask(name, request, context or {})

    def verdict_names(self, ask: Ask) -> list[str]:
        """A pointwise stage's own verdict and the convention's (so failures count under it too)."""
        return [ask.name, self.convention] if self.task == "pointwise" else [self.convention]

    def read(self, sample: Sample, ask: Ask, answer: Any) -> Reading:
        assert isinstance(answer, Generation)
        sid = sample.sample_id
        try:
            if ask.name == "instruction":
                following = parse_score_list(answer.text)
                quality = self._ask(sample, "quality", sample.images[1:2], QUALITY_PROMPT, {"following": following})
                verdict = Verdict(sid, "instruction", "scored", min(following),
                                  {"editing_success": following[0], "overediting": following[1]})
                return Reading([verdict], [quality])
            if ask.name == "quality":
                following, quality = ask.context["following"], parse_score_list(answer.text)
                return Reading([
                    Verdict(sid, "quality", "scored", min(quality), {"naturalness": quality[0], "artifacts": quality[1]}),
                    Verdict(sid, self.convention, "scored", math.sqrt(min(following) * min(quality)),
                            {"editing_success": following[0], "overediting": following[1],
                             "naturalness": quality[0], "artifacts": quality[1]}),
                ])
            if self.task == "pairwise-rank":
                preferred = parse_rank(answer.text)
                return Reading([Verdict(sid, self.convention, "scored", 1.0 if preferred == 1 else 0.0,
                                        {"preferred": preferred})])
            first, second = parse_pair_scores(answer.text)
            return Reading([Verdict(sid, self.convention, "scored", first - second,
                                    {"score_1": first, "score_2": second})])
        except ValueError as exc:
            finish = f"; finish_reason={answer.finish_reason}" if answer.finish_reason != "stop" else ""
            return Reading([Verdict(sid, name, "parse_failure", None, {"raw_text": answer.text[:400]}, f"{exc}{finish}")
                            for name in self.verdict_names(ask)])

    def accumulator(self) -> VerdictMeans:
        return VerdictMeans()


__all__ = ["UnifiedRewardEditEvaluator"]
