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

.PHONY: demo test bench build clean hip-check selftest emu-selftest

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

# Compile check of the ROCm (gfx942 / MI300X) MFMA kernels with Debian's clang-19 (installed with apt
# when missing): one line per kernel with its MFMA count, registers, LDS and scratch; fails on a kernel
# without MFMA instructions or with spills. Runs no kernel (no AMD GPU needed). With the venv built, also
# checks the sources after torch's hipify (what a ROCm build compiles).
hip-check:
	$(if $(wildcard $(VPY)),$(VPY),$(PY)) tools/hip_check.py

# Torch-free GPU self-tests of forward, backward, decode and pooling (and, on Hopper, the wgmma building
# blocks): cmake/CMakeLists.txt builds the kernels and the seer_*_selftest programs for SELFTEST_ARCH
# (default: the first GPU's compute capability, 90 -> 90a) and runs them all through ctest; fails if any
# fails. Needs cmake >= 3.24 and a GPU; no torch, no venv.
SELFTEST_ARCH ?= $(shell nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d . | sed 's/^90$$/90a/')
SELFTEST_JOBS ?= $(shell nproc)
SELFTEST_NVCC ?= $(or $(shell command -v nvcc 2>/dev/null),$(CUDA_HOME)/bin/nvcc)
selftest:
	@test -n "$(SELFTEST_ARCH)" || { echo "make selftest: no GPU found; give SELFTEST_ARCH (e.g. 90a, 80)"; exit 1; }
	cmake -S cmake -B build/selftest-$(SELFTEST_ARCH) -DCMAKE_CUDA_ARCHITECTURES=$(SELFTEST_ARCH) \
	  -DCMAKE_CUDA_COMPILER=$(SELFTEST_NVCC)
	cmake --build build/selftest-$(SELFTEST_ARCH) --target selftest -j $(SELFTEST_JOBS)

# The CUDA kernels' source on the CPU (no GPU, no nvcc, no venv): tests/cuda_emu/run.sh builds the four
# self-tests above against a host-thread emulation of the GPU features they use (tests/cuda_emu/cuda_emu.h;
# clang++-19 or g++, the CUDA toolkit's headers) and runs them: forward, backward (two shards), decode and
# pooling, the mma.sync and the sm_90a wgmma paths, float64 references; fails if any fails. About 15 min on
# two cores. SANITIZE=address: the AddressSanitizer build (the kernels' global-memory accesses checked).
emu-selftest:
	bash tests/cuda_emu/run.sh

clean:
	rm -rf build dist *.egg-info seer_attn/_C*.so $(VENV)
