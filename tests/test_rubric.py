import hashlib

import pytest

from pixeljury.rubric import OFFICIAL_SHA256, RubricError, builtin_rubric, load_official_rubric, parse_checklist
from pixeljury.rubric.official import rubric_from_checklist_bytes
from pixeljury.rubric.taxonomy import L1_NAMES, TREE, iter_facets, l3_to_l2

from pj_testpaths import CHECKLIST_FIXTURE


def test_taxonomy_counts_and_shared_composition():
    assert len(TREE) == 5
    assert sum(len(l2s) for l2s in TREE.values()) == 23
    assert len(list(iter_facets())) == 56
    assert l3_to_l2("Aesthetics")["Composition"] == "Composition"
    assert l3_to_l2("Creative Generation")["Composition"] == "Visual Storytelling"


def test_metadata_facets_are_taxonomy_facets(golden_metadata):
    from pixeljury.data.metadata import BenchMetadata, parse_dims

    meta = BenchMetadata.load(golden_metadata)
    seen = {(p.l1, p.l2, p.l3) for dims in meta.dims_by_id.values() for p in parse_dims(dims)}
    assert len(seen) == 13 and seen <= set(iter_facets())  # 14 listed, "Layout / 2D Space" twice
    assert ("Creative Generation", "Visual Storytelling", "Camera / Lens Style") in seen  # a name with a slash
    assert ("Quality", "Resolution", "Resolution") in seen  # an L2 without L3s: the L3 is the L2


@pytest.mark.shared_data
def test_taxonomy_matches_benchmark_metadata(metadata_path):
    """Parity: the facets of all 4,105 official requests are exactly the taxonomy's 56."""
    from pixeljury.data.metadata import BenchMetadata, parse_dims

    meta = BenchMetadata.load(metadata_path)
    seen = {(p.l1, p.l2, p.l3) for dims in meta.dims_by_id.values() for p in parse_dims(dims)}
    assert seen == set(iter_facets())


def test_ast_reader_equals_importing_the_file(fixture_rubric, fixture_module):
    m = fixture_module
    assert fixture_rubric.system_prompt == m.SYSTEM_PROMPT
    assert fixture_rubric.user_template == m.USER_PROMPT_TEMPLATE
    for l1 in L1_NAMES:
        assert fixture_rubric.checklists[l1] == m.DIM_TO_CHECKLIST[l1]
        assert fixture_rubric.user_text("a {red} cat", l1) == m.USER_PROMPT_TEMPLATE.format(
            prompt="a {red} cat", level1_dim=l1, format_checklist=m.DIM_TO_CHECKLIST[l1]
        )
    assert fixture_rubric.sha256 == hashlib.sha256(CHECKLIST_FIXTURE.read_bytes()).hexdigest()
    assert fixture_rubric.comparable is False  # a fixture is not the pinned official file


def test_checklist_file_is_never_executed(tmp_path):
    marker = tmp_path / "executed"
    src = CHECKLIST_FIXTURE.read_text() + f"\nopen({str(marker)!r}, 'w').write('x')\n"
    path = tmp_path / "checklists.py"
    path.write_text(src)
    rubric = load_official_rubric(path)
    assert not marker.exists()
    assert rubric.facets["Alignment"]["Relations"] == ("Composition Relationship", "Containment", "Difference/Similarity")


def test_pinned_hash_is_enforced_for_downloads():
    data = CHECKLIST_FIXTURE.read_bytes()
    with pytest.raises(RubricError, match="expected " + OFFICIAL_SHA256):
        rubric_from_checklist_bytes(data, "https://example/checklists.py", expect_sha256=OFFICIAL_SHA256)


def test_download_disabled_without_cache_gives_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PIXELJURY_CACHE_DIR", str(tmp_path))
    with pytest.raises(RubricError, match="--rubric-file"):
        load_official_rubric(None, allow_download=False)


def test_missing_checklist_string_is_reported(tmp_path):
    path = tmp_path / "checklists.py"
    path.write_text(CHECKLIST_FIXTURE.read_text().replace("SYSTEM_PROMPT =", "SYSTEM_TEXT ="))
    with pytest.raises(RubricError, match="SYSTEM_PROMPT"):
        load_official_rubric(path)


def test_builtin_rubric_covers_all_56_facets_and_is_not_comparable():
    r = builtin_rubric()
    facets = {(l1, l2, l3) for l1, l2s in r.facets.items() for l2, l3s in l2s.items() for l3 in l3s}
    assert facets == set(iter_facets())
    assert r.comparable is False and r.source == "builtin"


def test_parse_checklist_keeps_slash_names():
    text = "## Visual Storytelling\n- Camera / Lens Style: q1\n- Angles: q: with colon"
    assert parse_checklist(text) == {"Visual Storytelling": {"Camera / Lens Style": "q1", "Angles": "q: with colon"}}
    with pytest.raises(RubricError, match="line 1"):
        parse_checklist("not a checklist")


def test_user_parts_split_at_template_mark_even_if_prompt_has_image_tag(fixture_rubric):
    before, after = fixture_rubric.user_parts("draw <image> here", "Quality")
    assert before.endswith("# Image\n") and after.startswith("\n\n# Dimension under test\nQuality")
    assert "draw <image> here" in before
    assert before + "<image>" + after == fixture_rubric.user_text("draw <image> here", "Quality")
