"""Suite-wide test configuration."""

from __future__ import annotations

import importlib.util

# tests/vllm needs the separate vLLM environment (scripts/setup_vllm_env.sh); the main environment
# has no vLLM, so its run leaves that folder out instead of failing on imports.
collect_ignore = [] if importlib.util.find_spec("vllm") is not None else ["vllm"]
