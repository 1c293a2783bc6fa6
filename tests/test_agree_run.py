"""The agreement policy as one library call (analysis.agree.run_agreement): levels, the sample level's
bootstrap unit when both levels run, sorting per level, the join notes, the JSON meta and the
"no column gave a statistic" verdict, checked by value."""

from __future__ import annotations

import pytest
from scipy import stats

from pixeljury.analysis import agree as ag
from pixeljury.analysis.agreement import AgreementError
from pixeljury.analysis.tables import Table

HUMAN = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]
GOOD = [1.1, 2.3, 2.9, 4.2, 5.1, 5.8, 7.3, 8.0]  # same order as the humans
NOISY = [3.0, 1.0, 2.0, 5.0, 4.0, 8.0, 6.0, 7.0]
MODELS = ["a", "a", "b", "b", "c", "c", "d", "d"]


def _table(**extra) -> Table:
    rows = [{"item": str(i), "model": MODELS[i], "human": HUMAN[i], "good": GOOD[i], "noisy": NOISY[i],
             **{k: v[i] for k, v in extra.items()}} for i in range(len(HUMAN))]
    return Table("scores.csv", rows, list(rows[0]))


def test_both_levels_sorted_per_level_with_the_values_of_scipy():
    options = ag.AgreeOptions(human_column="human", n_boot=0)
    run = ag.run_agreement(_table(), None, options, ["sample", "model"], columns=["noisy", "good"])
    # model means of both columns rank the four models as the humans do: a tie keeps the columns' order
    assert [(r.column, r.level) for r in run.rows] == [("good", "sample"), ("noisy", "sample"),
                                                        ("noisy", "model"), ("good", "model")]
    by = {(r.column, r.level): r for r in run.rows}
    assert by["noisy", "model"].result.values["srcc"] == by["good", "model"].result.values["srcc"] == pytest.approx(1.0)
    assert by["good", "sample"].result.values["srcc"] == pytest.approx(1.0)
    assert by["noisy", "sample"].result.values["srcc"] == pytest.approx(stats.spearmanr(NOISY, HUMAN)[0])
    means = lambda v: [(v[i] + v[i + 1]) / 2 for i in range(0, 8, 2)]  # noqa: E731
    assert by["noisy", "model"].result.values["plcc"] == pytest.approx(stats.pearsonr(means(NOISY), means(HUMAN))[0])
    assert by["good", "model"].groups == ["a", "b", "c", "d"] and by["good", "sample"].result.n == 8
    assert run.any_defined and run.notes == []
    assert run.meta == {"scores": "scores.csv", "human": None, "human_column": "human", "bootstrap": 0, "seed": 0,
                        "confidence": 0.95, "resample": "auto", "notes": []}
    ascending = ag.run_agreement(_table(), None, options, ["sample"], columns=["noisy", "good"], sort="srcc",
                                 descending=False)
    assert [r.column for r in ascending.rows] == ["noisy", "good"]


def test_models_resampled_at_model_level_while_the_sample_level_redraws_items():
    options = ag.AgreeOptions(human_column="human", n_boot=20, resample="models")
    run = ag.run_agreement(_table(), None, options, ["sample", "model"], columns=["good"])
    assert [(r.level, r.resample) for r in run.rows] == [("sample", "items"), ("model", "models")]
    assert options.resample == "models" and options.level == "sample"  # the caller's options are left alone
    assert run.meta["resample"] == "models" and run.meta["bootstrap"] == 20
    lo, hi = run.rows[0].result.ci["srcc"]
    assert lo <= run.rows[0].result.values["srcc"] <= hi
    with pytest.raises(AgreementError, match="only items can be resampled"):
        ag.run_agreement(_table(), None, options, ["sample"], columns=["good"])


def test_a_human_file_is_joined_and_the_join_is_noted():
    scores = _table()
    for row in scores.rows:
        del row["human"]
    scores.columns.remove("human")
    human = Table("humans.csv", [{"item": str(i), "rating": HUMAN[i]} for i in range(6)], ["item", "rating"])
    run = ag.run_agreement(scores, human, ag.AgreeOptions(human_column="rating", n_boot=0), ["sample"],
                           columns=["good"], key="item")
    assert run.notes == ["joined 6 rows; 2 score rows and 0 human rows had no partner"]
    assert run.rows[0].result.n == 6 and run.meta["human"] == "humans.csv" and run.meta["notes"] == run.notes


def test_no_defined_statistic_is_reported_with_every_reason():
    sparse = [1.0, None, None, None, None, None, None, 2.0]
    run = ag.run_agreement(_table(sparse=sparse), None, ag.AgreeOptions(human_column="human", n_boot=0), ["sample"],
                           columns=["sparse"])
    assert not run.any_defined
    assert run.undefined_message() == ("no column gave a statistic: sparse (sample): only 2 paired items "
                                       "(need at least 3)")
    with pytest.raises(AgreementError, match="cannot sort by 'nope'"):
        ag.run_agreement(_table(), None, ag.AgreeOptions(human_column="human", n_boot=0), ["sample"],
                         columns=["good"], sort="nope")
