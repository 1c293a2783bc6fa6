"""pixeljury's reading of Q-Judger answers against upstream's own ``score_utils.py``.

``fixtures/upstream_parser_golden.json`` holds ~1,500 generated answers with the L1 / L2 / L3 numbers the
pinned upstream file computes for them (see ``scripts/upstream_parser_golden.py`` for how to regenerate
it). Every answer must get upstream's numbers from pixeljury, except where pixeljury deliberately
differs; each such difference is named in ``KNOWN_DIFFERENCES``, checked for exactly what the docs say,
and must still occur in the fixture (so the list cannot go stale).
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from pixeljury.protocols.qjudger import parse_generation
from pixeljury.scoring import map_raw_score

FIXTURE = Path(__file__).parent / "fixtures" / "upstream_parser_golden.json"
DOCS = Path(__file__).resolve().parent.parent / "docs" / "qjudger.md"
PINNED_SCORE_UTILS_SHA256 = "48a28d8cd457e39d19ce2fe56344ce70f7fbc60a8b705d96e533ffd1a837d5b4"

KNOWN_DIFFERENCES = {
    "own_l1_unwrapped": "an answer keyed by the request's own L1 name is unwrapped; upstream reads the name "
                        "as an L2 and the L2 objects inside as facets without a score. pixeljury's numbers "
                        "are upstream's numbers for the unwrapped object.",
    "value:bool": "true / false: upstream's int() makes them 1 / 0 (60 / 0); pixeljury counts them invalid.",
    "value:string": 'a string other than "0", "1", "2" (spaces aside) that int() accepts ("01", "+1", "-0", '
                    'a full-width digit): upstream scores it; pixeljury counts it invalid.',
    "value:fraction": "a non-integer float: upstream's int() truncates it (2.7 -> 100, 1.5 -> 60, 0.9999 -> 0); "
                      "pixeljury counts it invalid.",
    "single_facet_named": "an L2 with one facet given as {'score': x}: pixeljury names the facet (Resolution), "
                          "upstream calls it 'score' (and scores any comment key as a facet without value); "
                          "the L2 and L1 numbers are the same.",
    "upstream_raises": "upstream's run ends (OverflowError on an infinite value, AttributeError on an answer "
                       "that is not an object); pixeljury counts the value invalid or the answer a parse failure.",
}

SINGLE_FACET_NOTE = re.compile(r"read '(?P<l2>.+)': \{'score': \.\.\.\} as its single facet '(?P<l3>.+)'")
STATUSES = {"scored", "all_na", "parse_failure"}


def _golden() -> dict[str, Any]:
    return json.loads(FIXTURE.read_text(encoding="utf-8"))


GOLDEN = _golden()
CASES = GOLDEN["cases"]


def _mean(values) -> float | None:
    kept = [v for v in values if v is not None]
    return sum(kept) / len(kept) if kept else None


def rejected_value_kind(raw: Any) -> str | None:
    """Which documented class of values pixeljury refuses although upstream's int() takes them."""
    if isinstance(raw, bool):
        return "value:bool"
    if isinstance(raw, str) and raw.strip() not in ("0", "1", "2"):
        return "value:string"
    if isinstance(raw, float) and not raw.is_integer():
        return "value:fraction"
    return None


def expected_from_upstream(upstream: dict[str, Any], repairs: list[str]) -> tuple[dict[str, Any], set[str], list]:
    """Upstream's numbers turned into what pixeljury must report, applying only the documented
    differences. Returns (expected {"level1", "level2", "level3"}, differences applied, invalid entries
    pixeljury must list for the values it refuses)."""
    level3 = {l2: dict(facets) for l2, facets in upstream["level3"].items()}
    differences: set[str] = set()
    refused: list[dict[str, Any]] = []
    for l2, facets in upstream["coerced"].items():
        for l3, raw in facets.items():
            kind = rejected_value_kind(raw)
            if kind:
                level3[l2][l3] = None
                differences.add(kind)
                refused.append({"l2": l2, "l3": l3, "value": raw})
    for note in repairs:
        named = SINGLE_FACET_NOTE.fullmatch(note)
        if named:
            l2, facet = named["l2"], named["l3"]
            comments = {k: v for k, v in level3[l2].items() if k != "score"}
            assert all(v is None for v in comments.values()), (note, level3[l2])  # only unscorable text beside it
            level3[l2] = {facet: level3[l2]["score"]}
            for entry in refused:
                if entry["l2"] == l2 and entry["l3"] == "score":
                    entry["l3"] = facet
            differences.add("single_facet_named")
    level2 = {l2: _mean(facets.values()) for l2, facets in level3.items()}
    return {"level1": _mean(level2.values()), "level2": level2, "level3": level3}, differences, refused


def check_case(case: dict[str, Any]) -> set[str]:
    """Assert pixeljury's verdict on one golden answer; return the known differences it showed."""
    result = parse_generation(case["answer"], case["dimension"])
    assert result.status in STATUSES
    unwrapped = [note for note in result.repairs if note.startswith("unwrapped L1 key")]
    upstream = case["upstream"]
    differences: set[str] = set()
    if "upstream_of_inner" in case:
        assert unwrapped, "an answer keyed by the request's own L1 is unwrapped"
        upstream = case["upstream_of_inner"]
        differences.add("own_l1_unwrapped")
    else:
        assert not unwrapped, "only the request's own L1 name is unwrapped"
    if upstream["outcome"] == "no_json":
        assert result.status == "parse_failure" and result.scores is None
        return differences
    if upstream["outcome"] == "raises":
        if upstream["error"] == "OverflowError":
            assert any(isinstance(i["value"], float) and math.isinf(i["value"]) for i in result.scores.invalid)
        else:
            assert result.status == "parse_failure" and result.scores is None
        return differences | {"upstream_raises"}
    expected, applied, refused = expected_from_upstream(upstream, result.repairs)
    s = result.scores
    got = {"level1": s.l1, "level2": s.l2, "level3": s.l3} if s else {"level1": None, "level2": {}, "level3": {}}
    assert got == expected
    for entry in refused:
        assert entry in s.invalid
    assert (result.status == "scored") == (expected["level1"] is not None)
    return differences | applied


def test_fixture_comes_from_the_pinned_upstream_file():
    meta = GOLDEN["meta"]
    assert meta["score_utils_sha256"] == PINNED_SCORE_UTILS_SHA256
    assert meta["cases"] == len(CASES) > 1000
    assert FIXTURE.stat().st_size < 1_100_000


def test_every_golden_answer_gets_upstreams_numbers_or_a_documented_difference():
    seen: Counter[str] = Counter()
    failures = []
    for case in CASES:
        try:
            differences = check_case(case)
        except AssertionError as exc:
            failures.append(f"#{case['id']} {case['family']} {case['dimension']}: {case['answer'][:160]!r} {exc}")
            continue
        assert differences <= KNOWN_DIFFERENCES.keys()
        seen.update(differences or {"identical"})
    assert not failures, f"{len(failures)} answers differ from upstream:\n" + "\n".join(failures[:15])
    assert set(seen) == set(KNOWN_DIFFERENCES) | {"identical"}, seen  # every listed difference still occurs
    assert seen["identical"] > len(CASES) // 2, seen


@pytest.mark.parametrize("family", ["other_l1_wrapper", "own_l1_wrapper", "score_in_score", "value", "random"])
def test_every_family_is_in_the_fixture(family):
    assert sum(case["family"] == family for case in CASES) >= 20


# --- fix 1: only the request's own L1 name is unwrapped -------------------------------------------------


def test_another_dimensions_wrapper_is_not_unwrapped():
    # Upstream reads "Quality" as an L2 and "Realism" as a facet whose entry has no score: no number.
    r = parse_generation('{"Quality": {"Realism": {"Physical Logic": {"score": 2}}}}', "Aesthetics")
    assert r.status == "parse_failure" and r.scores.l1 is None
    assert r.parsed == {"Quality": {"Realism": {"Physical Logic": {"score": 2}}}}
    assert r.scores.l3 == {"Quality": {"Realism": None}}
    assert r.repairs == [
        "did not unwrap 'Quality': it names another dimension than 'Aesthetics'; as upstream, it is read as an L2",
        "'Realism' under 'Quality' is an object without a score; as upstream, it is not scored and its "
        "contents are lost: {'Physical Logic': {'score': 2}}",
    ]


def test_another_dimensions_wrapper_keeps_upstreams_numbers_where_upstream_scores():
    # Facets of this dimension inside the wrapper move to their L2; unknown ones stay under "Quality".
    r = parse_generation('{"Quality": {"Composition": {"score": 2}, "Physical Logic": {"score": 0}}}', "Aesthetics")
    assert r.scores.l2 == {"Composition": 100.0, "Quality": 0.0} and r.scores.l1 == 50.0


def test_the_requests_own_wrapper_is_still_unwrapped_in_any_case():
    r = parse_generation('{" aesthetics ": {"Composition": {"Composition": {"score": 2}}}}', "Aesthetics")
    assert r.scores.l1 == 100.0 and r.repairs == ["unwrapped L1 key ' aesthetics '"]


# --- fix 2: {"score": {"score": x}} under a single-facet L2 keeps its value ------------------------------


@pytest.mark.parametrize("value,number", [(0, 0.0), (2, 100.0), ("1", 60.0)])
def test_single_facet_l2_holding_a_score_object_is_scored_as_upstream(value, number):
    text = json.dumps({"Realism": {"Physical Logic": {"score": 2}}, "Resolution": {"score": {"score": value}}})
    r = parse_generation(text, "Quality")
    assert r.parsed["Resolution"] == {"score": {"score": value}}  # upstream's shape: a facet named "score"
    assert r.scores.l3["Resolution"] == {"score": number} and r.scores.l2["Resolution"] == number
    assert r.scores.invalid == [] and r.unknown_facets == ["score"]
    assert r.repairs == ["'Resolution' holds a score, not facet scores; kept as a facet named 'score', as upstream"]


def test_single_facet_l2_with_a_plain_score_is_still_named():
    r = parse_generation('{"Realism": {"Physical Logic": {"score": 2}}, "Resolution": {"score": 1}}', "Quality")
    assert r.scores.l3["Resolution"] == {"Resolution": 60.0}


# --- fix 3: the docs' value table states upstream's and pixeljury's handling truthfully ------------------


def _docs_value_rows() -> list[tuple[str, str, str]]:
    text = DOCS.read_text(encoding="utf-8")
    assert "<!-- value-table -->" in text, "docs/qjudger.md marks its value table with <!-- value-table -->"
    section = text.split("<!-- value-table -->")[1]
    rows = []
    for line in section.strip().splitlines():
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[0].startswith("`"):
            rows.append((cells[0], cells[1], cells[2]))
    return rows


def _values_in(cell: str) -> list[Any]:
    return [json.loads(v) for v in re.findall(r"`([^`]+)`", cell)]


def _same_json(a: Any, b: Any) -> bool:
    return json.dumps(a) == json.dumps(b)  # unlike ==, tells true from 1 and matches NaN with NaN


def _upstream_outcome(value: Any) -> str:
    """What the golden fixture says upstream made of ``value`` given as a facet's {"score": value}."""
    for case in CASES:
        probe = case.get("probe")
        if probe is None or probe["bare"] or not _same_json(probe["value"], value):
            continue
        upstream = case["upstream"]
        if upstream["outcome"] == "raises":
            return f"run ends: {upstream['error']}"
        number = upstream["level3"][probe["l2"]][probe["l3"]]
        return "excluded" if number is None else f"{number:g}"
    raise AssertionError(f"no golden case gives the value {value!r}")


def _pixeljury_outcome(value: Any) -> str:
    number, kind = map_raw_score(value)
    return f"{number:g}" if kind == "score" else {"na": "N/A", "invalid": "invalid"}[kind]


def _claimed(cell: str, count: int) -> list[str]:
    """The outcome a docs cell claims for each of ``count`` values: the part before any " — "
    explanation, either one outcome for all or one per value separated by " / "."""
    head = cell.split(" — ")[0].strip()
    parts = [part.strip() for part in head.split(" / ")]
    return parts if len(parts) == count else [head] * count


def test_docs_value_table_matches_upstream_and_pixeljury():
    rows = _docs_value_rows()
    assert len(rows) >= 10
    for values_cell, upstream_cell, pixeljury_cell in rows:
        values = _values_in(values_cell)
        for value, upstream_claim, pixeljury_claim in zip(
                values, _claimed(upstream_cell, len(values)), _claimed(pixeljury_cell, len(values))):
            upstream = _upstream_outcome(value)
            if upstream.startswith("run ends: "):  # the exception is named in the explanation
                assert upstream_claim == "run ends" and upstream.split(": ")[1] in upstream_cell, values_cell
            else:
                assert upstream_claim == upstream, (value, upstream_cell)
            assert pixeljury_claim == _pixeljury_outcome(value), (value, pixeljury_cell)
