"""The store-backed driver of any evaluator (pixeljury.runs.evaluate.run_evaluator) with a replay
engine: failures recorded against their sample and never scored, stops, events, in-memory use."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from pixeljury.core.evaluator import (
    Ask, Evaluator, EvaluatorIdentity, ImageRef, Reading, Sample, Verdict, VerdictMeans, lazy_image,
)
from pixeljury.engines.base import ChatRequest, EngineError, TextPart
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
