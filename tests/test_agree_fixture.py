"""`pixeljury agree` on a TIFA-shaped human-rating file made here (tests/fixtures/human_ratings_fixture.py):
the same checks as the TIFA acceptance test (tests/test_agree_tifa.py, which needs ../shared), on in-repo data."""

from __future__ import annotations

import json
import sys

import pytest
from _analysis_helpers import assert_agreement_csv, assert_agrees_with_scipy, run_cli

from pj_testpaths import FIXTURES

sys.path.insert(0, str(FIXTURES))
from human_ratings_fixture import METRIC_COLUMNS, tifa_like_records, write_tifa_like  # noqa: E402

sys.path.remove(str(FIXTURES))


@pytest.fixture(scope="module")
def ratings(tmp_path_factory):
    return write_tifa_like(tmp_path_factory.mktemp("human") / "ratings.json")


def test_agree_matches_scipy_for_every_metric_column(ratings, tmp_path):
    out_json, out_csv = tmp_path / "agree.json", tmp_path / "agree.csv"
    proc = run_cli("agree", str(ratings), "--human-col", "human_avg", "--bootstrap", "200", "--seed", "1",
                   "--json", str(out_json), "--csv", str(out_csv))
    assert "reversed" in proc.stdout
    result = json.loads(out_json.read_text())
    rows = {r["column"]: r for r in result["results"]}
    assert set(rows) == set(METRIC_COLUMNS)  # human_avg, text columns and the list human_scores are not metrics

    assert_agrees_with_scipy(rows, list(tifa_like_records().values()), "human_avg", n=48)
    # Sorted by SRCC, best first: the construction fixes the order.
    assert [r["column"] for r in result["results"]] == ["close", "coarse", "loose", "reversed"]
    assert rows["reversed"]["srcc"] < -0.8 < 0.9 < rows["close"]["srcc"]
    assert_agreement_csv(out_csv, len(METRIC_COLUMNS))


def test_sort_by_another_statistic_and_pairs_within_prompt(ratings, tmp_path):
    out = tmp_path / "a.json"
    run_cli("agree", str(ratings), "-H", "human_avg", "-c", "close,loose,reversed", "--bootstrap", "0",
            "--sort", "plcc", "--ascending", "--pairs-within", "text_id", "--json", str(out))
    rows = json.loads(out.read_text())["results"]
    assert [r["column"] for r in rows] == ["reversed", "loose", "close"]
    plccs = [r["plcc"] for r in rows]
    assert plccs == sorted(plccs)
    assert all(0.0 <= r["pairwise_acc"] <= 1.0 for r in rows)
    assert rows[2]["pairwise_acc"] > rows[0]["pairwise_acc"]  # close agrees with people within a prompt, reversed not
    assert all(r["ci"] == {} for r in rows)


def test_unknown_column_is_a_clear_error(ratings):
    proc = run_cli("agree", str(ratings), "-H", "human_average", "--bootstrap", "0", check=False)
    assert proc.returncode == 2
    assert "no column 'human_average'" in proc.stderr
