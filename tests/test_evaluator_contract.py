"""The evaluator contract (pixeljury.core.evaluator) with a two-stage test evaluator on the tiny judge,
through the store-backed runner (pixeljury.runs.evaluate.run_evaluator): ask, then ask again using
the first answer, the second time as log-probability scoring; resume from a run directory."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from two_stage_evaluator import NameThenCheck

from pixeljury.core.evaluator import ImageRef, Reading, Sample, Verdict, VerdictMeans
from pixeljury.engines.base import EngineError, ImagePart, ScoreRequest, TextPart
from pixeljury.engines.replay import ReplayEngine
from pixeljury.runs.evaluate import run_evaluator as evaluate
from pixeljury.runs.store import ResultStore


@pytest.fixture(scope="module")
def samples(tmp_path_factory) -> list[Sample]:
    folder = tmp_path_factory.mktemp("imgs")
    out = []
    for i in range(5):
        path = folder / f"{i}.png"
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(path)
        out.append(Sample(str(i), f"prompt {i}", (ImageRef(path, f"sha-{i}"),)))
    return out


@pytest.fixture(scope="module")
def engine(tiny_model_dir: Path):
    pytest.importorskip("torch")
    from pixeljury.engines.hf import TransformersEngine

    return TransformersEngine(str(tiny_model_dir), batch_size=2, device="cpu")


def test_two_stages_and_log_probabilities_through_the_driver(engine, samples) -> None:
    result = evaluate(NameThenCheck(), samples, engine)
    assert result.asked == 10 and result.reused == 0
    by = {(v.sample_id, v.name): v for v in result.verdicts}
    assert set(by) == {(s.sample_id, n) for s in samples for n in ("name", "check")}
    for s in samples:  # the second stage was built from the first stage's answer, and scored by the engine
        thing = by[(s.sample_id, "name")].detail["thing"]
        assert by[(s.sample_id, "check")].detail["thing"] == thing
        question = f"Does the image show this: {thing}? Answer Yes or No."
        image = ImagePart(Image.open(s.images[0].path).convert("RGB"), s.images[0].sha256)
        direct = engine.score([ScoreRequest("x", "", [image, TextPart(question)], candidates=["Yes", "No"])])[0]
        p_yes = math.exp(direct.logprobs["Yes"]) / (math.exp(direct.logprobs["Yes"]) + math.exp(direct.logprobs["No"]))
        assert by[(s.sample_id, "check")].value == pytest.approx(p_yes, rel=1e-5)
    checks = [by[(s.sample_id, "check")].value for s in samples]
    assert result.aggregate["check"]["mean"] == math.fsum(checks) / len(checks)
    assert result.aggregate["check"]["counts"] == {"scored": 5}


def test_resume_reads_committed_answers_and_asks_nothing(engine, samples, tmp_path) -> None:
    out = tmp_path / "run"
    first = evaluate(NameThenCheck(), samples[:3], engine, out=out)
    with ResultStore.in_dir(out) as store:
        assert (first.asked, first.reused, store.count()) == (6, 0, 6)
        checks = [r for r in store.iter_results() if r.dimension == "check"]
        assert len(checks) == 3 and all(set(r.parsed["answer"]["logprobs"]) == {"Yes", "No"} for r in checks)
    manifest = json.loads((out / "manifest.json").read_text())
    assert (manifest["job"], manifest["status"], manifest["asked"]) == ("evaluate", "complete", 6)
    assert manifest["evaluator"] == {"evaluator": "name-then-check", "version": "1", "settings": {}}
    again = evaluate(NameThenCheck(), samples, engine, out=out)
    assert (again.asked, again.reused) == (4, 6)  # only the two new samples' two stages ran
    assert again.aggregate["name"]["counts"] == {"scored": 5}
    # stored answers are read again, the second stage rebuilt from the first's stored answer
    assert [(v.name, v.value, v.detail) for v in again.verdicts if v.sample_id in "012"] == \
        [(v.name, v.value, v.detail) for v in first.verdicts]


def test_shard_states_merge_to_the_whole(engine, samples) -> None:
    whole = evaluate(NameThenCheck(), samples, engine).aggregate
    states = [json.loads(json.dumps(VerdictMeans().update_many(evaluate(NameThenCheck(), part, engine).verdicts).state()))
              for part in (samples[3:], samples[:1], samples[1:3])]
    merged = VerdictMeans.merged(states).compute()
    assert merged == whole and merged["check"]["mean"].hex() == whole["check"]["mean"].hex()


def test_an_engine_without_scoring_is_refused_before_anything_runs(samples) -> None:
    replay = ReplayEngine.constant("cat")
    with pytest.raises(EngineError, match="cannot serve 'score' requests, which this evaluator needs"):
        evaluate(NameThenCheck(), samples[:1], replay)
    assert replay.calls == 0  # request_kinds names the scoring stage: refused before the first


def test_without_declared_kinds_the_follow_up_is_refused_when_it_comes(samples) -> None:
    replay = ReplayEngine.constant("cat")
    undeclared = type("Undeclared", (NameThenCheck,), {"request_kinds": None})()
    with pytest.raises(EngineError, match="cannot serve 'score' requests"):
        evaluate(undeclared, samples[:1], replay)
    assert replay.calls == 1  # the first stage ran; the scoring stage was refused, not sent


def test_engine_failures_become_error_verdicts_never_scores(samples) -> None:
    def respond(req):
        return None if req.request_id.startswith("1:") else "cat"
    replay = ReplayEngine(respond)
    first_stage_only = type("FirstStage", (NameThenCheck,), {"request_kinds": None, "read": lambda self, s, a, ans: Reading(
        [Verdict(s.sample_id, "name", "scored", 1.0)])})()
    result = evaluate(first_stage_only, samples[:3], replay)
    statuses = {v.sample_id: (v.status, v.value) for v in result.verdicts}
    assert statuses == {"0": ("scored", 1.0), "1": ("error", None), "2": ("scored", 1.0)}
    assert result.aggregate["name"] == {"mean": 1.0, "counts": {"error": 1, "scored": 2}}
