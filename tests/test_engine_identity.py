"""How engines record which judge produced a result: model id + weights revision.

Results are reused only when both match, so a changed checkpoint must change the revision and the
same checkpoint named differently (relative or absolute path, a copy) must not. No vLLM needed: a
fake ``vllm`` module stands in for it.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import time
import types
from pathlib import Path
from typing import Any

import pytest

from pixeljury.engines import checkpoints as hf
from pixeljury.engines.checkpoints import cached_hub_commit, judge_identity, local_revision

COMMIT = "0123456789abcdef0123456789abcdef01234567"
OTHER_COMMIT = "fedcba9876543210fedcba9876543210fedcba98"


def checkpoint(folder: Path, weights: bytes = b"\x01" * 4096) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text('{"a": 1}')
    (folder / "tokenizer.json").write_text('{"vocab": {}}')
    (folder / "chat_template.jinja").write_text("{{ messages }}")
    (folder / "model.safetensors").write_bytes(weights)
    return folder


def hub_cache(root: Path, repo: str, refs: dict[str, str]) -> Path:
    """A Hugging Face cache folder holding ``repo`` with ``refs`` (name -> commit) and their snapshots."""
    repo_dir = root / ("models--" + repo.replace("/", "--"))
    for name, commit in refs.items():
        (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
        (repo_dir / "refs" / name).write_text(commit)
        checkpoint(repo_dir / "snapshots" / commit)
    return root


# --- local_revision -------------------------------------------------------------------------------


def test_same_size_overwrite_of_the_weights_changes_the_revision(tmp_path: Path) -> None:
    ckpt = checkpoint(tmp_path / "ckpt", b"\x01" * 4096)
    before = local_revision(ckpt)
    (ckpt / "model.safetensors").write_bytes(b"\x02" * 4096)  # retrained, same shapes
    after = local_revision(ckpt)
    assert before.startswith("local-") and after.startswith("local-") and before != after


@pytest.mark.parametrize("where", ["start", "middle", "end"])
def test_same_size_overwrite_of_a_large_weight_file_changes_the_revision(tmp_path: Path, where: str) -> None:
    size = 16 << 20  # large enough to be sampled, not read in full
    ckpt = checkpoint(tmp_path / "ckpt", bytes(size))
    before = local_revision(ckpt)
    offset = {"start": 10, "middle": hf.SAMPLE_EDGE_BYTES + 5, "end": size - 10}[where]
    with open(ckpt / "model.safetensors", "r+b") as fh:
        fh.seek(offset)
        fh.write(b"\xff")
    assert local_revision(ckpt) != before


def test_config_tokenizer_and_template_changes_change_the_revision(tmp_path: Path) -> None:
    ckpt = checkpoint(tmp_path / "ckpt")
    seen = {local_revision(ckpt)}
    for name, text in (("config.json", '{"a": 2}'), ("tokenizer.json", '{"vocab": {"x": 1}}'),
                       ("chat_template.jinja", "{{ message }}"), ("preprocessor_config.json", "{}")):
        (ckpt / name).write_text(text)
        seen.add(local_revision(ckpt))
    assert len(seen) == 5


def test_a_copy_elsewhere_keeps_the_revision_and_unrelated_files_do_not_count(tmp_path: Path) -> None:
    ckpt = checkpoint(tmp_path / "ckpt", os.urandom(5 << 20))
    before = local_revision(ckpt)
    time.sleep(0.01)
    copy = shutil.copytree(ckpt, tmp_path / "elsewhere" / "renamed")
    os.utime(copy / "model.safetensors", (1_000_000, 1_000_000))
    assert local_revision(copy) == before
    (ckpt / "README.md").write_text("notes")
    (ckpt / "logs").mkdir()
    assert local_revision(ckpt) == before


def test_a_huge_checkpoint_is_fingerprinted_by_sampling_not_reading_it_all(tmp_path: Path) -> None:
    ckpt = checkpoint(tmp_path / "ckpt")
    for shard in range(3):  # 3 x 20 GB, sparse: reading them whole would take minutes
        with open(ckpt / f"model-0000{shard}-of-00003.safetensors", "wb") as fh:
            fh.truncate(20 << 30)
    started = time.perf_counter()
    local_revision(ckpt)
    assert time.perf_counter() - started < 5.0


# --- judge_identity: the one rule both in-process engines follow ----------------------------------


def test_a_local_directory_is_its_absolute_path_however_it_is_written(tmp_path: Path, monkeypatch) -> None:
    ckpt = checkpoint(tmp_path / "ckpt")
    monkeypatch.chdir(tmp_path)
    relative, absolute, trailing = (judge_identity(m, None) for m in ("./ckpt", str(ckpt), "ckpt/"))
    assert relative == absolute == trailing == (str(ckpt), local_revision(ckpt))
    assert judge_identity("./ckpt", "my-label") == (str(ckpt), "my-label")  # a given revision wins


def test_a_hub_id_records_the_cached_commit_for_its_revision(tmp_path: Path) -> None:
    cache = hub_cache(tmp_path / "hub", "org/judge", {"main": COMMIT, "v2": OTHER_COMMIT})
    assert judge_identity("org/judge", None, cache_dir=str(cache)) == ("org/judge", COMMIT)
    assert judge_identity("org/judge", "main", cache_dir=str(cache)) == ("org/judge", COMMIT)
    assert judge_identity("org/judge", "v2", cache_dir=str(cache)) == ("org/judge", OTHER_COMMIT)
    assert cached_hub_commit("org/judge", OTHER_COMMIT, str(cache)) == OTHER_COMMIT
    # Not in the cache: the revision as given, or None.
    assert judge_identity("org/other", "v3", cache_dir=str(cache)) == ("org/other", "v3")
    assert judge_identity("org/other", None, cache_dir=str(cache)) == ("org/other", None)


def test_a_hub_snapshot_directory_gives_its_commit(tmp_path: Path) -> None:
    snapshot = checkpoint(tmp_path / "models--org--judge" / "snapshots" / COMMIT)
    assert judge_identity("org/judge", "main", "hf", snapshot=str(snapshot)) == ("org/judge", COMMIT)


def test_modelscope_records_the_given_revision_or_the_snapshot_fingerprint(tmp_path: Path) -> None:
    snapshot = checkpoint(tmp_path / "ms" / "judge")
    assert judge_identity("qwen/judge", "v1.0", "modelscope", snapshot=str(snapshot)) == ("qwen/judge", "v1.0")
    assert judge_identity("qwen/judge", None, "modelscope", snapshot=str(snapshot)) == (
        "qwen/judge", local_revision(snapshot))


def test_transformers_engine_resolve_weights_uses_the_same_rule(tmp_path: Path, monkeypatch) -> None:
    ckpt = checkpoint(tmp_path / "ckpt")
    monkeypatch.chdir(tmp_path)
    assert hf.resolve_weights("./ckpt", None, "auto") == (str(Path("ckpt")), local_revision(ckpt))
    snapshot = checkpoint(tmp_path / "hub" / "snapshots" / COMMIT)
    monkeypatch.setattr("huggingface_hub.snapshot_download", lambda model, revision=None: str(snapshot))
    assert hf.resolve_weights("org/judge", None, "hf") == (str(snapshot), COMMIT)


# --- VLLMEngine with a fake vLLM ------------------------------------------------------------------


class FakeLLM:
    instances: list["FakeLLM"] = []

    def __init__(self, **settings: Any) -> None:
        self.settings = settings
        FakeLLM.instances.append(self)


@pytest.fixture
def fake_vllm(monkeypatch) -> type[FakeLLM]:
    module = types.ModuleType("vllm")
    module.LLM = FakeLLM  # type: ignore[attr-defined]
    module.__version__ = "0.0-fake"  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "vllm", module)
    monkeypatch.delenv("VLLM_USE_MODELSCOPE", raising=False)
    FakeLLM.instances = []
    return FakeLLM


def test_vllm_engine_keys_a_local_directory_like_the_transformers_engine(tmp_path, monkeypatch, fake_vllm) -> None:
    from pixeljury.engines.vllm_engine import VLLMEngine

    ckpt = checkpoint(tmp_path / "ckpt")
    monkeypatch.chdir(tmp_path)
    relative, absolute = VLLMEngine("./ckpt"), VLLMEngine(str(ckpt))
    assert (relative.model_id, relative.revision) == (absolute.model_id, absolute.revision)
    assert (relative.model_id, relative.revision) == judge_identity(str(ckpt), None)
    assert relative.revision == local_revision(ckpt)
    assert fake_vllm.instances[0].settings["model"] == str(ckpt)  # vLLM loads the very same folder
    (ckpt / "model.safetensors").write_bytes(b"\x07" * 4096)  # new weights in place
    assert VLLMEngine("./ckpt").revision != relative.revision


def test_vllm_engine_records_the_cached_commit_of_a_hub_model(tmp_path, monkeypatch, fake_vllm) -> None:
    import huggingface_hub.constants

    from pixeljury.engines.vllm_engine import VLLMEngine

    cache = hub_cache(tmp_path / "hub", "org/judge", {"main": COMMIT, "v2": OTHER_COMMIT})
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.chdir(tmp_path)

    engine = VLLMEngine("org/judge")
    assert (engine.model_id, engine.revision) == ("org/judge", COMMIT)
    assert fake_vllm.instances[-1].settings["model"] == "org/judge"
    assert fake_vllm.instances[-1].settings["revision"] is None

    pinned = VLLMEngine("org/judge", revision="v2")
    assert fake_vllm.instances[-1].settings["revision"] == "v2"  # vLLM loads what was asked for
    assert pinned.revision == OTHER_COMMIT  # and the commit that is is recorded
    assert pinned.describe()["revision"] == OTHER_COMMIT


def test_vllm_engine_looks_in_its_download_dir_first(tmp_path, monkeypatch, fake_vllm) -> None:
    import huggingface_hub.constants

    from pixeljury.engines.vllm_engine import VLLMEngine

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty"))
    cache = hub_cache(tmp_path / "downloads", "org/judge", {"main": COMMIT})
    engine = VLLMEngine("org/judge", download_dir=str(cache))
    assert engine.revision == COMMIT and fake_vllm.instances[-1].settings["download_dir"] == str(cache)


def test_vllm_engine_warns_when_no_revision_can_be_found(tmp_path, monkeypatch, fake_vllm, caplog) -> None:
    import huggingface_hub.constants

    from pixeljury.engines.vllm_engine import VLLMEngine

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty"))
    monkeypatch.chdir(tmp_path)
    with caplog.at_level(logging.WARNING, logger="pixeljury.engines.vllm_engine"):
        engine = VLLMEngine("org/unknown")
    assert (engine.model_id, engine.revision) == ("org/unknown", None)
    assert "pass --revision" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="pixeljury.engines.vllm_engine"):
        assert VLLMEngine("org/unknown", revision="v9").revision == "v9"
    assert caplog.text == ""


def test_vllm_engine_module_imports_no_torch_or_transformers() -> None:
    import subprocess

    code = ("import sys; import pixeljury.engines.vllm_engine; "
            "print([m for m in ('torch', 'transformers', 'vllm') if m in sys.modules])")
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "[]"
