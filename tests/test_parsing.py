import pytest

from pixeljury.engines.base import Generation
from pixeljury.protocols.qjudger import extract_json, parse, parse_generation

GOOD = '{"Realism": {"Physical Logic": {"score": 2}, "Material Texture": {"score": 1}}, "Detail": {"Noise": {"score": 0}}}'


def test_thinking_present_takes_text_after_last_think_end():
    text = '<think>maybe {"Realism": {"Physical Logic": {"score": 0}}}</think>\n' + GOOD
    r = parse_generation("reasoning </think> more </think>" + GOOD, "Quality")
    assert r.status == "scored"
    r2 = parse_generation(text, "Quality")
    # Realism = mean(100, 60) = 80, Detail = 0 -> L1 = 40
    assert r2.scores.l2 == {"Realism": 80.0, "Detail": 0.0}
    assert r2.scores.l1 == pytest.approx(40.0)


def test_thinking_absent():
    r = parse_generation(GOOD, "Quality")
    assert r.status == "scored" and r.scores.l1 == pytest.approx(40.0) and r.repairs == []


def test_trailing_text_and_markdown_fences():
    r = parse_generation("</think>\n```json\n" + GOOD + "\n```\nHope this helps!", "Quality")
    assert r.status == "scored" and r.scores.l1 == pytest.approx(40.0)


def test_flat_output_is_regrouped_under_canonical_l2():
    flat = '{"Physical Logic": {"score": 2}, "Noise": {"score": 1}, "Resolution": {"score": "N/A"}}'
    r = parse_generation(flat, "Quality")
    assert r.parsed == {"Realism": {"Physical Logic": {"score": 2}}, "Detail": {"Noise": {"score": 1}},
                        "Resolution": {"Resolution": {"score": "N/A"}}}
    assert r.scores.l2 == {"Realism": 100.0, "Detail": 60.0, "Resolution": None}
    assert r.scores.l1 == pytest.approx(80.0)
    assert r.scores.n_na == 1


def test_l1_wrapped_output_is_unwrapped():
    r = parse_generation('{"Quality": ' + GOOD + "}", "Quality")
    assert r.status == "scored" and r.scores.l1 == pytest.approx(40.0)
    assert any("unwrapped" in note for note in r.repairs)


def test_misplaced_l3_moves_to_canonical_l2():
    obj = '{"Realism": {"Physical Logic": {"score": 2}, "Noise": {"score": 0}}}'
    r = parse_generation(obj, "Quality")
    assert r.parsed == {"Realism": {"Physical Logic": {"score": 2}}, "Detail": {"Noise": {"score": 0}}}
    assert r.scores.l1 == pytest.approx(50.0)


def test_feature_mapping_renamed_to_feature_matching():
    r = parse_generation('{"Feature Matching": {"Feature Mapping": {"score": 1}}}', "Creative Generation")
    assert r.parsed == {"Feature Matching": {"Feature Matching": {"score": 1}}}
    assert r.unknown_facets == [] and r.scores.l1 == 60.0


@pytest.mark.parametrize("value", ["high", 1.5, 3, None, True, [], "one"])
def test_invalid_values_are_counted_and_excluded(value):
    import json

    obj = {"Realism": {"Physical Logic": {"score": 2}, "Material Texture": {"score": value}}}
    r = parse_generation(json.dumps(obj), "Quality")
    assert r.scores.l2["Realism"] == 100.0  # the invalid facet does not drag the mean
    assert r.scores.invalid == [{"l2": "Realism", "l3": "Material Texture", "value": value}]
    assert r.scores.n_na == 0


@pytest.mark.parametrize("value,expected", [(0, 0.0), (1, 60.0), (2, 100.0), ("1", 60.0), (1.0, 60.0), ("2", 100.0)])
def test_accepted_score_forms(value, expected):
    import json

    r = parse_generation(json.dumps({"Resolution": {"Resolution": {"score": value}}}), "Quality")
    assert r.scores.l1 == expected


def test_all_na_dimension_is_not_a_score():
    r = parse_generation('{"Realism": {"Physical Logic": {"score": "N/A"}}, "Detail": {"Noise": {"score": "n/a"}}}',
                         "Quality")
    assert r.status == "all_na" and r.scores.l1 is None and r.scores.n_na == 2


def test_truncated_generation_is_flagged_and_unparseable_is_a_failure():
    gen = Generation("q", "<think>still thinking about the {", "length", completion_tokens=4096)
    r = parse(gen, "Quality")
    assert r.truncated and r.status == "parse_failure" and "max_new_tokens" in r.error and r.scores is None


def test_split_reasoning_is_joined_before_parsing():
    gen = Generation("q", GOOD, "stop", reasoning='thinking {"Realism": {"Physical Logic": {"score": 0}}}')
    assert parse(gen, "Quality").scores.l1 == pytest.approx(40.0)


@pytest.mark.parametrize("text", ["", "</think>", "no json here", "</think>[1, 2]", "{}", '{"a": 1'])
def test_unparseable_answers_are_failures_never_zero(text):
    r = parse_generation(text, "Quality")
    assert r.status == "parse_failure" and r.scores is None and r.error


def test_extract_json_prefers_whole_answer_then_outermost_object():
    assert extract_json('x {"a": {"b": 1}} y')[0] == {"a": {"b": 1}}
    assert extract_json('{"a": 1}')[0] == {"a": 1}
