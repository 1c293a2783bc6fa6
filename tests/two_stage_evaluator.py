"""A two-stage test evaluator: the judge names an object in the image, then the engine scores the
probability that the image shows it (a log-probability request built from the first answer).
Used by tests/test_evaluator_contract.py and tests/vllm/test_vllm_scoring.py."""

from __future__ import annotations

import math

from pixeljury.core.evaluator import Ask, Evaluator, EvaluatorIdentity, Reading, Sample, Verdict, VerdictMeans, lazy_image
from pixeljury.engines.base import ChatRequest, GenerationParams, ScoreRequest, TextPart


class NameThenCheck(Evaluator):
    """Stage 1: the judge names an object in the image. Stage 2: P(Yes) that the image shows it."""

    identity = EvaluatorIdentity("name-then-check", "1")
    params = GenerationParams(max_new_tokens=6, enable_thinking=False)
    request_kinds = frozenset({"chat", "score"})  # the engine must score too: refused before stage 1 otherwise

    def _parts(self, sample: Sample, text: str) -> list:
        return [lazy_image(sample.images[0]), TextPart(text)]  # the runner loads the image when it sends

    def plan(self, sample: Sample) -> list[Ask]:
        request = ChatRequest(f"{sample.sample_id}:name", "Be brief.", self._parts(sample, "Name one object here."))
        return [Ask("name", request)]

    def read(self, sample: Sample, ask: Ask, answer) -> Reading:
        if ask.name == "name":
            thing = answer.text.strip() or "thing"
            question = f"Does the image show this: {thing}? Answer Yes or No."
            follow = ScoreRequest(f"{sample.sample_id}:check", "", self._parts(sample, question), candidates=["Yes", "No"])
            return Reading([Verdict(sample.sample_id, "name", "scored", float(len(thing)), {"thing": thing})],
                           [Ask("check", follow, {"thing": thing})])
        yes, no = answer.logprobs["Yes"], answer.logprobs["No"]
        p_yes = math.exp(yes) / (math.exp(yes) + math.exp(no))
        return Reading([Verdict(sample.sample_id, "check", "scored", p_yes, {"thing": ask.context["thing"]})])

    def accumulator(self) -> VerdictMeans:
        return VerdictMeans()
