"""The cache root and the checklist URL are read from the environment when used, not when imported."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from pixeljury import cache
from pixeljury.metrics import weights
from pixeljury.rubric import RubricError, load_official_rubric
from pixeljury.rubric import official

from pj_testpaths import CHECKLIST_FIXTURE

CACHED_NAME = f"checklists-{official.OFFICIAL_COMMIT[:12]}.py"


@pytest.fixture
def clean_env(monkeypatch):
    """No cache or checklist variables set, and the one-time deprecation warning not yet given."""
    for name in ("PIXELJURY_CACHE_DIR", "PIXELJURY_CACHE", "XDG_CACHE_HOME", "PIXELJURY_CHECKLIST_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(cache, "_warned_deprecated", False)
    return monkeypatch


def test_cache_dir_follows_the_environment_set_after_import(clean_env, tmp_path):
    clean_env.setenv("HOME", str(tmp_path / "home"))
    assert cache.cache_dir() == tmp_path / "home" / ".cache" / "pixeljury"
    clean_env.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.cache_dir() == tmp_path / "xdg" / "pixeljury"
    clean_env.setenv("PIXELJURY_CACHE_DIR", str(tmp_path / "mine"))
    assert cache.cache_dir() == tmp_path / "mine"
    clean_env.setenv("PIXELJURY_CACHE_DIR", "")  # empty counts as unset
    assert cache.cache_dir() == tmp_path / "xdg" / "pixeljury"


def test_metrics_and_rubric_share_one_cache_root(clean_env, tmp_path):
    clean_env.setenv("PIXELJURY_CACHE_DIR", str(tmp_path / "c"))
    assert weights.cache_dir() == cache.cache_dir() == tmp_path / "c"
    assert official.official_cache_path() == tmp_path / "c" / "rubrics" / CACHED_NAME


def test_rubric_download_cache_is_read_from_pixeljury_cache_dir(clean_env, tmp_path):
    clean_env.setenv("PIXELJURY_CACHE_DIR", str(tmp_path))
    with pytest.raises(RubricError, match="--rubric-file"):
        load_official_rubric(None, allow_download=False)
    # A file in the cached place is what gets read (and, not being the pinned file, refused by hash).
    cached = tmp_path / "rubrics" / CACHED_NAME
    cached.parent.mkdir()
    cached.write_bytes(CHECKLIST_FIXTURE.read_bytes())
    with pytest.raises(RubricError) as err:
        load_official_rubric(None, allow_download=False)
    assert str(cached) in str(err.value) and f"expected {official.OFFICIAL_SHA256}" in str(err.value)


def test_old_name_still_works_with_one_deprecation_warning(clean_env, tmp_path):
    clean_env.setenv("PIXELJURY_CACHE", str(tmp_path / "old"))
    with pytest.warns(DeprecationWarning, match="PIXELJURY_CACHE_DIR instead"):
        assert cache.cache_dir() == tmp_path / "old"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert weights.cache_dir() == tmp_path / "old"
        assert official.official_cache_path() == tmp_path / "old" / "rubrics" / CACHED_NAME
    assert [w for w in caught if issubclass(w.category, DeprecationWarning)] == []


def test_new_name_wins_over_the_old_one_and_the_old_one_is_flagged(clean_env, tmp_path):
    clean_env.setenv("PIXELJURY_CACHE", str(tmp_path / "old"))
    clean_env.setenv("PIXELJURY_CACHE_DIR", str(tmp_path / "new"))
    with pytest.warns(DeprecationWarning, match="ignored"):
        assert cache.cache_dir() == tmp_path / "new"
    clean_env.setattr(cache, "_warned_deprecated", False)
    clean_env.setenv("PIXELJURY_CACHE", str(tmp_path / "new"))  # the same place: nothing to warn about
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cache.cache_dir() == tmp_path / "new"


class _Response:
    def __init__(self, content: bytes):
        self.content = content

    def raise_for_status(self) -> None:
        pass


def _record_downloads(monkeypatch) -> list[str]:
    import httpx

    urls: list[str] = []

    def fake_get(url, **_kw):
        urls.append(url)
        return _Response(CHECKLIST_FIXTURE.read_bytes())  # not the pinned file: the hash check refuses it

    monkeypatch.setattr(httpx, "get", fake_get)
    return urls


def test_checklist_url_set_after_import_is_honoured(clean_env, tmp_path):
    clean_env.setenv("PIXELJURY_CACHE_DIR", str(tmp_path))
    urls = _record_downloads(clean_env)
    with pytest.raises(RubricError, match=f"expected {official.OFFICIAL_SHA256}"):
        load_official_rubric(None)
    assert urls == [official.OFFICIAL_URL]
    assert official.OFFICIAL_URL.endswith(f"/{official.OFFICIAL_COMMIT}/checklists.py")
    mirror = "https://mirror.example/qwen-image-bench/checklists.py"
    clean_env.setenv("PIXELJURY_CHECKLIST_URL", mirror)
    assert official.official_url() == mirror
    with pytest.raises(RubricError, match=mirror.replace(".", r"\.")):
        load_official_rubric(None)
    assert urls == [official.OFFICIAL_URL, mirror]
    assert not (tmp_path / "rubrics" / CACHED_NAME).exists()  # a refused download is not cached


def test_no_module_reads_these_variables_at_import():
    import re

    src = Path(official.__file__).resolve().parents[1]
    offenders = []
    for path in sorted(src.rglob("*.py")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if re.match(r"\S", line) and re.search(r"os\.environ|getenv", line):  # a statement at column 0
                offenders.append(f"{path.relative_to(src)}:{number}: {line.strip()}")
    assert offenders == []
