"""The Qwen-Image-Bench capability tree: 5 dimensions (L1), 23 sub-capabilities (L2), 56 facets (L3).

Facet names are unique within one L1 but not across L1s ("Composition" is a facet of Aesthetics and of
Creative Generation), so every lookup is made per L1. Pure data, no I/O.
"""

from __future__ import annotations

from functools import lru_cache

# L1 -> L2 -> L3 facets, in a fixed canonical order (used for columns and reports).
TREE: dict[str, dict[str, tuple[str, ...]]] = {
    "Quality": {
        "Realism": ("Physical Logic", "Material Texture"),
        "Detail": ("Noise", "Edge Clarity", "Naturalness"),
        "Resolution": ("Resolution",),
    },
    "Aesthetics": {
        "Composition": ("Composition",),
        "Color Harmony": ("Color Harmony",),
        "Lighting": ("Lighting & Atmosphere",),
        "Anatomical Portraiture": ("Anatomical Fidelity",),
        "Emotional Expression": ("Emotional Expression",),
        "Style Control": ("Style Control",),
    },
    "Alignment": {
        "Attributes": ("Quantity", "Facial Expression", "Material Properties", "Color", "Shape", "Size"),
        "Actions": ("Contact Interaction", "Non-contact Interaction", "Full-body Action"),
        "Layout": ("2D Space", "3D Space"),
        "Relations": ("Composition Relationship", "Containment", "Difference/Similarity"),
        "Scene": ("Real-world Scene", "Virtual Scene"),
    },
    "Real-world Fidelity": {
        "Fairness": ("Social Bias", "Cultural Fairness"),
        "Safety & Compliance": ("Safety & Compliance",),
        "World Knowledge": (
            "Animals",
            "Objects",
            "Information Visualization",
            "Temporal Characteristics",
            "Cultural Elements",
        ),
    },
    "Creative Generation": {
        "Imagination": ("Imagination",),
        "Feature Matching": ("Feature Matching",),
        "Logical Resolution": ("Logical Resolution",),
        "Text Rendering": ("Text Accuracy", "Text Layout", "Font", "Cross-lingual Generation"),
        "Design Applications": (
            "Art Design",
            "Graphic Design",
            "Product Design",
            "Spatial Design",
            "Game Design",
            "Fashion Styling",
        ),
        "Visual Storytelling": (
            "Shot Sizes",
            "Angles",
            "Camera / Lens Style",
            "Cinematic Style",
            "Composition",
            "Storyboard Creation",
            "Comic Creation",
        ),
    },
}

L1_NAMES: tuple[str, ...] = tuple(TREE)

# Facet names the judge is known to misspell, per L1, mapped to the canonical name.
L3_ALIASES: dict[str, dict[str, str]] = {
    "Creative Generation": {"Feature Mapping": "Feature Matching"},
}


@lru_cache(maxsize=None)
def l3_to_l2(l1: str) -> dict[str, str]:
    """Canonical parent L2 of each facet of one L1."""
    return {l3: l2 for l2, facets in TREE.get(l1, {}).items() for l3 in facets}


def canonical_l1(name: str) -> str | None:
    """The canonical spelling of an L1 name (case and surrounding space ignored), or None."""
    key = name.strip().casefold()
    for l1 in L1_NAMES:
        if l1.casefold() == key:
            return l1
    return None


def iter_facets():
    """Yield (l1, l2, l3) for all 56 facets in canonical order."""
    for l1, l2s in TREE.items():
        for l2, facets in l2s.items():
            for l3 in facets:
                yield l1, l2, l3
