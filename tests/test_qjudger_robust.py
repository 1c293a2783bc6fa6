"""Q-Judger answer reading on hostile or odd answers: decoding limits, fuzzing, answers with no usable
value, and the shape repairs where upstream's ``fix_score_json`` loses or misnames data."""

from __future__ import annotations

import json
import math
import random

import pytest

from pixeljury.engines.base import Generation
from pixeljury.protocols.qjudger import image_scores_from_dicts, parse, parse_generation
from pixeljury.rubric.taxonomy import L1_NAMES, TREE
from pixeljury.scoring import aggregate

STATUSES = {"scored", "all_na", "parse_failure"}
TOO_DEEP = "no JSON object after the thinking (JSON nested too deeply to decode)"

# --- 1. decoding failures are counted parse failures, never exceptions ---------------------------------


@pytest.mark.parametrize(
    "text,error",
    [
        ("[" * 5000, TOO_DEEP),
        ('{"a":' * 5000, TOO_DEEP),
        ('</think>{"Realism": ' + "[" * 5000, TOO_DEEP),
        ('{"a": ' + "[" * 5000 + "}", "JSON nested too deeply to decode"),  # the outermost {...} is too deep
        ('</think>```json\n{"Realism": ' + "[" * 5000 + "\n```", "no JSON object after the thinking"),
    ],
)
def test_deep_nesting_is_a_parse_failure_not_a_crash(text, error):
    r = parse_generation(text, "Quality")
    assert (r.status, r.error, r.scores, r.parsed) == ("parse_failure", error, None, None)


def test_deep_nesting_in_a_truncated_generation_through_parse():
    gen = Generation("q", '<think>ok</think>{"Realism": ' + "[" * 5000, "length", completion_tokens=4096)
    r = parse(gen, "Quality")
    assert r.status == "parse_failure" and r.truncated
    assert r.error == TOO_DEEP + " (generation hit max_new_tokens)"


def test_integer_over_the_digit_limit_is_a_parse_failure():
    r = parse_generation('{"Resolution": {"Resolution": {"score": ' + "1" * 5000 + "}}}", "Quality")
    assert r.status == "parse_failure" and r.scores is None
    assert r.error.startswith("JSON not decodable: ") and "digits" in r.error


@pytest.mark.parametrize(
    "text,error",
    [
        ("[1, 2]", "answer is a JSON array, not facet scores"),
        ('"scores"', "answer is a JSON string, not facet scores"),
        ("1e999", "answer is a JSON number, not facet scores"),
        ("NaN", "answer is a JSON number, not facet scores"),
        ("true", "answer is a JSON boolean, not facet scores"),
        ("null", "answer is a JSON null, not facet scores"),
        ("{}", "answer is an empty object, not facet scores"),
        ('{"Realism": [1, 2], "Detail": 2}', "no facet scores in the answer"),
    ],
)
def test_non_object_answers_name_what_they_are(text, error):
    r = parse_generation(text, "Quality")
    assert (r.status, r.error, r.scores) == ("parse_failure", error, None)


def test_odd_values_inside_an_object_are_invalid_not_crashes():
    text = ('{"Realism": {"Physical Logic": {"score": NaN}, "Material Texture": {"score": 1e999}}, '
            '"Detail": {"Noise": {"score": "\\ud800"}, "Edge Clarity": {"score": -Infinity}, "Naturalness": [2]}, '
            '"Resolution": {"Resolution": {"score": 2}}}')
    r = parse_generation(text, "Quality")
    assert r.status == "scored" and r.scores.l1 == 100.0 and r.scores.n_scored == 1
    values = [i["value"] for i in r.scores.invalid]
    assert math.isnan(values[0]) and values[1:] == [math.inf, "\ud800", -math.inf, [2]]


def _random_json_value(rng: random.Random, depth: int = 0):
    kinds = ["int", "float", "str", "null", "bool", "list", "dict", "score"]
    kind = rng.choice(kinds if depth < 4 else kinds[:5])
    if kind == "int":
        return rng.choice([0, 1, 2, 3, -1, 10**30])
    if kind == "float":
        return rng.choice([1.0, 1.5, math.inf, -math.inf, math.nan, 1e-300])
    if kind == "str":
        return rng.choice(["N/A", "n/a", "1", "high", "\ud800", "\udfff", "", "score", "\x00"])
    if kind == "null":
        return None
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "list":
        return [_random_json_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    if kind == "score":
        return {"score": _random_json_value(rng, 4)}
    names = ["score", "Quality", "Realism", "Detail", "Resolution", "Noise", "Physical Logic",
             "Feature Mapping", "Feature Matching", "Lighting", "\ud800", ""]
    return {rng.choice(names): _random_json_value(rng, depth + 1) for _ in range(rng.randint(0, 4))}


_TOKENS = ["{", "}", "[", "]", '"', ":", ",", " ", "\n", "score", '"score"', '"N/A"', "0", "1", "2", "1e999",
           "-1e999", "NaN", "Infinity", "-Infinity", "null", "true", '"\\ud800"', "\\ud800", "\ud800", "</think>",
           "<think>", "```json", '"Realism"', '"Physical Logic"', '"Resolution"', "\\", "9" * 50]


def _fuzz_texts(seed: int, n: int):
    rng = random.Random(seed)
    for _ in range(n):
        kind = rng.randrange(5)
        if kind == 0:  # token soup
            yield "".join(rng.choice(_TOKENS) for _ in range(rng.randint(0, 40)))
        elif kind == 1:  # any JSON value at top level, possibly after thinking or in a fence
            body = json.dumps(_random_json_value(rng), ensure_ascii=rng.random() < 0.5)
            yield rng.choice(["", "<think>x</think>", "```json\n"]) + body + rng.choice(["", "\n```", " trailing"])
        elif kind == 2:  # facet-shaped object with random values at the L2 and L3 levels
            l1 = rng.choice(L1_NAMES)
            pool = rng.choice([None, ["N/A", "n/a", " N/A "], ["N/A", "high", None], [0, 1, 2, "1", 1.0]])

            def facet():
                return {"score": rng.choice(pool)} if pool else _random_json_value(rng, 3)

            obj = {l2: (rng.random() < 0.2 and _random_json_value(rng)) or {l3: facet() for l3 in l3s}
                   for l2, l3s in TREE[l1].items()}
            yield json.dumps(rng.choice([obj, {l1: obj}]))
        elif kind == 3:  # deep nesting of either bracket, closed or not, somewhere in an answer
            depth = rng.choice([10, 900, 1100, 5000])
            opener = rng.choice(["[", '{"a":', '{"Realism": {"Noise": {"score": '])
            closer = {"[": "]", '{"a":': "}"}.get(opener, "}}}")
            nested = opener * depth + (closer * depth if rng.random() < 0.5 else "")
            yield rng.choice(["", "</think>", '{"Realism": {"Noise": '])+ nested + rng.choice(["", "}", "}}"])
        else:  # a valid answer mutated at one character
            text = list(json.dumps({"Realism": {"Physical Logic": {"score": 2}}, "Detail": {"Noise": {"score": 1}}}))
            text[rng.randrange(len(text))] = rng.choice(_TOKENS)
            yield "".join(text)


def test_fuzz_parse_never_raises_and_returns_a_known_status():
    seen = set()
    for i, text in enumerate(_fuzz_texts(20240601, 3000)):
        dim = L1_NAMES[i % len(L1_NAMES)]
        r = parse_generation(text, dim, truncated=i % 7 == 0)
        assert r.status in STATUSES, (text[:200], r)
        assert (r.error is not None) == (r.status == "parse_failure"), (text[:200], r)
        if r.status == "parse_failure" and r.scores is None:
            assert r.parsed is None
        d = r.as_dict()
        json.dumps(d)  # what the store writes
        image_scores_from_dicts({dim: d})
        seen.add(r.status)
    assert seen == STATUSES


# --- 2. no usable value at all is not "all N/A" --------------------------------------------------------


def test_every_value_invalid_is_a_parse_failure_not_all_na():
    text = '{"Realism":{"Physical Logic":{"score":"high"},"Material Texture":{"score":1.5}}}'
    r = parse_generation(text, "Real-world Fidelity")
    assert r.status == "parse_failure" and r.error == "no valid score values: 2 invalid"
    assert r.scores.l1 is None and r.scores.n_na == 0 and r.scores.n_scored == 0
    assert r.scores.invalid == [{"l2": "Realism", "l3": "Physical Logic", "value": "high"},
                                {"l2": "Realism", "l3": "Material Texture", "value": 1.5}]
    assert r.parsed == json.loads(text)  # kept for the audit


def test_invalid_and_na_without_any_score_is_a_parse_failure():
    r = parse_generation('{"Realism":{"Physical Logic":{"score":"N/A"},"Material Texture":{"score":null}}}', "Quality")
    assert (r.status, r.error, r.scores.n_na, len(r.scores.invalid)) == (
        "parse_failure", "no valid score values: 1 invalid, 1 N/A", 1, 1)


def test_all_na_needs_the_judge_to_say_na():
    r = parse_generation('{"Realism":{"Physical Logic":{"score":"N/A"},"Material Texture":{"score":"n/a"}}}', "Quality")
    assert (r.status, r.error, r.scores.n_na, r.scores.invalid) == ("all_na", None, 2, [])


def test_no_valid_scores_is_counted_as_a_parse_failure_downstream():
    bad = parse_generation('{"Realism":{"Physical Logic":{"score":"high"}}}', "Quality").as_dict()
    na = parse_generation('{"Realism":{"Physical Logic":{"score":"N/A"}}}', "Quality").as_dict()
    ok = parse_generation('{"Realism":{"Physical Logic":{"score":2}}}', "Quality").as_dict()
    images = [{"scores": image_scores_from_dicts({"Quality": d}), "dimensions": {"Quality": d}} for d in (bad, na, ok)]
    assert [i["scores"]["total"] for i in images] == [None, None, 100.0]
    bench = aggregate(images)
    assert bench.counts["Quality"] == {"requests": 3, "scored": 1, "parse_failures": 1, "all_na": 1, "errors": 0,
                                       "truncated": 0, "na": 1, "invalid": 1}
    assert bench.total == 100.0


# --- 3. shape repairs: upstream's numbers, with notes wherever upstream drops data ----------------------


def test_same_facet_under_two_l2s_keeps_the_last_and_notes_the_dropped_value():
    r = parse_generation('{"Detail":{"Noise":{"score":0}},"Realism":{"Noise":{"score":2}}}', "Quality")
    assert r.parsed == {"Detail": {"Noise": {"score": 2}}}  # upstream keeps the last
    assert r.scores.l3 == {"Detail": {"Noise": 100.0}} and r.scores.l1 == 100.0
    assert r.repairs == [
        "moved facet 'Noise' from 'Realism' to 'Detail'",
        "facet 'Noise' given twice: kept 'Noise' under 'Realism' (score 2), "
        "dropped 'Noise' under 'Detail' (score 0), as upstream keeps the last",
    ]


def test_feature_mapping_and_feature_matching_both_given_notes_the_dropped_one():
    r = parse_generation('{"Feature Matching":{"Feature Matching":{"score":0},"Feature Mapping":{"score":2}}}',
                         "Creative Generation")
    assert r.parsed == {"Feature Matching": {"Feature Matching": {"score": 2}}} and r.scores.l1 == 100.0
    assert r.repairs == [
        "renamed facet 'Feature Mapping' to 'Feature Matching'",
        "facet 'Feature Matching' given twice: kept 'Feature Mapping' under 'Feature Matching' (score 2), "
        "dropped 'Feature Matching' under 'Feature Matching' (score 0), as upstream keeps the last",
    ]


def test_flat_alias_collision_is_noted_too():
    r = parse_generation('{"Feature Mapping":{"score":1},"Feature Matching":{"score":"N/A"}}', "Creative Generation")
    assert r.parsed == {"Feature Matching": {"Feature Matching": {"score": "N/A"}}} and r.status == "all_na"
    assert r.repairs[-1] == ("facet 'Feature Matching' given twice: kept 'Feature Matching' (score 'N/A'), "
                             "dropped 'Feature Mapping' (score 1), as upstream keeps the last")


def test_single_facet_l2_given_as_a_score_becomes_its_facet():
    r = parse_generation('{"Realism":{"Physical Logic":{"score":2}},"Resolution":{"score":0}}', "Quality")
    assert r.parsed == {"Realism": {"Physical Logic": {"score": 2}}, "Resolution": {"Resolution": {"score": 0}}}
    assert r.scores.l3 == {"Realism": {"Physical Logic": 100.0}, "Resolution": {"Resolution": 0.0}}
    assert r.scores.l1 == 50.0 and r.unknown_facets == [] and r.scores.invalid == []
    assert r.repairs == ["read 'Resolution': {'score': ...} as its single facet 'Resolution'"]


def test_single_facet_l2_with_a_reason_and_a_differently_named_facet():
    r = parse_generation('{"Color Harmony":{"Color Harmony":{"score":2}},"Lighting":{"score":1,"reason":"flat light"}}',
                         "Aesthetics")
    assert r.parsed["Lighting"] == {"Lighting & Atmosphere": {"score": 1, "reason": "flat light"}}
    assert r.scores.l2 == {"Color Harmony": 100.0, "Lighting": 60.0} and r.scores.invalid == []
    assert r.unknown_facets == [] and r.scores.l1 == 80.0


def test_single_facet_l2_score_stays_upstream_shaped_when_another_facet_lands_there():
    # Upstream averages the moved facet (2) with the facet it calls "score" (0); so does pixeljury.
    r = parse_generation('{"Realism":{"Resolution":{"score":2}},"Resolution":{"score":0}}', "Quality")
    assert r.parsed == {"Resolution": {"Resolution": {"score": 2}, "score": 0}}
    assert r.scores.l2 == {"Resolution": 50.0} and r.unknown_facets == ["score"]
    assert r.repairs == ["moved facet 'Resolution' from 'Realism' to 'Resolution'",
                         "'Resolution' holds a score, not facet scores; kept as a facet named 'score', as upstream"]


def test_multi_facet_l2_given_as_a_score_is_kept_as_upstream_with_a_note():
    r = parse_generation('{"Detail":{"Noise":{"score":2}},"Realism":{"score":1}}', "Quality")
    assert r.parsed == {"Detail": {"Noise": {"score": 2}}, "Realism": {"score": 1}}
    assert r.scores.l2 == {"Detail": 100.0, "Realism": 60.0} and r.scores.l1 == 80.0
    assert r.unknown_facets == ["score"]
    assert r.repairs == ["'Realism' holds a score, not facet scores; kept as a facet named 'score', as upstream"]


def test_mixed_answer_starting_flat_does_not_score_the_nested_l2_and_says_so():
    r = parse_generation('{"Physical Logic":{"score":2},"Detail":{"Noise":{"score":0}}}', "Quality")
    # Upstream takes the flat branch and reads the "Detail" object as a facet without a score.
    assert r.parsed == {"Realism": {"Physical Logic": {"score": 2}}, "Detail": {"Detail": {"Noise": {"score": 0}}}}
    assert r.scores.l1 == 100.0 and r.scores.l2 == {"Realism": 100.0, "Detail": None}
    assert r.scores.invalid == [{"l2": "Detail", "l3": "Detail", "value": None}]
    assert r.unknown_facets == ["Detail"]
    assert r.repairs == [
        "regrouped flat facet scores under their L2",
        "'Detail' holds an object without a score in a flat answer; as upstream, it is not scored and its "
        "contents are lost: {'Noise': {'score': 0}}",
    ]


def test_mixed_answer_starting_nested_scores_a_flat_facet_under_its_own_key_as_upstream():
    r = parse_generation('{"Detail":{"Noise":{"score":0}},"Physical Logic":{"score":2}}', "Quality")
    assert r.parsed == {"Detail": {"Noise": {"score": 0}}, "Physical Logic": {"score": 2}}
    assert r.scores.l2 == {"Detail": 0.0, "Physical Logic": 100.0} and r.scores.l1 == 50.0
    assert r.repairs == ["'Physical Logic' holds a score, not facet scores; kept as a facet named 'score', as upstream"]


def test_results_parsed_by_an_older_parser_are_read_again_from_their_raw_text():
    from pixeljury.protocols.qjudger import PARSER_VERSION, current_result

    raw = '<think>hm</think>{"Realism": {"Physical Logic": {"score": "high"}, "Material Texture": {"score": 1.5}}}'
    old = {"status": "all_na", "n_na": 0, "invalid": []}  # what version 1 stored for it (no version field)
    again = current_result(old, raw, None, "stop", "Real-world Fidelity")
    assert again["parser_version"] == PARSER_VERSION and again["status"] == "parse_failure"
    assert again["error"].startswith("no valid score values: 2 invalid")
    fresh = {"parser_version": PARSER_VERSION, "status": "scored"}
    assert current_result(fresh, raw, None, "stop", "Real-world Fidelity") is fresh
    truncated = current_result(None, '<think>still thinking', None, "length", "Quality")
    assert truncated["status"] == "parse_failure" and truncated["truncated"] is True
