"""The per-dimension answer schema used by --constrained."""

from __future__ import annotations

import json

import pytest

from pixeljury.protocols.qjudger import parse_generation
from pixeljury.protocols.qjudger_schema import SCORE_VALUES, dimension_schema
from pixeljury.rubric.builtin import builtin_rubric
from pixeljury.rubric.taxonomy import L1_NAMES, TREE


@pytest.mark.parametrize("dimension", L1_NAMES)
def test_schema_lists_exactly_the_rubric_facets_all_required(dimension: str) -> None:
    rubric = builtin_rubric()
    schema = dimension_schema(rubric, dimension)
    assert schema["type"] == "object" and schema["additionalProperties"] is False
    assert schema["required"] == list(TREE[dimension])
    for l2, l3s in TREE[dimension].items():
        group = schema["properties"][l2]
        assert group["additionalProperties"] is False and group["required"] == list(l3s)
        for l3 in l3s:
            facet = group["properties"][l3]
            assert facet["required"] == ["score"] and facet["additionalProperties"] is False
            assert facet["properties"]["score"]["enum"] == [0, 1, 2, "N/A"]
    json.dumps(schema)  # serialisable as sent to a server


@pytest.mark.parametrize("dimension", L1_NAMES)
def test_an_answer_shaped_by_the_schema_parses_without_repairs(dimension: str) -> None:
    schema = dimension_schema(builtin_rubric(), dimension)
    values = list(SCORE_VALUES)
    answer = {
        l2: {l3: {"score": values[i % 4]} for i, l3 in enumerate(group["properties"])}
        for l2, group in schema["properties"].items()
    }
    result = parse_generation("thinking\n</think>\n\n" + json.dumps(answer), dimension)
    assert result.status in ("scored", "all_na") and result.repairs == [] and result.unknown_facets == []
    assert result.parsed == answer


def test_unknown_dimension_is_rejected() -> None:
    with pytest.raises(KeyError):
        dimension_schema(builtin_rubric(), "Not a dimension")
