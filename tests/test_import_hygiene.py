"""A light core: importing any pixeljury module outside the model files loads neither torch nor
transformers. Each module is imported in a fresh interpreter (one interpreter serves every module
until one of them loads torch; then the next starts fresh), so a module cannot hide behind another."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import pixeljury
from pj_testpaths import subprocess_env

# Modules that hold or load a model: they may import torch (at import time or not).
MODEL_FILES = {
    "pixeljury.engines.hf", "pixeljury.engines.hf_constrained", "pixeljury.engines.hf_scoring",
    "pixeljury.engines.vllm_engine", "pixeljury.engines.vllm_scoring",
    "pixeljury.metrics.aesthetic", "pixeljury.metrics.clip", "pixeljury.metrics.distribution", "pixeljury.metrics.heads",
    "pixeljury.metrics.hpsv3", "pixeljury.metrics.imagereward", "pixeljury.metrics.openclip_convert",
    "pixeljury.metrics.preprocess", "pixeljury.metrics.torch_base",
    "pixeljury.testing.tiny",
}
HEAVY = ("torch", "transformers", "vllm")

_PROBE = """
import importlib, json, sys
heavy = {heavy!r}
for name in {names!r}:
    importlib.import_module(name)
    loaded = sorted(h for h in heavy if h in sys.modules)
    if loaded:
        print(json.dumps([name, loaded]))
        break
    print(json.dumps([name, []]))
"""


def _light_modules() -> list[str]:
    names = [m.name for m in pkgutil.walk_packages(pixeljury.__path__, "pixeljury.")]
    return sorted(n for n in names if n not in MODEL_FILES and not n.endswith("__main__"))


def test_every_module_outside_the_model_files_imports_without_torch() -> None:
    todo = _light_modules()
    assert len(todo) > 40  # the walk found the package
    offenders: dict[str, list[str]] = {}
    while todo:
        proc = subprocess.run([sys.executable, "-c", _PROBE.format(heavy=HEAVY, names=todo)], capture_output=True,
                              text=True, env=subprocess_env(), timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        reports = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("[")]
        for name, loaded in reports:
            if loaded:
                offenders[name] = loaded
        todo = todo[len(reports):]
    assert offenders == {}, f"modules that load heavy libraries at import: {offenders}"


def test_the_model_file_list_names_real_modules() -> None:
    names = {m.name for m in pkgutil.walk_packages(pixeljury.__path__, "pixeljury.")}
    assert MODEL_FILES <= names, sorted(MODEL_FILES - names)
