#!/bin/bash
# Builds and runs, on an sm_90a GPU (H100 / H200), from the repository root, the torch-free checks of the
# Hopper backward: wgmma_selftest (incl. the transposed-A wgmma of dQ = dS K), bwd_selftest (every case
# on the mma.sync kernels and the sm90 dK/dV kernel, plus the sm90 sweep; float64 reference, outputs
# pre-filled with NaN), bwd_selftest --time (P1, old and new kernel), and the SASS of the sm90 kernel
# (HGMMA count). Full logs in $OUT (default /tmp/bwd_selftest_out); a summary on stdout.
#
#   bash csrc/attention/selftest/run_bwd_selftest_sm90.sh
set -u
command -v nvcc > /dev/null || export PATH=/usr/local/cuda/bin:$PATH
OUT=${OUT:-/tmp/bwd_selftest_out}
mkdir -p "$OUT"
B=$(mktemp -d)
export B
export NVCC_FLAGS="-std=c++17 -O2 -gencode arch=compute_90a,code=sm_90a -DSEER_ATTN_SM90A --use_fast_math --expt-relaxed-constexpr -Icsrc"
rc=0

nvcc -std=c++17 -O2 -gencode arch=compute_90a,code=sm_90a -Icsrc -x cu -DSEER_WGMMA_SELFTEST_MAIN \
  csrc/common/selftest/wgmma_selftest.cuh -o "$B/wgmma_selftest" > "$OUT/build_wgmma.log" 2>&1 || { echo "wgmma_selftest build FAILED"; rc=1; }
[ -x "$B/wgmma_selftest" ] && { timeout 120 "$B/wgmma_selftest" > "$OUT/wgmma_selftest.log" 2>&1 || rc=1; cat "$OUT/wgmma_selftest.log"; }

# Objects in parallel (one nvcc per translation unit).
ls csrc/attention/selftest/bwd_selftest.cpp csrc/attention/bwd_launch.cu csrc/common/device_facts.cu csrc/attention/instantiations/bwd_*.cu |
  xargs -P 16 -I{} sh -c 'nvcc -x cu $NVCC_FLAGS -Xptxas -v -c {} -o "$B/$(basename {}).o" > "$B/$(basename {}).log" 2>&1 || echo "build FAILED: {}"'
cat "$B"/*.log > "$OUT/build_bwd.log"
nvcc -gencode arch=compute_90a,code=sm_90a "$B"/*.o -o "$B/bwd_selftest" >> "$OUT/build_bwd.log" 2>&1 || { echo "bwd_selftest link FAILED"; rc=1; }
echo "ptxas on the sm90 kernel (spills / serialisation warnings, expect none):"
cat "$B"/bwd_hdim*_sm90.cu.log | grep -A2 "bwd_dkdv_sm90" | grep -E "spill|C75" | sort | uniq -c

if [ -x "$B/bwd_selftest" ]; then
  # A hang (timeout, exit 124) leaves the case it hung in at the end of the log.
  timeout 300 "$B/bwd_selftest" > "$OUT/bwd_selftest.log" 2>&1
  r=$?
  [ $r -ne 0 ] && { rc=1; echo "bwd_selftest exit $r; last lines:"; tail -5 "$OUT/bwd_selftest.log"; }
  echo "bwd_selftest: $(tail -1 "$OUT/bwd_selftest.log")"
  grep -c FAIL "$OUT/bwd_selftest.log" | sed 's/^/FAIL lines: /'
  # Each failing check with its case header and path.
  awk '/^D=/ {hdr=$0} /^ \[/ {path=$0} /FAIL/ {print hdr; print path; print}' "$OUT/bwd_selftest.log" | head -60
  timeout 240 "$B/bwd_selftest" --time > "$OUT/bwd_selftest_time.log" 2>&1 || { rc=1; echo "bwd_selftest --time failed"; }
  grep -E "^time:|impl" "$OUT/bwd_selftest_time.log"
fi
if command -v cuobjdump > /dev/null; then
  for f in "$B"/bwd_hdim*_sm90.cu.o; do
    echo "$(basename "$f"): $(cuobjdump -sass "$f" | grep -c HGMMA) HGMMA, $(cuobjdump -sass "$f" | grep -c 'WARPGROUP.DEPBAR\|WARPGROUP.ARRIVE') warpgroup arrive/depbar"
  done
fi
rm -rf "$B"
echo "rc=$rc"
exit $rc
