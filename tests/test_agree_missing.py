"""Missing values are the same in every format: empty cells, JSON null, NaN, and the strings NaN / nan /
NA / N/A / None / null drop the row for that column, counted in n_dropped; the column stays selected."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _analysis_helpers import agree_results
from scipy import stats

from pixeljury.analysis.tables import load_table, numeric_column, numeric_columns, to_number

# None marks a missing value; each format writes it in its own ways.
JUDGE = [0.1, 0.5, None, 0.3, None, 0.9, None, 0.7, None, 0.2, 0.4, 0.6]
HUMAN = [1.0, 3.0, 2.0, None, 4.0, 5.0, 3.0, None, 2.0, 1.0, 2.0, 4.0]
EXTRA = [float(i) for i in range(len(JUDGE))]  # complete, so it shows the other column is not lost
CSV_TOKENS = ["NaN", "nan", "NA", "None", "", "  ", "N/A", "null"]
JSON_TOKENS = [None, "NaN", "NA", "None", "", float("nan"), "nan", "null"]  # float nan: JSON's NaN token


def _cells(values, tokens, start):
    return [tokens[(start + i) % len(tokens)] if v is None else v for i, v in enumerate(values)]


def _records(tokens):
    return [{"id": i, "judge": j, "human": h, "extra": e}
            for i, (j, h, e) in enumerate(zip(_cells(JUDGE, tokens, 0), _cells(HUMAN, tokens, 3), EXTRA))]


def _write(tmp_path, fmt):
    path = tmp_path / f"t.{fmt}"
    if fmt == "csv":
        recs = _records(CSV_TOKENS)
        path.write_text("id,judge,human,extra\n" + "".join(f"{r['id']},{r['judge']},{r['human']},{r['extra']}\n" for r in recs))
    elif fmt == "json":
        path.write_text(json.dumps(_records(JSON_TOKENS)))
    elif fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in _records(JSON_TOKENS)))
    else:  # Parquet: a float column with null and NaN, a text column with the strings
        judge = [float("nan") if v is None and i % 2 else v for i, v in enumerate(JUDGE)]
        human = [str(v) if v is not None else ("NA", "None", "NaN")[i % 3] for i, v in enumerate(HUMAN)]
        pq.write_table(pa.table({"id": list(range(len(JUDGE))), "judge": pa.array(judge, pa.float64()),
                                 "human": pa.array(human, pa.string()), "extra": EXTRA}), path)
    return path


def _complete():
    pairs = [(j, h) for j, h in zip(JUDGE, HUMAN) if j is not None and h is not None]
    return [p[0] for p in pairs], [p[1] for p in pairs]


@pytest.mark.parametrize("token", ["NaN", "nan", "NA", "na", "N/A", "None", "null", "", "  "])
def test_missing_value_strings_are_missing(token):
    assert to_number(token) is None


@pytest.mark.parametrize("value", ["inf", "-Infinity", float("inf")])
def test_infinite_values_are_still_errors(value):
    with pytest.raises(ValueError, match="not a finite number"):
        to_number(value)


@pytest.mark.parametrize("fmt", ["csv", "json", "jsonl", "parquet"])
def test_every_format_reads_the_same_missing_values(tmp_path, fmt):
    table = load_table(_write(tmp_path, fmt))
    assert numeric_columns(table, exclude={"id", "human"}) == ["judge", "extra"]
    assert numeric_column(table, "judge") == JUDGE
    assert numeric_column(table, "human") == HUMAN


@pytest.mark.parametrize("fmt", ["csv", "json", "jsonl", "parquet"])
def test_agree_drops_and_counts_missing_rows_in_every_format(tmp_path, fmt):
    rows, _ = agree_results(tmp_path / "a.json", str(_write(tmp_path, fmt)), "-H", "human", "--exclude", "id",
                            "--bootstrap", "0")
    assert set(rows) == {("judge", "sample"), ("extra", "sample")}
    judge, human = _complete()
    row = rows[("judge", "sample")]
    assert (row["n"], row["n_dropped"]) == (len(judge), len(JUDGE) - len(judge)) == (6, 6)
    assert row["srcc"] == pytest.approx(stats.spearmanr(judge, human).statistic, abs=1e-12)
    assert row["plcc"] == pytest.approx(stats.pearsonr(judge, human).statistic, abs=1e-12)
    extra = rows[("extra", "sample")]
    assert (extra["n"], extra["n_dropped"]) == (10, 2)  # only the rows without a human rating


def test_a_mostly_numeric_column_with_a_word_is_reported_not_silently_skipped(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("judge,human,label\n1,2,x\n2,1,y\nhigh,3,z\n4,4,w\n")
    rows, proc = agree_results(tmp_path / "a.json", str(path), "-H", "human", "--bootstrap", "0", check=False)
    assert proc.returncode == 2 and rows == {}  # no column left: judge holds a word
    text = " ".join((proc.stdout + proc.stderr).split())
    assert "'judge'" in text and "row 2" in text and "'high'" in text
