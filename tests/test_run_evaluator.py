"""The store-backed driver of any evaluator (pixeljury.runs.evaluate.run_evaluator) with a replay
engine: failures recorded against their sample and never scored, stops, events, in-memory use."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from pixeljury.core.evaluator import (
    Ask, Evaluator, EvaluatorIdentity, ImageRef, Reading, Sample, Verdict, VerdictMeans, lazy_image,
)
from pixeljury.core.requests import MeasureRequest, Measurement
from pixeljury.engines.base import ChatRequest, EngineCapabilities, EngineError, TextPart
from pixeljury.engines.replay import ReplayEngine
from pixeljury.runs import events as ev
from pixeljury.runs.evaluate import run_evaluator
from pixeljury.runs.runner import RunnerSettings
from pixeljury.runs.store import ResultStore


class Caption(Evaluator):
    """One stage: the answer's length is the value."""

    identity = EvaluatorIdentity("caption-length", "1")

    def plan(self, sample: Sample) -> list[Ask]:
        return [Ask("caption", ChatRequest(f"{sample.sample_id}:c", "", [lazy_image(sample.images[0]),
                                                                           TextPart("Describe.")]))]

    def read(self, sample, ask, answer) -> Reading:
        return Reading([Verdict(sample.sample_id, "caption", "scored", float(len(answer.text)))])

    def accumulator(self) -> VerdictMeans:
        return VerdictMeans()


def _samples(tmp_path, n=3, broken=()):
    out = []
    for i in range(n):
        path = tmp_path / f"{i}.png"
        if i in broken:
            path.write_bytes(b"not an image")
        else:
            Image.new("RGB", (16, 12), (i * 50, 0, 0)).save(path)
        out.append(Sample(str(i), f"prompt {i}", (ImageRef(path, f"sha-{i}"),)))
    return out


SETTINGS = RunnerSettings(retries=0, retry_wait=0.0)


def test_in_memory_the_driver_reads_every_answer(tmp_path):
    engine = ReplayEngine(lambda req: "x" * (1 + int(req.request_id.split(":")[0])), batch_size=2)
    heard = ev.Collect()
    result = run_evaluator(Caption(), _samples(tmp_path), engine, settings=SETTINGS, on_event=heard)
    assert [v.value for v in result.verdicts] == [1.0, 2.0, 3.0]
    assert result.aggregate["caption"] == {"mean": 2.0, "counts": {"scored": 3}}
    assert (result.asked, result.reused, result.stopped) == (3, 0, None)
    assert heard.of(ev.WorkStarted) == [ev.WorkStarted("caption-length: stage 1", 3)]
    assert sum(a.n for a in heard.of(ev.Advanced)) == 3
    assert not list(tmp_path.glob("*.sqlite"))


def test_an_unreadable_image_is_an_error_verdict_recorded_against_its_sample(tmp_path):
    out = tmp_path / "run"
    result = run_evaluator(Caption(), _samples(tmp_path, broken={1}), ReplayEngine.constant("ok"), out=out,
                           settings=SETTINGS)
    by = {v.sample_id: v for v in result.verdicts}
    assert (by["0"].status, by["1"].status, by["2"].status) == ("scored", "error", "scored")
    assert by["1"].value is None
    with ResultStore.in_dir(out) as store:
        [failure] = store.failures()
        assert failure["stage"] == "image" and failure["message"].startswith("row 1: ")
        assert store.count() == 2
    manifest = json.loads((out / "manifest.json").read_text())
    assert (manifest["status"], manifest["errors"], manifest["aggregate"]["caption"]["counts"]) == \
        ("incomplete", 1, {"error": 1, "scored": 2})


def test_an_engine_refusal_stops_the_run_and_nothing_is_scored(tmp_path):
    def refuse(_req):
        raise EngineError("401 unauthorized", retryable=False)

    out = tmp_path / "run"
    heard = ev.Collect()
    result = run_evaluator(Caption(), _samples(tmp_path), ReplayEngine(refuse, batch_size=1), out=out,
                           settings=SETTINGS, on_event=heard)
    assert result.stopped.endswith("401 unauthorized")
    assert [v.status for v in result.verdicts] == ["error"] * 3 and result.asked == 1
    assert heard.of(ev.BatchFailed) == [ev.BatchFailed(1, (0,), 1, "401 unauthorized")]
    assert json.loads((out / "manifest.json").read_text())["status"] == "stopped"


def test_sample_ids_must_be_unique(tmp_path):
    samples = _samples(tmp_path, 2)
    with pytest.raises(ValueError, match=r"repeated: \['0'\]"):
        run_evaluator(Caption(), [samples[0], samples[0]], ReplayEngine.constant("ok"))


class Length(Evaluator):
    """Measure requests: the engine measures, the evaluator reads ten times the value."""

    identity = EvaluatorIdentity("ten-times", "1")
    request_kinds = frozenset({"measure"})

    def plan(self, sample):
        return [Ask("size", MeasureRequest(sample.sample_id, sample.prompt, [lazy_image(sample.images[0])]))]

    def read(self, sample, ask, answer):
        return Reading([Verdict(sample.sample_id, "size", "scored", 10 * answer.value)])

    def accumulator(self):
        return VerdictMeans()


class Measurer:
    name, model_id, revision, preferred_batch_size = "measurer", "m", "1", 2
    capabilities = EngineCapabilities(frozenset({"measure"}), 1)

    def __init__(self):
        self.calls = 0

    def measure(self, requests):
        self.calls += len(requests)
        assert all(r.images[0].image is not None for r in requests)  # loaded before the engine sees them
        return [Measurement(r.request_id, float(len(r.prompt))) for r in requests]


def test_measure_asks_run_and_resume_with_the_engine_s_value(tmp_path):
    out, samples = tmp_path / "run", _samples(tmp_path)
    engine = Measurer()
    first = run_evaluator(Length(), samples, engine, out=out, settings=SETTINGS)
    assert [v.value for v in first.verdicts] == [80.0, 80.0, 80.0] and engine.calls == 3
    again = Measurer()
    resumed = run_evaluator(Length(), samples, again, out=out, settings=SETTINGS)
    assert again.calls == 0 and [v.value for v in resumed.verdicts] == [80.0, 80.0, 80.0]  # not 800


def test_an_engine_without_a_kind_the_evaluator_declares_is_refused_before_anything_runs(tmp_path):
    replay = ReplayEngine.constant("x")
    with pytest.raises(EngineError, match="cannot serve 'measure' requests"):
        run_evaluator(Length(), _samples(tmp_path), replay)
    assert replay.calls == 0


def test_request_settings_are_part_of_the_key(tmp_path):
    sample = _samples(tmp_path, 1)[0]
    [ask] = Caption().plan(sample)
    constrained = Ask(ask.name, ChatRequest(ask.request.request_id, "", ask.request.user, json_schema={"type": "object"}))
    named = Ask(ask.name, ChatRequest(ask.request.request_id, "", ask.request.user, schema_name="other"))
    tagged = Ask(ask.name, ChatRequest(ask.request.request_id, "", ask.request.user, tags={"any": "label"}))
    keys = [Caption().ask_key(sample, a, "m@1") for a in (ask, constrained, named, tagged)]
    assert len(set(keys[:3])) == 3 and keys[3] == keys[0]  # tags are labels, not settings
    assert Caption().ask_key(sample, ask, "other@1") != keys[0]  # the model is part of the key


class CaptionTwice(Caption):
    """Two chat stages: caption, then caption again."""

    def read(self, sample, ask, answer):
        follow = [] if ask.name == "again" else [Ask("again", ChatRequest(f"{sample.sample_id}:a", "",
                                                                            ask.request.user))]
        return Reading([Verdict(sample.sample_id, ask.name, "scored", float(len(answer.text)))], follow)


def test_a_stop_leaves_error_verdicts_for_every_unasked_follow_up_and_an_event(tmp_path):
    def answer(req):
        if req.request_id.startswith("1:"):
            raise EngineError("403 forbidden", retryable=False)
        return "ok"

    heard = ev.Collect()
    result = run_evaluator(CaptionTwice(), _samples(tmp_path), ReplayEngine(answer, batch_size=1), settings=SETTINGS,
                           on_event=heard)
    got = [(v.sample_id, v.name, v.status) for v in result.verdicts]
    assert got == [("0", "caption", "scored"), ("1", "caption", "error"), ("2", "caption", "error"),
                   ("0", "again", "error")]
    assert "not asked: the run stopped" in result.verdicts[-1].error
    assert heard.of(ev.RunStopped) == [ev.RunStopped(result.stopped)]


def test_verdicts_come_in_plan_order_whatever_the_store_holds(tmp_path):
    out, samples = tmp_path / "run", _samples(tmp_path)
    fresh = run_evaluator(Caption(), samples, ReplayEngine.constant("ok"), settings=SETTINGS)
    run_evaluator(Caption(), samples[1:], ReplayEngine.constant("ok"), out=out, settings=SETTINGS)
    resumed = run_evaluator(Caption(), samples, ReplayEngine.constant("ok"), out=out, settings=SETTINGS)
    assert [v.sample_id for v in resumed.verdicts] == [v.sample_id for v in fresh.verdicts] == ["0", "1", "2"]
    assert resumed.reused == 2
