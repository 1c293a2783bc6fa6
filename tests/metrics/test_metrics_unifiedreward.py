from __future__ import annotations

import pytest
from PIL import Image

from pixeljury.engines.base import ChatRequest, Engine, Generation, GenerationParams, ImagePart, TextPart
from pixeljury.metrics.base import MetricError, MetricUnavailable
from pixeljury.metrics.registry import load_metric
from pixeljury.metrics.unifiedreward import parse_ratings


class ScriptedEngine(Engine):
    """Answers each request with the next scripted text; keeps the requests it saw."""

    name = "scripted"
    model_id = "test/unifiedreward"
    revision = "abc123"
    preferred_batch_size = 2

    def __init__(self, answers: list[str]):
        self.answers = list(answers)
        self.seen: list[ChatRequest] = []

    def generate(self, requests: list[ChatRequest], params: GenerationParams) -> list[Generation]:
        self.seen.extend(requests)
        return [Generation(r.request_id, self.answers.pop(0), "stop") for r in requests]


def _answer(a, c, s):
    return f"Alignment Score (1-5): {a}\nCoherence Score (1-5): {c}\nStyle Score (1-5): {s}"


def test_scores_are_the_mean_of_the_three_parsed_ratings():
    engine = ScriptedEngine([_answer(5, 4, 3), "Some preamble.\n" + _answer(2, 2.5, 1), _answer(1, 1, 1)])
    metric = load_metric("unifiedreward", engine=engine)
    images = [Image.new("RGB", (8, 8), c) for c in ("red", "blue", "green")]
    results = metric.score(["a red square", "a blue square", "green"], images)
    assert [r.value for r in results] == [4.0, pytest.approx(5.5 / 3), 1.0]
    assert results[0].extras["alignment"] == 5 and results[0].convention == "unifiedreward@2.0-mean-1-5"
    first = engine.seen[0]
    assert isinstance(first.user[0], ImagePart) and isinstance(first.user[1], TextPart)
    assert first.user[1].text.endswith("Text Caption: [a red square]")
    assert metric.weights_label() == "test/unifiedreward@abc123"


def test_unparseable_output_is_an_error_not_a_score():
    engine = ScriptedEngine([_answer(5, 4, 3), "Alignment Score (1-5): 4\nCoherence Score (1-5): 9\nStyle Score (1-5): 3"])
    metric = load_metric("unifiedreward", engine=engine)
    with pytest.raises(MetricError, match=r"item 1 \(prompt 'b'\): coherence score 9.0 is outside 1-5"):
        metric.score(["a", "b"], [Image.new("RGB", (4, 4))] * 2)
    with pytest.raises(ValueError, match="no 'Style Score"):
        parse_ratings("Alignment Score (1-5): 3\nCoherence Score (1-5): 3")


def test_needs_an_engine():
    with pytest.raises(MetricUnavailable, match="pass engine="):
        load_metric("unifiedreward")


def test_score_file_records_a_bad_generation_against_its_row_and_keeps_the_others(tmp_path):
    import json

    from pixeljury.metrics.run import score_file
    from pixeljury.runs.store import ResultStore

    lines = []
    for i in range(3):
        Image.new("RGB", (8, 8), (i * 80, 0, 0)).save(tmp_path / f"{i}.png")
        lines.append(json.dumps({"prompt": f"prompt {i}", "image_path": f"{i}.png"}))
    (tmp_path / "in.jsonl").write_text("\n".join(lines))
    # Chunk of 2 fails on its second item, then is retried item by item; the last chunk is fine.
    engine = ScriptedEngine([_answer(5, 5, 5), "no ratings", _answer(5, 5, 5), "still none", _answer(3, 3, 3)])
    summaries = score_file(tmp_path / "in.jsonl", tmp_path / "run", ["unifiedreward"],
                           metric_kwargs={"unifiedreward": {"engine": engine}})
    assert summaries[0].scored == 2 and [i for i, _ in summaries[0].failed] == [1]
    with ResultStore.in_dir(tmp_path / "run") as store:
        assert sorted(r.prompt for r in store.iter_results()) == ["prompt 0", "prompt 2"]
        fields = next(store.iter_results()).key_fields
        assert (fields["weights"], fields["dtype"], fields["preprocessing"]) == (
            "test/unifiedreward@abc123", "engine-unreported", "unifiedreward-2.0-pointwise-prompt.1")
        assert next(store.iter_results()).parsed["tokens_dropped"] is None  # no text limit
        assert "no 'Alignment Score" in store.failures()[0]["message"]
    rows = [json.loads(x) for x in (tmp_path / "run" / "scores.jsonl").read_text().splitlines()]
    assert [r["unifiedreward@2.0-mean-1-5"] for r in rows] == [5.0, None, 3.0]
