"""Shared fixtures: in-repo benchmark metadata, paths to ../shared/data, the fixture checklist file, a tiny
judge model built once."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from pj_testpaths import CHECKLIST_FIXTURE, FIXTURES, GOLDEN_METADATA, METADATA, SHARED_DATA, need_shared

# Fixtures that read the real benchmark data: a test that asks for one is a parity test and carries the
# ``shared_data`` marker (``-m "not shared_data"`` leaves them out; they skip where the data is absent).
SHARED_FIXTURES = ("shared_data", "metadata_path")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if any(name in getattr(item, "fixturenames", ()) for name in SHARED_FIXTURES):
            item.add_marker(pytest.mark.shared_data)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (or $PIXELJURY_SHARED_DIR/data): only for parity with the real benchmark data."""
    return need_shared(SHARED_DATA)


@pytest.fixture(scope="session")
def metadata_path() -> Path:
    """The real Qwen-Image-Bench metadata (all 4,105 requests): only for parity tests."""
    return need_shared(METADATA)


@pytest.fixture(scope="session")
def golden_metadata() -> Path:
    """In-repo benchmark metadata in the official format (IDs 101..105), for every other test."""
    return GOLDEN_METADATA


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
