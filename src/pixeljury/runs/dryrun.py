"""``judge --dry-run``: the requests a run would send, one JSON object a line, without any model."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console

from pixeljury.data.images import ImageLoadError, load_for_judge
from pixeljury.engines.base import ImagePart, TextPart
from pixeljury.protocols import qjudger
from pixeljury.runs.judge import JudgeConfig, load_inputs, plan
from pixeljury.runs.store import ResultStore


def dry_run(config: JudgeConfig, judge_model: str, judge_revision: str | None, dest: Path,
            console: Console | None = None) -> tuple[int, int]:
    """Write request lines to ``dest``; returns (requests written, rows skipped)."""
    console = console or Console(stderr=True, quiet=config.quiet)
    inputs = load_inputs(config)
    with ResultStore(":memory:") as scratch:
        prep = plan(config, inputs, scratch, judge_model, judge_revision)
    dest.parent.mkdir(parents=True, exist_ok=True)
    written = skipped = 0
    with open(dest, "w", encoding="utf-8") as fh:
        for row in prep.rows:
            if row.status != "ok":
                skipped += 1
                console.print(f"[yellow]row {row.row}: {row.status}: {'; '.join(row.errors)}")
                continue
            try:
                image, _ = load_for_judge(Path(row.image_abspath), keep_aspect=config.keep_aspect)
            except ImageLoadError as exc:
                skipped += 1
                console.print(f"[yellow]row {row.row}: {exc}")
                continue
            for dim, key in row.keys.items():
                req = qjudger.build_request(prep.rubric, row.prompt, dim, image, row.image_sha256, f"{dim}:{key}")
                user = []
                for part in req.user:
                    if isinstance(part, TextPart):
                        user.append({"type": "text", "text": part.text})
                    elif isinstance(part, ImagePart):
                        user.append({"type": "image", "sha256": part.sha256, "width": part.image.width,
                                     "height": part.image.height})
                fh.write(json.dumps({"row": row.row, "ID": row.ID, "model": row.model, "dimension": dim,
                                     "system": req.system, "user": user}, ensure_ascii=False) + "\n")
                written += 1
    return written, skipped
