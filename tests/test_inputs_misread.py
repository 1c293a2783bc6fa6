"""Inputs that used to be read silently wrong: duplicate columns, non-text prompts, a benchmark ID
with another prompt than the benchmark's."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from PIL import Image

import pixeljury
from pixeljury.data.inputs import InputError, read_rows
from pixeljury.data.metadata import BenchMetadata, MetadataError
from pixeljury.engines.replay import ReplayEngine
from pixeljury.rubric.taxonomy import TREE

from pj_testpaths import CHECKLIST_FIXTURE


def test_csv_with_a_duplicate_column_is_refused_naming_it(tmp_path):
    path = tmp_path / "in.csv"
    path.write_text("prompt,image_path,prompt\nfirst words,a.png,second words\n")
    with pytest.raises(InputError, match=r"duplicate column names: 'prompt' \(columns 1, 3\)"):
        read_rows(path)


def test_parquet_with_a_duplicate_column_is_refused(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_arrays([pa.array(["a"]), pa.array(["x.png"]), pa.array(["y.png"])],
                                 names=["prompt", "image_path", "image_path"])
    pq.write_table(table, tmp_path / "in.parquet")
    with pytest.raises(InputError, match=r"'image_path' \(columns 2, 3\)"):
        read_rows(tmp_path / "in.parquet")


@pytest.mark.parametrize("ext", ["json", "jsonl"])
def test_a_json_record_with_a_repeated_key_is_a_row_error(tmp_path, ext):
    good = '{"prompt": "fine", "image_path": "a.png"}'
    bad = '{"prompt": "first", "image_path": "a.png", "prompt": "second"}'
    path = tmp_path / f"in.{ext}"
    path.write_text(f"[{good}, {bad}]" if ext == "json" else f"{good}\n{bad}\n")
    rows = list(read_rows(path))
    assert rows[0].ok and rows[0].prompt == "fine"
    assert rows[1].errors == ["the record names 'prompt' more than once; which value is meant is ambiguous"]
    assert "\x00duplicate keys" not in rows[1].fields


@pytest.mark.parametrize("value, kind", [(["a", "cat"], "a JSON array"), ({"text": "a cat"}, "a JSON object"),
                                         (True, "a boolean")])
def test_a_prompt_that_is_not_text_is_a_row_error(tmp_path, value, kind):
    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps({"prompt": value, "image_path": "a.png"}) + "\n"
                    + json.dumps({"prompt": 42, "image_path": "b.png"}) + "\n")
    rows = list(read_rows(path))
    assert rows[0].errors == [f"prompt must be text, got {kind} {json.dumps(value)}"]
    assert rows[1].ok and rows[1].prompt == "42"  # a number is text the judge can read


def test_an_image_path_that_is_not_a_path_is_a_row_error(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps({"prompt": "p", "image_path": ["a.png", "b.png"]}) + "\n")
    (row,) = read_rows(path)
    assert row.errors == ['image_path must be a path, got a JSON array ["a.png", "b.png"]'] and row.image_path is None


# --- benchmark prompts ------------------------------------------------------------------------

DIMS_1 = "Quality / Realism / Physical Logic; Aesthetics / Composition / Composition"
DIMS_2 = "Alignment / Attributes / Color"


def _metadata(tmp_path: Path) -> Path:
    path = tmp_path / "meta.jsonl"
    path.write_text(json.dumps({"ID": 1, "dims_en": DIMS_1, "prompt": "a red bicycle"}) + "\n"
                    + json.dumps({"ID": 2, "dims_en": DIMS_2, "prompt_en": "two cats", "prompt_cn": "两只猫"}) + "\n")
    return path


def test_metadata_keeps_the_benchmark_prompts(tmp_path):
    meta = BenchMetadata.load(_metadata(tmp_path))
    assert meta.has_prompts and meta.prompts_by_id == {1: ("a red bicycle",), 2: ("two cats", "两只猫")}
    assert meta.prompt_mismatch(1, "a red bicycle") is None
    assert meta.prompt_mismatch(2, "两只猫") is None  # either language is the benchmark's prompt
    assert "differs from the benchmark's prompt for ID 1" in meta.prompt_mismatch(1, "a blue bicycle")
    assert "only in surrounding whitespace" in meta.prompt_mismatch(1, "a red bicycle ")


def test_metadata_without_prompts_checks_nothing(tmp_path):
    path = tmp_path / "meta.json"
    path.write_text(json.dumps([{"ID": 1, "dims_en": DIMS_1}]))
    meta = BenchMetadata.load(path)
    assert not meta.has_prompts and meta.prompt_mismatch(1, "anything") is None


def test_metadata_prompt_must_be_text(tmp_path):
    path = tmp_path / "meta.json"
    path.write_text(json.dumps([{"ID": 7, "dims_en": DIMS_1, "prompt": ["x"]}]))
    with pytest.raises(MetadataError, match=r"record 0 \(ID 7\): 'prompt' must be a string"):
        BenchMetadata.load(path)


def _answer(req) -> str:
    dim = req.request_id.split(":", 1)[0]
    return json.dumps({l2: {l3: {"score": 2} for l3 in l3s} for l2, l3s in TREE[dim].items()})


def _run(tmp_path: Path, out: str, monkeypatch, **kw):
    from pixeljury.runs import judge as judge_module

    # The fixture rubric is not the official file; pretend it is, so that comparability shows.
    resolve = judge_module.resolve_rubric
    monkeypatch.setattr(judge_module, "resolve_rubric", lambda *a: dataclasses.replace(resolve(*a), comparable=True))
    Image.new("RGB", (32, 24), (1, 2, 3)).save(tmp_path / "a.png")
    Image.new("RGB", (32, 24), (4, 5, 6)).save(tmp_path / "b.png")
    rows = [{"ID": 1, "prompt": "a red bicycle", "image_path": "a.png", "model": "M"},
            {"ID": 2, "prompt": "three dogs", "image_path": "b.png", "model": "M"}]
    inp = tmp_path / "in.jsonl"
    inp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    summary = pixeljury.judge(inp, out=tmp_path / out, engine=ReplayEngine(_answer), metadata=_metadata(tmp_path),
                              rubric_file=CHECKLIST_FIXTURE, retry_wait=0.0, **kw)
    records = [json.loads(l) for l in (tmp_path / out / "per_image.jsonl").read_text().splitlines()]
    return summary, records, json.loads((tmp_path / out / "manifest.json").read_text())


def test_a_row_with_another_prompt_is_judged_but_not_comparable(tmp_path, monkeypatch):
    from pixeljury.runs.events import Collect, RowNote

    heard = Collect()
    summary, records, manifest = _run(tmp_path, "warn", monkeypatch, quiet=False, on_event=heard)
    assert summary.complete and manifest["prompts_checked"] is True
    assert records[0]["comparable"] is True and records[0]["warnings"] == []
    assert records[1]["comparable"] is False and records[1]["status"] == "ok"
    assert records[1]["scores"]["total"] == 100.0
    (warning,) = records[1]["warnings"]
    assert warning.startswith("prompt differs from the benchmark's prompt for ID 2") and "'three dogs'" in warning
    [note] = heard.of(RowNote)
    assert (note.row, note.kind) == (1, "warning") and note.message.startswith("prompt differs")
    bench = json.loads(next((tmp_path / "warn" / "bench").glob("*.json")).read_text())
    assert bench["comparable"] is False


def test_strict_prompts_refuses_the_row(tmp_path, monkeypatch):
    summary, records, manifest = _run(tmp_path, "strict", monkeypatch, strict_prompts=True)
    assert manifest["config"]["strict_prompts"] is True
    assert records[0]["status"] == "ok" and records[1]["status"] == "row_error"
    assert records[1]["errors"][0].endswith("refused (--strict-prompts)") and records[1]["dimensions"] == {}
    assert summary.row_errors == 1
