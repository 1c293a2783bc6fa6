"""pixeljury: judges for text-to-image generations.

``load_metric`` and ``list_metrics`` are resolved lazily so that ``import pixeljury`` stays light
(no torch, no transformers).
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {"load_metric": "pixeljury.metrics.registry", "list_metrics": "pixeljury.metrics.registry"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'pixeljury' has no attribute {name!r}")


__all__ = ["__version__", "list_metrics", "load_metric"]
