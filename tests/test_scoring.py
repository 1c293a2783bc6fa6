import pytest

from pixeljury.scoring import aggregate, map_raw_score, mean


def rec(total, l1, l2=None, l3=None, dims=None):
    return {"scores": {"total": total, "level1": l1, "level2": l2 or {}, "level3": l3 or {}}, "dimensions": dims or {}}


def test_map_raw_score():
    assert map_raw_score(0) == (0.0, "score")
    assert map_raw_score(" N/a ") == (None, "na")
    assert map_raw_score(False) == (None, "invalid")
    assert map_raw_score(2.0) == (100.0, "score")
    assert map_raw_score(2.5) == (None, "invalid")


def test_bench_total_is_mean_of_image_totals_not_of_l1_columns():
    # Image A judged on Quality only (100); image B on Quality (0) and Alignment (60 -> total 30).
    a = rec(100.0, {"Quality": 100.0})
    b = rec(30.0, {"Quality": 0.0, "Alignment": 60.0})
    bench = aggregate([a, b])
    assert bench.l1 == {"Quality": 50.0, "Alignment": 60.0}
    assert bench.total == pytest.approx(65.0)  # (100 + 30) / 2
    assert mean(bench.l1.values()) == pytest.approx(55.0)  # what a column mean would wrongly give
    assert bench.n_images == 2 and bench.n_images_scored == 2


def test_hierarchy_hand_computed():
    from pixeljury.protocols.qjudger import parse_generation, image_scores_from_dicts

    q = parse_generation('{"Realism": {"Physical Logic": {"score": 2}, "Material Texture": {"score": 0}},'
                         ' "Detail": {"Noise": {"score": 1}, "Edge Clarity": {"score": "N/A"}}}', "Quality")
    a = parse_generation('{"Attributes": {"Color": {"score": 2}}}', "Alignment")
    f = parse_generation("garbage", "Aesthetics")
    scores = image_scores_from_dicts({"Quality": q.as_dict(), "Alignment": a.as_dict(), "Aesthetics": f.as_dict()})
    # Quality: Realism (100+0)/2 = 50, Detail 60 -> 55; Alignment 100; Aesthetics failed, excluded (not 0)
    assert scores["level1"] == {"Quality": 55.0, "Alignment": 100.0}
    assert scores["total"] == pytest.approx(77.5)
    assert scores["level3"]["Quality"]["Detail"] == {"Noise": 60.0, "Edge Clarity": None}


def test_bench_l2_l3_means_over_images_where_present_and_counts():
    a = rec(60.0, {"Quality": 60.0}, {"Quality": {"Detail": 60.0}}, {"Quality": {"Detail": {"Noise": 60.0}}},
            {"Quality": {"status": "scored", "n_na": 1, "invalid": [{"l2": "x", "l3": "y", "value": 5}]}})
    b = rec(None, {}, {}, {}, {"Quality": {"status": "parse_failure", "truncated": True}})
    c = rec(100.0, {"Quality": 100.0}, {"Quality": {"Detail": 100.0, "Realism": None}},
            {"Quality": {"Detail": {"Noise": 100.0}}}, {"Quality": {"status": "scored"}})
    bench = aggregate([a, b, c])
    assert bench.l2 == {"Quality": {"Detail": 80.0}}
    assert bench.l3 == {"Quality": {"Detail": {"Noise": 80.0}}}
    assert bench.total == 80.0 and bench.n_images == 3 and bench.n_images_scored == 2
    assert bench.counts["Quality"] == {"requests": 3, "scored": 2, "parse_failures": 1, "all_na": 0, "errors": 0,
                                       "truncated": 1, "na": 1, "invalid": 1}


def test_empty_aggregate():
    bench = aggregate([])
    assert bench.total is None and bench.l1 == {} and bench.n_images == 0
