"""A run tells its caller what happens through events (pixeljury.runs.events) and prints nothing;
the CLI's renderer turns the events into the lines and bar users see."""

from __future__ import annotations

import io
import json

from rich.console import Console

from pixeljury.cli.render import ConsoleRenderer
from pixeljury.engines.base import EngineError
from pixeljury.engines.replay import ReplayEngine
from pixeljury.runs import events as ev
from pixeljury.runs.judge import JudgeConfig, run_judge

from pj_testpaths import CHECKLIST_FIXTURE
from test_pipeline import all_ones_answer, make_images, write_jsonl


def _rows(tmp_path):
    names = make_images(tmp_path / "imgs", 3)
    rows = [{"prompt": "a cat", "image_path": names[0]}, {"prompt": "a dog", "image_path": names[1]},
            {"prompt": "a cat", "image_path": names[0]},  # a duplicate of row 0
            {"prompt": "a fox", "image_path": "imgs/missing.png"}]
    return write_jsonl(tmp_path / "in.jsonl", rows)


def _config(tmp_path, inp, **kw):
    return JudgeConfig(input=inp, out=tmp_path / "run", rubric_file=CHECKLIST_FIXTURE, dimensions=["Quality"],
                       retry_wait=0.0, **kw)


def _engine():
    return ReplayEngine(lambda req: all_ones_answer("Quality"), batch_size=1)


def test_a_run_emits_events_and_prints_nothing(tmp_path, capsys):
    inp = _rows(tmp_path)
    heard = ev.Collect()
    summary = run_judge(_config(tmp_path, inp), _engine, on_event=heard)
    out, err = capsys.readouterr()
    assert (out, err) == ("", "")  # the library prints nothing
    notes = {(n.row, n.kind) for n in heard.of(ev.RowNote)}
    assert notes == {(2, "duplicate"), (3, "skipped")}
    assert [type(e) for e in heard.events if isinstance(e, (ev.WorkStarted, ev.WorkFinished))] == \
        [ev.WorkStarted, ev.WorkFinished]
    advanced = heard.of(ev.Advanced)
    assert sum(a.n for a in advanced) == summary.computed == 2
    assert set().union(*(a.images for a in advanced)) and sum(a.parse_failures for a in advanced) == 0
    assert heard.of(ev.TotalChanged)[-1].total == 2  # what planning found left to compute
    assert not heard.of(ev.Resuming)

    again = ev.Collect()
    run_judge(_config(tmp_path, inp), _engine, on_event=again)
    assert again.of(ev.Resuming) == [ev.Resuming(str(tmp_path / "run"), 2)]
    assert sum(a.n for a in again.of(ev.Advanced)) == 0


def test_a_failing_engine_is_told_as_batch_failures_then_a_stop(tmp_path):
    inp = _rows(tmp_path)

    def refuse(_req):
        raise EngineError("credentials refused", retryable=False)

    heard = ev.Collect()
    summary = run_judge(_config(tmp_path, inp), lambda: ReplayEngine(refuse, batch_size=1), on_event=heard)
    failed = heard.of(ev.BatchFailed)
    assert failed == [ev.BatchFailed(1, (0,), 1, "credentials refused")]
    assert heard.of(ev.RunStopped)[0].reason.endswith("credentials refused") and summary.stopped


def _render(events, *, quiet=False):
    buf = io.StringIO()
    render = ConsoleRenderer(Console(file=buf, width=300, color_system=None, quiet=quiet))
    for event in events:
        render(event)
    return buf.getvalue()


def test_the_renderer_writes_the_lines_users_read():
    text = _render([
        ev.RowNote(3, "skipped", "image imgs/missing.png not found"),
        ev.RowNote(2, "duplicate", "same image and prompt as row 0"),
        ev.RowNote(5, "warning", "prompt differs from the benchmark's"),
        ev.RowNote(7, "unusable", "image could not be decoded"),
        ev.Resuming("runs/x", 12),
        ev.Notice("Pillow differs", "warning"),
        ev.BatchFailed(4, (1, 2), 3, "timeout"),
        ev.RunStopped("3 batches in a row failed"),
    ])
    assert text.splitlines() == [
        "row 3: skipped: image imgs/missing.png not found",
        "row 2: same image and prompt as row 0",
        "row 5: warning: prompt differs from the benchmark's",
        "row 7: image could not be decoded",
        "resuming: runs/x already holds 12 results; stored requests are skipped",
        "warning: Pillow differs",
        "engine failed on a batch of 4 (rows [1, 2]) after 3 attempt(s): timeout",
        "run stopped: 3 batches in a row failed. Finished results are kept; rerun the same command to continue.",
    ]


def test_the_renderer_draws_a_bar_and_quiet_draws_nothing():
    work = [ev.WorkStarted("judging", 10), ev.TotalChanged(4),
            ev.Advanced(2, tokens=50, images=frozenset({"a", "b"}), parse_failures=1),
            ev.Advanced(2, errors=1), ev.WorkFinished("judging")]
    text = _render(work)
    assert "judging" in text and "4/4" in text and "parse failures 1  errors 1" in text
    assert _render(work, quiet=True) == ""
    rows = _render([ev.WorkStarted("dry run: rows", 3, unit="rows"), *[ev.Advanced(1, written=2 * i) for i in (1, 2, 3)],
                    ev.WorkFinished("dry run: rows")])
    assert "3/3" in rows and "6 requests" in rows


def test_events_are_plain_data():
    event = ev.Advanced(1, images=frozenset({"x"}))
    assert json.dumps(event.__dict__, default=sorted) == \
        '{"n": 1, "tokens": 0, "images": ["x"], "parse_failures": 0, "errors": 0, "written": null}'


def test_metric_items_are_told_a_line_per_chunk():
    text = _render([ev.WorkStarted("clipscore@hessel-2.5x", 300, unit="items"), ev.Advanced(256, errors=1),
                    ev.Advanced(44), ev.WorkFinished("clipscore@hessel-2.5x")])
    assert text.splitlines() == ["clipscore@hessel-2.5x: 255/300 scored", "clipscore@hessel-2.5x: 299/300 scored"]
