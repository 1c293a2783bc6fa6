"""UnifiedReward-Edit: judging instruction-guided image edits through the generative engine interface.

Three tasks, each over a source image and its edit(s) with the editing instruction:

- pointwise (``score_edits``): two requests per edit, instruction following (source + edit) and
  visual quality (edit alone), each answered as ``"score" : [a, b]`` on 0-25. The official scripts
  only print the answers; the value here combines them the way VIEScore, whose prompts these are,
  does: ``sqrt(min(instruction scores) * min(quality scores))``, on 0-25.
- pairwise rank (``rank_pairs``): source + two edits; value 1.0 when edit 1 is preferred, 0.0 when edit 2.
- pairwise score (``score_pairs``): source + two edits; one unbounded score each; value = score 1 - score 2.

An answer that cannot be read is an error naming the item, never a score.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from PIL import Image

from pixeljury.engines.base import ChatRequest, Engine, Generation, GenerationParams, ImagePart, TextPart
from pixeljury.metrics.base import (
    ImageInput, MetricError, MetricInputError, MetricResult, MetricSpec, MetricUnavailable, SpecNamed, load_rgb,
)
from pixeljury.metrics.unifiedreward import _image_sha256
from pixeljury.metrics.unifiedreward_edit_prompts import (
    QUALITY_PROMPT, instruction_following_prompt, pairwise_rank_prompt, pairwise_score_prompt, parse_pair_scores,
    parse_rank, parse_score_list,
)

# The official client sends do_sample=False and max_tokens=4096 (UnifiedReward-Think/.../vllm_request.py).
DEFAULT_PARAMS = GenerationParams(max_new_tokens=4096, temperature=0.0, top_k=1, repetition_penalty=1.0,
                                  enable_thinking=False)
TASK_BY_CONVENTION = {
    "unifiedreward-edit@pointwise-viescore-0-25": "pointwise",
    "unifiedreward-edit@pairwise-rank": "pairwise-rank",
    "unifiedreward-edit@pairwise-score-margin": "pairwise-score",
}
T = TypeVar("T")


def _request(request_id: str, images: list[Image.Image], text: str) -> ChatRequest:
    # Images first, then the text, as the official client builds its user turn.
    parts: list[Any] = [ImagePart(img, _image_sha256(img)) for img in images]
    return ChatRequest(request_id=request_id, system="", user=[*parts, TextPart(text)])


class UnifiedRewardEdit(SpecNamed):
    """One loaded UnifiedReward-Edit convention; call the method that matches its task."""

    def __init__(self, spec: MetricSpec, engine: Engine, params: GenerationParams = DEFAULT_PARAMS):
        self.spec = spec
        self.engine = engine
        self.params = params
        self.task = TASK_BY_CONVENTION[spec.convention]

    def weights_label(self) -> str:
        return f"{self.engine.model_id}@{self.engine.revision or 'unpinned'}"

    # --- the three tasks ---------------------------------------------------------------------------

    def score_edits(self, instructions: Sequence[str], sources: Sequence[ImageInput],
                    edited: Sequence[ImageInput]) -> list[MetricResult]:
        self._require("pointwise", "score_edits")
        items = self._items(instructions, [sources, edited])

        def build(i: int, instruction: str, imgs: list[Image.Image]) -> list[ChatRequest]:
            source, edit = imgs
            return [_request(f"{i}/instruction", [source, edit], instruction_following_prompt(instruction)),
                    _request(f"{i}/quality", [edit], QUALITY_PROMPT)]

        def read(gens: list[Generation]) -> MetricResult:
            following = parse_score_list(gens[0].text)
            quality = parse_score_list(gens[1].text)
            value = math.sqrt(min(following) * min(quality))
            return MetricResult(self.name, self.convention, value, {
                "editing_success": following[0], "overediting": following[1],
                "naturalness": quality[0], "artifacts": quality[1],
                "raw_text_instruction": gens[0].text, "raw_text_quality": gens[1].text,
            })

        return self._run(items, build, read)

    def rank_pairs(self, instructions: Sequence[str], sources: Sequence[ImageInput],
                   edited_1: Sequence[ImageInput], edited_2: Sequence[ImageInput]) -> list[MetricResult]:
        self._require("pairwise-rank", "rank_pairs")
        items = self._items(instructions, [sources, edited_1, edited_2])

        def read(gens: list[Generation]) -> MetricResult:
            preferred = parse_rank(gens[0].text)
            return MetricResult(self.name, self.convention, 1.0 if preferred == 1 else 0.0,
                                {"preferred": preferred, "raw_text": gens[0].text})

        return self._run(items, lambda i, ins, imgs: [_request(str(i), imgs, pairwise_rank_prompt(ins))], read)

    def score_pairs(self, instructions: Sequence[str], sources: Sequence[ImageInput],
                    edited_1: Sequence[ImageInput], edited_2: Sequence[ImageInput]) -> list[MetricResult]:
        self._require("pairwise-score", "score_pairs")
        items = self._items(instructions, [sources, edited_1, edited_2])

        def read(gens: list[Generation]) -> MetricResult:
            first, second = parse_pair_scores(gens[0].text)
            return MetricResult(self.name, self.convention, first - second,
                                {"score_1": first, "score_2": second, "raw_text": gens[0].text})

        return self._run(items, lambda i, ins, imgs: [_request(str(i), imgs, pairwise_score_prompt(ins))], read)

    # --- shared plumbing ---------------------------------------------------------------------------

    def _require(self, task: str, method: str) -> None:
        if self.task != task:
            raise MetricUnavailable(f"{self.convention} is the {self.task} task; {method} belongs to the {task} "
                                    f"convention ({', '.join(c for c, t in TASK_BY_CONVENTION.items() if t == task)})")

    def _items(self, instructions: Sequence[str], image_columns: list[Sequence[ImageInput]]
               ) -> list[tuple[str, list[ImageInput]]]:
        instructions = list(instructions)
        columns = [list(c) for c in image_columns]
        lengths = {len(instructions), *(len(c) for c in columns)}
        if len(lengths) != 1:
            raise MetricInputError(f"{self.name}: {len(instructions)} instructions but image lists of lengths "
                                   f"{[len(c) for c in columns]}")
        for i, text in enumerate(instructions):
            if not isinstance(text, str) or not text.strip():
                raise MetricInputError(f"{self.name}: item {i} has an empty or non-text instruction ({text!r})")
        return [(text, [c[i] for c in columns]) for i, text in enumerate(instructions)]

    def _run(self, items: list[tuple[str, list[ImageInput]]],
             build: Callable[[int, str, list[Image.Image]], list[ChatRequest]],
             read: Callable[[list[Generation]], MetricResult]) -> list[MetricResult]:
        """Chunks of items, each item's requests sent together; answers grouped back per item."""
        size = max(1, self.engine.preferred_batch_size)
        results: list[MetricResult] = []
        for start in range(0, len(items), size):
            chunk = items[start : start + size]
            per_item = [build(start + j, text, [load_rgb(img, start + j) for img in imgs])
                        for j, (text, imgs) in enumerate(chunk)]
            generations = self.engine.generate([r for reqs in per_item for r in reqs], self.params)
            if len(generations) != sum(len(r) for r in per_item):
                raise MetricError(f"{self.name}: the engine returned {len(generations)} answers for "
                                  f"{sum(len(r) for r in per_item)} requests")
            offset = 0
            for j, reqs in enumerate(per_item):
                gens = generations[offset : offset + len(reqs)]
                offset += len(reqs)
                results.append(self._read_item(start + j, chunk[j][0], gens, read))
        return results

    def _read_item(self, index: int, instruction: str, gens: list[Generation],
                   read: Callable[[list[Generation]], MetricResult]) -> MetricResult:
        where = f"{self.name}: item {index} (instruction {instruction!r})"
        failed = next((g for g in gens if g.error), None)
        if failed is not None:
            raise MetricError(f"{where}: request {failed.request_id} failed: {failed.error}")
        try:
            return read(gens)
        except ValueError as exc:
            shown = " | ".join(repr(g.text[:200]) for g in gens)
            finish = ",".join(g.finish_reason for g in gens)
            raise MetricError(f"{where}: {exc}; finish_reason={finish}; output: {shown}") from None


def load_unifiedreward_edit(spec: MetricSpec, *, engine: Engine | None = None,
                            params: GenerationParams | None = None, **_ignored: Any) -> UnifiedRewardEdit:
    if engine is None:
        raise MetricUnavailable(
            "UnifiedReward-Edit generates text: pass engine=<a pixeljury Engine serving "
            f"{spec.weights.repo_id if spec.weights else 'the model'}> (transformers, vLLM or OpenAI-compatible)"
        )
    return UnifiedRewardEdit(spec, engine, params or DEFAULT_PARAMS)


__all__ = ["DEFAULT_PARAMS", "TASK_BY_CONVENTION", "UnifiedRewardEdit", "load_unifiedreward_edit"]
