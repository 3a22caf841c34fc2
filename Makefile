# Quickstart: `make demo` and `make test`; both create .venv and install into it when missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test bench bench-gpu clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m metafwp.demo

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) benchmarks/backbones_cpu.py
	$(PY) benchmarks/ops_cpu.py
	$(PY) benchmarks/recurrent_cpu.py
	$(PY) benchmarks/rtrl_cpu.py
	$(PY) benchmarks/hybrid_cpu.py
	$(PY) benchmarks/sampling.py
	$(PY) benchmarks/train_cpu.py
	$(PY) benchmarks/maml_cpu.py
	MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=4294967296 $(PY) benchmarks/objectives_cpu.py

bench-gpu: $(STAMP)
	$(PY) benchmarks/ops_gpu.py

clean:
	rm -rf $(VENV) runs .pytest_cache
