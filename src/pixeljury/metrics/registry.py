"""Registry of metrics: specs readable without torch, models imported only by :func:`load_metric`.

A metric is addressed as ``name`` (its default convention) or ``name@convention``.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

from pixeljury.core.registry import close_matches
from pixeljury.metrics.base import MetricSpec, MetricUnavailable, WeightsRef

# Revisions: the build machine has no hub access, so these are branch names, not commit hashes.
# `load_metric(..., revision=<commit>)` pins one; docs/metrics.md lists what to pin before release.
# Result keys never hold these names: loaders key on the commit actually downloaded (weights.py).
_MAIN = "main"

_CLIP_B32 = WeightsRef("openai/clip-vit-base-patch32", _MAIN)
_CLIP_L14 = WeightsRef("openai/clip-vit-large-patch14", _MAIN)
_LAION_H14 = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"

_SPECS: list[MetricSpec] = [
    MetricSpec(
        name="clipscore",
        convention="clipscore@hessel-2.5x",
        input_kind="prompt+image",
        direction="higher-is-better",
        value_range=(0.0, 2.5),
        reference="Hessel et al. 2021, CLIPScore (arXiv 2104.08718); github.com/jmhessel/clipscore",
        description="2.5*max(cos,0) of OpenAI CLIP ViT-B/32 embeddings, caption prefixed 'A photo depicts'",
        weights=_CLIP_B32,
        loader="pixeljury.metrics.clip:load_clipscore_hessel",
    ),
    MetricSpec(
        name="clipscore",
        convention="clipscore@torchmetrics-100x",
        input_kind="prompt+image",
        direction="higher-is-better",
        value_range=(0.0, 100.0),
        reference="torchmetrics.multimodal.CLIPScore (default openai/clip-vit-large-patch14)",
        description="100*max(cos,0) of CLIP ViT-L/14 embeddings (shorter side to 224, bicubic, centre crop)",
        weights=_CLIP_L14,
        loader="pixeljury.metrics.clip:load_clipscore_torchmetrics",
    ),
    MetricSpec(
        name="clip",
        convention="clip@raw-cos",
        input_kind="prompt+image",
        direction="higher-is-better",
        value_range=(-1.0, 1.0),
        reference="Radford et al. 2021, CLIP; any transformers CLIP-family checkpoint",
        description="raw cosine similarity of image and text embeddings of any CLIP checkpoint",
        weights=_CLIP_B32,
        loader="pixeljury.metrics.clip:load_clip_cosine",
    ),
    MetricSpec(
        name="pickscore",
        convention="pickscore@x-logit-scale",
        input_kind="prompt+image",
        direction="higher-is-better",
        value_range=(None, None),
        reference="Kirstain et al. 2023, Pick-a-Pic (arXiv 2305.01569); github.com/yuvalkirstain/PickScore",
        description="logit_scale.exp()*cos of PickScore_v1 (CLIP ViT-H/14); extras.probability = softmax "
        "over the images of one prompt in the call",
        weights=WeightsRef("yuvalkirstain/PickScore_v1", _MAIN, companion_repo_id=_LAION_H14, companion_revision=_MAIN),
        loader="pixeljury.metrics.clip:load_pickscore",
    ),
]

for _version, _file in (("2.0", "HPS_v2_compressed.pt"), ("2.1", "HPS_v2.1_compressed.pt")):
    _name = "hpsv2" if _version == "2.0" else "hpsv2.1"
    _weights = WeightsRef("xswu/HPSv2", _MAIN, filename=_file, companion_repo_id=_LAION_H14, companion_revision=_MAIN)
    _ref = "Wu et al. 2023, Human Preference Score v2 (arXiv 2306.09341); github.com/tgxs002/HPSv2"
    _SPECS += [
        MetricSpec(
            name=_name,
            convention=f"{_name}@raw-cos",
            input_kind="prompt+image",
            direction="higher-is-better",
            value_range=(-1.0, 1.0),
            reference=_ref,
            description=f"HPS v{_version}: raw cosine of the open_clip ViT-H-14 checkpoint (what the official "
            "package returns, ~0.2-0.3); image padded to a square, then resized",
            weights=_weights,
            loader="pixeljury.metrics.clip:load_hpsv2",
        ),
        MetricSpec(
            name=_name,
            convention=f"{_name}@x-logit-scale",
            input_kind="prompt+image",
            direction="higher-is-better",
            value_range=(None, None),
            reference=_ref,
            description=f"HPS v{_version}: cosine times logit_scale.exp() (~20-30; the paper's training logits)",
            weights=_weights,
            loader="pixeljury.metrics.clip:load_hpsv2",
        ),
    ]

_SPECS += [
    MetricSpec(
        name="aesthetic",
        convention="aesthetic@laion-v2-l14",
        input_kind="image",
        direction="higher-is-better",
        value_range=(None, None),
        reference="LAION improved aesthetic predictor (github.com/christophschuhmann/improved-aesthetic-predictor)",
        description="MLP (sac+logos+ava1-l14-linearMSE) on the L2-normalised OpenAI CLIP ViT-L/14 image "
        "embedding; roughly a 1-10 rating",
        weights=WeightsRef(
            "https://github.com/christophschuhmann/improved-aesthetic-predictor/raw/main/sac+logos+ava1-l14-linearMSE.pth",
            _MAIN,
            source="url",
            companion_repo_id="openai/clip-vit-large-patch14",
            companion_revision=_MAIN,
        ),
        loader="pixeljury.metrics.aesthetic:load_aesthetic",
    ),
    MetricSpec(
        name="imagereward",
        convention="imagereward@v1.0-normalized",
        input_kind="prompt+image",
        direction="higher-is-better",
        value_range=(None, None),
        reference="Xu et al. 2023, ImageReward (arXiv 2304.05977); github.com/THUDM/ImageReward",
        description="BLIP ViT-L image encoder + BERT text encoder with cross-attention + MLP head, "
        "(reward - 0.16717362830052426) / 1.0333394966054072",
        weights=WeightsRef("THUDM/ImageReward", _MAIN, filename="ImageReward.pt",
                           companion_repo_id="bert-base-uncased", companion_revision=_MAIN),
        loader="pixeljury.metrics.imagereward:load_imagereward",
    ),
    MetricSpec(
        name="fid",
        convention="fid@clean",
        input_kind="image-sets",
        direction="lower-is-better",
        value_range=(0.0, None),
        reference="Heusel et al. 2017; Parmar et al. 2022, clean-fid (github.com/GaParmar/clean-fid)",
        description="Frechet distance of InceptionV3 pool features, clean-fid resizing (PIL bicubic on float)",
        weights=WeightsRef("https://github.com/GaParmar/clean-fid/releases/download/0.1.0/inception-2015-12-05.pt",
                           "0.1.0", source="url"),
        loader="pixeljury.metrics.distribution:load_fid",
    ),
    MetricSpec(
        name="fid",
        convention="fid@legacy-pytorch",
        input_kind="image-sets",
        direction="lower-is-better",
        value_range=(0.0, None),
        reference="pytorch-fid resizing (torch bilinear on the uint8 image); not comparable with fid@clean",
        description="Frechet distance with the legacy pytorch-fid resize, for comparison with older papers",
        weights=WeightsRef("https://github.com/GaParmar/clean-fid/releases/download/0.1.0/inception-2015-12-05.pt",
                           "0.1.0", source="url"),
        loader="pixeljury.metrics.distribution:load_fid",
    ),
    MetricSpec(
        name="kid",
        convention="kid@clean",
        input_kind="image-sets",
        direction="lower-is-better",
        value_range=(None, None),
        reference="Binkowski et al. 2018, Demystifying MMD GANs; clean-fid's kernel_distance",
        description="unbiased MMD^2 with the cubic polynomial kernel over seeded random subsets",
        weights=WeightsRef("https://github.com/GaParmar/clean-fid/releases/download/0.1.0/inception-2015-12-05.pt",
                           "0.1.0", source="url"),
        loader="pixeljury.metrics.distribution:load_kid",
    ),
]

_SPECS.append(
    MetricSpec(
        name="unifiedreward",
        convention="unifiedreward@2.0-mean-1-5",
        input_kind="prompt+image",
        direction="higher-is-better",
        value_range=(1.0, 5.0),
        reference="Wang et al. 2025, Unified Reward Model (arXiv 2503.05236); github.com/CodeGoat24/UnifiedReward",
        description="mean of the Alignment, Coherence and Style ratings (1-5) that UnifiedReward 2.0 writes; "
        "runs through a generative engine (engine=...)",
        weights=WeightsRef("CodeGoat24/UnifiedReward-2.0-qwen-7b", _MAIN),
        extra=None,
        loader="pixeljury.metrics.unifiedreward:load_unifiedreward",
    )
)

_SPECS.append(
    MetricSpec(
        name="hpsv3",
        convention="hpsv3@mu",
        input_kind="prompt+image",
        direction="higher-is-better",
        value_range=(None, None),
        reference="Ma et al. 2025, HPSv3 (arXiv 2508.03789); github.com/MizzenAI/HPSv3",
        description="mu of the (mu, sigma) that a ranknet head reads at the <|Reward|> token of a Qwen2-VL-7B "
        "fine-tune (extras.sigma); image resized to a fixed 200,704-pixel budget",
        weights=WeightsRef("MizzenAI/HPSv3", _MAIN, filename="HPSv3.safetensors",
                           companion_repo_id="Qwen/Qwen2-VL-7B-Instruct", companion_revision=_MAIN),
        loader="pixeljury.metrics.hpsv3:load_hpsv3",
    )
)

_EDIT_REF = ("UnifiedReward-Edit (github.com/CodeGoat24/UnifiedReward, UnifiedReward-Edit/); "
             "pointwise prompts from VIEScore (Ku et al. 2024)")
_EDIT_WEIGHTS = WeightsRef("CodeGoat24/UnifiedReward-Edit-qwen3vl-8b", _MAIN)
_SPECS += [
    MetricSpec(
        name="unifiedreward-edit",
        convention="unifiedreward-edit@pointwise-viescore-0-25",
        input_kind="image-pair",
        direction="higher-is-better",
        value_range=(0.0, 25.0),
        reference=_EDIT_REF,
        description="instruction + source + edit: sqrt(min(instruction-following scores) * min(quality scores)), "
        "each 0-25 as written by the model; library API score_edits (engine=...)",
        weights=_EDIT_WEIGHTS,
        extra=None,
        loader="pixeljury.metrics.unifiedreward_edit:load_unifiedreward_edit",
    ),
    MetricSpec(
        name="unifiedreward-edit",
        convention="unifiedreward-edit@pairwise-rank",
        input_kind="image-pair",
        direction="higher-is-better",
        value_range=(0.0, 1.0),
        reference=_EDIT_REF,
        description="instruction + source + two edits: 1 when edit 1 is judged better, 0 when edit 2; "
        "library API rank_pairs (engine=...)",
        weights=_EDIT_WEIGHTS,
        extra=None,
        loader="pixeljury.metrics.unifiedreward_edit:load_unifiedreward_edit",
    ),
    MetricSpec(
        name="unifiedreward-edit",
        convention="unifiedreward-edit@pairwise-score-margin",
        input_kind="image-pair",
        direction="higher-is-better",
        value_range=(None, None),
        reference=_EDIT_REF,
        description="instruction + source + two edits: score of edit 1 minus score of edit 2 (both in extras); "
        "library API score_pairs (engine=...)",
        weights=_EDIT_WEIGHTS,
        extra=None,
        loader="pixeljury.metrics.unifiedreward_edit:load_unifiedreward_edit",
    ),
]

_BY_CONVENTION: dict[str, MetricSpec] = {s.convention: s for s in _SPECS}
_DEFAULT: dict[str, MetricSpec] = {}
for _spec in _SPECS:
    _DEFAULT.setdefault(_spec.name, _spec)  # the first spec listed for a name is its default


def list_metrics() -> list[MetricSpec]:
    """Every registered (metric, convention), defaults first within a name."""
    return list(_SPECS)


def get_spec(name: str, convention: str | None = None) -> MetricSpec:
    """Resolve ``name``, ``name@convention`` or (name, convention) to one spec.

    Built-in specs resolve without touching plugins; a name no built-in has is looked up among the
    metrics that plugins registered (``pixeljury.plugins`` entry points, see :func:`register_metric`)."""
    if "@" in name:
        if convention is not None:
            raise MetricUnavailable(f"give the convention once: {name!r} and convention={convention!r}")
        name, convention = name.split("@", 1)
    key = name.strip().lower()
    specs, defaults = _SPECS, _DEFAULT
    if key not in _DEFAULT:
        specs = _plugin_specs()
        defaults = {}
        for spec in specs:
            defaults.setdefault(spec.name, spec)
        if key not in defaults:
            known = sorted(set(_DEFAULT) | set(defaults))
            near = close_matches(key, known)
            hint = f"did you mean {' or '.join(repr(m) for m in near)}? " if near else ""
            raise MetricUnavailable(f"unknown metric {name!r}; {hint}known: {', '.join(known)}")
    if convention is None:
        return defaults[key]
    full = f"{key}@{convention}"
    options = [s.convention for s in specs if s.name == key]
    if full not in options:
        raise MetricUnavailable(f"metric {key!r} has no convention {convention!r}; options: {', '.join(options)}")
    return next(s for s in specs if s.convention == full)


def _entry_metadata(spec: MetricSpec, default: bool) -> dict[str, Any]:
    return {"metric": spec.name, "convention": spec.convention, "default": default, "input_kind": spec.input_kind,
            "direction": spec.direction, "range": spec.range_text(),
            "weights": spec.weights.label if spec.weights else None, "extra": spec.extra,
            "generative": spec.extra is None}


def register_metric(registry: Any, spec: MetricSpec, *, default: bool | None = None) -> Any:
    """Register one metric spec (built-in or a plugin's) as a ``metric`` entry named by its convention.

    ``default`` (the convention a bare name resolves to) is the first one registered for a name unless
    given. A plugin calls this from its ``pixeljury.plugins`` hook; the spec's ``loader`` is the target."""
    if not spec.convention.startswith(spec.name + "@"):
        raise MetricUnavailable(f"metric convention {spec.convention!r} must start with {spec.name + '@'!r}")
    if default is None:
        default = not any(getattr(e.payload, "name", None) == spec.name for e in registry.registered("metric"))
    return registry.register("metric", spec.convention, spec.loader, spec.description, payload=spec,
                             **_entry_metadata(spec, default))


def register_entries(registry: Any) -> None:
    """The built-in metric specs, as ``metric`` entries of the core registry (pixeljury.core.registry)."""
    for spec in _SPECS:
        register_metric(registry, spec, default=_DEFAULT[spec.name] is spec)


def _plugin_specs() -> list[MetricSpec]:
    from pixeljury.core.registry import registry

    return [e.payload for e in registry().entries("metric")
            if not e.builtin and isinstance(e.payload, MetricSpec)]


def check_extra(spec: MetricSpec) -> None:
    """Fail with the pip command when the metric's extra is not installed."""
    needed = {"torch": ("torch", "transformers", "torchvision")}.get(spec.extra or "", ())
    missing = [m for m in needed if importlib.util.find_spec(m) is None]
    if missing:
        raise MetricUnavailable(
            f"metric {spec.convention} needs the '{spec.extra}' extra (missing: {', '.join(missing)}); "
            f"install it with: pip install 'pixeljury[{spec.extra}]'"
        )


def load_metric(name: str, *, convention: str | None = None, **kwargs: Any) -> Any:
    """Load a metric by name. Keyword arguments go to its loader: ``weights`` (hub id, local path,
    ``modelscope:<id>``), ``revision``, ``device``, ``dtype``..."""
    spec = get_spec(name, convention)
    check_extra(spec)
    module_name, func_name = spec.loader.split(":")
    module = importlib.import_module(module_name)
    return getattr(module, func_name)(spec, **kwargs)


__all__ = ["check_extra", "get_spec", "list_metrics", "load_metric", "register_entries", "register_metric"]
