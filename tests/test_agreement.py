"""Agreement statistics against hand-computed cases and scipy."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from pixeljury.analysis.agreement import (
    AgreementError,
    agreement,
    bootstrap,
    fit_logistic4,
    logistic4,
    pairwise_accuracy,
    resample,
)


def test_pairwise_accuracy_hand_counted_without_calibration_gain():
    # Pairs of [1,2,3,4] vs [1,2,2,4]: (2,3) humans tie, the metric does not -> T_h; the other 5 agree.
    pa = pairwise_accuracy([1, 2, 3, 4], [1, 2, 2, 4])
    assert (pa.concordant, pa.discordant, pa.ties_human, pa.ties_metric, pa.ties_both) == (5, 0, 1, 0, 0)
    assert pa.accuracy == pytest.approx(5 / 6)
    assert pa.epsilon == 0.0  # eps = 1 would make (1,2) and (3,4) metric ties too: 4/6


def test_tie_calibration_picks_the_threshold_that_turns_a_near_tie_into_a_tie():
    metric, human = [1.0, 1.1, 3.0, 4.0], [1, 1, 3, 4]
    assert pairwise_accuracy(metric, human, calibrate=False).accuracy == pytest.approx(5 / 6)
    pa = pairwise_accuracy(metric, human)
    assert pa.accuracy == pytest.approx(1.0)
    assert pa.epsilon == pytest.approx(0.1)
    assert pa.ties_both == 1


def test_discordant_pairs_and_groups():
    # Reversed order: all 3 pairs discordant.
    assert pairwise_accuracy([3, 2, 1], [1, 2, 3], calibrate=False).accuracy == 0.0
    # Within groups only: group a has one concordant pair, group b one discordant pair; cross pairs ignored.
    pa = pairwise_accuracy([1, 2, 5, 4], [1, 2, 3, 4], groups=["a", "a", "b", "b"], calibrate=False)
    assert pa.n_pairs == 2 and pa.concordant == 1 and pa.discordant == 1


def test_statistics_equal_scipy():
    rng = np.random.default_rng(7)
    human = rng.integers(1, 6, size=60).astype(float)
    metric = human + rng.normal(0, 1.5, size=60)
    res = agreement(metric, human)
    assert res.values["srcc"] == pytest.approx(stats.spearmanr(metric, human).statistic)
    assert res.values["srcc_p"] == pytest.approx(stats.spearmanr(metric, human).pvalue)
    assert res.values["krcc"] == pytest.approx(stats.kendalltau(metric, human, variant="b").statistic)
    assert res.values["plcc"] == pytest.approx(stats.pearsonr(metric, human).statistic)
    assert res.values["ntire"] == pytest.approx((res.values["srcc"] + res.values["plcc"]) / 2)
    assert res.values["plcc_fitted"] >= res.values["plcc"] - 1e-9  # a fitted monotone map explains at least as much


def test_logistic_fit_recovers_a_known_curve():
    x = np.linspace(0, 10, 40)
    y = logistic4(x, 5.0, 1.0, 4.0, 1.5)
    b1, b2, b3, b4 = fit_logistic4(x, y)
    assert (b1, b2, b3, b4) == pytest.approx((5.0, 1.0, 4.0, 1.5), abs=1e-3)
    res = agreement(x, y)
    assert res.values["plcc_fitted"] == pytest.approx(1.0, abs=1e-9)
    assert res.values["plcc"] < 0.99  # the raw relation is not linear


def test_constant_input_gives_no_statistic_and_says_why():
    res = agreement([1, 1, 1, 1], [1, 2, 3, 4])
    assert res.values["srcc"] is None and "metric constant" in res.notes[0]
    with pytest.raises(AgreementError, match="at least 3"):
        agreement([1, 2], [1, 2])
    with pytest.raises(AgreementError, match="finite"):
        agreement([1, 2, float("nan")], [1, 2, 3])


def test_bootstrap_is_seeded_and_brackets_the_estimate():
    rng = np.random.default_rng(1)
    x = rng.normal(size=80)
    y = x + rng.normal(size=80)

    def draw(r):
        idx = resample(r, len(x))
        return {"srcc": float(stats.spearmanr(x[idx], y[idx]).statistic)}

    ci1, _ = bootstrap(draw, n_boot=200, seed=3)
    ci2, _ = bootstrap(draw, n_boot=200, seed=3)
    ci3, _ = bootstrap(draw, n_boot=200, seed=4)
    assert ci1 == ci2 and ci1 != ci3
    lo, hi = ci1["srcc"]
    assert lo < stats.spearmanr(x, y).statistic < hi


def test_logistic_needs_five_items():
    res = agreement([1, 2, 3, 4], [1, 3, 2, 4])
    assert res.values["plcc_fitted"] is None and "at least 5 items" in res.notes[0]
    assert res.values["srcc"] == pytest.approx(0.8)  # 1 - 6*2/(4*15)
