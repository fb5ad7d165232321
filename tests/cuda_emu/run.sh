#!/usr/bin/env bash
# The CUDA kernels' source on the CPU: builds the four torch-free self-tests against the host-thread
# emulation (build.sh, cuda_emu.h) and runs them - forward, backward, decode and pooling, every kernel
# path the GPU runs at sm_90a (mma.sync and wgmma), float64 references. No GPU, no nvcc.
# Usage: [SANITIZE=address] [JOBS=N] tests/cuda_emu/run.sh [out_dir]; exits non-zero on any failure.
# `make emu-selftest` runs it (and .ci/run does).
set -uo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
out="${1:-$root/build/cuda_emu${SANITIZE:+_$SANITIZE}}"
start=$(date +%s)
bash "$root/tests/cuda_emu/build.sh" "$out" || { echo "cuda_emu: build failed" >&2; exit 1; }
echo "cuda_emu: built in $(( $(date +%s) - start )) s"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=0}"
rc=0
run() {  # name [args]: runs out/seer_<name>_selftest, log in out/<name><args>.log
  local name="$1"; shift
  local log="$out/$name$(echo "$*" | tr -c 'a-z0-9' '_').log" t0=$(date +%s)
  "$out/seer_${name}_selftest" "$@" > "$log" 2>&1
  local r=$?
  echo "cuda_emu: $name selftest $* rc=$r in $(( $(date +%s) - t0 )) s: $(tail -1 "$log")"
  return $r
}
# The backward (the longest) as two shards beside the three others, on two cores.
run bwd --shard 0/2 & b0=$!
run bwd --shard 1/2 & b1=$!
for t in fwd decode pooling; do run "$t" || rc=1; done
wait "$b0" || rc=1
wait "$b1" || rc=1
[ $rc -eq 0 ] || { echo "cuda_emu: FAILED (logs in $out/*.log)" >&2; grep -h -m5 -B2 "FAIL\|cuda_emu:\|ERROR" "$out"/*.log | head -40 >&2; }
echo "cuda_emu: total $(( $(date +%s) - start )) s"
exit $rc
