"""Qwen-Image-Bench metadata: every bad file is a MetadataError naming the file, the record and the problem."""

from __future__ import annotations

import json

import pytest

from pixeljury.data.metadata import BenchMetadata, MetadataError

NOISE = "Quality / Detail / Noise"


def _write(tmp_path, payload, name="meta.json", encoding="utf-8"):
    path = tmp_path / name
    path.write_bytes((payload if isinstance(payload, str) else json.dumps(payload)).encode(encoding))
    return path


def _error(path) -> str:
    with pytest.raises(MetadataError) as info:
        BenchMetadata.load(path)
    return str(info.value)


@pytest.mark.parametrize("name,text", [
    ("meta.json", '\ufeff[{"ID": 1, "dims_en": "Quality / Detail / Noise"}]'),
    ("meta.jsonl", '\ufeff{"ID": 1, "dims_en": "Quality / Detail / Noise"}\n'),
])
def test_utf8_bom_is_accepted(tmp_path, name, text):
    meta = BenchMetadata.load(_write(tmp_path, text, name))
    assert meta.dims_by_id == {1: NOISE} and meta.dimensions(1) == ["Quality"]


def test_null_dims_names_file_record_and_problem(tmp_path):
    path = _write(tmp_path, [{"ID": 7, "dims_en": NOISE}, {"ID": 8, "dims_en": None}])
    assert _error(path) == f"metadata file {path}, record 1 (ID 8): 'dims_en' must be a string of facet paths, got null"


def test_non_string_dims(tmp_path):
    path = _write(tmp_path, [{"ID": 1, "dims_en": ["Quality / Detail / Noise"]}])
    assert _error(path) == (f"metadata file {path}, record 0 (ID 1): 'dims_en' must be a string of facet paths, "
                            "got array ['Quality / Detail / Noise']")


@pytest.mark.parametrize("raw,shown", [("one", "string 'one'"), (1.5, "number 1.5"), (True, "boolean True"),
                                       (None, "null"), ([1], "array [1]")])
def test_non_integer_id_names_file_record_and_value(tmp_path, raw, shown):
    path = _write(tmp_path, [{"ID": 1, "dims_en": NOISE}, {"ID": raw, "dims_en": NOISE}])
    assert _error(path) == f"metadata file {path}, record 1 (ID {raw!r}): 'ID' must be an integer, got {shown}"


def test_integer_ids_in_the_forms_the_input_reader_accepts(tmp_path):
    path = _write(tmp_path, [{"ID": 1, "dims_en": NOISE}, {"ID": "2", "dims_en": NOISE}, {"ID": 3.0, "dims_en": NOISE}])
    assert BenchMetadata.load(path).dims_by_id == {1: NOISE, 2: NOISE, 3: NOISE}


def test_duplicate_id_with_different_dims_is_an_error(tmp_path):
    other = "Aesthetics / Lighting / Lighting & Atmosphere"
    path = _write(tmp_path, [{"ID": 5, "dims_en": NOISE}, {"ID": 6, "dims_en": NOISE}, {"ID": 5, "dims_en": other}])
    assert _error(path) == (f"metadata file {path}, record 2 (ID 5): ID 5 is also record 0, with different dims_en "
                            f"({NOISE!r} vs {other!r})")


def test_duplicate_id_with_identical_dims_is_accepted(tmp_path):
    path = _write(tmp_path, [{"ID": 5, "dims_en": NOISE}, {"ID": 5, "dims_en": " Quality / Detail / Noise ;"},
                             {"ID": "5", "dims_en": NOISE}])
    meta = BenchMetadata.load(path)
    assert meta.dims_by_id == {5: NOISE} and len(meta) == 1


def test_malformed_facet_path_names_the_record(tmp_path):
    path = _write(tmp_path, [{"ID": 3, "dims_en": "Quality"}])
    assert _error(path) == f"metadata file {path}, record 0 (ID 3): facet path 'Quality' is not 'L1 / L2 / L3'"


def test_non_object_record_names_the_record(tmp_path):
    path = _write(tmp_path, [{"ID": 1, "dims_en": NOISE}, "x"])
    assert _error(path) == f"metadata file {path}, record 1: is a JSON string, not an object"


@pytest.mark.parametrize("rec,problem", [({"ID": 4}, " (ID 4): lacks 'dims_en'"),
                                         ({"dims_en": NOISE}, ": lacks 'ID'"),
                                         ({}, ": lacks 'ID' and 'dims_en'")])
def test_missing_keys_name_the_record(tmp_path, rec, problem):
    path = _write(tmp_path, "".join(json.dumps(r) + "\n" for r in [{"ID": 1, "dims_en": NOISE}, rec]), "meta.jsonl")
    assert _error(path) == f"metadata file {path}, record 1{problem}"


def test_top_level_object_is_not_metadata(tmp_path):
    path = _write(tmp_path, '{"records":\n [{"ID": 1, "dims_en": "Quality / Detail / Noise"}]}')
    assert _error(path).startswith(f"metadata file {path} is not JSON or JSONL: ")


def test_latin1_file_is_a_metadata_error(tmp_path):
    path = _write(tmp_path, '[{"ID": 1, "dims_en": "Quality / Detail / Noise", "p": "caf\xe9"}]', encoding="latin-1")
    assert _error(path) == (f"metadata file {path} is not valid UTF-8 (byte 0xe9 at offset 59); "
                            "re-save it as UTF-8")


@pytest.mark.parametrize("text", ['{"ID": 1, "dims_en": ', "[" * 5000])
def test_undecodable_json_is_a_metadata_error(tmp_path, text):
    path = _write(tmp_path, text)
    assert _error(path).startswith(f"metadata file {path} is not JSON or JSONL: ")
