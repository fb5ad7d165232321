# Two entry points (see README): `make demo` (the main job) and `make test` (the test suite).
# Both create a virtual environment in $(VENV), install torch and build the extension into it
# (CUDA kernels when a CUDA toolkit is found at $(CUDA_HOME), else the CPU reference only).
PY ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.14.1
PYTEST_ARGS ?= -q
export CUDA_HOME ?= /usr/local/cuda
export MAX_JOBS ?= 2

VPY := $(VENV)/bin/python
SOURCES := setup.py $(shell find csrc seer_attn -type f \( -name '*.cu' -o -name '*.cuh' -o -name '*.h' -o -name '*.cpp' \))

.PHONY: demo test bench build clean

$(VENV)/.deps:
	$(PY) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q "$(TORCH_SPEC)" ninja pybind11 pytest setuptools wheel
	touch $@

$(VENV)/.built: $(VENV)/.deps $(SOURCES)
	$(VPY) -m pip install -q --no-build-isolation -e .
	touch $@

build: $(VENV)/.built

demo: $(VENV)/.built
	$(VPY) benchmarks/demo.py

test: $(VENV)/.built
	$(VPY) -m pytest tests $(PYTEST_ARGS)

bench: $(VENV)/.built
	$(VPY) benchmarks/bench.py --out bench_out

clean:
	rm -rf build dist *.egg-info seer_attn/_C*.so $(VENV)
