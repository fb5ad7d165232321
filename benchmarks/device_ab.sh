#!/usr/bin/env bash
# One device call that compares builds of several trees (the A/B measurements of benchmarks/NOTES.md):
# builds each tree for sm_90a in parallel, runs the CUDA pytest of one of them first, then per-kernel times
# (kernel_times.py) in alternating rounds and, with the time left, the op compare of two trees (bench.py
# --compare). Everything under $OUT (one logs.tgz: the device tool returns few files).
#
#   bash benchmarks/device_ab.sh NAME...      # each NAME: a tree in .dev/src_NAME.tar.gz (git archive --format=tar.gz)
#
# Env: TEST (tree whose pytest runs first; the call stops if it fails; default: the last NAME), CASES
# (kernel_times.py cases, default "P1:2d:1.0 P2:2d:1.0 P1:2d:0.1 P1:2d:0.1:fb"), KT_REPS (its --reps, 5), ROUNDS (2), COMPARE ("A,B" tree
# names; default: the first and the last NAME; "none" skips it), DENSITIES (the compare's, default "1.0,0.1"), DL (seconds the whole script may take, default
# 570: later steps are skipped or cut to fit), MAX_JOBS (per tree, default 16 / number of trees).
# Built trees stay in build/trees/NAME (reused by a later call on the same warm machine).
# The arch is 9.0a on purpose: a 9.0 build has no wgmma kernels and runs the mma.sync fallback on Hopper.
set -u
export PYTHONUNBUFFERED=1
S=$(date +%s); left() { echo $(( ${DL:-570} - ($(date +%s) - S) )); }
[ $# -ge 1 ] || { echo "usage: device_ab.sh NAME..." >&2; exit 2; }
R=$PWD; L=${OUT:-/tmp/seer_out}/logs; T=$R/build/trees; mkdir -p "$L" "$T"
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader | tee "$L/env.txt"
jobs_per=$(( 16 / $# )); [ $jobs_per -ge 2 ] || jobs_per=2
for n in "$@"; do
  if [ ! -f "$T/$n/.built" ]; then
    rm -rf "$T/$n"; mkdir -p "$T/$n"; tar xzf ".dev/src_$n.tar.gz" -C "$T/$n"
    (cd "$T/$n" && TORCH_CUDA_ARCH_LIST=9.0a MAX_JOBS=${MAX_JOBS:-$jobs_per} python3 setup.py build_ext --inplace \
       > "$L/build_$n.log" 2>&1 && touch .built) &
  fi
done
wait; echo "builds: $(( $(date +%s) - S )) s"
for n in "$@"; do [ -f "$T/$n/.built" ] || { echo "build of $n failed"; tail -n 20 "$L/build_$n.log"; }; done
finish() { (cd "${OUT:-/tmp/seer_out}" && tar czf logs.tgz logs && rm -rf logs); exit "$1"; }
TEST=${TEST:-${!#}}
t0=$(date +%s)
(cd "$T/$TEST" && SEER_ATTN_TEST_DEVICES=cuda timeout $(( $(left) > 240 ? 240 : $(left) )) python3 -m pytest -q -x tests \
   > "$L/pytest_$TEST.log" 2>&1); rc=$?
echo "pytest $TEST rc=$rc in $(( $(date +%s) - t0 )) s: $(tail -n 1 "$L/pytest_$TEST.log")"
[ $rc = 0 ] || { tail -n 30 "$L/pytest_$TEST.log"; finish 1; }
CASES=${CASES:-P1:2d:1.0 P2:2d:1.0 P1:2d:0.1 P1:2d:0.1:fb}
for r in $(seq 1 "${ROUNDS:-2}"); do for n in "$@"; do
  [ "$(left)" -lt 45 ] && { echo "kernel times $n round $r: skipped (deadline)"; continue; }
  PYTHONPATH="$T/$n" timeout 150 python3 benchmarks/kernel_times.py --reps "${KT_REPS:-5}" $CASES > "$L/kt_${n}_$r.log" 2>&1
  echo "== kernel times $n round $r (rc $?): the seer kernels' lines"
  grep -E "^==|seer::" "$L/kt_${n}_$r.log" | cut -c1-110
done; done
CMP=${COMPARE:-$1,${!#}}
b=$(( $(left) - 25 ))
if [ "$CMP" != none ] && [ $# -ge 2 ] && [ $b -gt 90 ]; then
  a=${CMP%,*}; c=${CMP#*,}
  timeout $(( b + 20 )) python3 benchmarks/bench.py --compare "$T/$a,$T/$c" --ops 2d,1d --variants-1d gqa \
    --workloads P1,P2 --densities "${DENSITIES:-1.0,0.1}" --budget-s $b --out "$L/cmp" > "$L/compare.log" 2>&1
  echo "compare $a,$c rc=$?"; cat "$L/cmp/compare.md" 2>/dev/null
fi
finish 0
