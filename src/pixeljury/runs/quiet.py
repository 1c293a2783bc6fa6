"""``--quiet`` for the libraries a run loads: their own progress bars off while it runs."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def library_bars_off(enabled: bool = True) -> Iterator[None]:
    """``--quiet`` for the libraries too: no "Loading weights" / "Loading checkpoint shards" bars from
    transformers and no download bars from huggingface_hub while the block runs; afterwards each is
    as it was. transformers decides when it is imported, from huggingface_hub's setting, so that one
    is switched off first (importing huggingface_hub.utils takes milliseconds, not transformers)."""
    if not enabled:
        yield
        return
    try:
        from huggingface_hub import utils as hub
    except ImportError:
        hub = None
    hub_on = hub is not None and not hub.are_progress_bars_disabled()
    loaded = sys.modules.get("transformers.utils.logging")
    transformers_on = loaded.is_progress_bar_enabled() if loaded is not None else hub_on
    if hub is not None:
        hub.disable_progress_bars()
    if loaded is not None:
        loaded.disable_progress_bar()
    try:
        yield
    finally:
        now = sys.modules.get("transformers.utils.logging")  # imported before, or by the engine since
        if now is not None and transformers_on:
            now.enable_progress_bar()  # (switches huggingface_hub's on as well: set right below)
        if hub is not None:
            if hub_on:
                hub.enable_progress_bars()
            else:
                hub.disable_progress_bars()
