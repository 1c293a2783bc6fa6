from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from pixeljury.metrics.base import Metric, MetricInputError, MetricSpec, MetricUnavailable
from pixeljury.metrics.registry import get_spec, list_metrics

ROOT = Path(__file__).resolve().parents[2]


def test_import_pixeljury_and_registry_do_not_import_torch():
    code = (
        "import sys, pixeljury\n"
        "specs = pixeljury.list_metrics()\n"
        "from pixeljury.metrics import registry, run, weights\n"
        "from pixeljury.cli import metrics\n"
        "assert len(specs) > 5\n"
        "print('torch' in sys.modules, 'transformers' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"})
    assert out.stdout.strip() == "False False"


def test_every_spec_declares_its_contract():
    for spec in list_metrics():
        assert spec.convention.startswith(spec.name + "@")
        assert spec.input_kind in ("prompt+image", "image", "image-pair", "image-sets")
        assert spec.direction in ("higher-is-better", "lower-is-better")
        assert spec.reference and spec.description and ":" in spec.loader
        assert spec.weights is not None and spec.weights.revision


def test_name_and_convention_resolution():
    assert get_spec("clipscore").convention == "clipscore@hessel-2.5x"
    assert get_spec("clipscore@torchmetrics-100x").value_range == (0.0, 100.0)
    assert get_spec("HPSv2", "x-logit-scale").convention == "hpsv2@x-logit-scale"
    assert get_spec("hpsv2.1").weights.filename == "HPS_v2.1_compressed.pt"
    with pytest.raises(MetricUnavailable, match="unknown metric 'nope'"):
        get_spec("nope")
    with pytest.raises(MetricUnavailable, match="options: hpsv2@raw-cos, hpsv2@x-logit-scale"):
        get_spec("hpsv2@bogus")


class _LengthMetric(Metric):
    """Scores an image by its width; records the chunk sizes it was given."""

    spec = MetricSpec("width", "width@px", "prompt+image", "higher-is-better", (0, None), "test", "test")

    def __init__(self) -> None:
        self.chunks: list[int] = []

    def _score_batch(self, prompts, images):
        self.chunks.append(len(images))
        return [float(img.width) for img in images]


def test_score_chunks_and_keeps_order():
    metric = _LengthMetric()
    images = [Image.new("RGB", (w, 4)) for w in range(1, 8)]
    results = metric.score(["p"] * 7, images, batch_size=3)
    assert metric.chunks == [3, 3, 1]
    assert [r.value for r in results] == [1, 2, 3, 4, 5, 6, 7]
    assert {r.convention for r in results} == {"width@px"}


def test_bad_inputs_name_the_item(tmp_path):
    metric = _LengthMetric()
    with pytest.raises(MetricInputError, match="2 prompts but 3 images"):
        metric.score(["a", "b"], [Image.new("RGB", (2, 2))] * 3)
    with pytest.raises(MetricInputError, match="item 1 has an empty"):
        metric.score(["a", " "], [Image.new("RGB", (2, 2))] * 2)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    with pytest.raises(MetricInputError, match=r"item 1: image .*broken.png"):
        metric.score(["a", "b"], [Image.new("RGB", (2, 2)), broken])


def test_missing_local_weights_give_a_clear_error():
    from pixeljury.metrics.weights import resolve

    with pytest.raises(MetricUnavailable, match="weights path ./nowhere-xyz does not exist"):
        resolve(get_spec("clip").weights, "./nowhere-xyz")


def test_unreachable_hub_weights_give_a_clear_error(monkeypatch):
    import huggingface_hub

    from pixeljury.metrics.weights import resolve

    def offline(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co'")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    with pytest.raises(MetricUnavailable, match=r"cannot get weights xswu/HPSv2/HPS_v2_compressed.pt@main .*"
                                                 r"pass weights=<local path>"):
        resolve(get_spec("hpsv2").weights)


def test_url_weights_are_downloaded_once_into_the_cache(monkeypatch, tmp_path):
    from pixeljury.metrics import weights as weights_mod

    monkeypatch.setenv("PIXELJURY_CACHE_DIR", str(tmp_path))
    cached = tmp_path / "weights"
    url = "https://example.invalid/model.pth"
    import hashlib

    folder = cached / hashlib.sha256(url.encode()).hexdigest()[:16]
    folder.mkdir(parents=True)
    (folder / "model.pth").write_bytes(b"weights")
    assert weights_mod.resolve(None, url) == folder / "model.pth"  # no network touched: served from the cache


def test_a_plugin_metric_resolves_through_get_spec(monkeypatch):
    from types import SimpleNamespace

    from pixeljury.core import registry as core
    from pixeljury.metrics.registry import register_metric

    fresh = core.Registry(group=None)
    monkeypatch.setattr(core, "_DEFAULT", fresh)
    spec = MetricSpec("sharpness", "sharpness@laplacian", "image", "higher-is-better", (0.0, None), "test",
                      "variance of the Laplacian", extra=None, loader="sharpjury.metric:load")
    hook = SimpleNamespace(name="sharp", value="sharpjury:register", dist=SimpleNamespace(name="sharpjury"),
                           load=lambda: lambda reg: register_metric(reg, spec))
    assert fresh.load_plugin(hook, strict=True)
    assert get_spec("sharpness") is spec
    assert get_spec("sharpness@laplacian") is spec
    entry = fresh.get("metric", "sharpness@laplacian")
    assert (entry.source, entry.metadata["default"], entry.metadata["range"]) == ("plugin sharpjury", True, "[0.0, +inf]")
    assert get_spec("clipscore").convention == "clipscore@hessel-2.5x"
    with pytest.raises(MetricUnavailable, match=r"unknown metric 'sharpnes'; did you mean 'sharpness'\?"):
        get_spec("sharpnes")
