#!/bin/bash
# GPU check of branch wip/bwd-interleave (written without a GPU) + the profiles NOTES v8 asks for + main's
# `make selftest` (never run as one command on a GPU). On an H200, from the repository root (run tool: carry
# [".dev"]; the dev machine first does  mkdir -p .dev/main_tree && git archive main | tar -x -C .dev/main_tree):
#   OUT=/path bash csrc/attention/selftest/run_bwd_interleave_next.sh
# 1. cmake harness of this tree (bwd + fwd self-tests) and main's `make selftest` (builds and runs every
#    self-test through ctest: forward, backward, decode, pooling, wgmma) in parallel;
# 2. bwd_selftest sweep of this tree (float64 reference; every path);
# 3. bwd_selftest --time of both trees: prediction (NOTES v8 / the branch commit): dK/dV-bound rows - the
#    deterministic and "atomic, q-major dQ" rows at d <= 0.5 - 3-8% faster, d = 1 unchanged;
# 4. ncu of main's dK/dV kernel at P1 d = 0.1 (deterministic, 2D) and of the forward (S = 16384, d = 1):
#    warp-state sampling per SASS instruction (which warps stall where). Logs land in $OUT/l, tarred to
#    $OUT/logs.tgz (the run tool returns at most 8 files).
set -o pipefail
cd "$(git -C "$(dirname "$0")" rev-parse --show-toplevel 2>/dev/null || (cd "$(dirname "$0")/../../.." && pwd))"
export PATH=/usr/local/cuda/bin:$PATH
OUT=${OUT:-/tmp/bwd_ilv_out}; L=$OUT/l; mkdir -p "$L"
T0=$(date +%s); el() { echo "[$(($(date +%s) - T0))s] $*"; }
J=$(( $(nproc) / 2 ))
build() {  # src builddir log
  cmake -S "$1/cmake" -B "$2" -DCMAKE_CUDA_ARCHITECTURES=90a > "$L/$3_cmake.log" 2>&1 &&
    timeout 400 cmake --build "$2" --target seer_fwd_selftest seer_bwd_selftest -j "$J" > "$L/$3_build.log" 2>&1
  echo "$3 build rc=$?"
}
build "$PWD" "$PWD/build/ilv_branch" branch &
[ -f .dev/main_tree/Makefile ] && ( cd .dev/main_tree && timeout 500 make selftest SELFTEST_ARCH=90a SELFTEST_JOBS=$J \
  > "$L/main_make_selftest.log" 2>&1; echo "main make selftest rc=$?"; grep -E "tests passed|Failed|Passed|\*\*\*" "$L/main_make_selftest.log" | tail -8 ) &
wait; el built
B=build/ilv_branch; M=.dev/main_tree/build/selftest-90a
timeout 150 stdbuf -oL $B/seer_bwd_selftest > "$L/bwd_sweep.log" 2>&1; echo "bwd sweep exit $? | $(tail -1 "$L/bwd_sweep.log") | FAIL lines $(grep -c FAIL "$L/bwd_sweep.log")"
el sweep
timeout 150 stdbuf -oL $B/seer_bwd_selftest --time > "$L/bwd_time_branch.log" 2>&1; echo "time branch exit $?"
[ -x $M/seer_bwd_selftest ] && { timeout 150 stdbuf -oL $M/seer_bwd_selftest --time > "$L/bwd_time_main.log" 2>&1; echo "time main exit $?"; }
paste <(grep -E "^time|impl 1" "$L/bwd_time_main.log") <(grep -E "^time|impl 1" "$L/bwd_time_branch.log" | sed 's/.*median/median/; s/^time.*/|/')
el timed
# ncu: --time runs, per case, 11 sm90 dK/dV launches for each of atomic / deterministic / atomic q-major;
# cases 2D d = 1, 0.5, 0.1, ...: skip 2 cases + the atomic runs + the deterministic warm-up = 78.
X=$M; [ -x $X/seer_bwd_selftest ] || X=$B
timeout 150 ncu --kernel-name regex:bwd_dkdv_sm90 --launch-skip 78 --launch-count 1 --kill yes --set full -o "$L/dkdv_d01" -f \
  $X/seer_bwd_selftest --time > "$L/ncu_dkdv_run.log" 2>&1; echo "ncu dkdv exit $?"
timeout 150 ncu --kernel-name regex:attention_fwd_sm90 --launch-skip 3 --launch-count 1 --kill yes --set full -o "$L/fwd_d1" -f \
  $X/seer_fwd_selftest --time > "$L/ncu_fwd_run.log" 2>&1; echo "ncu fwd exit $?"
for r in dkdv_d01 fwd_d1; do
  [ -f "$L/$r.ncu-rep" ] || continue
  ncu --import "$L/$r.ncu-rep" --page details > "$L/${r}_details.txt" 2>&1
  ncu --import "$L/$r.ncu-rep" --page source --csv --print-source sass > "$L/${r}_sass.csv" 2>&1
  grep -E "Stall|Warp Cycles|Issue|Tensor|Throughput" "$L/${r}_details.txt" | head -30
done
el profiled
cd "$OUT" && tar czf logs.tgz l && rm -rf l
