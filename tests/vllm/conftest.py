"""Fixtures of the vLLM suite: a tiny random Qwen3-VL, caches kept out of $HOME, the ``vllm`` marker.

Run in the vLLM environment: ``bash scripts/setup_vllm_env.sh && .venv-vllm/bin/python -m pytest tests/vllm``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from judge_fixtures import DTYPE, MAX_MODEL_LEN  # noqa: E402 - plain module beside this conftest
from pixeljury.testing.fake_openai import free_port


def _vllm_installed() -> bool:
    # With tests/ on sys.path, this very folder passes for a namespace package named `vllm`
    # (one without an origin); only a real installation counts.
    spec = importlib.util.find_spec("vllm")
    return spec is not None and spec.origin is not None


# These tests need the separate vLLM environment; the main environment's run leaves them out.
collect_ignore_glob = [] if _vllm_installed() else ["test_*.py"]

SERVED_MODEL_NAME = "tiny-judge"
SERVER_START_SECONDS = 300

# Set before vLLM is imported anywhere (the server subprocess inherits them); removed at the end.
_CACHE = Path(tempfile.mkdtemp(prefix="pixeljury-vllm-tests-")) if _vllm_installed() else None
if _CACHE is not None:
    for _name, _value in {
        "XDG_CACHE_HOME": _CACHE / "xdg",
        "VLLM_CACHE_ROOT": _CACHE / "vllm",
        "VLLM_CONFIG_ROOT": _CACHE / "vllm-config",
        "TORCHINDUCTOR_CACHE_DIR": _CACHE / "inductor",
        "HF_HOME": _CACHE / "hf",
        "HF_HUB_OFFLINE": "1",
        "VLLM_CPU_KVCACHE_SPACE": "1",  # GiB; the tiny model needs almost none
        "VLLM_NO_USAGE_STATS": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }.items():
        os.environ[_name] = str(_value)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _CACHE is not None:
        shutil.rmtree(_CACHE, ignore_errors=True)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.vllm)
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pixeljury.testing.tiny import build_tiny_qwen3vl

    return build_tiny_qwen3vl(tmp_path_factory.mktemp("tiny-qwen3vl"))


@pytest.fixture(scope="session")
def real_outputs() -> dict[str, Any]:
    """What one engine generated, for a later module to compare another engine with."""
    return {}


@pytest.fixture(scope="module")
def vllm_server(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real ``vllm serve`` of the tiny model on 127.0.0.1; yields its base URL.

    Module-scoped so it is stopped before the in-process engine starts: two engine cores on
    two cores and 24 GiB would slow each other down for nothing.
    """
    port = free_port()
    log_path = tmp_path_factory.mktemp("vllm-server") / "server.log"
    command = [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server",
        "--model", str(tiny_model_dir),
        "--served-model-name", SERVED_MODEL_NAME,
        "--host", "127.0.0.1",
        "--port", str(port),
        "--dtype", DTYPE,
        "--enforce-eager",
        "--max-model-len", str(MAX_MODEL_LEN),
        "--limit-mm-per-prompt", json.dumps({"image": 1, "video": 0}),
        "--reasoning-parser", "qwen3",
        "--structured-outputs-config", json.dumps({"backend": "guidance", "disable_any_whitespace": True}),
    ]
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_SECONDS
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"vllm serve exited with {process.returncode}:\n{_tail(log_path)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"vllm serve not ready in {SERVER_START_SECONDS}s:\n{_tail(log_path)}")
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        yield f"{base}/v1"
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _tail(path: Path, lines: int = 60) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
