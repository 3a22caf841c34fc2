# Quickstart: `make demo` and `make test`; both create .venv and install into it when missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test bench bench-gpu gpu-wheels gpu-check clean

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
	$(PY) benchmarks/ct_fwp_cpu.py
	$(PY) benchmarks/compressed_cpu.py
	$(PY) benchmarks/hybrid_cpu.py
	$(PY) benchmarks/gan_cpu.py
	$(PY) benchmarks/sampling.py
	$(PY) benchmarks/train_cpu.py
	$(PY) benchmarks/maml_cpu.py
	MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=4294967296 $(PY) benchmarks/objectives_cpu.py

bench-gpu: $(STAMP)
	$(PY) benchmarks/ops_gpu.py

# A lent GPU machine has its own python3 (torch, Triton) and no package index: `make gpu-wheels` here
# puts the pure-Python packages it lacks into .whl/ and this machine's glyphs into .gpu_cache/; carry
# both there and run `make gpu-check` (it makes no .venv; here it uses .venv when there is one).
GPU_WHEELS := omegaconf==2.4.0 higher==0.2.1 fla-core==0.6.0 mlxtend==0.25.0 submitit==1.5.4

gpu-wheels: $(STAMP)
	$(PY) -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
		--platform manylinux2014_x86_64 -d .whl $(GPU_WHEELS)
	XDG_CACHE_HOME=.gpu_cache $(PY) -c "from episodes.datasets.glyphs import Glyphs; Glyphs('all')"

gpu-check:
	$(if $(wildcard $(PY)),$(PY),python3) benchmarks/gpu_check.py

clean:
	rm -rf $(VENV) runs .pytest_cache
