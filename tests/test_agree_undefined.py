"""A column with too few pairs is reported as undefined (named, with its n) and the others go on; the
screen table shows n, dropped rows and p-values, and promises CIs only when there are some."""

from __future__ import annotations

import pytest
from _analysis_helpers import agree_results, run_cli
from scipy import stats

from pixeljury.analysis.agreement import agreement

A = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
HUMAN = [2.0, 1.0, 4.0, 3.0, 6.0, 5.0]
B = [3.0, None, 1.0, None, None, None]  # two paired items only


def _cell(value):
    return "" if value is None else str(value)


def _write(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("a,b,human\n" + "".join(f"{a},{_cell(b)},{h}\n" for a, b, h in zip(A, B, HUMAN)))
    return path


def test_a_column_with_two_pairs_is_undefined_and_the_others_go_on(tmp_path):
    rows, proc = agree_results(tmp_path / "a.json", str(_write(tmp_path)), "-H", "human", "--bootstrap", "100")
    a, b = rows[("a", "sample")], rows[("b", "sample")]
    assert a["n"] == 6 and a["srcc"] == pytest.approx(stats.spearmanr(A, HUMAN).statistic, abs=1e-12)
    assert (b["n"], b["n_dropped"]) == (2, 4)
    assert b["srcc"] is None and b["plcc"] is None and b["ci"] == {}
    assert b["undefined"] == "only 2 paired items (need at least 3)" and a["undefined"] is None
    assert any("only 2 paired items (need at least 3)" in note for note in b["notes"])
    out = " ".join(proc.stdout.split())
    assert "b (sample): undefined: only 2 paired items (need at least 3)" in out


def test_when_every_column_is_undefined_the_command_fails_naming_them(tmp_path):
    _, proc = agree_results(tmp_path / "a.json", str(_write(tmp_path)), "-H", "human", "-c", "b", "--bootstrap", "0",
                            check=False)
    assert proc.returncode == 2
    assert "b (sample): only 2 paired items" in " ".join(proc.stderr.split())


def test_model_level_column_with_two_models_is_undefined(tmp_path):
    path = tmp_path / "t.csv"
    lines = ["model,a,b,human"]
    for k, model in enumerate(["M1", "M2", "M3", "M4"]):
        for j in range(2):
            b = "" if k >= 2 else k + j
            lines.append(f"{model},{k + j},{b},{2 * k + j}")
    path.write_text("\n".join(lines) + "\n")
    rows, _ = agree_results(tmp_path / "a.json", str(path), "-H", "human", "--level", "model", "--bootstrap", "0")
    assert rows[("a", "model")]["srcc"] == pytest.approx(1.0) and rows[("a", "model")]["n"] == 4
    b = rows[("b", "model")]
    assert b["n"] == 2 and b["srcc"] is None and b["n_dropped"] == 4
    assert any("only 2 models have both scores and human ratings (need 3)" in note for note in b["notes"])


def test_pairs_within_groups_of_one_leave_pairwise_accuracy_undefined_not_the_run():
    res = agreement([1, 2, 3], [1, 3, 2], groups=["p1", "p2", "p3"])
    assert res.values["pairwise_acc"] is None and res.values["pairwise_eps"] is None
    assert res.values["srcc"] == pytest.approx(stats.spearmanr([1, 2, 3], [1, 3, 2]).statistic)
    assert any("no pairs" in note for note in res.notes)


def _p(value: float) -> str:
    return f"{value:.3f}" if value >= 0.001 else f"{value:.1e}"


def test_screen_table_shows_n_dropped_and_p_values_and_no_ci_title_without_bootstrap(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("a,human\n" + "".join(f"{a},{h}\n" for a, h in zip(A, HUMAN)) + ",3\n")
    proc = run_cli("agree", str(path), "-H", "human", "--bootstrap", "0")
    lines = proc.stdout.splitlines()
    assert not any("CI" in line or "bootstrap" in line for line in lines[:3]), lines[:3]
    header = next(line for line in lines if "SRCC" in line)
    assert "dropped" in header and "SRCC p" in header and "KRCC p" in header and "PLCC p" in header
    cells = next(line.split() for line in lines if line.split()[:1] == ["a"])
    srcc, krcc, plcc = stats.spearmanr(A, HUMAN), stats.kendalltau(A, HUMAN), stats.pearsonr(A, HUMAN)
    assert cells[:4] == ["a", "sample", "6", "1"]
    assert f"{srcc.statistic:.3f}" in cells and _p(srcc.pvalue) in cells
    assert _p(krcc.pvalue) in cells and _p(plcc.pvalue) in cells


def test_screen_table_title_names_the_intervals_when_there_are_some(tmp_path):
    proc = run_cli("agree", str(_write(tmp_path)), "-H", "human", "-c", "a", "--bootstrap", "50", "--confidence", "0.9")
    assert "90% bootstrap CIs" in proc.stdout
