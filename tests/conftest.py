"""Shared fixtures: paths to ../shared/data, the fixture checklist file, a tiny judge model built once."""

from __future__ import annotations

import os
import sys
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


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return need_shared(SHARED_DATA)


@pytest.fixture(scope="session")
def metadata_path() -> Path:
    return need_shared(METADATA)


@pytest.fixture(scope="session")
def fixture_rubric():
    from pixeljury.rubric import load_official_rubric

    return load_official_rubric(CHECKLIST_FIXTURE)


@pytest.fixture(scope="session")
def fixture_module():
    """The fixture checklist file imported as a module: an independent reference for the ast reader."""
    sys.path.insert(0, str(FIXTURES))
    try:
        import checklists_fixture
    finally:
        sys.path.remove(str(FIXTURES))
    return checklists_fixture


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    pytest.importorskip("torch")
    from pixeljury.testing.tiny import build_tiny_qwen3vl

    return build_tiny_qwen3vl(tmp_path_factory.mktemp("tiny-judge"))


def subprocess_env() -> dict[str, str]:
    """Environment for running `python -m pixeljury` from this checkout's sources."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("HF_HUB_OFFLINE", "1")
    return env
