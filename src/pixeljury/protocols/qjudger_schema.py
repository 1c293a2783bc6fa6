"""JSON schema of one Q-Judger answer, for engines that can constrain decoding (``--constrained``).

The schema is built from the rubric actually sent, so the grammar admits exactly the facet names the
model was asked about: ``{L2: {L3: {"score": 0 | 1 | 2 | "N/A"}}}`` with every key required and no
others. Constrained decoding is opt-in; the official protocol is unconstrained.
"""

from __future__ import annotations

from typing import Any

from pixeljury.rubric.model import Rubric

SCORE_VALUES: tuple[int | str, ...] = (0, 1, 2, "N/A")


def _closed_object(properties: dict[str, Any]) -> dict[str, Any]:
    """An object schema whose keys are exactly ``properties`` (all required, nothing else)."""
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


def facet_schema() -> dict[str, Any]:
    return _closed_object({"score": {"enum": list(SCORE_VALUES)}})


def dimension_schema(rubric: Rubric, dimension: str) -> dict[str, Any]:
    """The answer schema for ``dimension`` (an L1 name) under ``rubric``.

    Raises ``KeyError`` for a dimension the rubric has no checklist for, and ``ValueError`` when
    that checklist has no facets, because an empty schema would constrain nothing.
    """
    groups = rubric.facets[dimension]
    if not any(groups.values()):
        raise ValueError(f"rubric {rubric.origin} has no facets for {dimension!r}")
    schema = _closed_object(
        {l2: _closed_object({l3: facet_schema() for l3 in facets}) for l2, facets in groups.items() if facets}
    )
    schema["title"] = f"Q-Judger {dimension}"
    return schema


__all__ = ["SCORE_VALUES", "dimension_schema", "facet_schema"]
