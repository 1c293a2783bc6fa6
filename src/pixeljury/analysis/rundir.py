"""Reading a run directory written by ``pixeljury judge --out DIR`` (manifest.json + per_image.jsonl)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pixeljury.analysis.records import JudgedImage, score_columns
from pixeljury.core.jsonl import JsonLineError, iter_json_lines

MANIFEST = "manifest.json"
PER_IMAGE = "per_image.jsonl"
STORE = "results.sqlite"


class RunDirError(ValueError):
    """A run directory is missing a file or holds a malformed record; the message says which."""


@dataclass(frozen=True)
class RunState:
    """How the run behind a directory's outputs ended, from its manifest, for reports to say."""

    status: str | None  # the manifest's "status" (derived for manifests older than it); None without one
    unfinished: bool  # a rerun of the same command would add results
    note: str | None  # one plain sentence for readers, None when there is nothing to say


_RERUN = "rerun the same `pixeljury judge` command to finish it"


def run_state(manifest: dict[str, Any]) -> RunState:
    """Whether a run is unfinished (interrupted, stopped, or requests left without a result a rerun
    may give) and what to tell a reader. Manifests written before ``status`` existed are read from
    ``finished_at``, ``stopped`` and ``failed_requests``."""
    if not manifest:
        return RunState(None, False, None)
    failed = manifest.get("failed_requests") or 0
    requests = manifest.get("requests")
    status = manifest.get("status")
    if status is None:
        status = ("interrupted" if manifest.get("finished_at") is None else "stopped" if manifest.get("stopped")
                  else "incomplete" if failed else "complete")
    of = f"{failed} of {requests}" if requests is not None else str(failed)
    if status in ("interrupted", "running"):
        why = manifest.get("stopped") or "its manifest has no finish time"
        return RunState(status, True, f"unfinished run: interrupted before the end ({why}); requests it had not "
                                      f"reached have no result or come from an earlier run; {_RERUN}")
    if status == "stopped":
        return RunState(status, True, f"unfinished run: stopped early ({manifest.get('stopped')}); {of} requests "
                                      f"have no result; {_RERUN}")
    if status == "incomplete":
        return RunState(status, True, f"unfinished run: {of} requests have no result (errors a rerun may fix); "
                                      f"{_RERUN}")
    if status == "permanent_failures":
        return RunState(status, False, f"{of} requests could not be judged: their input is unusable (errors marked "
                                       "permanent in per_image.jsonl; fix those rows); every other request has a "
                                       "result")
    return RunState(status, False, None)


@dataclass
class Run:
    path: Path
    manifest: dict[str, Any]
    images: list[JudgedImage]  # per_image.jsonl, typed, in file order

    @property
    def records(self) -> list[dict[str, Any]]:
        """The records as written in per_image.jsonl."""
        return [dict(image.record) for image in self.images]

    @property
    def state(self) -> RunState:
        return run_state(self.manifest)

    @property
    def models(self) -> list[str]:
        return list(dict.fromkeys(image.model for image in self.images))

    def model_images(self, model: str) -> list[JudgedImage]:
        """Every row of one model, whatever its status."""
        return [image for image in self.images if image.model == model]

    def scored_images(self, model: str) -> list[JudgedImage]:
        """Rows of one model that entered scoring (status "ok"); row errors and duplicates do not."""
        return [image for image in self.images if image.model == model and image.scored]

    def scored_records(self, model: str) -> list[dict[str, Any]]:
        return [dict(image.record) for image in self.scored_images(model)]


def is_run_dir(path: str | Path) -> bool:
    return (Path(path) / PER_IMAGE).is_file()


def load_run(path: str | Path) -> Run:
    path = Path(path)
    per_image = path / PER_IMAGE
    if not per_image.is_file():
        if (path / STORE).is_file():
            raise RunDirError(f"{path} has a result store but no {PER_IMAGE}: write its outputs with "
                              f"`pixeljury export {path}`, then run this again")
        raise RunDirError(f"{path} is not a run directory: it has neither {PER_IMAGE} nor {STORE} (make one with "
                          "`pixeljury judge INPUT --out DIR`)")
    manifest: dict[str, Any] = {}
    manifest_path = path / MANIFEST
    if manifest_path.is_file():
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise RunDirError(f"{manifest_path} is not valid JSON: {exc}") from None
        if not isinstance(manifest, dict):
            raise RunDirError(f"{manifest_path} holds a {type(manifest).__name__}, expected an object")
    images: list[JudgedImage] = []
    try:
        for lineno, rec in iter_json_lines(per_image):
            if not isinstance(rec, dict):
                raise RunDirError(f"{per_image} line {lineno} is a {type(rec).__name__}, expected an object")
            for required in ("model", "status"):
                if required not in rec:
                    raise RunDirError(f"{per_image} line {lineno} has no {required!r} field")
            images.append(JudgedImage.from_dict(rec))
    except JsonLineError as exc:
        raise RunDirError(str(exc)) from None
    return Run(path, manifest, images)


METADATA_FIELDS = ("row", "model", "ID", "prompt", "image_path", "image_abspath", "image_sha256", "status")


def run_table(run: Run) -> tuple[list[dict[str, Any]], list[str]]:
    """One flat row per record: metadata, then the input's own fields (where their names are free),
    then the scores. Returns (rows, score column names present in the run, canonical order first)."""
    rows: list[dict[str, Any]] = []
    present: set[str] = set()
    for image in run.images:
        rec = image.record
        scores = image.flat_scores()
        row: dict[str, Any] = {k: rec.get(k) for k in METADATA_FIELDS}
        for k, v in (rec.get("input") or {}).items():
            if k not in row and k not in scores:
                row[k] = v
        row.update(scores)
        present.update(k for k, v in scores.items() if v is not None)
        rows.append(row)
    ordered = [c for c in score_columns() if c in present]
    ordered += sorted(present - set(ordered))  # names outside the taxonomy still count, last
    return rows, ordered
