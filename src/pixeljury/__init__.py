"""pixeljury: judges for text-to-image generations.

Importing the package is cheap (no torch, no transformers): the API functions and ``load_metric`` /
``list_metrics`` are resolved lazily and import what they need when called.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "judge": "pixeljury.api",
    "load_bench": "pixeljury.api",
    "load_images": "pixeljury.api",
    "load_metric": "pixeljury.metrics.registry",
    "list_metrics": "pixeljury.metrics.registry",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'pixeljury' has no attribute {name!r}")


__all__ = ["__version__", "judge", "list_metrics", "load_bench", "load_images", "load_metric"]
