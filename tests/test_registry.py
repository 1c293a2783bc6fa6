"""The registry of engines, evaluators and metrics: lazy built-ins, entry-point plugins, `pixeljury list`."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

from pixeljury.core.registry import (
    DuplicateEntry,
    PluginError,
    PluginWarning,
    Registry,
    RegistryError,
    UnknownEntry,
    registry,
)

ROOT = Path(__file__).resolve().parents[1]


def _run(args: list[str], *extra_paths: Path, code: str | None = None) -> subprocess.CompletedProcess:
    path = ":".join([*(str(p) for p in extra_paths), str(ROOT / "src")])
    cmd = [sys.executable, "-c", code] if code is not None else [sys.executable, "-m", "pixeljury", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": path, "PATH": "/usr/bin:/bin", "COLUMNS": "200"})


def _distribution(site: Path, dist: str, module: str, source: str, hook: str = "register") -> None:
    """A real installed distribution: <dist>-0.1.dist-info with entry_points.txt, and its module."""
    info = site / f"{dist}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n", encoding="utf-8")
    (info / "entry_points.txt").write_text(f"[pixeljury.plugins]\n{dist} = {module}:{hook}\n", encoding="utf-8")
    (site / f"{module}.py").write_text(textwrap.dedent(source), encoding="utf-8")


_GOOD_PLUGIN = """
    def register(registry):
        registry.register("evaluator", "vqa-fake", "fakejury_impl:VQAFake", "a third-party evaluator",
                          protocol_id="vqa-fake", protocol_version="7")
        registry.register("engine", "echo", "fakejury_plugin:build_echo", "answers what it is asked", extra="fake")

    def build_echo(spec):
        return ("echo-engine", spec.model)
"""


def test_importing_and_listing_load_no_torch_and_no_targets():
    code = textwrap.dedent("""
        import sys
        import pixeljury.core.registry as core
        before = sorted(m for m in sys.modules if m.startswith("pixeljury.") and m != "pixeljury.core.registry")
        entries = core.registry().entries()
        from pixeljury.cli import app
        app(["list", "--json"], standalone_mode=False)
        print("RESULT", before, len(entries), "torch" in sys.modules, "transformers" in sys.modules,
              "pixeljury.protocols.qjudger" in sys.modules, "pixeljury.engines.hf" in sys.modules)
    """)
    out = _run([], code=code)
    assert out.returncode == 0, out.stderr
    result = out.stdout.strip().splitlines()[-1]
    assert result == f"RESULT ['pixeljury.core'] {len(registry().entries())} False False False False"


def test_builtins_carry_their_conventions():
    reg = registry()
    assert reg.names("engine") == ["transformers", "vllm", "openai", "replay"]
    assert reg.get("engine", "vllm").metadata["extra"] == "vllm"
    assert reg.get("engine", "openai").metadata["extra"] is None
    qjudger = reg.get("evaluator", "qjudger")
    from pixeljury.protocols import qjudger as protocol

    assert (qjudger.metadata["protocol_id"], qjudger.metadata["protocol_version"]) == (
        protocol.PROTOCOL_ID, protocol.PROTOCOL_VERSION)
    assert qjudger.load() is protocol
    clip = reg.get("metric", "clipscore@hessel-2.5x")
    assert (clip.metadata["direction"], clip.metadata["range"], clip.metadata["default"]) == (
        "higher-is-better", "[0.0, 2.5]", True)
    assert reg.get("metric", "clipscore@torchmetrics-100x").metadata["default"] is False
    assert reg.get("metric", "unifiedreward@2.0-mean-1-5").metadata["generative"] is True
    from pixeljury.metrics.registry import list_metrics

    assert [e.name for e in reg.entries("metric")] == [s.convention for s in list_metrics()]
    assert all(e.source == "built-in" for e in reg.entries())


def test_plugin_distribution_shows_up_in_list(tmp_path):
    _distribution(tmp_path, "fakejury", "fakejury_plugin", _GOOD_PLUGIN)
    out = _run(["list", "--json"], tmp_path)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["plugin_errors"] == []
    by_name = {(e["kind"], e["name"]): e for e in data["entries"]}
    fake = by_name[("evaluator", "vqa-fake")]
    assert fake["source"] == "plugin fakejury"
    assert fake["target"] == "fakejury_impl:VQAFake"
    assert fake["metadata"] == {"protocol_id": "vqa-fake", "protocol_version": "7"}
    assert fake["conventions"] == "protocol vqa-fake v7"
    assert by_name[("evaluator", "qjudger")]["source"] == "built-in"
    assert by_name[("engine", "echo")]["conventions"] == "pip install 'pixeljury[fake]'"
    # --kind filters, and the table names the plugin's distribution
    only = json.loads(_run(["list", "--kind", "evaluator", "--json"], tmp_path).stdout)["entries"]
    assert [e["name"] for e in only] == ["qjudger", "vqa-fake"]
    table = _run(["list", "--kind", "evaluator"], tmp_path).stdout
    assert "vqa-fake" in table and "plugin fakejury" in table and "protocol qjudger v1" in table
    # a plugin engine is built by create_engine through its registered builder
    code = ("from pixeljury.engines.factory import EngineSpec, create_engine\n"
            "print(create_engine(EngineSpec(engine='echo', model='m')))\n")
    assert _run([], tmp_path, code=code).stdout.strip() == "('echo-engine', 'm')"


def test_broken_plugin_names_its_distribution_and_spares_the_rest(tmp_path):
    _distribution(tmp_path, "brokenjury", "brokenjury_plugin", "raise RuntimeError('boom at import')\n")
    _distribution(tmp_path, "fakejury", "fakejury_plugin", _GOOD_PLUGIN)
    _distribution(tmp_path, "clashjury", "clashjury_plugin", """
        def register(registry):
            registry.register("metric", "clash@ok", "clashjury_plugin:nothing", "registered before the clash")
            registry.register("evaluator", "qjudger", "clashjury_plugin:Mine", "takes a built-in name")
    """)
    out = _run(["list", "--json"], tmp_path)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    names = {(e["kind"], e["name"]): e["source"] for e in data["entries"]}
    assert names[("evaluator", "qjudger")] == "built-in"
    assert names[("evaluator", "vqa-fake")] == "plugin fakejury"
    assert ("metric", "clash@ok") not in names  # a failed plugin registers nothing
    broken, clash = sorted(data["plugin_errors"])
    assert broken == ("pixeljury plugin 'brokenjury' from distribution 'brokenjury' (brokenjury_plugin:register) "
                      "failed and was skipped: RuntimeError: boom at import")
    assert clash.startswith("pixeljury plugin 'clashjury' from distribution 'clashjury'")
    assert ("DuplicateEntry: evaluator 'qjudger' is registered twice: by built-in (pixeljury.protocols.qjudger) "
            "and by plugin clashjury (clashjury_plugin:Mine)") in clash
    assert f"warning: {broken}" in out.stderr
    # built-in engines still resolve with a broken plugin installed
    code = ("import warnings\nfrom pixeljury.core.registry import registry\n"
            "with warnings.catch_warnings(record=True) as w:\n"
            "    warnings.simplefilter('always')\n"
            "    print(registry().get('engine', 'replay').name, [str(x.message).split(' from ')[0] for x in w])\n")
    assert _run([], tmp_path, code=code).stdout.strip() == (
        "replay [\"pixeljury plugin 'brokenjury'\", \"pixeljury plugin 'clashjury'\"]")


def _fake_entry_point(name, hook, dist="somedist"):
    return SimpleNamespace(name=name, value=f"{dist}_mod:register", load=lambda: hook,
                           dist=SimpleNamespace(name=dist))


def test_plugin_failure_warns_or_raises_in_strict_mode():
    reg = Registry(group=None, builtins=None)

    def bad(r):
        r.register("engine", "half", "x:y")
        raise ValueError("no good")

    with pytest.warns(PluginWarning, match=r"from distribution 'somedist' .* ValueError: no good"):
        assert reg.load_plugin(_fake_entry_point("bad", bad)) is False
    assert reg.names("engine") == []
    with pytest.raises(PluginError, match="plugin 'notcallable' from distribution 'other'.*not a callable"):
        reg.load_plugin(_fake_entry_point("notcallable", 42, dist="other"), strict=True)
    assert reg.load_plugin(_fake_entry_point("good", lambda r: r.register("engine", "ok", "m:f"))) is True
    assert reg.get("engine", "ok").source == "plugin somedist"


def test_duplicate_and_unknown_names():
    reg = Registry(group=None, builtins=None)
    reg.register("metric", "sharp@v1", "pkg.sharp:load", "first")
    with pytest.raises(DuplicateEntry) as dup:
        reg.register("metric", "sharp@v1", "other.sharp:load", "second")
    assert str(dup.value) == ("metric 'sharp@v1' is registered twice: by built-in (pkg.sharp:load) "
                              "and by built-in (other.sharp:load)")
    reg.register("evaluator", "sharp@v1", "pkg.eval:E")  # the same name under another kind is fine
    with pytest.raises(UnknownEntry) as unknown:
        reg.get("metric", "sharp@v2")
    assert str(unknown.value) == "unknown metric 'sharp@v2'; did you mean 'sharp@v1'? known: sharp@v1"
    with pytest.raises(UnknownEntry, match=r"^unknown engine 'x'; known: \(none\)$"):
        reg.get("engine", "x")
    with pytest.raises(RegistryError, match="unknown kind 'judge'; choose from engine, evaluator, metric"):
        reg.register("judge", "a", "m:f")
    with pytest.raises(RegistryError, match=r"cannot load pkg\.sharp:load: No module named 'pkg'"):
        reg.load("metric", "sharp@v1")
    with pytest.raises(UnknownEntry, match=r"did you mean 'qjudger'\?"):
        registry().get("evaluator", "qjuger")


def test_create_engine_goes_through_the_registry(tmp_path):
    from pixeljury.engines.base import EngineUnavailable
    from pixeljury.engines.factory import EngineSpec, create_engine
    from pixeljury.engines.replay import ReplayEngine

    answers = tmp_path / "answers.jsonl"
    answers.write_text(json.dumps({"image_sha256": "ab", "dimension": "Text", "text": "{}"}) + "\n", encoding="utf-8")
    engine = create_engine(EngineSpec(engine="replay", replay_file=str(answers), batch_size=3))
    assert isinstance(engine, ReplayEngine)
    assert engine.model_id == "replay:answers.jsonl"
    with pytest.raises(EngineUnavailable, match=r"^--engine replay needs --replay-file F"):
        create_engine(EngineSpec(engine="replay"))
    with pytest.raises(EngineUnavailable, match=r"^--engine openai needs --endpoint URL"):
        create_engine(EngineSpec(engine="openai"))
    with pytest.raises(EngineUnavailable) as unknown:
        create_engine(EngineSpec(engine="nope"))
    assert str(unknown.value) == "unknown engine 'nope'; choose from transformers, vllm, openai, replay"
    with pytest.raises(EngineUnavailable, match=r"^unknown engine 'vlm'; did you mean 'vllm'\? choose from"):
        create_engine(EngineSpec(engine="vlm"))


def test_list_rejects_an_unknown_kind():
    out = _run(["list", "--kind", "judges"])
    assert out.returncode == 2
    assert "unknown kind 'judges'; choose from engine, evaluator, metric" in out.stderr
