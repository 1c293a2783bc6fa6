"""Shared fixtures: paths to ../shared/data, the fixture checklist file, a tiny judge model built once."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from pj_testpaths import CHECKLIST_FIXTURE, FIXTURES, METADATA, SHARED_DATA, need_shared


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
