"""Paths and helpers shared by the tests (a uniquely named module: tests/vllm has its own conftest)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
CHECKLIST_FIXTURE = FIXTURES / "checklists_fixture.py"
METADATA = SHARED_DATA / "qwen-image-bench" / "bench_metadata.json"


def need_shared(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is absent: the shared data folder ../shared/data is not beside this checkout")
    return path


def subprocess_env() -> dict[str, str]:
    """Environment for running `python -m pixeljury` from this checkout's sources."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("HF_HUB_OFFLINE", "1")
    return env
