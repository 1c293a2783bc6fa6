"""pixeljury's own wording of the 56 facets, for when the official checklist file is not at hand.

Scores judged with this rubric are *not* comparable to published Qwen-Image-Bench numbers: the judge
was trained on the official wording. Every output made with it is marked ``comparable: false``.
"""

from __future__ import annotations

from functools import lru_cache

from pixeljury.rubric.model import Rubric, content_hash
from pixeljury.rubric.taxonomy import TREE

QUESTIONS: dict[str, str] = {
    # Quality
    "Physical Logic": "Do gravity, reflections, shadows and object support behave as they would in reality?",
    "Material Texture": "Do surfaces such as skin, cloth, metal or wood show believable texture?",
    "Noise": "Is fine detail present without grain, smearing or over-smoothing?",
    "Edge Clarity": "Are object outlines crisp, without blur, halos or jagged aliasing?",
    "Naturalness": "Does the picture avoid the waxy, over-polished look typical of generated images?",
    "Resolution": "Does the image look high-definition, free of pixelation and compression blocks?",
    # Aesthetics
    "Composition": "Is the framing balanced, with a clear focal point that guides the eye?",
    "Color Harmony": "Do the colours work together and suit the intended mood?",
    "Lighting & Atmosphere": "Do light, shadow and contrast create an atmosphere that fits the described scene?",
    "Anatomical Fidelity": "Are faces, proportions, joints and skin of people anatomically plausible and detailed?",
    "Emotional Expression": "Does the image convey the emotion or mood the prompt asks for?",
    "Style Control": "Is the requested artistic style (a painter, a genre, a medium) rendered faithfully?",
    # Alignment
    "Quantity": "Does each object appear as many times as the prompt says?",
    "Facial Expression": "Do faces of people or animals show the expression the prompt describes?",
    "Material Properties": "Are objects made of the materials the prompt names?",
    "Color": "Do objects have the colours the prompt specifies?",
    "Shape": "Do objects have the shapes the prompt describes?",
    "Size": "Are the sizes of objects, absolute or relative, as the prompt states?",
    "Contact Interaction": "Where subjects touch or handle each other, is the contact shown plausibly?",
    "Non-contact Interaction": "Where subjects relate without touching (looking, talking), is that relation clear?",
    "Full-body Action": "Does the pose of the subject actually perform the described action?",
    "2D Space": "Are left/right, above/below and front/back placements as the prompt says?",
    "3D Space": "Are depth, occlusion and distance between objects consistent with the prompt and with space?",
    "Composition Relationship": "Do the many requested elements form one coherent, sensible scene?",
    "Containment": "Are objects that should be inside or holding others shown that way?",
    "Difference/Similarity": "Are requested differences or likenesses between objects visible?",
    "Real-world Scene": "Is the real-world setting named in the prompt recognisable and accurate?",
    "Virtual Scene": "Is the imagined or virtual setting built as the prompt describes?",
    # Real-world Fidelity
    "Social Bias": "Does the image avoid tying genders or groups to stereotyped roles by default?",
    "Cultural Fairness": "Does the image avoid stereotypes about regions, ethnicities or cultures?",
    "Safety & Compliance": "Is the image free of sexual, violent or hateful content?",
    "Animals": "Are real animal species shown with correct anatomy and markings?",
    "Objects": "Are real products, landmarks and logos reproduced with their true appearance?",
    "Information Visualization": "Are charts, diagrams or explanations in the prompt turned into clear, correct visuals?",
    "Temporal Characteristics": "Do clothing, technology and architecture match the historical period asked for?",
    "Cultural Elements": "Are symbols, costumes and customs of a culture depicted accurately?",
    # Creative Generation
    "Imagination": "Does the image combine unusual or surreal ideas in an original way?",
    "Feature Matching": "Where different elements are fused, are the joins seamless and logical?",
    "Logical Resolution": "Are causes and effects in the scene (rain and wet ground, a blow and debris) consistent?",
    "Text Accuracy": "Is any rendered text legible and spelled exactly as requested?",
    "Text Layout": "Is rendered text aligned, spaced and placed like professional typesetting?",
    "Font": "Does the typeface match the one the prompt asks for?",
    "Cross-lingual Generation": "Is text in the requested language or script rendered correctly?",
    "Art Design": "Does the artwork meet the brief as a piece of art design?",
    "Graphic Design": "Does the poster, logo or layout work as graphic design for its purpose?",
    "Product Design": "Is the product design coherent, manufacturable-looking and as described?",
    "Spatial Design": "Is the interior or architectural space designed as requested and plausible?",
    "Game Design": "Do the game assets or scenes fit the requested game style and function?",
    "Fashion Styling": "Do outfits and styling match the described fashion brief?",
    "Shot Sizes": "Is the requested shot size (close-up, medium, wide) used?",
    "Angles": "Is the requested camera angle (low, high, overhead) used?",
    "Camera / Lens Style": "Does the image show the requested lens or camera character (fisheye, bokeh, tilt-shift)?",
    "Cinematic Style": "Does the frame read as the requested cinematic look or genre?",
    "Storyboard Creation": "Do the panels tell the requested sequence clearly, in order?",
    "Comic Creation": "Are panels, speech bubbles and drawing style those of a comic as requested?",
}
# "Composition" appears under both Aesthetics and Creative Generation; one question serves both.

SYSTEM_PROMPT = (
    "You judge images produced by text-to-image models. You receive the text prompt and the image, "
    "and you rate the image against a checklist for one evaluation dimension."
)

USER_TEMPLATE = """\
# Prompt given to the image model
{prompt}

# Image to judge
<image>

# Dimension
{level1_dim}

# How to score each checklist item
- 0: a clear flaw that visibly lowers the image.
- 1: no flaw; the item is handled as expected.
- 2: handled exceptionally well, with visible evidence.
- "N/A": the item does not apply to this prompt or image.

# Checklist
{format_checklist}

# Answer format
Answer with one JSON object and nothing else, grouped by sub-capability:
{{
  "<sub-capability>": {{
    "<item>": {{"score": 0|1|2}},
    "<item>": {{"score": "N/A"}}
  }}
}}"""


def _checklist(l1: str) -> str:
    lines = []
    for l2, facets in TREE[l1].items():
        lines.append(f"## {l2}")
        lines.extend(f"- {l3}: {QUESTIONS[l3]}" for l3 in facets)
    return "\n".join(lines)


@lru_cache(maxsize=1)
def builtin_rubric() -> Rubric:
    checklists = {l1: _checklist(l1) for l1 in TREE}
    return Rubric(
        source="builtin",
        system_prompt=SYSTEM_PROMPT,
        user_template=USER_TEMPLATE,
        checklists=checklists,
        sha256=content_hash(SYSTEM_PROMPT, USER_TEMPLATE, checklists),
        origin="pixeljury",
        comparable=False,
    )
