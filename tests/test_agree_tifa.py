"""Acceptance: `pixeljury agree` on TIFA v1.0 human ratings, every metric column in one call."""

from __future__ import annotations

import json

from _analysis_helpers import TIFA, assert_agreement_csv, assert_agrees_with_scipy, needs_tifa, run_cli

METRICS = {"meteor", "bleu", "rouge", "spice", "clipscore_vitb32", "tifa_vilt", "tifa_git-large",
           "tifa_ofa-large", "tifa_blip2-flant5xl", "tifa_mplug-large"}


@needs_tifa
def test_agree_on_tifa_matches_scipy_for_every_metric(tmp_path):
    out_json, out_csv = tmp_path / "agree.json", tmp_path / "agree.csv"
    proc = run_cli("agree", str(TIFA), "--human-col", "human_avg", "--bootstrap", "200", "--seed", "1",
                   "--json", str(out_json), "--csv", str(out_csv))
    assert "tifa_mplug-large" in proc.stdout
    result = json.loads(out_json.read_text())
    rows = {r["column"]: r for r in result["results"]}
    assert set(rows) == METRICS  # human_avg, ids and the list-valued human_scores are not metric columns

    assert_agrees_with_scipy(rows, list(json.loads(TIFA.read_text()).values()), "human_avg", n=800)
    # Sorted by SRCC, best first; TIFA with mPLUG is the best metric in the TIFA paper too.
    srccs = [r["srcc"] for r in result["results"]]
    assert srccs == sorted(srccs, reverse=True)
    assert result["results"][0]["column"] == "tifa_mplug-large"
    assert_agreement_csv(out_csv, len(METRICS))


@needs_tifa
def test_sort_by_another_statistic_and_pairs_within_prompt(tmp_path):
    out = tmp_path / "a.json"
    run_cli("agree", str(TIFA), "-H", "human_avg", "-c", "clipscore_vitb32,tifa_vilt,bleu", "--bootstrap", "0",
            "--sort", "plcc", "--ascending", "--pairs-within", "text_id", "--json", str(out))
    rows = json.loads(out.read_text())["results"]
    assert [r["column"] for r in rows] == sorted((r["column"] for r in rows), key=lambda c: next(x["plcc"] for x in rows if x["column"] == c))
    assert all(0.0 <= r["pairwise_acc"] <= 1.0 for r in rows)
    assert all(r["ci"] == {} for r in rows)


@needs_tifa
def test_unknown_column_is_a_clear_error():
    proc = run_cli("agree", str(TIFA), "-H", "human_average", "--bootstrap", "0", check=False)
    assert proc.returncode == 2
    assert "no column 'human_average'" in proc.stderr
