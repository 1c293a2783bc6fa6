"""Leaderboards from one or more runs: per model the bench means (via :func:`pixeljury.scoring.aggregate`),
a bootstrap CI of the total, failure and N/A rates, and ranks. Outputs CSV, Markdown and JSON."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from pixeljury.analysis.agreement import bootstrap, resample
from pixeljury.analysis.records import Tally, tally
from pixeljury.analysis.rundir import Run
from pixeljury.rubric.taxonomy import L1_NAMES
from pixeljury.scoring import aggregate


@dataclass
class Entry:
    model: str  # as in the run; "<model> [<run dir>]" when several runs hold the same model
    run: str
    source_model: str  # the model's name inside its run
    comparable: bool | None  # the run's rubric is the official one (leaderboard-comparable)
    rank: int | None  # 1 = best total; equal totals share a rank; no total, no rank
    total: float | None
    total_ci: tuple[float, float] | None
    level1: dict[str, float | None]
    level2: dict[str, dict[str, float | None]]
    level3: dict[str, dict[str, dict[str, float | None]]]
    n_images: int
    n_images_scored: int
    requests: int  # (image, L1) judge requests
    parse_failures: int
    errors: int
    facets: int  # facet verdicts returned (scored + N/A + invalid)
    na: int
    counts: dict[str, dict[str, int]]  # per L1, from aggregate()
    run_status: str | None = None  # the run's manifest status: complete, incomplete, stopped, ...
    run_note: str | None = None  # what a reader must know about the run (e.g. that it is unfinished)

    @property
    def tally(self) -> Tally:
        return Tally(requests=self.requests, parse_failures=self.parse_failures, errors=self.errors, na=self.na,
                     facets=self.facets)

    @property
    def parse_failure_rate(self) -> float | None:
        return self.tally.parse_failure_rate

    @property
    def na_rate(self) -> float | None:
        return self.tally.na_rate

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["total_ci"] = list(self.total_ci) if self.total_ci else None
        d["parse_failure_rate"], d["na_rate"] = self.parse_failure_rate, self.na_rate
        return d


def _comparable(run: Run) -> bool | None:
    if "benchmark_comparable" in run.manifest:  # rubric, resize, decoding and pixel parity together
        return bool(run.manifest["benchmark_comparable"])
    rubric = run.manifest.get("rubric") or {}
    value = rubric.get("comparable", run.manifest.get("comparable"))
    if value and (run.manifest.get("constrained") or ((run.manifest.get("config") or {}).get("params") or {})
                  .get("thinking_budget") is not None):
        return False
    return None if value is None else bool(value)


def _total_ci(totals: list[float], n_boot: int, seed: int, confidence: float) -> tuple[float, float] | None:
    if n_boot <= 0 or len(totals) < 2:
        return None
    arr = np.asarray(totals)
    intervals, _ = bootstrap(lambda rng: {"total": float(arr[resample(rng, len(arr))].mean())},
                             n_boot=n_boot, seed=seed, confidence=confidence)
    return intervals.get("total")


def rank(entries: list[Entry]) -> list[Entry]:
    """Sort by total (best first) and give competition ranks (1, 2, 2, 4); entries without a total go last."""
    scored = sorted((e for e in entries if e.total is not None), key=lambda e: -e.total)  # type: ignore[operator]
    for i, e in enumerate(scored):
        e.rank = scored[i - 1].rank if i and e.total == scored[i - 1].total else i + 1
    rest = [e for e in entries if e.total is None]
    for e in rest:
        e.rank = None
    return scored + rest


def build(runs: list[Run], *, n_boot: int = 1000, seed: int = 0, confidence: float = 0.95) -> list[Entry]:
    seen = Counter(m for run in runs for m in run.models)
    entries: list[Entry] = []
    for run in runs:
        state = run.state
        for model in run.models:
            images = run.scored_images(model)
            bench = aggregate(image.record for image in images)
            totals = [image.total for image in images if image.total is not None]
            label = model if seen[model] == 1 else f"{model} [{run.path.name}]"
            counted = tally(images)
            entries.append(Entry(
                model=label,
                run=str(run.path),
                source_model=model,
                comparable=_comparable(run),
                rank=None,
                total=bench.total,
                total_ci=_total_ci(totals, n_boot, seed, confidence),
                level1=bench.l1,
                level2=bench.l2,
                level3=bench.l3,
                n_images=len(run.model_images(model)),
                n_images_scored=bench.n_images_scored,
                requests=counted.requests,
                parse_failures=counted.parse_failures,
                errors=counted.errors,
                facets=counted.facets,
                na=counted.na,
                counts=bench.counts,
                run_status=state.status,
                run_note=state.note,
            ))
    return rank(entries)


def run_notes(entries: list[Entry]) -> dict[str, str]:
    """Run directory -> its note (unfinished, or requests that could not be judged), once per run."""
    return {e.run: e.run_note for e in entries if e.run_note}


def dimensions(entries: list[Entry]) -> list[str]:
    """L1 names present in any entry, canonical order first."""
    present = {d for e in entries for d in e.level1}
    return [d for d in L1_NAMES if d in present] + sorted(present - set(L1_NAMES))


def _fmt(value: float | None, digits: int = 2) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def to_csv(entries: list[Entry]) -> str:
    dims = dimensions(entries)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["rank", "model", "total", "total_ci_low", "total_ci_high", *dims, "n_images", "n_images_scored",
                "requests", "parse_failures", "parse_failure_rate", "na_rate", "comparable", "run", "run_status"])
    for e in entries:
        ci = e.total_ci or ("", "")
        w.writerow([e.rank or "", e.model, "" if e.total is None else e.total, *ci,
                    *["" if e.level1.get(d) is None else e.level1[d] for d in dims],
                    e.n_images, e.n_images_scored, e.requests, e.parse_failures,
                    "" if e.parse_failure_rate is None else e.parse_failure_rate,
                    "" if e.na_rate is None else e.na_rate, "" if e.comparable is None else e.comparable, e.run,
                    e.run_status or ""])
    return buf.getvalue()


def to_markdown(entries: list[Entry]) -> str:
    dims = dimensions(entries)
    head = ["Rank", "Model", "Total", "95% CI", *dims, "Scored", "Parse fail", "N/A"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---:", ":---"] + ["---:"] * (len(head) - 2)) + "|"]
    for e in entries:
        ci = f"{e.total_ci[0]:.2f}–{e.total_ci[1]:.2f}" if e.total_ci else ""
        cells = [str(e.rank or "–"), e.model.replace("|", "\\|"), _fmt(e.total), ci,
                 *[_fmt(e.level1.get(d)) for d in dims], f"{e.n_images_scored}/{e.n_images}",
                 _fmt(None if e.parse_failure_rate is None else 100 * e.parse_failure_rate, 1) + "%",
                 _fmt(None if e.na_rate is None else 100 * e.na_rate, 1) + "%"]
        lines.append("| " + " | ".join(cells) + " |")
    notes = [f"- `{run}`: {note}" for run, note in run_notes(entries).items()]
    return "\n".join(lines + ([""] + notes if notes else [])) + "\n"


def to_json(entries: list[Entry], meta: dict[str, Any] | None = None) -> str:
    return json.dumps({**(meta or {}), "models": [e.as_dict() for e in entries]}, indent=2, allow_nan=False)
