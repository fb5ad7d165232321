#!/bin/bash
# GPU check of branch wip/bwd-dq-choice (written without a GPU): on an H200 from the repository root,
#   OUT=/path bash csrc/attention/selftest/run_bwd_dq_choice_next.sh
# 1. bwd_selftest (cmake harness; every sm90 case now also runs "atomic, q-major dQ": forced tile counts),
# 2. the extension + test_attention.py (incl. test_bwd_dq_paths at d = 0.05 / 0.9) and the other CUDA tests,
# 3. fwd+bwd per-kernel times of both paths (P1, d = 1 / 0.2 / 0.1): the default path must now match the
#    faster of atomic / deterministic at each density (NOTES v7 table), and at d = 1 cost no more than main.
set -o pipefail
cd "$(git -C "$(dirname "$0")" rev-parse --show-toplevel)"
export PATH=/usr/local/cuda/bin:$PATH PYTHONUNBUFFERED=1 TORCH_CUDA_ARCH_LIST=9.0a
OUT=${OUT:-/tmp/dq_choice_out}; mkdir -p "$OUT"
cmake -S cmake -B build/selftest-90a -DCMAKE_CUDA_ARCHITECTURES=90a > "$OUT/cmake.log" 2>&1
( timeout 400 cmake --build build/selftest-90a --target seer_bwd_selftest -j "$(nproc)" > "$OUT/selftest_build.log" 2>&1;
  echo "selftest build rc=$?" ) &
( MAX_JOBS=$(nproc) timeout 400 python3 setup.py build_ext --inplace > "$OUT/build_ext.log" 2>&1; echo "ext build rc=$?" ) &
wait
timeout 120 stdbuf -oL build/selftest-90a/seer_bwd_selftest > "$OUT/bwd_sweep.log" 2>&1; echo "bwd sweep exit $?"
tail -1 "$OUT/bwd_sweep.log"; echo "FAIL lines: $(grep -c FAIL "$OUT/bwd_sweep.log"); q-major atomic blocks: $(grep -c 'atomic, q-major dQ' "$OUT/bwd_sweep.log")"
SEER_ATTN_TEST_DEVICES=cuda timeout 200 python3 -m pytest -q -p no:cacheprovider -k "not hip" tests/test_attention.py \
  tests/test_seqlen_clamp.py tests/test_autograd.py tests/test_opcheck.py tests/test_compile.py tests/test_errors.py \
  tests/test_masks.py tests/test_naive.py > "$OUT/tests.log" 2>&1
echo "pytest rc=$?"; grep -E "passed|failed" "$OUT/tests.log" | tail -1; grep -E "^FAILED|^ERROR" "$OUT/tests.log" | head -8
# Per-kernel times (torch.profiler) through the op, both backward paths (benchmarks/common.py inputs).
timeout 120 python3 - > "$OUT/prof.log" 2>&1 <<'PY'
import sys, collections, torch
sys.path.insert(0, "benchmarks"); sys.path.insert(0, ".")
import common as C, seer_attn as sa
from torch.profiler import profile, ProfilerActivity
inp = C.make_prefill_inputs(C.FULL_WORKLOADS["P1"].seqlens, "cuda")
for d in (1.0, 0.2, 0.1):
    mask, _ = C.prefill_mask("2d", inp["seqlens"], d, "cuda")
    for det in (False, True):
        _, fb = C.attn_fns(sa, "2d", inp, mask, deterministic=det)
        for _ in range(2): fb()
        torch.cuda.synchronize()
        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        e0.record()
        for _ in range(5): fb()
        e1.record(); torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            fb(); torch.cuda.synchronize()
        agg = collections.defaultdict(float)
        for ev in prof.events():
            if ev.device_type == torch.autograd.DeviceType.CUDA:
                agg[ev.name[:50]] += ev.device_time_total / 1000.0
        print(f"P1 d={d} {'det' if det else 'default'}: fwd+bwd {e0.elapsed_time(e1) / 5:.3f} ms; " +
              ", ".join(f"{k} {v:.3f}" for k, v in sorted(agg.items(), key=lambda x: -x[1])[:4]))
PY
grep "fwd+bwd" "$OUT/prof.log"
