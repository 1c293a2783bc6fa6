"""Per-item metrics on the evaluator contract, so ``pixeljury score`` runs through the same runner as
``pixeljury judge``.

- :class:`MetricEvaluator` asks one ``measure`` request per (prompt, image) and reads the value;
  its key fields are the metric's (resolved weights, dtype, preprocessing), so results stored by
  earlier versions of ``score`` are found again.
- :class:`MetricEngine` serves those requests with the loaded metric: a chunk at a time, and item
  by item when the chunk fails, so one unreadable answer (a generative metric's) fails its own row.
"""

from __future__ import annotations

import time
from typing import Any

from PIL import Image

from pixeljury.core.evaluator import (
    Ask, Evaluator, EvaluatorIdentity, ImageRef, Reading, Sample, StoredForm, Verdict, VerdictMeans, lazy_image,
)
from pixeljury.core.requests import EngineCapabilities, EngineError, MeasureRequest, Measurement
from pixeljury.data.images import ImageLoadError
from pixeljury.metrics.base import Metric, MetricError, MetricInputError, MetricResult, load_rgb

# Bump when the meaning of a stored metric value changes. 2: "weights" is the resolved identity (hub
# commit or content fingerprint, not "repo@main" or a bare local path), "dtype" and "preprocessing" added.
KEY_VERSION = 2


def metric_key_fields(metric: Metric) -> dict[str, Any]:
    """The key fields every item of one loaded metric shares."""
    return {
        "kind": "metric", "key_version": KEY_VERSION, "metric": metric.name, "convention": metric.convention,
        "weights": metric.weights_label(), "dtype": metric.dtype_label(),
        "preprocessing": metric.preprocessing_version,
    }


class MetricEvaluator(Evaluator):
    """One ask per item, named by the metric's convention; the verdict's value is the metric's."""

    one_ask_per_sample = True
    request_kinds = frozenset({"measure"})

    def __init__(self, metric: Metric):
        self.metric = metric
        self.shared_fields = metric_key_fields(metric)
        self.identity = EvaluatorIdentity(f"metric:{metric.name}", str(KEY_VERSION), self.shared_fields)
        self.failure_stage = f"metric:{metric.name}"

    def plan(self, sample: Sample) -> list[Ask]:
        request = MeasureRequest(sample.sample_id, sample.prompt, [lazy_image(ref) for ref in sample.images])
        return [Ask(self.metric.convention, request)]

    def key_fields(self, sample: Sample, ask: Ask, model: str | None = None) -> dict[str, Any]:
        """The metric's key fields name its resolved weights (``model`` adds nothing)."""
        return {**self.shared_fields, "image_sha256": sample.images[0].sha256, "prompt": sample.prompt}

    def load_image(self, ref: ImageRef) -> Image.Image:
        try:
            return load_rgb(ref.path, 0)
        except MetricInputError as exc:  # "item 0: <why>": the runner names the row itself
            raise ImageLoadError(str(exc).removeprefix("item 0: ")) from None

    def read(self, sample: Sample, ask: Ask, answer: Any) -> Reading:
        assert isinstance(answer, Measurement)
        detail = {"extras": answer.extras, "tokens_dropped": answer.tokens_dropped, "token_limit": answer.token_limit}
        return Reading([Verdict(sample.sample_id, ask.name, "scored", answer.value, detail)])

    def stored_form(self, verdict: Verdict) -> StoredForm:
        return StoredForm("scored", {"value": verdict.value, **verdict.detail})

    def accumulator(self) -> VerdictMeans:
        return VerdictMeans()


class MetricEngine:
    """The loaded metric as an engine of ``measure`` requests (one image each)."""

    name = "metric"
    capabilities = EngineCapabilities(frozenset({"measure"}), max_images_per_request=1)

    def __init__(self, metric: Metric, *, batch_size: int | None = None, chunk: int = 256):
        self.metric, self.batch_size = metric, batch_size
        self.model_id = metric.weights_label()
        self.preferred_batch_size = chunk  # items decoded and sent at once; the metric batches inside

    def measure(self, requests: list[MeasureRequest]) -> list[Measurement]:
        began = time.perf_counter()
        prompts = [r.prompt for r in requests]
        images = [r.images[0].image for r in requests]
        try:
            results: list[MetricResult | MetricError] = list(
                self.metric.score(prompts, images, batch_size=self.batch_size))
        except EngineError:
            raise  # a generative metric's engine: the runner retries it or stops, as for any engine
        except MetricError:
            # One item's failure (e.g. an unparseable generated rating) must not sink the chunk:
            # score item by item so that each failure is recorded against its own row.
            results = []
            for prompt, image in zip(prompts, images):
                try:
                    results.append(self.metric.score([prompt], [image])[0])
                except MetricError as exc:
                    results.append(exc)
        except Exception as exc:
            # Not one item's fault (a bug, weights that cannot run, memory): every chunk would fail
            # the same way, so the run stops at once, saying why; what is committed stays.
            raise EngineError(f"{self.metric.convention} failed ({type(exc).__name__}: {exc})", retryable=False) from exc
        per_item = (time.perf_counter() - began) / max(1, len(requests))
        return [Measurement(r.request_id, error=str(res), seconds=per_item)
                if isinstance(res, MetricError) else
                Measurement(r.request_id, res.value, res.extras, res.tokens_dropped, res.token_limit, per_item)
                for r, res in zip(requests, results)]


__all__ = ["KEY_VERSION", "MetricEngine", "MetricEvaluator", "metric_key_fields"]
