"""Requests and constants shared by the vLLM tests (conftest holds the fixtures)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from pixeljury.engines.base import ChatRequest
from pixeljury.protocols.qjudger import build_request
from pixeljury.protocols.qjudger_schema import dimension_schema
from pixeljury.rubric.builtin import builtin_rubric
from pixeljury.rubric.taxonomy import L1_NAMES

# With a reasoning parser, vLLM applies the grammar only after `</think>`. A random model seldom
# writes `</think>` and may end inside its thinking: the budget forces `</think>` after this many
# tokens and min_tokens = budget + 1 forbids an earlier end.
THINKING_BUDGET = 24
MIN_NEW_TOKENS = THINKING_BUDGET + 1
MAX_MODEL_LEN = 4096
# A random model's logits are small and close together, so greedy decoding meets near-ties often.
# In bfloat16 the rounding differs with batch composition (server and offline batch differently)
# and flips such ties; float32's error is far below the typical gap, so both paths decode alike.
DTYPE = "float32"


def noise_image(seed: int, size: int = 128) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8))


def judge_requests(n_images: int, *, with_schema: bool) -> list[ChatRequest]:
    """All five dimensions of ``n_images`` noise images, as the pipeline would batch them."""
    rubric = builtin_rubric()
    requests = []
    for i in range(n_images):
        image = noise_image(i)
        for dimension in L1_NAMES:
            request = build_request(rubric, f"a red bicycle number {i}", dimension, image, f"img{i}", f"{i}:{dimension}")
            if with_schema:
                request.json_schema = dimension_schema(rubric, dimension)
            requests.append(request)
    return requests


def dimension_of(request_id: str) -> str:
    return request_id.split(":", 1)[1]
