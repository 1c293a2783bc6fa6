"""The self-contained HTML report: leaderboard, L1 radars, L2/L3 heatmaps, failure and N/A rates,
a filterable gallery with the judge's reasoning, and each run's provenance. Everything (CSS, JS,
charts, thumbnails) is inlined, so the file opens offline and can be mailed around."""

from __future__ import annotations

import base64
import datetime as _dt
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from pixeljury import __version__
from pixeljury.analysis import leaderboard as lb
from pixeljury.analysis.records import JudgedImage, Tally, tally_by_dimension
from pixeljury.analysis.rundir import Run
from pixeljury.data.images import ImageLoadError, open_image, to_rgb
from pixeljury.protocols.qjudger import THINK_END
from pixeljury.report.svg import PALETTE, heatmap, radar, score_colour
from pixeljury.rubric.taxonomy import TREE

TEMPLATE_DIR = Path(__file__).parent / "templates"


@dataclass
class ReportOptions:
    title: str = "pixeljury report"
    thumb_size: int = 256  # long side, pixels
    max_images_per_model: int = 200  # 0: all
    n_boot: int = 1000
    seed: int = 0
    jpeg_quality: int = 80


def thumbnail_data_uri(path: Path, size: int, quality: int) -> str:
    """A downscaled JPEG of the image as a data: URI. Raises ImageLoadError for an unusable image."""
    img, _ = open_image(path)
    rgb = to_rgb(img)
    rgb.thumbnail((size, size))
    buf = io.BytesIO()
    rgb.save(buf, format="JPEG", quality=quality, optimize=True)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def split_reasoning(raw_text: str | None) -> tuple[str, str]:
    """(reasoning before </think>, answer after it). Without </think> it is all answer."""
    text = raw_text or ""
    cut = text.rfind(THINK_END)
    if cut == -1:
        return "", text.strip()
    reasoning = text[:cut].replace("<think>", "", 1).strip()
    return reasoning, text[cut + len(THINK_END):].strip()


def _ordered_rows(entries: list[lb.Entry], level: str) -> list[tuple[str, str]]:
    """(L1, name) rows present in any entry, canonical taxonomy order first."""
    present: set[tuple[str, str]] = set()
    for e in entries:
        if level == "l2":
            present |= {(d, l2) for d, l2s in e.level2.items() for l2 in l2s}
        else:
            present |= {(d, f"{l2} / {l3}") for d, l2s in e.level3.items() for l2, l3s in l2s.items() for l3 in l3s}
    canonical = []
    for d, l2s in TREE.items():
        for l2, facets in l2s.items():
            names = [l2] if level == "l2" else [f"{l2} / {l3}" for l3 in facets]
            canonical += [(d, n) for n in names if (d, n) in present]
    return canonical + sorted(present - set(canonical))


def _heat_value(e: lb.Entry, d: str, name: str, level: str) -> float | None:
    if level == "l2":
        return e.level2.get(d, {}).get(name)
    l2, _, l3 = name.partition(" / ")  # built as "L2 / L3" above; L2 names never contain " / "
    return e.level3.get(d, {}).get(l2, {}).get(l3)


def _rates(images: list[JudgedImage], dims: list[str]) -> dict[str, dict[str, Any]]:
    """Per L1: requests, parse-failure rate (of requests), N/A rate (of facet verdicts)."""
    counted = tally_by_dimension(images)
    out: dict[str, dict[str, Any]] = {}
    for d in dims:
        t = counted.get(d) or Tally()
        out[d] = {"requests": t.requests, "parse_failure": t.parse_failure_rate, "na": t.na_rate}
    return out


def _facets(info: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for l2, l3s in (info.get("level3") or {}).items():
        for l3, value in l3s.items():
            raw = ((info.get("parsed") or {}).get(l2) or {}).get(l3)
            raw_score = raw.get("score") if isinstance(raw, dict) else raw
            rows.append({"l2": l2, "l3": l3, "score": value, "raw": raw_score, "colour": score_colour(value)})
    return rows


def _gallery(runs: list[Run], options: ReportOptions) -> tuple[list[dict[str, Any]], int]:
    items: list[dict[str, Any]] = []
    thumbs: dict[str, str] = {}
    missing = 0
    for run in runs:
        per_model: dict[str, int] = {}
        for image in run.images:
            rec, model = image.record, image.model
            per_model[model] = per_model.get(model, 0) + 1
            if options.max_images_per_model and per_model[model] > options.max_images_per_model:
                continue
            path = rec.get("image_abspath") or rec.get("image_path")
            thumb, thumb_error = None, None
            if path:
                if path not in thumbs:
                    try:
                        thumbs[path] = thumbnail_data_uri(Path(path), options.thumb_size, options.jpeg_quality)
                    except ImageLoadError as exc:
                        thumbs[path] = ""
                        thumb_error = str(exc)
                thumb = thumbs[path] or None
            if thumb is None:
                missing += 1
                thumb_error = thumb_error or "no image path"
            dims = []
            for d, dim in image.dimensions.items():
                reasoning, answer = split_reasoning(dim.detail.get("raw_text"))
                dims.append({"name": d, "status": dim.status, "level1": dim.level1,
                             "colour": score_colour(dim.level1), "facets": _facets(dim.detail),
                             "reasoning": reasoning, "answer": answer, "error": dim.error,
                             "truncated": dim.truncated})
            items.append({"model": model, "prompt": image.prompt or "", "row": image.row, "id": rec.get("ID"),
                          "image_path": rec.get("image_path"), "thumb": thumb, "thumb_error": thumb_error,
                          "status": image.status, "errors": list(image.errors), "total": image.total,
                          "total_colour": score_colour(image.total), "dims": dims})
    return items, missing


def _provenance(run: Run) -> dict[str, Any]:
    m = run.manifest
    return {"path": str(run.path), "judge": m.get("judge") or {}, "rubric": m.get("rubric") or {},
            "versions": {k: m.get(k) for k in ("pixeljury_version", "git_revision", "python", "torch", "transformers", "device")},
            "input_sha256": m.get("input_sha256"), "started_at": m.get("started_at"), "finished_at": m.get("finished_at"),
            "config": json.dumps(m.get("config") or {}, indent=2, sort_keys=True), "has_manifest": bool(m),
            "status": run.state.status}


def build_context(runs: list[Run], options: ReportOptions) -> dict[str, Any]:
    entries = lb.build(runs, n_boot=options.n_boot, seed=options.seed)
    dims = lb.dimensions(entries)
    models = [e.model for e in entries]
    radars = [{"model": e.model, "svg": Markup(radar(dims, [e.level1.get(d) for d in dims],
                                                     colour=PALETTE[i % len(PALETTE)], title=f"L1 means of {e.model}"))}
              for i, e in enumerate(entries)] if len(dims) >= 3 else []
    heatmaps = []
    for level, title in (("l2", "L2 sub-capabilities"), ("l3", "L3 facets")):
        rows = _ordered_rows(entries, level)
        if rows:
            values = [[_heat_value(e, d, name, level) for e in entries] for d, name in rows]
            heatmaps.append({"title": title, "svg": Markup(heatmap(rows, models, values, title=title))})
    runs_by_path = {str(r.path): r for r in runs}
    rates = [{"model": e.model, "dims": _rates(runs_by_path[e.run].scored_images(e.source_model), dims)} for e in entries]
    gallery, missing = _gallery(runs, options)
    return {
        "title": options.title, "version": __version__,
        "generated_at": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "entries": entries, "dims": dims, "models": models, "radars": radars, "heatmaps": heatmaps,
        "rates": rates, "gallery": gallery, "missing_images": missing,
        "runs": [_provenance(r) for r in runs], "score_colour": score_colour,
        # Said at the top: a reader must know before the numbers that a run is unfinished.
        "notices": [{"path": str(r.path), "note": r.state.note, "unfinished": r.state.unfinished}
                    for r in runs if r.state.note],
    }


def render(context: dict[str, Any]) -> str:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATE_DIR), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    return env.get_template("report.html.jinja").render(**context)


def write_report(runs: list[Run], out: Path, options: ReportOptions | None = None) -> str:
    """Write the report; returns a one-line summary for the CLI."""
    options = options or ReportOptions()
    context = build_context(runs, options)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(context), encoding="utf-8")
    size_kb = out.stat().st_size / 1024
    summary = f"{len(context['entries'])} models, {len(context['gallery'])} gallery images, {size_kb:.0f} KiB"
    if context["missing_images"]:
        summary += f", {context['missing_images']} images could not be shown"
    return summary
