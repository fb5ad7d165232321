#!/bin/bash
# GPU check of branch wip/dq-accum-zero (written without a GPU). On an H200, from the repository root (run
# tool: carry [".dev"]; the dev machine first does  mkdir -p .dev/main_tree && git archive main | tar -x -C .dev/main_tree):
#   OUT=/path bash csrc/attention/selftest/run_dq_accum_zero_next.sh
# 1. extensions of this tree and of main (parallel) + this tree's bwd_selftest (cmake);
# 2. bwd_selftest sweep (dq_accum NaN-prefilled before run_attention_bwd: the preprocess must zero it);
# 3. CUDA pytest of this tree;
# 4. fwd+bwd through the op, both trees, P1 / P2 at d = 1 / 0.2 / 0.1, default and deterministic (CUDA
#    events, same process order). Prediction: default -0.15 ms (P1) / -0.4 ms (P2) at d <= 0.2, d = 1 no
#    slower. Logs in $OUT/l, tarred to $OUT/logs.tgz.
set -o pipefail
cd "$(git -C "$(dirname "$0")" rev-parse --show-toplevel 2>/dev/null || (cd "$(dirname "$0")/../../.." && pwd))"
export PATH=/usr/local/cuda/bin:$PATH PYTHONUNBUFFERED=1 TORCH_CUDA_ARCH_LIST=9.0a
OUT=${OUT:-/tmp/dqz_out}; L=$OUT/l; mkdir -p "$L"
T0=$(date +%s); el() { echo "[$(($(date +%s) - T0))s] $*"; }
( MAX_JOBS=6 timeout 400 python3 setup.py build_ext --inplace > "$L/ext_branch.log" 2>&1; echo "branch ext rc=$?" ) &
[ -f .dev/main_tree/setup.py ] && ( cd .dev/main_tree && MAX_JOBS=6 timeout 400 python3 setup.py build_ext --inplace > "$L/ext_main.log" 2>&1; echo "main ext rc=$?" ) &
( cmake -S cmake -B build/dqz -DCMAKE_CUDA_ARCHITECTURES=90a > "$L/cmake.log" 2>&1 && timeout 400 cmake --build build/dqz --target seer_bwd_selftest -j 4 > "$L/st_build.log" 2>&1; echo "selftest build rc=$?" ) &
wait; el built
timeout 150 stdbuf -oL build/dqz/seer_bwd_selftest > "$L/bwd_sweep.log" 2>&1; echo "bwd sweep exit $? | $(tail -1 "$L/bwd_sweep.log") | FAIL lines $(grep -c FAIL "$L/bwd_sweep.log")"
SEER_ATTN_TEST_DEVICES=cuda timeout 200 python3 -m pytest -q -p no:cacheprovider -k "not hip" tests/test_attention.py tests/test_autograd.py \
  tests/test_seqlen_clamp.py tests/test_opcheck.py tests/test_compile.py tests/test_cuda_runtime.py > "$L/pytest.log" 2>&1
echo "pytest rc=$? $(tail -1 "$L/pytest.log")"; grep -E "^FAILED|^ERROR" "$L/pytest.log" | head -8
el tested
cat > /tmp/fb_time.py <<'PY'
import sys, torch
sys.path.insert(0, "benchmarks"); sys.path.insert(0, ".")
import common as C, seer_attn as sa
for w in ("P1", "P2"):
    inp = C.make_prefill_inputs(C.FULL_WORKLOADS[w].seqlens, "cuda")
    for d in (1.0, 0.2, 0.1):
        mask, _ = C.prefill_mask("2d", inp["seqlens"], d, "cuda")
        for det in (False, True):
            _, fb = C.attn_fns(sa, "2d", inp, mask, deterministic=det)
            for _ in range(2): fb()
            torch.cuda.synchronize()
            ts = []
            for _ in range(5):
                e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                e0.record(); fb(); e1.record(); torch.cuda.synchronize(); ts.append(e0.elapsed_time(e1))
            ts.sort()
            print(f"{w} d={d} {'det' if det else 'default'}: fwd+bwd median {ts[2]:.3f} ms", flush=True)
PY
for t in . .dev/main_tree; do [ -f $t/setup.py ] || continue; echo "== $t"; (cd $t && timeout 120 python3 /tmp/fb_time.py 2>&1 | grep fwd+bwd | tee -a "$L/fb_time.log"); done
el done
cd "$OUT" && tar czf logs.tgz l && rm -rf l
