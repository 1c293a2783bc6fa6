"""`pixeljury demo` as a library call (pixeljury.demo.run_demo): the tiny random judge decodes under
the answer schema, so every request is scored; a rerun recomputes nothing; the noise is said."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")
pytest.importorskip("llguidance", reason="constrained decoding needs llguidance (pip install -e '.[torch]')")


@pytest.mark.slow
def test_demo_scores_every_request_and_says_it_is_noise(tmp_path):
    import torch

    from pixeljury.demo import NOISE_TITLE, TINY_THINKING_BUDGET, run_demo

    threads = torch.get_num_threads()
    result = run_demo(tmp_path / "demo", quiet=True)
    assert torch.get_num_threads() == threads  # the tiny judge's one thread is given back
    summary = result.summary
    assert result.tiny and summary.complete and summary.computed == 40 and summary.failed == 0
    lines = "\n".join(result.lines())
    assert "random weights" in lines and "noise" in lines and str(result.report.resolve()) in lines

    run = summary.run_dir
    manifest = json.loads((run / "manifest.json").read_text())
    params = manifest["config"]["params"]
    assert manifest["constrained"] is True and params["thinking_budget"] == TINY_THINKING_BUDGET
    assert manifest["judge"]["constrained_decoding"]["library"] == "llguidance"
    benches = [json.loads(p.read_text()) for p in sorted((run / "bench").glob("*.json"))]
    assert [b["model"] for b in benches] == ["painter-faithful", "painter-sloppy"]
    for b in benches:
        assert b["total"] is not None and not b["comparable"]
        assert all(v is not None for v in b["level1"].values()) and len(b["level1"]) == 5
        assert sum(c["parse_failures"] for c in b["counts"].values()) == 0
    records = [json.loads(line) for line in (run / "per_image.jsonl").read_text().splitlines()]
    for record in records:
        for dim in record["dimensions"].values():
            assert dim["status"] in ("scored", "all_na"), dim
            thinking, answer = dim["raw_text"].split("</think>\n\n")  # thinking, forced close, JSON answer
            assert thinking and answer.startswith("{"), dim["raw_text"]
            assert dim["completion_tokens"] <= params["max_new_tokens"] and dim["finish_reason"] == "stop"
    assert NOISE_TITLE in result.report.read_text(encoding="utf-8")

    again = run_demo(tmp_path / "demo", quiet=True)  # resumes: nothing is generated twice
    assert again.summary.computed == 0 and again.summary.reused == 40
