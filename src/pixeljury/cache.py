"""pixeljury's cache root, looked up in the environment each time it is needed (never at import).

One variable names it: ``PIXELJURY_CACHE_DIR``. The older ``PIXELJURY_CACHE`` (once read by the
official-rubric download) still works when ``PIXELJURY_CACHE_DIR`` is not set, with a
``DeprecationWarning`` the first time it is used.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

CACHE_ENV = "PIXELJURY_CACHE_DIR"
DEPRECATED_CACHE_ENV = "PIXELJURY_CACHE"

_warned_deprecated = False


def _warn_deprecated(message: str) -> None:
    global _warned_deprecated
    if _warned_deprecated:
        return
    _warned_deprecated = True
    warnings.warn(message, DeprecationWarning, stacklevel=3)


def cache_dir() -> Path:
    """$PIXELJURY_CACHE_DIR, else (deprecated) $PIXELJURY_CACHE, else $XDG_CACHE_HOME/pixeljury, else
    ~/.cache/pixeljury. Empty values count as unset."""
    explicit = os.environ.get(CACHE_ENV)
    old = os.environ.get(DEPRECATED_CACHE_ENV)
    if explicit:
        if old and old != explicit:
            _warn_deprecated(f"${DEPRECATED_CACHE_ENV} is deprecated and ignored because ${CACHE_ENV} is set "
                             f"({explicit}); unset ${DEPRECATED_CACHE_ENV}")
        return Path(explicit)
    if old:
        _warn_deprecated(f"${DEPRECATED_CACHE_ENV} is deprecated: set ${CACHE_ENV} instead "
                         f"(using {old} as the cache root for now)")
        return Path(old)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pixeljury"


__all__ = ["CACHE_ENV", "DEPRECATED_CACHE_ENV", "cache_dir"]
