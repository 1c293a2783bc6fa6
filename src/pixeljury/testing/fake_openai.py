"""A scriptable OpenAI-compatible chat-completions server on 127.0.0.1, for engine tests.

What it answers is decided by a *script* keyed on the first text part of the user message, so one
batch can mix well-behaved and failing requests. Each script is a list of steps, one per attempt
(the last step repeats): a step is a :class:`Reply`. The server also records every request body and
the most requests it had in flight at once. Needs the ``serve`` extra (FastAPI, uvicorn).
"""

# No `from __future__ import annotations` here: FastAPI reads the route's annotations at runtime,
# and the Request class is imported inside _app (FastAPI is an optional extra).
import asyncio
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Reply:
    """One answer of the fake server."""

    content: str | None = ""  # the message content (None: the field is null)
    reasoning: str | None = None  # put apart from the content, under ``reasoning_field``
    reasoning_field: str = "reasoning"
    finish_reason: str = "stop"
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    raw_body: str | None = None  # sent verbatim instead of a completion (malformed bodies)
    delay: float = 0.0  # seconds to wait before answering (timeouts, concurrency)
    prompt_tokens: int = 11
    completion_tokens: int = 7
    # Log-probabilities of the first answer token, most likely first: sent as the choice's
    # ``logprobs.content[0]`` (OpenAI's shape) when the request asks for logprobs. None: no logprobs.
    top_logprobs: dict[str, float] | None = None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _script_key(body: dict[str, Any]) -> str:
    user = next(m for m in body["messages"] if m["role"] == "user")
    return next(p["text"] for p in user["content"] if p["type"] == "text")


class FakeOpenAIServer:
    """Use as a context manager: ``with FakeOpenAIServer({"key": [Reply(...)]}) as server: server.url``."""

    def __init__(self, scripts: dict[str, list[Reply]], default: Reply | None = None) -> None:
        self.scripts = scripts
        self.default = default
        self.hits: Counter[str] = Counter()
        self.bodies: list[dict[str, Any]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.port = free_port()
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _reply_for(self, key: str) -> Reply:
        steps = self.scripts.get(key)
        attempt = self.hits[key]
        self.hits[key] += 1
        if steps is None:
            if self.default is None:
                return Reply(status=400, raw_body=f'{{"error": "no script for {key!r}"}}')
            return self.default
        return steps[min(attempt, len(steps) - 1)]

    def _app(self) -> Any:
        from fastapi import FastAPI, Request
        from fastapi.responses import JSONResponse, Response

        app = FastAPI()

        @app.post("/v1/chat/completions")
        async def chat(request: Request) -> Response:
            body = await request.json()
            self.bodies.append(body)
            reply = self._reply_for(_script_key(body))
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                if reply.delay:
                    await asyncio.sleep(reply.delay)
            finally:
                self.in_flight -= 1
            if reply.raw_body is not None:
                return Response(reply.raw_body, status_code=reply.status, headers=reply.headers,
                                media_type="application/json")
            if reply.status != 200:
                return JSONResponse({"error": {"message": f"scripted {reply.status}"}},
                                    status_code=reply.status, headers=reply.headers)
            message: dict[str, Any] = {"role": "assistant", "content": reply.content}
            if reply.reasoning is not None:
                message[reply.reasoning_field] = reply.reasoning
            choice: dict[str, Any] = {"index": 0, "message": message, "finish_reason": reply.finish_reason}
            if body.get("logprobs") and reply.top_logprobs is not None:
                listed = list(reply.top_logprobs.items())[: int(body.get("top_logprobs") or 0) or 1]
                token, logprob = listed[0]
                choice["logprobs"] = {"content": [{
                    "token": token, "logprob": logprob,
                    "top_logprobs": [{"token": t, "logprob": lp} for t, lp in listed],
                }]}
            return JSONResponse({
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "model": body.get("model"),
                "choices": [choice],
                "usage": {"prompt_tokens": reply.prompt_tokens, "completion_tokens": reply.completion_tokens,
                          "total_tokens": reply.prompt_tokens + reply.completion_tokens},
            }, headers=reply.headers)

        return app

    def __enter__(self) -> "FakeOpenAIServer":
        import uvicorn

        config = uvicorn.Config(self._app(), host="127.0.0.1", port=self.port, log_level="warning",
                                timeout_graceful_shutdown=1)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="fake-openai-server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("fake OpenAI server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        assert self._thread is not None
        self._thread.join(timeout=10)


__all__ = ["FakeOpenAIServer", "Reply", "free_port"]
