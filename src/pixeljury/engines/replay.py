"""An engine that replays recorded texts: for tests, benchmarks of the non-model pipeline, and
re-parsing outputs produced elsewhere."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from pixeljury.engines.base import ChatRequest, Engine, EngineError, Generation, GenerationParams


class ReplayEngine(Engine):
    """Answers each request with ``respond(request)``; a returned ``None`` means "no recording".

    Blocking, like the in-process engines: ``agenerate`` runs ``respond`` on the engine's worker
    thread, one batch at a time, so ``respond`` and :attr:`calls` need no locking of their own."""

    name = "replay"

    def __init__(self, respond: Callable[[ChatRequest], str | None], *, model_id: str = "replay",
                 revision: str | None = None, batch_size: int = 64):
        self.respond = respond
        self.model_id = model_id
        self.revision = revision
        self.preferred_batch_size = batch_size
        self.calls = 0  # number of requests answered, for tests that count recomputation

    @classmethod
    def constant(cls, text: str, **kw) -> "ReplayEngine":
        return cls(lambda _req: text, **kw)

    @classmethod
    def from_jsonl(cls, path: str | Path, **kw) -> "ReplayEngine":
        """Recordings as JSON lines ``{"image_sha256": ..., "dimension": ..., "text": ...}``, matched to a
        request by its (first) image's hash and its ``tags["dimension"]``, which Q-Judger sets."""
        table: dict[tuple[str, str], str] = {}
        for lineno, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    rec = json.loads(line)
                    table[(rec["image_sha256"], rec["dimension"])] = rec["text"]
                except (json.JSONDecodeError, KeyError) as exc:
                    raise ValueError(f"{path} line {lineno}: expected image_sha256, dimension, text ({exc})") from None

        def respond(req: ChatRequest) -> str | None:
            image = req.image
            return table.get((image.sha256 if image else "", req.tags.get("dimension", "")))

        return cls(respond, model_id=kw.pop("model_id", f"replay:{Path(path).name}"), **kw)

    def generate(self, requests: list[ChatRequest], params: GenerationParams) -> list[Generation]:
        out = []
        for req in requests:
            text = self.respond(req)
            self.calls += 1
            if text is None:
                out.append(Generation(req.request_id, "", "error", error="no recorded answer for this request"))
            else:
                out.append(Generation(req.request_id, text, "stop", completion_tokens=len(text.split())))
        if not out and requests:
            raise EngineError("replay produced nothing")
        return out
