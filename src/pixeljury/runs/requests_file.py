"""The files a dry run writes: ``requests.jsonl`` (one line per request) and ``request_texts.jsonl``
(each distinct text once).

A request's texts -- the system prompt, the user text before the image (it holds the prompt) and the
user text after it (dimension, scale, checklist) -- repeat across rows: the rubric's text of a
dimension is the same in every row judged on it. Written inline, the file grew with rows x rubric
text (1.45 GB for 100k rows). So each distinct text is written once, to ``request_texts.jsonl``::

    {"text_id": "3f9c0a1be27d4410", "text": "# Prompt\\na red cube\\n\\n# Image\\n"}

and each request line names its texts by that id::

    {"row": 0, "ID": null, "model": "m", "dimension": "Quality", "system_id": "…",
     "user": [{"type": "text", "text_id": "…"}, {"type": "image", "sha256": "…", "width": 1024,
              "height": 1024}, {"type": "text", "text_id": "…"}]}

A ``text_id`` is the first 16 hex digits of the SHA-256 of the text's UTF-8 bytes (all 64 should two
texts ever share the first 16), so equal texts have equal ids across runs and the reader checks every
text against its id.

:func:`read_requests` gives back each request as the self-contained object that dry runs wrote before
(texts inline); :func:`expand` writes those lines, byte for byte what earlier versions wrote, for a
diff between two dry runs or versions::

    python -m pixeljury.runs.requests_file OUT/requests.jsonl > requests.full.jsonl
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from pixeljury.core.jsonl import JsonLineError, iter_json_lines

TEXTS_NAME = "request_texts.jsonl"
SHORT_ID = 16  # hex digits of a text id


class RequestsFileError(ValueError):
    """A requests file that cannot be read back (a missing or altered text, a malformed line)."""


def texts_path(requests_path: Path) -> Path:
    """Where the texts of ``requests_path`` are: ``request_texts.jsonl`` beside it."""
    return Path(requests_path).with_name(TEXTS_NAME)


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False)


class RequestWriter:
    """Writes request lines to ``requests`` and each text, the first time it is seen, to ``texts``.

    Memory grows with the distinct texts (what ``texts`` holds), never with the number of requests.
    """

    def __init__(self, requests: IO[str], texts: IO[str]):
        self.requests, self.texts = requests, texts
        self._ids: dict[str, str] = {}  # text -> its id
        self._used: set[str] = set()  # ids given out (to catch two texts sharing the first 16 hex digits)
        self.written = 0

    @property
    def distinct_texts(self) -> int:
        return len(self._ids)

    def text_id(self, text: str) -> str:
        known = self._ids.get(text)
        if known is not None:
            return known
        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
        tid = digest[:SHORT_ID] if digest[:SHORT_ID] not in self._used else digest
        self._ids[text] = tid
        self._used.add(tid)
        self.texts.write(_dumps({"text_id": tid, "text": text}) + "\n")
        return tid

    def write(self, *, row: int, ID: int | None, model: str, dimension: str, system: str,
              user: list[dict[str, Any]]) -> None:
        """One request. ``user`` parts: ``{"type": "text", "text": ...}`` or ``{"type": "image", ...}``."""
        parts = [{"type": "text", "text_id": self.text_id(p["text"])} if p["type"] == "text" else p for p in user]
        self.requests.write(_dumps({"row": row, "ID": ID, "model": model, "dimension": dimension,
                                    "system_id": self.text_id(system), "user": parts}) + "\n")
        self.written += 1


def load_texts(path: Path) -> dict[str, str]:
    """text_id -> text, each checked against its id."""
    texts: dict[str, str] = {}
    try:
        fh = open(path, encoding="utf-8")
    except FileNotFoundError:
        raise RequestsFileError(f"{path} is missing: it holds the texts that the requests file beside it "
                                "refers to (both are written by `pixeljury judge --dry-run`)") from None
    with fh:
        for lineno, rec in _json_lines(path, fh, "expected text_id and text"):
            try:
                tid, text = rec["text_id"], rec["text"]
            except (KeyError, TypeError) as exc:
                raise RequestsFileError(f"{path} line {lineno}: expected text_id and text ({exc})") from None
            if not hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest().startswith(tid) or not tid:
                raise RequestsFileError(f"{path} line {lineno}: the text does not match its id {tid}")
            texts[tid] = text
    return texts


def _json_lines(path: Path, fh: Iterable[str], what: str) -> Iterator[tuple[int, Any]]:
    """:func:`~pixeljury.core.jsonl.iter_json_lines`, a bad line said as ``<path> line N: <what> (<why>)``."""
    try:
        yield from iter_json_lines(path, fh)
    except JsonLineError as exc:
        raise RequestsFileError(f"{path} line {exc.line}: {what} ({exc.cause})") from None


def _text(texts: dict[str, str], tid: str, where: str) -> str:
    try:
        return texts[tid]
    except KeyError:
        raise RequestsFileError(f"{where}: text {tid} is not in {TEXTS_NAME}") from None


def read_requests(path: str | Path) -> Iterator[dict[str, Any]]:
    """Each request of a dry run's ``requests.jsonl`` as one self-contained object, texts inline:
    ``{"row", "ID", "model", "dimension", "system", "user": [{"type": "text", "text"}, {"type":
    "image", ...}, ...]}``. Files written before texts were stored once (texts inline) are read too."""
    path = Path(path)
    texts: dict[str, str] | None = None
    with open(path, encoding="utf-8") as fh:
        for lineno, rec in _json_lines(path, fh, "not JSON"):
            if "system_id" not in rec:  # the older, self-contained form
                yield rec
                continue
            if texts is None:
                texts = load_texts(texts_path(path))
            where = f"{path} line {lineno}"
            out = {k: rec[k] for k in ("row", "ID", "model", "dimension")}
            out["system"] = _text(texts, rec["system_id"], where)
            out["user"] = [{"type": "text", "text": _text(texts, p["text_id"], where)} if p.get("type") == "text"
                           else p for p in rec["user"]]
            yield out


def expanded_line(request: dict[str, Any]) -> str:
    """A request as one line with its texts inline (the form of dry runs before texts were stored once)."""
    return _dumps(request) + "\n"


def expand(path: str | Path, out: IO[str]) -> int:
    """Write every request of ``path`` with its texts inline; returns the number of requests."""
    n = 0
    for request in read_requests(path):
        out.write(expanded_line(request))
        n += 1
    return n


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) not in (1, 3) or (len(args) == 3 and args[1] not in ("-o", "--out")):
        print("usage: python -m pixeljury.runs.requests_file OUT/requests.jsonl [-o FILE]\n"
              "writes every request with its texts inline, one JSON object a line", file=sys.stderr)
        return 2
    try:
        if len(args) == 3:
            with open(args[2], "w", encoding="utf-8") as fh:
                expand(args[0], fh)
        else:
            out = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", newline="\n")
            expand(args[0], out)
            out.flush()
    except BrokenPipeError:  # the reader stopped early (`| head`): not an error
        try:
            sys.stdout = open(os.devnull, "w")  # nothing more to flush at exit
        except OSError:
            pass
        return 0
    except (OSError, RequestsFileError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
