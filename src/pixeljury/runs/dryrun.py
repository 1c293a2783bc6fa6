"""``judge --dry-run``: the requests a run would send, one JSON object a line, without any model."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console

from pixeljury.data.images import ImageLoadError, load_for_judge
from pixeljury.engines.base import ImagePart, TextPart
from pixeljury.protocols import qjudger
from pixeljury.runs.exports import slug
from pixeljury.runs.judge import JudgeConfig, load_inputs, plan, report_row, warn_parity
from pixeljury.runs.store import ResultStore

# Keys of a dry run name no judge when none is given; they are never stored.
NO_MODEL = "(dry run: no model)"


def saved_image_name(row: int, dimension: str) -> str:
    """File name of a row's image as sent for one dimension: ``row00012_Real-world_Fidelity.png``."""
    return f"row{row:05d}_{slug(dimension)}.png"


def dry_run(config: JudgeConfig, judge_model: str | None, judge_revision: str | None, dest: Path,
            console: Console | None = None, save_images: Path | None = None) -> tuple[int, int]:
    """Write request lines to ``dest``; returns (requests written, rows skipped).

    With ``save_images``, every image exactly as it would be sent (after RGB conversion and the
    official resize) is written there as a lossless PNG, one per row and dimension."""
    console = console or Console(stderr=True, quiet=config.quiet)
    judge_model = judge_model or NO_MODEL
    inputs = load_inputs(config)
    warn_parity(console)
    if save_images is not None:
        try:
            save_images.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ValueError(f"cannot write images to {save_images}: {exc.strerror or exc}") from None
    with ResultStore(":memory:") as scratch:
        prep = plan(config, inputs, scratch, judge_model, judge_revision)
    dest.parent.mkdir(parents=True, exist_ok=True)
    written = skipped = 0
    with open(dest, "w", encoding="utf-8") as fh:
        for row in prep.rows:
            report_row(row, console)
            if row.status != "ok":
                skipped += 1
                continue
            try:
                image, _ = load_for_judge(Path(row.image_abspath), keep_aspect=config.keep_aspect)
            except ImageLoadError as exc:
                skipped += 1
                console.print(f"[yellow]row {row.row}: {exc}")
                continue
            for dim, key in row.keys.items():
                req = qjudger.build_request(prep.rubric, row.prompt, dim, image, row.image_sha256, f"{dim}:{key}")
                saved = None
                if save_images is not None:
                    saved = save_images / saved_image_name(row.row, dim)
                    image.save(saved, format="PNG")
                user = []
                for part in req.user:
                    if isinstance(part, TextPart):
                        user.append({"type": "text", "text": part.text})
                    elif isinstance(part, ImagePart):
                        user.append({"type": "image", "sha256": part.sha256, "width": part.image.width,
                                     "height": part.image.height,
                                     **({"saved_as": str(saved)} if saved is not None else {})})
                fh.write(json.dumps({"row": row.row, "ID": row.ID, "model": row.model, "dimension": dim,
                                     "system": req.system, "user": user}, ensure_ascii=False) + "\n")
                written += 1
    return written, skipped
