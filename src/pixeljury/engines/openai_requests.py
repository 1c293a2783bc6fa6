"""The request side of the OpenAI-compatible engine: the endpoint's URL, images as data URLs, and
chat-completions bodies with the generation parameters where vLLM and SGLang read them."""

from __future__ import annotations

import base64
import io
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from PIL import Image

from pixeljury.data.images import to_rgb
from pixeljury.engines.base import ChatRequest, chat_messages, GenerationParams, ImagePart, ScoreRequest

# The schema name sent when a request names none (servers only record it).
DEFAULT_SCHEMA_NAME = "answer"


def chat_completions_url(endpoint: str) -> str:
    """``endpoint`` is a base URL as the OpenAI clients take it (``http://host:8000/v1``); a full
    ``.../chat/completions`` URL is accepted as it is."""
    url = endpoint.rstrip("/")
    return url if url.endswith("/chat/completions") else f"{url}/chat/completions"


def redact_url(url: str) -> str:
    """The URL without user:password, for the manifest."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def png_data_url(image: Image.Image) -> str:
    """The image as a ``data:image/png;base64,...`` URL. PNG is lossless, so the server sees the
    same pixels the in-process engines see (non-RGB images go through the loader's own conversion)."""
    if image.mode != "RGB":
        image = to_rgb(image)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def build_messages(request: ChatRequest | ScoreRequest, image_urls: dict[str, str]) -> list[dict[str, Any]]:
    """Chat-completions messages; each image as its (already encoded) data URL."""
    return chat_messages(request, lambda part: {"type": "image_url", "image_url": {"url": image_urls[part.sha256]}})


def sampling_fields(
    params: GenerationParams, json_schema: dict[str, Any] | None, min_new_tokens: int | None = None,
    schema_name: str | None = None,
) -> dict[str, Any]:
    """Generation parameters as vLLM and SGLang read them from a chat-completions body.

    ``top_k``, ``repetition_penalty`` and ``chat_template_kwargs`` are not OpenAI fields; both
    servers accept them at the top level of the body (the OpenAI SDK's ``extra_body``).
    """
    body: dict[str, Any] = {**params.sampling(), "chat_template_kwargs": {"enable_thinking": params.enable_thinking}}
    if params.json_schema_constrained:
        if json_schema is None:
            raise ValueError("constrained output asked for, but the request carries no JSON schema")
        # vLLM >= 0.11 reads `structured_outputs`; SGLang, LMDeploy and hosted APIs read the
        # standard `response_format`. vLLM gives `structured_outputs` precedence, so sending
        # both is consistent; the schema is the same object either way.
        body["structured_outputs"] = {"json": json_schema}
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": schema_name or DEFAULT_SCHEMA_NAME, "schema": json_schema, "strict": True},
        }
    if params.thinking_budget is not None:
        body["thinking_token_budget"] = params.thinking_budget
    if min_new_tokens is not None:
        body["min_tokens"] = min_new_tokens
    return body


def encode_images(requests: list[ChatRequest] | list[ScoreRequest]) -> dict[str, str]:
    """Every distinct image of the batch as a data URL, each encoded once (the pipeline sends all
    dimensions of an image together; an edit judge sends several images per request)."""
    image_urls: dict[str, str] = {}
    for request in requests:
        for part in request.user:
            if isinstance(part, ImagePart) and part.sha256 not in image_urls:
                image_urls[part.sha256] = png_data_url(part.image)
    return image_urls


def chat_body(model: str, request: ChatRequest, params: GenerationParams, image_urls: dict[str, str],
              min_new_tokens: int | None = None) -> dict[str, Any]:
    """The chat-completions body for one generation request."""
    return {
        "model": model,
        "messages": build_messages(request, image_urls),
        **sampling_fields(params, request.json_schema, min_new_tokens, request.schema_name),
    }


def score_body(model: str, request: ScoreRequest, image_urls: dict[str, str], top_logprobs: int) -> dict[str, Any]:
    """The body for scoring a request's candidates: one greedy token with its ``top_logprobs``."""
    return {
        "model": model,
        "messages": build_messages(request, image_urls),
        "max_tokens": 1,
        "temperature": 0.0,
        "logprobs": True,
        "top_logprobs": top_logprobs,
        "chat_template_kwargs": {"enable_thinking": request.enable_thinking},
    }
