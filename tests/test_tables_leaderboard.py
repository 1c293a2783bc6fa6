"""Score tables (formats, join, errors naming row and field) and the leaderboard."""

from __future__ import annotations

import json

import pytest
from _analysis_helpers import run_cli

from pixeljury.analysis import leaderboard as lb
from pixeljury.analysis.rundir import load_run
from pixeljury.analysis.tables import TableError, join, load_table, numeric_column, numeric_columns
from pixeljury.testing.rundir import FakeImage, write_run_dir


def test_formats_and_numeric_detection(tmp_path):
    (tmp_path / "a.csv").write_text("id,score,label\n1,0.5,x\n2,,y\n3,1.5,z\n")
    (tmp_path / "b.json").write_text(json.dumps({"k1": {"s": 1}, "k2": {"s": 2}}))
    (tmp_path / "c.jsonl").write_text('{"id": 1, "h": 3}\n{"id": 2, "h": 4}\n')
    a = load_table(tmp_path / "a.csv")
    assert numeric_column(a, "score") == [0.5, None, 1.5]
    assert numeric_columns(a, exclude={"id"}) == ["score"]
    b = load_table(tmp_path / "b.json")
    assert [r["key"] for r in b.rows] == ["k1", "k2"]  # an object of objects keeps its keys
    c = load_table(tmp_path / "c.jsonl")
    joined, left_only, right_only = join(a, c, score_key="id", human_key="id")
    assert [r["h"] for r in joined.rows] == [3, 4] and (left_only, right_only) == (1, 0)


def test_bad_values_and_keys_name_the_row_and_field(tmp_path):
    (tmp_path / "a.csv").write_text("id,score\n1,0.5\n2,high\n")
    with pytest.raises(TableError, match=r"row 1 field 'score': 'high' is not a number"):
        numeric_column(load_table(tmp_path / "a.csv"), "score")
    (tmp_path / "d.csv").write_text("id,score\n1,0.5\n1,0.7\n")
    with pytest.raises(TableError, match="rows 0 and 1 share the key id='1'"):
        join(load_table(tmp_path / "d.csv"), load_table(tmp_path / "a.csv"), score_key="id", human_key="id")
    (tmp_path / "e.csv").write_text("id,h\n9,1\n")
    with pytest.raises(TableError, match="no keys in common"):
        join(load_table(tmp_path / "a.csv"), load_table(tmp_path / "e.csv"), score_key="id", human_key="id")


def _tiny_run(tmp_path):
    items = [
        # A: Quality facets 2,2 -> 100; Quality 1,1 -> 60 and Alignment 0 -> 0 => totals 100 and 30.
        FakeImage("A", "p0", None, {"Quality": {"Noise": 2, "Resolution": 2}}),
        FakeImage("A", "p1", None, {"Quality": {"Noise": 1, "Resolution": 1}, "Alignment": {"Color": 0}}),
        # B: one scored dimension (0 and N/A -> 0) and one unreadable answer.
        FakeImage("B", "p0", None, {"Quality": {"Noise": 0, "Resolution": "N/A"}, "Alignment": "<think>hm</think>no json"}),
        FakeImage("B", "p1", None, {}, status="row_error", errors=["image missing"]),
    ]
    return write_run_dir(tmp_path / "run", items)


def test_leaderboard_numbers_by_hand(tmp_path):
    run = load_run(_tiny_run(tmp_path))
    a, b = lb.build([run], n_boot=200, seed=0)
    assert (a.model, a.rank, a.total) == ("A", 1, pytest.approx(65.0))
    assert a.level1 == {"Quality": pytest.approx(80.0), "Alignment": pytest.approx(0.0)}
    assert a.total_ci is not None and a.total_ci[0] <= 65.0 <= a.total_ci[1]
    assert (b.model, b.rank, b.total) == ("B", 2, pytest.approx(0.0))
    assert (b.n_images, b.n_images_scored, b.requests, b.parse_failures) == (2, 1, 2, 1)
    assert b.parse_failure_rate == pytest.approx(0.5) and b.na_rate == pytest.approx(0.5)
    md = lb.to_markdown([a, b])
    assert "| 1 | A | 65.00 |" in md and "| 2 | B | 0.00 |" in md
    assert lb.to_csv([a, b]).splitlines()[0].startswith("rank,model,total,total_ci_low,total_ci_high,Quality,Alignment")


def test_leaderboard_cli_and_same_model_in_two_runs(tmp_path):
    first = _tiny_run(tmp_path)
    second = write_run_dir(tmp_path / "run2", [FakeImage("A", "p0", None, {"Quality": {"Noise": 1}})])
    out = tmp_path / "lb.json"
    proc = run_cli("leaderboard", str(first), str(second), "--json", str(out), "--md", str(tmp_path / "lb.md"),
                   "--csv", str(tmp_path / "lb.csv"), "--bootstrap", "50")
    assert "Leaderboard" in proc.stdout
    models = [m["model"] for m in json.loads(out.read_text())["models"]]
    assert models == ["A [run]", "A [run2]", "B"]  # 65, 60, 0


def test_run_dir_as_agreement_table(tmp_path):
    table = load_table(_tiny_run(tmp_path))
    assert table.score_columns[:3] == ["total", "Quality", "Quality/Detail"]
    assert numeric_column(table, "total") == [pytest.approx(100.0), pytest.approx(30.0), pytest.approx(0.0), None]
