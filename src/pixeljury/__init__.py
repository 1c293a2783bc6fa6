"""pixeljury: judges for text-to-image generations.

Importing the package is cheap (no torch); the API functions import what they need when called.
"""

__version__ = "0.1.0"

__all__ = ["__version__", "judge", "load_bench", "load_images"]


def __getattr__(name: str):
    if name in ("judge", "load_bench", "load_images"):
        from pixeljury import api

        return getattr(api, name)
    raise AttributeError(f"module 'pixeljury' has no attribute {name!r}")
