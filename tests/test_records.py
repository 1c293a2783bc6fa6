"""The one typed path from results to tables: JudgedImage/DimensionResult, flat score columns, the
request tally behind every failure and N/A rate, image failures recognised by their store stage, and
the shared JSON-lines reader."""

from __future__ import annotations

import json

import pytest

from pixeljury.analysis import leaderboard as lb
from pixeljury.analysis.records import JudgedImage, Tally, flat_scores, level_columns, score_columns, tally, tally_by_dimension
from pixeljury.analysis.rundir import Run, RunDirError, load_run
from pixeljury.core.jsonl import JsonLineError, iter_json_lines
from pixeljury.runs.exports import _image_record, flat_image_row
from pixeljury.runs.store import FailureState, ResultStore


def _dim(status: str, n_scored: int = 0, n_na: int = 0, invalid: int = 0, **extra) -> dict:
    return {"status": status, "n_scored": n_scored, "n_na": n_na, "invalid": [{"value": "x"}] * invalid, **extra}


def _record(row: int, model: str, status: str = "ok", dims: dict | None = None, scores: dict | None = None) -> dict:
    return {"row": row, "model": model, "ID": row, "prompt": f"p{row}", "image_path": f"{row}.png",
            "image_abspath": f"/i/{row}.png", "image_sha256": "ab", "comparable": True, "status": status,
            "errors": [], "input": {}, "dimensions": dims or {}, "scores": scores or {"total": None}}


SCORES = {"total": 70.0, "level1": {"Quality": 80.0, "Extra": 1.0},
          "level2": {"Quality": {"Clarity": 80.0}}, "level3": {"Quality": {"Clarity": {"Sharpness": 100.0}}}}


def test_flat_scores_names_every_level_in_order_and_keeps_names_outside_the_taxonomy():
    assert list(flat_scores(SCORES).items()) == [("total", 70.0), ("Quality", 80.0), ("Extra", 1.0),
                                                 ("Quality/Clarity", 80.0), ("Quality/Clarity/Sharpness", 100.0)]
    assert flat_scores({}) == {"total": None}
    assert sorted(level_columns()) == sorted(score_columns()) and level_columns()[0] == score_columns()[0] == "total"


def test_judged_image_is_typed_and_only_scored_rows_have_scores():
    image = JudgedImage.from_dict(_record(3, 7, dims={"Quality": _dim("scored", 2, 1, 1, level1=60.0, truncated=True)},
                                          scores=SCORES))
    assert image.model == "7" and image.row == 3 and image.scored and image.total == 70.0
    q = image.dimensions["Quality"]
    assert (q.status, q.level1, q.n_scored, q.n_na, q.n_invalid, q.facets, q.truncated) == ("scored", 60.0, 2, 1, 1, 4, True)
    assert image.flat_scores()["Quality/Clarity/Sharpness"] == 100.0
    assert JudgedImage.from_dict(_record(4, "m", status="duplicate", scores=SCORES)).flat_scores() == {}


def test_tally_counts_requests_failures_and_na_once_for_everyone():
    images = [JudgedImage.from_dict(_record(0, "m", dims={"Quality": _dim("scored", 3, 1), "Alignment": _dim("parse_failure")})),
              JudgedImage.from_dict(_record(1, "m", dims={"Quality": _dim("all_na", 0, 4), "Alignment": _dim("error", error="x")})),
              JudgedImage.from_dict(_record(2, "m", dims={"Quality": _dim("scored", 2, 0, 2)}))]
    t = tally(images)
    assert (t.requests, t.scored, t.all_na, t.parse_failures, t.errors, t.na, t.facets) == (5, 2, 1, 1, 1, 5, 12)
    assert t.parse_failure_rate == pytest.approx(1 / 5) and t.na_rate == pytest.approx(5 / 12)
    per = tally_by_dimension(images)
    assert list(per) == ["Quality", "Alignment"]
    assert (per["Quality"].requests, per["Quality"].na, per["Quality"].facets) == (3, 5, 12)
    assert (per["Alignment"].parse_failure_rate, per["Alignment"].na_rate) == (0.5, None)
    assert Tally().merge(per["Quality"]).merge(per["Alignment"]) == t
    row = flat_image_row(images[1].record)
    assert (row["parse_failures"], row["dimension_errors"]) == (0, 1)


def test_leaderboard_rates_come_from_the_tally(tmp_path):
    images = [JudgedImage.from_dict(_record(i, "m", dims={"Quality": _dim("scored", 3, 1) if i else _dim("parse_failure")},
                                            scores={"total": 60.0 if i else None, "level1": {"Quality": 60.0} if i else {}}))
              for i in range(4)]
    (entry,) = lb.build([Run(tmp_path, {}, images)], n_boot=0)
    assert (entry.requests, entry.parse_failures, entry.na, entry.facets) == (4, 1, 3, 12)
    assert entry.parse_failure_rate == 0.25 and entry.na_rate == 0.25 and entry.n_images_scored == 3


def test_image_failures_reach_the_record_by_stage_not_by_message(tmp_path):
    row = {"row": 5, "model": "m", "ID": None, "prompt": "p", "image_path": "a.png", "image_abspath": "/a.png",
           "image_sha256": "ab", "comparable": True, "status": "ok", "input": {}, "keys": {"Quality": "k1", "Alignment": "k2"}}
    image = {"k1": FailureState("row 5: corrupt", True, "image"), "k2": FailureState("row 5: corrupt", True, "image")}
    rec = _image_record(row, {}, image)
    assert rec["errors"] == ["row 5: corrupt"] and rec["dimensions"]["Quality"]["permanent"] is True
    engine = {"k1": FailureState("row 5 Quality: timeout", False, "engine"),
              "k2": FailureState("row 5 Alignment: timeout", False, "engine")}
    rec = _image_record(row, {}, engine)
    assert rec["errors"] == [] and rec["dimensions"]["Alignment"]["error"] == "row 5 Alignment: timeout"
    odd = {"k1": FailureState("decoder gave up", False, "image"), "k2": FailureState("decoder gave up", False, "image")}
    assert _image_record(row, {}, odd)["errors"] == ["decoder gave up"]  # no "row " prefix needed
    rec = _image_record(row, {}, {})
    assert rec["errors"] == [] and rec["dimensions"]["Quality"]["error"] == "not computed"


def test_store_reads_the_stage_of_the_latest_failure(tmp_path):
    with ResultStore(tmp_path / "results.sqlite") as store:
        store.record_failure("engine", "first", key="k")
        store.record_failure("image", "second", key="k", permanent=True)
        store.record_failure("parse", "other", key="j")
        assert store.latest_failure_details(["k", "j", "none"]) == {
            "k": FailureState("second", True, "image"), "j": FailureState("other", False, "parse")}


def test_iter_json_lines_numbers_lines_skips_blanks_and_names_the_bad_line(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text('{"a": 1}\n\n  \n[2]\n{bad\n', encoding="utf-8")
    got = []
    with pytest.raises(JsonLineError) as info:
        for item in iter_json_lines(path):
            got.append(item)
    assert got == [(1, {"a": 1}), (4, [2])]
    assert info.value.line == 5 and str(info.value).startswith(f"{path} line 5 is not valid JSON: ")
    assert isinstance(info.value, ValueError)
    assert list(iter_json_lines("lines", ["1", "", '"x"'])) == [(1, 1), (3, "x")]


def test_run_dir_errors_name_the_file_and_line(tmp_path):
    (tmp_path / "per_image.jsonl").write_text(json.dumps(_record(0, "m")) + "\n\nnot json\n", encoding="utf-8")
    with pytest.raises(RunDirError, match=r"per_image.jsonl line 3 is not valid JSON"):
        load_run(tmp_path)
    (tmp_path / "per_image.jsonl").write_text(json.dumps(_record(0, "m")) + "\n", encoding="utf-8")
    run = load_run(tmp_path)
    assert run.models == ["m"] and isinstance(run.images[0].dimensions, dict) and run.records[0]["row"] == 0
