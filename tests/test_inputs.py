import json

import pytest

from pixeljury.data.inputs import InputError, read_rows
from pixeljury.data.metadata import BenchMetadata, dimensions_of, parse_dims


def write_all_formats(tmp_path, records):
    import pyarrow as pa
    import pyarrow.parquet as pq

    cols = list(records[0])
    csv = tmp_path / "in.csv"
    csv.write_text(",".join(cols) + "\n" + "\n".join(",".join(str(r[c]) for c in cols) for r in records) + "\n")
    (tmp_path / "in.json").write_text(json.dumps(records))
    (tmp_path / "in.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    pq.write_table(pa.Table.from_pylist(records), tmp_path / "in.parquet")
    return [tmp_path / f"in.{e}" for e in ("csv", "json", "jsonl", "parquet")]


def test_all_formats_read_the_same(tmp_path):
    records = [{"ID": 3, "prompt": "a cat", "image_path": "imgs/a.png", "model": "m1"},
               {"ID": 4, "prompt": "a dog", "image_path": "/abs/b.png", "model": "m2"}]
    for path in write_all_formats(tmp_path, records):
        rows = list(read_rows(path))
        assert [(r.index, r.bench_id, r.prompt, r.model) for r in rows] == [(0, 3, "a cat", "m1"), (1, 4, "a dog", "m2")]
        assert rows[0].image_path == tmp_path / "imgs" / "a.png"  # relative to the input file
        assert str(rows[1].image_path) == "/abs/b.png"


def test_missing_required_column_fails_before_any_row(tmp_path):
    path = tmp_path / "in.csv"
    path.write_text("ID,prompt,image\n1,a,b.png\n")
    with pytest.raises(InputError, match="no column 'image_path'"):
        read_rows(path)


def test_non_utf8_input_is_named_with_its_line(tmp_path):
    path = tmp_path / "in.csv"
    path.write_bytes("prompt,image_path\ncaf\u00e9,a.png\n".encode("latin-1"))
    with pytest.raises(InputError, match="not valid UTF-8 on line 2"):
        read_rows(path)


def test_row_level_problems_stay_with_their_row(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text('{"prompt": "", "image_path": "a.png"}\n{"prompt": "x", "image_path": "b.png", "ID": "x1"}\n'
                    '{"prompt": "y", "image_path": "c.png", "ID": 7.0}\n'
                    '{"prompt": "z", "image_path": "d.png", "ID": true}\n')
    rows = list(read_rows(path, default_model="gen"))
    assert rows[3].errors == ["ID True is not an integer"] and rows[3].bench_id is None
    assert rows[0].errors == ["empty prompt"]
    assert rows[1].errors == ["ID 'x1' is not an integer"]
    assert rows[2].ok and rows[2].bench_id == 7 and rows[2].model == "gen"


def test_unsupported_format_and_bad_json(tmp_path):
    (tmp_path / "in.txt").write_text("x")
    with pytest.raises(InputError, match="unsupported input format"):
        read_rows(tmp_path / "in.txt")
    (tmp_path / "bad.jsonl").write_text('{"prompt": "a", "image_path": "b"}\n{oops\n')
    with pytest.raises(InputError, match="line 2"):
        read_rows(tmp_path / "bad.jsonl")


def test_parse_dims_keeps_slashes_in_l3():
    dims = parse_dims("Alignment / Relations / Difference/Similarity; Creative Generation / Visual Storytelling / "
                      "Camera / Lens Style; Quality / Resolution")
    assert [(p.l1, p.l2, p.l3) for p in dims] == [
        ("Alignment", "Relations", "Difference/Similarity"),
        ("Creative Generation", "Visual Storytelling", "Camera / Lens Style"),
        ("Quality", "Resolution", "Resolution"),
    ]
    assert dimensions_of("Quality / A / B; Alignment / C / D; Quality / E / F") == ["Quality", "Alignment"]


def test_benchmark_metadata_gives_4105_requests(metadata_path):
    meta = BenchMetadata.load(metadata_path)
    assert len(meta) == 1000
    assert sum(len(meta.dimensions(i)) for i in meta.dims_by_id) == 4105
    assert all(3 <= len(meta.dimensions(i)) <= 5 for i in meta.dims_by_id)


def test_csv_quoted_newlines_braces_and_bom(tmp_path):
    path = tmp_path / "in.csv"
    path.write_bytes('\ufeffprompt,image_path\n"line one\nline two, with {braces}",a.png\nplain,b.png\n'.encode("utf-8"))
    rows = list(read_rows(path))
    assert [r.prompt for r in rows] == ["line one\nline two, with {braces}", "plain"]
    assert [r.index for r in rows] == [0, 1]
