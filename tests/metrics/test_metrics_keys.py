"""Result keys name the resolved weights (commit or content fingerprint), the dtype and the preprocessing
version, so that a change of any of them is scored again instead of reusing the stored values."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from metrics_tiny import random_images, save_tiny_clip, tiny_clip_model
from pixeljury.metrics.registry import get_spec, load_metric
from pixeljury.metrics.run import score_file
from pixeljury.runs.store import ResultRecord, ResultStore, result_key

pytestmark = pytest.mark.slow

PROMPTS = ["a red cube", "two cats", "a red cube"]
COMMIT_A = "a" * 40
COMMIT_B = "0123456789abcdef0123456789abcdef01234567"


def _input_file(tmp_path: Path) -> Path:
    lines = []
    for i, (prompt, img) in enumerate(zip(PROMPTS, random_images(3, seed=4))):
        img.save(tmp_path / f"{i}.png")
        lines.append(json.dumps({"prompt": prompt, "image_path": f"{i}.png"}))
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(lines))
    return path


def _score(tmp_path: Path, metric: str = "clip", **kw):
    return score_file(tmp_path / "in.jsonl", tmp_path / "run", [metric], device="cpu", **kw)[0]


def _table(tmp_path: Path, convention: str) -> list[float]:
    return [json.loads(line)[convention] for line in (tmp_path / "run" / "scores.jsonl").read_text().splitlines()]


def _stored_fields(tmp_path: Path, protocol: str) -> list[dict]:
    with ResultStore.in_dir(tmp_path / "run") as store:
        return [r.key_fields for r in store.iter_results(protocol)]


def test_changed_local_weight_bytes_are_scored_again_and_the_table_shows_the_new_values(tmp_path):
    _input_file(tmp_path)
    clip_dir = save_tiny_clip(tmp_path / "clip", seed=1)
    weights = {"clip": str(clip_dir)}
    first = _score(tmp_path, weights=weights)
    assert (first.scored, first.skipped) == (3, 0)
    rerun = _score(tmp_path, weights=weights)
    assert (rerun.scored, rerun.skipped) == (0, 3)
    old_values = _table(tmp_path, "clip@raw-cos")

    size_before = (clip_dir / "model.safetensors").stat().st_size
    tiny_clip_model(seed=2).save_pretrained(clip_dir)  # same path, same size, other bytes
    assert (clip_dir / "model.safetensors").stat().st_size == size_before
    second = _score(tmp_path, weights=weights)
    assert (second.scored, second.skipped) == (3, 0)
    with ResultStore.in_dir(tmp_path / "run") as store:
        assert store.count() == 6  # the old values stay, under their own key
    labels = {f["weights"] for f in _stored_fields(tmp_path, "metric:clip")}
    assert len(labels) == 2 and all(label.startswith(f"local:{clip_dir.resolve()}@local-") for label in labels)

    fresh = load_metric("clip", weights=str(clip_dir), device="cpu")
    expected = [r.value for r in fresh.score(PROMPTS, [tmp_path / f"{i}.png" for i in range(3)])]
    np.testing.assert_allclose(_table(tmp_path, "clip@raw-cos"), expected, rtol=1e-5)
    assert not np.allclose(old_values, expected)


def test_a_changed_head_file_or_clip_backbone_of_the_aesthetic_predictor_is_scored_again(tmp_path):
    from pixeljury.metrics.heads import RewardMLP

    _input_file(tmp_path)
    clip_dir = save_tiny_clip(tmp_path / "clip", seed=1)
    head_file = tmp_path / "head.pth"
    torch.manual_seed(0)
    torch.save(RewardMLP(16).state_dict(), head_file)
    kw = {"weights": {"aesthetic": str(head_file)}, "metric_kwargs": {"aesthetic": {"clip_weights": str(clip_dir)}}}
    assert _score(tmp_path, "aesthetic", **kw).scored == 3
    assert _score(tmp_path, "aesthetic", **kw).skipped == 3

    torch.manual_seed(1)
    torch.save(RewardMLP(16).state_dict(), head_file)  # the single-file head: new bytes
    rerun = _score(tmp_path, "aesthetic", **kw)
    assert (rerun.scored, rerun.skipped) == (3, 0)

    tiny_clip_model(seed=5).save_pretrained(clip_dir)  # the companion CLIP backbone: new bytes
    assert _score(tmp_path, "aesthetic", **kw).scored == 3
    labels = [f["weights"] for f in _stored_fields(tmp_path, "metric:aesthetic")]
    assert len(set(labels)) == 3
    assert all(f"+clip=local:{clip_dir.resolve()}@local-" in label for label in labels)


def test_a_dtype_change_is_scored_again(tmp_path):
    _input_file(tmp_path)
    weights = {"clip": str(save_tiny_clip(tmp_path / "clip", seed=1))}
    assert _score(tmp_path, weights=weights, dtype="float32").scored == 3
    assert _score(tmp_path, weights=weights, dtype="float32").skipped == 3
    half = _score(tmp_path, weights=weights, dtype="bfloat16")
    assert (half.scored, half.skipped) == (3, 0)
    assert sorted({f["dtype"] for f in _stored_fields(tmp_path, "metric:clip")}) == ["bfloat16", "float32"]
    assert _score(tmp_path, weights=weights).skipped == 3  # no dtype given: float32, as stored first


def test_a_preprocessing_version_change_is_scored_again(tmp_path, monkeypatch):
    from pixeljury.metrics import clip

    _input_file(tmp_path)
    weights = {"clip": str(save_tiny_clip(tmp_path / "clip", seed=1))}
    assert _score(tmp_path, weights=weights).scored == 3
    before = {f["preprocessing"] for f in _stored_fields(tmp_path, "metric:clip")}
    assert before == {clip.CLIP_PREPROCESSING_VERSION}

    monkeypatch.setattr(clip, "CLIP_PREPROCESSING_VERSION", "openai-clip-center-crop.test-bump")
    again = _score(tmp_path, weights=weights)
    assert (again.scored, again.skipped) == (3, 0)
    after = {f["preprocessing"] for f in _stored_fields(tmp_path, "metric:clip")}
    assert after == before | {"openai-clip-center-crop.test-bump"}


def test_hpsv2_and_clipscore_declare_different_preprocessing():
    from pixeljury.metrics import aesthetic, clip, imagereward

    versions = [clip.CLIP_PREPROCESSING_VERSION, clip.HPSV2_PREPROCESSING_VERSION,
                aesthetic.PREPROCESSING_VERSION, imagereward.PREPROCESSING_VERSION]
    assert len(set(versions)) == 4 and all(versions)


def test_values_stored_under_the_previous_key_format_are_not_reused(tmp_path):
    _input_file(tmp_path)
    clip_dir = save_tiny_clip(tmp_path / "clip", seed=1)
    from pixeljury.data.images import sha256_file

    # What key version 1 stored: the weights as "local:<path>", no dtype, no preprocessing version.
    with ResultStore.in_dir(tmp_path / "run") as store:
        for i, prompt in enumerate(PROMPTS):
            fields = {"kind": "metric", "key_version": 1, "image_sha256": sha256_file(tmp_path / f"{i}.png"),
                      "prompt": prompt, "metric": "clip", "convention": "clip@raw-cos",
                      "weights": f"local:{clip_dir.resolve()}"}
            store.put(ResultRecord(key=result_key(fields), protocol="metric:clip", dimension="clip@raw-cos",
                                   key_fields=fields, status="scored", image_sha256=fields["image_sha256"],
                                   prompt=prompt, parsed={"value": 123.0, "extras": {}}))
    summary = _score(tmp_path, weights={"clip": str(clip_dir)})
    assert (summary.scored, summary.skipped) == (3, 0)
    assert 123.0 not in _table(tmp_path, "clip@raw-cos")
    assert {f["key_version"] for f in _stored_fields(tmp_path, "metric:clip")} == {1, 2}


# -- hub revisions resolve to commits ----------------------------------------------------------------

def _fake_snapshot(root: Path, repo_id: str, commit: str) -> Path:
    """Where huggingface_hub puts a snapshot: <cache>/models--org--name/snapshots/<commit>."""
    return root / f"models--{repo_id.replace('/', '--')}" / "snapshots" / commit


def test_default_hub_weights_are_keyed_on_the_snapshot_commit_not_the_branch(tmp_path, monkeypatch):
    import huggingface_hub

    served = {"openai/clip-vit-base-patch32": COMMIT_A}
    for repo_id, commit in served.items():
        save_tiny_clip(_fake_snapshot(tmp_path, repo_id, commit), seed=1)
    asked: list[tuple[str, str]] = []

    def snapshot_download(repo_id, revision=None, **_kw):
        asked.append((repo_id, revision))
        return str(_fake_snapshot(tmp_path, repo_id, served[repo_id]))

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    metric = load_metric("clip", device="cpu")
    assert asked == [("openai/clip-vit-base-patch32", "main")]
    assert metric.weights_label() == f"openai/clip-vit-base-patch32@{COMMIT_A}"


def test_pickscore_keys_its_companion_tokenizer_commit_too(tmp_path, monkeypatch):
    import huggingface_hub

    served = {"yuvalkirstain/PickScore_v1": COMMIT_A, "laion/CLIP-ViT-H-14-laion2B-s32B-b79K": COMMIT_B}
    for repo_id, commit in served.items():
        save_tiny_clip(_fake_snapshot(tmp_path, repo_id, commit), seed=1)
    monkeypatch.setattr(huggingface_hub, "snapshot_download",
                        lambda repo_id, revision=None, **_kw: str(_fake_snapshot(tmp_path, repo_id, served[repo_id])))
    metric = load_metric("pickscore", device="cpu")
    assert metric.weights_label() == (f"yuvalkirstain/PickScore_v1@{COMMIT_A}"
                                      f"+tokenizer=laion/CLIP-ViT-H-14-laion2B-s32B-b79K@{COMMIT_B}")


def test_a_hub_file_is_keyed_on_its_snapshot_commit(tmp_path, monkeypatch):
    import huggingface_hub

    from pixeljury.metrics.weights import resolve_weights

    snapshot = _fake_snapshot(tmp_path, "xswu/HPSv2", COMMIT_B)
    snapshot.mkdir(parents=True)
    (snapshot / "HPS_v2_compressed.pt").write_bytes(b"checkpoint")
    monkeypatch.setattr(huggingface_hub, "hf_hub_download",
                        lambda repo_id, filename, revision=None, **_kw: str(snapshot / filename))
    resolved = resolve_weights(get_spec("hpsv2").weights)
    assert resolved.path == snapshot / "HPS_v2_compressed.pt"
    assert resolved.identity == f"xswu/HPSv2/HPS_v2_compressed.pt@{COMMIT_B}"


def test_a_hub_path_without_a_commit_falls_back_to_the_content_fingerprint(tmp_path, monkeypatch):
    import huggingface_hub

    from pixeljury.metrics.weights import content_fingerprint, resolve_weights

    elsewhere = tmp_path / "mirror" / "HPS_v2_compressed.pt"  # e.g. a local_dir download: no snapshots/<commit>
    elsewhere.parent.mkdir()
    elsewhere.write_bytes(b"checkpoint")
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda *a, **kw: str(elsewhere))
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda *a, **kw: None)
    resolved = resolve_weights(get_spec("hpsv2").weights)
    assert resolved.identity == f"xswu/HPSv2/HPS_v2_compressed.pt@main+{content_fingerprint(elsewhere)}"


def test_content_fingerprint_follows_the_bytes_not_the_place(tmp_path):
    from pixeljury.metrics.weights import content_fingerprint

    first = tmp_path / "a" / "model.pt"
    first.parent.mkdir()
    first.write_bytes(b"\x00" * 1000)
    copy = tmp_path / "b" / "renamed.pt"
    copy.parent.mkdir()
    copy.write_bytes(b"\x00" * 1000)
    assert content_fingerprint(first) == content_fingerprint(copy)
    assert content_fingerprint(first).startswith("local-")
    copy.write_bytes(b"\x00" * 999 + b"\x01")
    assert content_fingerprint(first) != content_fingerprint(copy)
    folder = save_tiny_clip(tmp_path / "clip", seed=1)
    before = content_fingerprint(folder)
    (folder / "config.json").write_text((folder / "config.json").read_text() + "\n")  # config is read in full
    assert content_fingerprint(folder) != before
    with pytest.raises(FileNotFoundError):
        content_fingerprint(tmp_path / "nowhere")


def test_a_tokenizer_object_is_identified_by_its_class_and_vocabulary(tmp_path):
    from metrics_tiny import tiny_clip_tokenizer

    from pixeljury.metrics.weights import tokenizer_identity

    first = tokenizer_identity(tiny_clip_tokenizer(tmp_path / "a"))
    assert first == tokenizer_identity(tiny_clip_tokenizer(tmp_path / "b"))
    assert first.startswith("object:CLIPTokenizer:vocab-")
    other = tiny_clip_tokenizer(tmp_path / "c")
    other.add_tokens(["<new>"])
    assert tokenizer_identity(other) != first
