#!/usr/bin/env bash
# One call on the GPU machine (the device tool): build the extension, run the tests on CUDA, run the
# benchmark. Everything is logged under $OUT. Usage (repo root on the device):
#   bash benchmarks/device_run.sh [pytest args...]
# Env: SKIP_TESTS=1, SKIP_BENCH=1, BENCH_ARGS="...", SEER_ATTN_KERNELS_LIB (prebuilt device code, see
# cmake/CMakeLists.txt), TEST_TIMEOUT (s, default 300), BENCH_TIMEOUT (s, default 300).
set -uo pipefail
OUT=${OUT:-/tmp/seer_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
PY=${PY:-python3}
{
  echo "== device"; nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv,noheader
  $PY -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"
  $PY -c "import triton; print('triton', triton.__version__)" 2>/dev/null || echo "triton: not importable"
} 2>&1 | tee "$OUT/env.txt"

# 9.0a, not 9.0: a 9.0 build has no wgmma kernels and runs the mma.sync fallback on Hopper (setup.py).
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0a}
export MAX_JOBS=${MAX_JOBS:-16}
t0=$(date +%s)
if ! $PY setup.py build_ext --inplace > "$OUT/build.log" 2>&1; then
  echo "== BUILD FAILED"; grep -E "error|Error" "$OUT/build.log" | head -40; tail -20 "$OUT/build.log"; exit 1
fi
echo "== build ok in $(( $(date +%s) - t0 )) s"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
$PY -c "import seer_attn; print('kernel status', seer_attn.kernel_status())"

if [ "${SKIP_TESTS:-0}" != "1" ]; then
  t0=$(date +%s)
  timeout "${TEST_TIMEOUT:-300}" $PY -m pytest tests -q -rfE "$@" > "$OUT/tests.log" 2>&1
  echo "== tests rc=$? in $(( $(date +%s) - t0 )) s"; tail -40 "$OUT/tests.log"
fi

if [ "${SKIP_BENCH:-0}" != "1" ]; then
  t0=$(date +%s)
  BD=/tmp/seer_bench; rm -rf $BD
  timeout "${BENCH_TIMEOUT:-300}" $PY benchmarks/bench.py --out $BD ${BENCH_ARGS:-} > "$OUT/bench.log" 2>&1
  echo "== bench rc=$? in $(( $(date +%s) - t0 )) s"; tail -60 "$OUT/bench.log"
  cp $BD/results.md $BD/results.json $BD/*.png "$OUT/" 2>/dev/null
fi
