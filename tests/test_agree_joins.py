"""Joining a scores file with a human file: the human column always comes from the human file, and a
judge column of the same name is correlated against it, never against itself."""

from __future__ import annotations

import json

import pytest
from _analysis_helpers import agree_results
from scipy import stats

from pixeljury.analysis.tables import TableError, join, load_table

IDS = ["a", "b", "c", "d", "e"]
JUDGE = [1.0, 2.0, 3.0, 4.0, 5.0]
PEOPLE = [5.0, 4.0, 3.0, 1.0, 2.0]  # almost the reverse of the judge
OTHER = [2.0, 1.0, 3.0, 5.0, 4.0]


def _write_same_named(tmp_path):
    """Judge and people both call their column 'rating'."""
    scores, human = tmp_path / "scores.csv", tmp_path / "human.csv"
    scores.write_text("id,rating,other\n" + "".join(f"{i},{j},{o}\n" for i, j, o in zip(IDS, JUDGE, OTHER)))
    human.write_text("id,rating\n" + "".join(f"{i},{p}\n" for i, p in zip(IDS, PEOPLE)))
    return scores, human


def test_same_named_judge_column_is_correlated_against_the_human_file(tmp_path):
    scores, human = _write_same_named(tmp_path)
    rows, proc = agree_results(tmp_path / "a.json", str(scores), "--human", str(human), "--key", "id",
                               "-H", "rating", "--bootstrap", "0")
    expected = stats.spearmanr(JUDGE, PEOPLE).statistic
    assert expected == pytest.approx(-0.9)
    # The judge's 'rating' stays in the default selection and meets the people's 'rating'.
    assert set(rows) == {("rating", "sample"), ("other", "sample")}
    assert rows[("rating", "sample")]["srcc"] == pytest.approx(expected, abs=1e-12)
    assert rows[("rating", "sample")]["n"] == 5
    assert rows[("other", "sample")]["srcc"] == pytest.approx(stats.spearmanr(OTHER, PEOPLE).statistic, abs=1e-12)
    assert "'rating' is in both files" in proc.stdout


def test_explicit_same_named_column_is_judge_against_human(tmp_path):
    scores, human = _write_same_named(tmp_path)
    scores.write_text("id,rating\n" + "".join(f"{i},{j}\n" for i, j in zip(IDS, JUDGE)))
    human.write_text("id,rating\n" + "".join(f"{i},{p}\n" for i, p in zip(IDS, reversed(JUDGE))))
    rows, _ = agree_results(tmp_path / "a.json", str(scores), "--human", str(human), "--key", "id",
                            "-H", "rating", "-c", "rating", "--bootstrap", "0")
    assert rows[("rating", "sample")]["srcc"] == pytest.approx(-1.0)  # was +1.000: the judge against itself
    assert rows[("rating", "sample")]["plcc"] == pytest.approx(-1.0)


def test_human_column_missing_from_the_human_file_is_refused(tmp_path):
    scores, human = _write_same_named(tmp_path)
    human.write_text("id,people\n" + "".join(f"{i},{p}\n" for i, p in zip(IDS, PEOPLE)))
    rows, proc = agree_results(tmp_path / "a.json", str(scores), "--human", str(human), "--key", "id",
                               "-H", "rating", "-c", "other", "--bootstrap", "0", check=False)
    assert proc.returncode == 2 and rows == {}
    message = " ".join(proc.stderr.split())
    assert f"{human} has no column 'rating'" in message and "people" in message


def test_score_column_only_in_the_human_file_is_refused(tmp_path):
    scores, human = _write_same_named(tmp_path)
    human.write_text("id,rating,people2\n" + "".join(f"{i},{p},{p}\n" for i, p in zip(IDS, PEOPLE)))
    _, proc = agree_results(tmp_path / "a.json", str(scores), "--human", str(human), "--key", "id",
                            "-H", "rating", "-c", "people2", "--bootstrap", "0", check=False)
    assert proc.returncode == 2
    assert "'people2'" in proc.stderr and "human file" in " ".join(proc.stderr.split())


def test_human_column_among_the_score_columns_is_refused(tmp_path):
    table = tmp_path / "t.csv"
    table.write_text("score,human\n1,2\n2,1\n3,3\n")
    _, proc = agree_results(tmp_path / "a.json", str(table), "-H", "human", "-c", "score,human", "--bootstrap", "0",
                            check=False)
    assert proc.returncode == 2 and "'human'" in proc.stderr


def test_model_level_separate_human_file_with_a_same_named_column(tmp_path):
    """Grouped on its own, the human file still supplies the human column; the judge's is a score column."""
    scores, human = tmp_path / "s.csv", tmp_path / "h.json"
    models = ["M1", "M2", "M3", "M4"]
    scores.write_text("model,expert\n" + "".join(f"{m},{v}\n{m},{v + 1}\n" for m, v in zip(models, [1, 2, 3, 4])))
    human.write_text(json.dumps([{"model": m, "expert": v} for m, v in zip(models, [4, 3, 2, 1])]))
    rows, _ = agree_results(tmp_path / "a.json", str(scores), "--human", str(human), "-H", "expert",
                            "--level", "model", "--bootstrap", "0")
    assert set(rows) == {("expert", "model")}
    assert rows[("expert", "model")]["srcc"] == pytest.approx(-1.0)


def test_join_renames_every_colliding_human_column_the_same_way(tmp_path):
    # JSON records need not share keys: 'x' is absent from the first score row, but the human 'x'
    # must still land under one name in every joined row.
    (tmp_path / "s.jsonl").write_text('{"id": 1}\n{"id": 2, "x": 5}\n')
    (tmp_path / "h.jsonl").write_text('{"id": 1, "x": 10}\n{"id": 2, "x": 20}\n')
    joined, _, _ = join(load_table(tmp_path / "s.jsonl"), load_table(tmp_path / "h.jsonl"), score_key="id", human_key="id")
    human_x = joined.human_columns["x"]
    assert human_x != "x"
    assert [r.get(human_x) for r in joined.rows] == [10, 20]
    assert [r.get("x") for r in joined.rows] == [None, 5]


def test_join_refuses_a_prefixed_name_that_is_taken(tmp_path):
    (tmp_path / "s.csv").write_text("id,x,human:x\n1,1,1\n")
    (tmp_path / "h.csv").write_text("id,x\n1,2\n")
    with pytest.raises(TableError, match="human:x"):
        join(load_table(tmp_path / "s.csv"), load_table(tmp_path / "h.csv"), score_key="id", human_key="id")
