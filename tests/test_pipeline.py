"""The judge pipeline with a replay engine: scores, resume, key changes, and the bad-input catalogue."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import pixeljury
from pixeljury.data.inputs import InputError
from pixeljury.engines.base import EngineError
from pixeljury.engines.replay import ReplayEngine
from pixeljury.rubric.taxonomy import TREE

from pj_testpaths import CHECKLIST_FIXTURE, GOLDEN_METADATA


def all_ones_answer(dimension: str) -> str:
    body = {l2: {l3: {"score": 1} for l3 in l3s} for l2, l3s in TREE[dimension].items()}
    return "<think>fine</think>\n" + json.dumps(body)


def answer_for(req) -> str:
    return all_ones_answer(req.request_id.split(":", 1)[0])


def make_images(folder: Path, n: int) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(n):
        name = f"img{i}.png"
        Image.new("RGB", (40 + i, 30), (i * 20 % 255, 100, 50)).save(folder / name)
        names.append(f"imgs/{name}")
    return names


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def judge(inp, out, engine, **kw):
    kw.setdefault("rubric_file", CHECKLIST_FIXTURE)
    kw.setdefault("retry_wait", 0.0)
    return pixeljury.judge(inp, out=out, engine=engine, **kw)


@pytest.fixture
def three_rows(tmp_path, golden_metadata):
    """Two benchmark rows (IDs from the in-repo metadata: 101 asks 2 dimensions, 102 asks 3) and a custom one."""
    names = make_images(tmp_path / "imgs", 3)
    rows = [{"ID": 101, "prompt": "p1", "image_path": names[0], "model": "A"},
            {"ID": 102, "prompt": "p2", "image_path": names[1], "model": "A"},
            {"prompt": "custom", "image_path": names[2], "model": "B"}]
    return write_jsonl(tmp_path / "in.jsonl", rows), golden_metadata


def test_scores_and_outputs_with_recorded_answers(three_rows, tmp_path):
    inp, meta = three_rows
    engine = ReplayEngine(answer_for)
    s = judge(inp, tmp_path / "run", engine, metadata=meta, dimensions=["Quality", "Alignment"])
    from pixeljury.data.metadata import BenchMetadata

    md = BenchMetadata.load(meta)
    assert md.dimensions(101) == ["Alignment", "Aesthetics"]
    assert md.dimensions(102) == ["Alignment", "Quality", "Creative Generation"]
    expected = 2 + 3 + 2
    assert s.computed == expected == engine.calls and s.reused == 0 and s.failed == 0
    bench = pixeljury.load_bench(tmp_path / "run")
    assert bench["A"]["total"] == 60.0 and bench["A"]["n_images"] == 2 and bench["A"]["comparable"] is False
    assert bench["B"]["level1"] == {"Quality": 60.0, "Alignment": 60.0}
    images = pixeljury.load_images(tmp_path / "run")
    assert [r["row"] for r in images] == [0, 1, 2]
    assert images[2]["comparable"] is False and list(images[2]["dimensions"]) == ["Quality", "Alignment"]
    assert images[0]["input"] == {"ID": 101, "prompt": "p1", "image_path": "imgs/img0.png", "model": "A"}
    assert list(images[0]["dimensions"]) == ["Alignment", "Aesthetics"]  # the metadata's, not --dimensions
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["computed"] == expected and manifest["finished_at"] and manifest["rubric"]["source"] == "official"
    assert manifest["judge"]["engine"] == "replay" and manifest["input_sha256"]


def test_rerun_reuses_everything_and_key_changes_recompute_only_what_changed(three_rows, tmp_path):
    inp, meta = three_rows
    run = tmp_path / "run"
    first = judge(inp, run, ReplayEngine(answer_for), metadata=meta)
    again = ReplayEngine(answer_for)
    second = judge(inp, run, again, metadata=meta)
    assert again.calls == 0 and second.reused == first.requests and second.computed == 0
    builtin = ReplayEngine(answer_for)
    third = judge(inp, run, builtin, metadata=meta, rubric="builtin", rubric_file=None)
    assert builtin.calls == first.requests  # another rubric hash: everything recomputed
    # a new row: only its requests are computed
    rows = [json.loads(l) for l in inp.read_text().splitlines()]
    rows.append({"prompt": "new one", "image_path": rows[0]["image_path"], "model": "C"})
    write_jsonl(inp, rows)
    more = ReplayEngine(answer_for)
    fourth = judge(inp, run, more, metadata=meta)
    assert more.calls == 5 and fourth.computed == 5 and fourth.reused == first.requests
    assert third.computed == first.requests


class FlakyEngine(ReplayEngine):
    """Fails the first ``fail_first`` calls; always fails batches containing ``poison`` prompts."""

    def __init__(self, fail_first=0, poison=None):
        super().__init__(answer_for, batch_size=1)
        self.fail_first, self.poison, self.attempts = fail_first, poison, 0

    def generate(self, requests, params):
        self.attempts += 1
        if self.attempts <= self.fail_first:
            raise EngineError("CUDA hiccup")
        if self.poison and any(self.poison in p.text for r in requests for p in r.user if hasattr(p, "text")):
            raise EngineError("server said 500")
        return super().generate(requests, params)


def test_engine_error_is_retried_then_recorded_never_fatal(three_rows, tmp_path):
    inp, meta = three_rows
    flaky = FlakyEngine(fail_first=1)
    s = judge(inp, tmp_path / "r1", flaky, metadata=meta, retries=1)
    assert s.failed == 0  # the first failure was retried
    poisoned = FlakyEngine(poison="custom")
    s2 = judge(inp, tmp_path / "r2", poisoned, metadata=meta, retries=2, dimensions=["Quality"])
    assert s2.failed == 1 and s2.computed == s2.requests - 1
    images = pixeljury.load_images(tmp_path / "r2")
    dim = images[2]["dimensions"]["Quality"]
    assert dim["status"] == "error" and "server said 500" in dim["error"]
    assert images[2]["scores"]["total"] is None and images[0]["scores"]["total"] == 60.0
    # the rerun retries only the failed request
    healed = ReplayEngine(answer_for)
    s3 = judge(inp, tmp_path / "r2", healed, metadata=meta, dimensions=["Quality"])
    assert healed.calls == 1 and s3.failed == 0


def bomb_png(path: Path) -> None:
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 10))
                     + chunk(b"IEND", b""))


CATALOGUE = [  # (case, prompt, image, extra fields)
    ("rgba", "rgba", "imgs/rgba.png", {}),
    ("palette", "palette", "imgs/pal.png", {}),
    ("cmyk", "cmyk", "imgs/cmyk.jpg", {}),
    ("16-bit", "16-bit", "imgs/deep.png", {}),
    ("grayscale", "gray", "imgs/gray.png", {}),
    ("wrong extension", "jpeg named png", "imgs/jpeg.png", {}),
    ("missing image", "missing", "imgs/nope.png", {}),
    ("corrupt image", "corrupt", "imgs/corrupt.png", {}),
    ("decompression bomb", "bomb", "imgs/bomb.png", {}),
    ("unknown ID", "unknown id", "imgs/gray.png", {"ID": 99999}),
    ("duplicate row", "gray", "imgs/gray.png", {}),
    ("empty prompt", "", "imgs/gray.png", {}),
]
ROW = {case: i for i, (case, *_rest) in enumerate(CATALOGUE)}


@pytest.fixture(scope="module")
def catalogue_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("catalogue")
    imgs = tmp / "imgs"
    imgs.mkdir()
    Image.new("RGBA", (20, 20), (255, 0, 0, 128)).save(imgs / "rgba.png")
    Image.new("P", (20, 20)).save(imgs / "pal.png")
    Image.new("CMYK", (20, 20), (10, 200, 30, 0)).save(imgs / "cmyk.jpg")
    Image.fromarray(np.full((20, 20), 40000, dtype=np.uint16)).save(imgs / "deep.png")
    Image.new("L", (20, 20), 90).save(imgs / "gray.png")
    Image.new("RGB", (30, 20), (40, 90, 200)).save(imgs / "jpeg.png", format="JPEG")
    (imgs / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    bomb_png(imgs / "bomb.png")
    assert (imgs / "jpeg.png").read_bytes()[:3] == b"\xff\xd8\xff"  # a JPEG under a .png name
    rows = [{"prompt": prompt, "image_path": image, **extra} for _case, prompt, image, extra in CATALOGUE]
    inp = write_jsonl(tmp / "in.jsonl", rows)
    summary = judge(inp, tmp / "run", ReplayEngine(answer_for), metadata=GOLDEN_METADATA, dimensions=["Quality"])
    images = {r["row"]: r for r in pixeljury.load_images(tmp / "run")}
    return summary, images, pixeljury.load_bench(tmp / "run")["in"]


@pytest.mark.parametrize("case", ["rgba", "palette", "cmyk", "16-bit", "grayscale", "wrong extension"])
def test_catalogue_images_that_must_simply_work(catalogue_run, case):
    _, images, _ = catalogue_run
    rec = images[ROW[case]]
    assert rec["status"] == "ok" and rec["errors"] == [] and rec["scores"]["total"] == 60.0


@pytest.mark.parametrize("case,status,message", [
    ("missing image", "row_error", "does not exist"),
    ("unknown ID", "row_error", "ID 99999 is not in the benchmark metadata"),
    ("duplicate row", "duplicate", "duplicate of row 4"),
    ("empty prompt", "row_error", "empty prompt"),
])
def test_catalogue_rows_skipped_with_a_message(catalogue_run, case, status, message):
    _, images, _ = catalogue_run
    rec = images[ROW[case]]
    assert rec["status"] == status and message in rec["errors"][0]
    assert rec["scores"]["total"] is None or status == "duplicate"


@pytest.mark.parametrize("case,message", [("corrupt image", "corrupt or truncated"),
                                          ("decompression bomb", "decompression bomb")])
def test_catalogue_unloadable_images_are_recorded_per_row(catalogue_run, case, message):
    _, images, _ = catalogue_run
    rec = images[ROW[case]]
    dim = rec["dimensions"]["Quality"]
    assert dim["status"] == "error" and message in dim["error"] and dim["error"].startswith(f"row {ROW[case]}:")
    assert rec["scores"]["total"] is None and f"row {ROW[case]}" in rec["errors"][0]


def test_catalogue_run_goes_on_and_counts(catalogue_run):
    summary, _, bench = catalogue_run
    assert summary.row_errors == 3 and summary.duplicates == 1 and summary.failed == 2
    assert bench["n_images"] == 8 and bench["n_images_scored"] == 6  # duplicates and skipped rows not counted
    assert bench["counts"]["Quality"]["errors"] == 2


def test_whole_file_problems_fail_before_any_model_is_loaded(tmp_path):
    loaded = []

    def factory():
        loaded.append(1)
        return ReplayEngine(answer_for)

    from pixeljury.runs.judge import JudgeConfig, run_judge

    bad = tmp_path / "in.csv"
    bad.write_text("prompt,image\nx,y\n")
    with pytest.raises(InputError, match="image_path"):
        run_judge(JudgeConfig(input=bad, out=tmp_path / "o", rubric_file=CHECKLIST_FIXTURE, quiet=True), factory)
    latin = tmp_path / "latin.csv"
    latin.write_bytes("prompt,image_path\n\xe9t\xe9,a.png\n".encode("latin-1"))
    with pytest.raises(InputError, match="UTF-8"):
        run_judge(JudgeConfig(input=latin, out=tmp_path / "o", rubric_file=CHECKLIST_FIXTURE, quiet=True), factory)
    assert loaded == []


def test_two_processes_cannot_share_a_run_directory(tmp_path):
    from pixeljury.runs.lock import RunLock, RunLocked

    with RunLock(tmp_path):
        with pytest.raises(RunLocked, match="in use by pid"):
            with RunLock(tmp_path):
                pass
    with RunLock(tmp_path):  # released again
        pass


def test_export_regenerates_outputs_from_the_store(three_rows, tmp_path):
    inp, meta = three_rows
    run = tmp_path / "run"
    judge(inp, run, ReplayEngine(answer_for), metadata=meta, dimensions=["Quality"])
    before = (run / "per_image.jsonl").read_text()
    (run / "per_image.jsonl").unlink()
    from typer.testing import CliRunner

    from pixeljury.cli import app

    res = CliRunner().invoke(app, ["export", str(run), "--format", "jsonl,csv,parquet,xlsx"])
    assert res.exit_code == 0, res.output
    assert (run / "per_image.jsonl").read_text() == before
    import pyarrow.parquet as pq
    from openpyxl import load_workbook

    table = pq.read_table(run / "per_image.parquet").to_pylist()
    assert [r["total"] for r in table] == [60.0, 60.0, 60.0]
    assert table[0]["Quality/Detail/Noise"] is None  # ID 101 is not judged on Quality
    assert table[1]["Quality/Detail/Noise"] == table[2]["Quality/Detail/Noise"] == 60.0
    wb = load_workbook(run / "scores.xlsx")
    assert wb.sheetnames == ["Level-1", "Level-2", "Level-3", "Images"]
    assert [c.value for c in wb["Level-1"][2]][:3] == ["A", 60.0, 60.0]
