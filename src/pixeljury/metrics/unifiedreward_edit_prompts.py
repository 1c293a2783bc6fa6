"""The prompts UnifiedReward-Edit was trained with, and the parsing of its answers.

The four prompt texts are interface facts (the model's outputs only mean something with this exact
wording), reproduced character for character from the official inference scripts of
github.com/CodeGoat24/UnifiedReward, folder ``UnifiedReward-Edit/``, commit
57aabd3c6a4700f1f5a270df7e4c2061a39b9320:

- ``edit_pointwise_instruction_following.py``  -> :func:`instruction_following_prompt`
- ``edit_pointwise_quality.py``                -> :data:`QUALITY_PROMPT`
- ``edit_pairwise_rank.py``                    -> :func:`pairwise_rank_prompt`
- ``edit_paiwise_score.py`` (sic)              -> :func:`pairwise_score_prompt`

Those scripts put every image before the text in one user turn (source first, then the edited
image(s)); :mod:`pixeljury.metrics.unifiedreward_edit` builds its requests the same way.
"""

from __future__ import annotations

import re

_VIESCORE_PREAMBLE = (
    "You are a professional digital artist. You will have to evaluate the effectiveness of the AI-generated "
    "image(s) based on given rules.\nAll the input images are AI-generated. All human in the images are "
    "AI-generated too. so you need not worry about the privacy confidentials.\n\nIMPORTANT: You will have to "
    "give your output in this way (Keep your reasoning concise and short.):\n{\n\n\"reasoning\" : \"...\",\n"
    "\"score\" : [...],\n}\n\nRULES:\n\n"
)

_INSTRUCTION_FOLLOWING_RULES = (
    "Two images will be provided: The first being the original AI-generated image and the second being an "
    "edited version of the first.\nThe objective is to evaluate how successfully the editing instruction has "
    "been executed in the second image.\n\nNote that sometimes the two images might look identical due to the "
    "failure of image edit.\n\n\nFrom scale 0 to 25: \nA score from 0 to 25 will be given based on the success "
    "of the editing. (0 indicates that the scene in the edited image does not follow the editing instruction "
    "at all. 25 indicates that the scene in the edited image follow the editing instruction text perfectly.)\n"
    "A second score from 0 to 25 will rate the degree of overediting in the second image. (0 indicates that "
    "the scene in the edited image is completely different from the original. 25 indicates that the edited "
    "image can be recognized as a minimal edited yet effective version of original.)\nPut the score in a list "
    "such that output score = [score1, score2], where 'score1' evaluates the editing success and 'score2' "
    "evaluates the degree of overediting.\n\nEditing instruction:"
)

QUALITY_PROMPT = _VIESCORE_PREAMBLE + (
    "The image is an AI-generated image.\nThe objective is to evaluate how successfully the image has been "
    "generated.\n\nFrom scale 0 to 25: \nA score from 0 to 25 will be given based on image naturalness. \n(\n"
    "    0 indicates that the scene in the image does not look natural at all or give a unnatural feeling such "
    "as wrong sense of distance, or wrong shadow, or wrong lighting. \n    25 indicates that the image looks "
    "natural.\n)\nA second score from 0 to 25 will rate the image artifacts. \n(\n    0 indicates that the "
    "image contains a large portion of distortion, or watermark, or scratches, or blurred faces, or unusual "
    "body parts, or subjects not harmonized. \n    25 indicates the image has no artifacts.\n)\nPut the score "
    "in a list such that output score = [naturalness, artifacts]\n"
)

_PAIRWISE_CRITERIA = (
    "**Inputs Provided:**\n- Source Image (before editing)\n- Edited Image 1 (after applying the instruction)\n"
    "- Edited Image 2 (after applying the instruction)\n- Text Instruction\n\n### Evaluation Criteria for Each "
    "Image:\n\n1. **Instruction Fidelity**  \nAssess how accurately the edits align with the given instruction. "
    "The following aspects should be considered:\n- **Semantic Accuracy:** Does the edited image reflect the "
    "correct objects and changes as described in the instruction? For example, if instructed to replace "
    "\"apples with oranges,\" ensure that oranges appear instead of other fruits.\n- **Completeness of "
    "Changes:** Ensure all parts of the instruction are fully addressed. For multi-step instructions, verify "
    "that every change is made as specified.\n- **Exclusivity of Changes:** Confirm that only the specified "
    "changes were made. Other elements of the image should remain consistent with the original.\n\n2. "
    "**Visual Integrity & Realism**  \nEvaluate the visual quality of the edited image, taking into account "
    "technical accuracy and aesthetic appeal:\n- **Realism & Physical Consistency:** Does the edit respect the "
    "laws of physics and scene consistency, including lighting, shadows, and perspective?\n- **Artifact-Free "
    "Quality:** Look for any technical flaws such as blurring, pixel misalignment, unnatural textures, or "
    "visible seams. The image should be clean and free from distractions.\n- **Aesthetic Harmony:** The image "
    "should maintain a pleasing visual balance, with careful attention to composition, color harmony, and "
    "overall appeal. The changes should enhance the image rather than detract from it.\n\n"
)

_RANK_HEAD = (
    "You are tasked with comparing two edited images and determining which one is better based on the given "
    "criteria.\n\nThe evaluation will consider how well each model executed the instructions and the overall "
    "quality of the edit, including its visual appeal.\n\n"
)
_RANK_TAIL = "### Final Output:\nBased on the above evaluation, determine which edited image is better.\n\n"

_SCORE_HEAD = (
    "You are tasked with assigning scores to two edited images, comparing each with the original source "
    "image. \n\nThe score should reflect both how well the model executed the instructions and the overall "
    "quality of the edit, including its visual appeal for both images.\n\n"
)
_SCORE_TAIL = (
    "### Scoring Guidelines:\n- The score can range from **positive to negative** based on how well the edit "
    "follows the instruction and maintains visual quality.\n- A **higher score** indicates a strong adherence "
    "to the instruction, clean edits, and a high-quality final result.\n- A **negative score** reflects "
    "significant issues, such as errors in the edits, missing parts, over-editing, or visual artifacts that "
    "compromise the result.\n\nPlease provide the scores for each image based on the evaluation of the above "
    "aspects.\n\n"
)


def instruction_following_prompt(instruction: str) -> str:
    """Source and edited image: [editing success, (absence of) over-editing], each 0-25."""
    return _VIESCORE_PREAMBLE + _INSTRUCTION_FOLLOWING_RULES + f"{instruction}\n"


def pairwise_rank_prompt(instruction: str) -> str:
    """Source, edited 1, edited 2: which edit is better."""
    return _RANK_HEAD + _PAIRWISE_CRITERIA + _RANK_TAIL + f"Text instruction - {instruction}\n"


def pairwise_score_prompt(instruction: str) -> str:
    """Source, edited 1, edited 2: one unbounded score per edit."""
    return _SCORE_HEAD + _PAIRWISE_CRITERIA + _SCORE_TAIL + f"Text instruction - {instruction}\n"


# --- parsing -------------------------------------------------------------------------------------------

_SCORE_LIST = re.compile(r"[\"']?score[\"']?\s*:\s*\[([^\]]*)\]", re.IGNORECASE)
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE)
# The labels the official win-rate code looks for (case-insensitive substring).
RANK_LABELS = ("edited image 1 is better", "edited image 2 is better")
# The official pairwise-score parsing (commented in edit_paiwise_score.py) is re.findall(r"([0-9]+\.[0-9]+)")
# and the first two matches. We keep "decimal numbers, first two" but read a leading minus sign: the prompt
# asks for negative scores and the official pattern would silently flip them to positive.
_DECIMAL = re.compile(r"-?[0-9]+\.[0-9]+")


def parse_score_list(text: str, *, low: float = 0.0, high: float = 25.0) -> list[float]:
    """The two numbers of the answer's ``"score" : [a, b]`` (last such list wins: the format is restated
    in some answers before the real one). Raises ValueError when absent, not two, or out of range."""
    found = _SCORE_LIST.findall(text or "")
    if not found:
        raise ValueError("no '\"score\" : [a, b]' list in the output")
    values = [float(n) for n in _NUMBER.findall(found[-1])]
    if len(values) != 2:
        raise ValueError(f"expected two scores in the list, got {found[-1].strip()!r}")
    for value in values:
        if not low <= value <= high:
            raise ValueError(f"score {value} is outside {low:g}-{high:g}")
    return values


def parse_rank(text: str) -> int:
    """1 or 2: which edited image the answer prefers, read as the official win-rate code reads it (the
    ``<answer>`` block when there is one, else the whole text; label 1 is checked first). The official code
    counts an answer with neither label as a tie; here it is an error."""
    answer = _ANSWER.search(text or "")
    places = ([answer.group(1)] if answer else []) + [text or ""]
    for place in places:
        lowered = place.lower()
        for choice, label in enumerate(RANK_LABELS, start=1):
            if label in lowered:
                return choice
    raise ValueError("the output says neither 'Edited image 1 is better' nor 'Edited image 2 is better'")


def parse_pair_scores(text: str) -> tuple[float, float]:
    """Scores of edited image 1 and 2: the first two decimal numbers of the answer (see ``_DECIMAL``)."""
    found = _DECIMAL.findall(text or "")
    if len(found) < 2:
        raise ValueError(f"expected two decimal scores in the output, found {len(found)}")
    return float(found[0]), float(found[1])


__all__ = [
    "QUALITY_PROMPT",
    "RANK_LABELS",
    "instruction_following_prompt",
    "pairwise_rank_prompt",
    "pairwise_score_prompt",
    "parse_pair_scores",
    "parse_rank",
    "parse_score_list",
]
