#!/bin/bash
# Device check of branch wip/session8 (= wip/row-keep) - everything written without a GPU since main:
#   wip/session7  : wip/bwd-interleave, wip/dq-accum-zero, wip/cu-clamp, wip/tests-audit, wip/fwd-settle,
#                   wip/mask-row-offset (benchmarks/NOTES.md v8 "next steps");
#   wip/fwd-lean  : the forward / dQ instruction diet, conditional rescale, no transposed tile mask in the
#                   forward (NOTES v9);
#   wip/bwd-split-keys : the 64-key dK/dV CTA at a low kept-tile density (NOTES v9);
#   wip/row-keep  : per-row keep bits of value-1 chunks resolved by the producer, pooling's S tiles by
#                   wgmma, the HIP kernels' key limits from SeqBounds (NOTES v9).
# On an H200, from the repository root (run tool: carry [".dev"], timeout 600), three calls in a row (the
# machine stays warm between them; PART 3 rebuilds the extensions if a cold machine lost them):
#   OUT=$OUT PART=1 bash csrc/attention/selftest/run_session8_next.sh   (~6 min)
#   OUT=$OUT PART=2 bash csrc/attention/selftest/run_session8_next.sh   (~6 min)
#   OUT=$OUT PART=3 bash csrc/attention/selftest/run_session8_next.sh   (~5 min)
# Prebuilt on the dev machine (.dev/pkg: s8_* = this tree, s7_fwd = wip/session7's forward self-test,
# main_* = main; recipe below); .dev/main_tree = `git archive main`. Logs in $OUT/l, tarred to
# $OUT/logs.tgz at every checkpoint (the run tool returns at most 8 files).
#  PART 1 (correctness): this tree's extension, main's extension and main's `make selftest` (every
#    self-test through ctest: #10's one-command harness, never yet run on a GPU); this tree's fwd / bwd /
#    decode / pooling self-test sweeps (float64 references, NaN-prefilled outputs; bwd: every sm90 path
#    incl. the 64-key CTA and dense counts; pooling: mma.sync and wgmma S tiles), CUDA pytest (all files
#    but test_distributed / HIP emulation),
#    compute-sanitizer memcheck of the out-of-range cu_seqlens tests.
#  PART 2 (kernel timing, self-tests): bwd --time this tree vs main (rows "..., 64-key dK/dV" force the
#    64-key CTA at every density: against "deterministic" they show where the CTA size should switch, now
#    30% kept tiles); fwd --time main | wip/session7 | this tree (settle, then diet + lazy rescale; the 1D
#    per-token rows exist in this tree only); pooling --time (P1, mma.sync vs wgmma S tiles, one binary);
#    the decode self-test of wip/decode-page-prefetch (sweep, and --time against this tree's).
#  PART 3 (op timing, profiles): fwd+bwd through the op, this tree vs main (P1 / P2, d = 1 / 0.2 / 0.1,
#    default and deterministic); ncu --set full (source-level SASS csv) of this tree's forward (S 16384,
#    d 1) and of its 64-key dK/dV kernel (P1 2D d = 0.1, deterministic).
set -o pipefail
cd "$(git -C "$(dirname "$0")" rev-parse --show-toplevel 2>/dev/null || (cd "$(dirname "$0")/../../.." && pwd))"
export PATH=/usr/local/cuda/bin:$PATH PYTHONUNBUFFERED=1 TORCH_CUDA_ARCH_LIST=9.0a
OUT=${OUT:-/tmp/s8_out}; mkdir -p "$OUT"
PART=${PART:-1}
# Logs outside $OUT, tarred into $OUT/logs.tgz at every checkpoint: if the call is cut at its time limit,
# the last checkpoint's logs still come back (one file; the run tool returns at most 8).
L=/tmp/s8_logs/part$PART; mkdir -p "$L"
T0=$(date +%s); el() { echo "[$(($(date +%s) - T0))s] $*"; tar czf "$OUT/logs.tgz" -C /tmp s8_logs; }
M=.dev/main_tree; B=build/s8; MB=$M/build/selftest-90a
# Prebuilt pieces (saves ~4 minutes of device time; a cmake build on the dev machine takes ~2 min per tree):
#   for t in s8:/work/wt/rk main:/work/main; do n=${t%%:*}; d=${t#*:}; (cd $d && cmake -S cmake -B build/st \
#     -DCMAKE_CUDA_ARCHITECTURES=90a && cmake --build build/st -j 2 --target seer_attn_kernels seer_fwd_selftest \
#     seer_bwd_selftest seer_decode_selftest seer_pooling_selftest); for f in libseer_attn_kernels.a:lib.a \
#     seer_fwd_selftest:fwd seer_bwd_selftest:bwd seer_decode_selftest:decode seer_pooling_selftest:pooling; do \
#     xz -T2 -c $d/build/st/${f%%:*} > .dev/pkg/${n}_${f#*:}.xz; done; done   (main: fwd, bwd and lib suffice)
[ -f .dev/pkg/s8_lib.a.xz ] || { echo "missing .dev/pkg (prebuilt pieces)"; exit 2; }
mkdir -p /tmp/b; for f in .dev/pkg/*.xz; do n=$(basename $f .xz); [ -f /tmp/b/$n ] || { xz -dc $f > /tmp/b/$n; chmod +x /tmp/b/$n; }; done
mkdir -p $B $MB
for x in fwd bwd decode pooling; do cp /tmp/b/s8_$x $B/seer_${x}_selftest; done
build_exts() {
  ( ls seer_attn/_C*.so > /dev/null 2>&1 || SEER_ATTN_KERNELS_LIB=/tmp/b/s8_lib.a MAX_JOBS=6 timeout 400 python3 setup.py \
      build_ext --inplace > "$L/ext_branch.log" 2>&1; echo "branch ext rc=$?" ) &
  ( cd $M && { ls seer_attn/_C*.so > /dev/null 2>&1 || SEER_ATTN_KERNELS_LIB=/tmp/b/main_lib.a MAX_JOBS=4 timeout 400 \
      python3 setup.py build_ext --inplace > "$L/ext_main.log" 2>&1; }; echo "main ext rc=$?" ) &
}
if [ "$PART" = 1 ]; then
  build_exts
  ( cd $M && timeout 500 make selftest SELFTEST_ARCH=90a SELFTEST_JOBS=6 > "$L/main_make_selftest.log" 2>&1
    echo "main make selftest rc=$?"; grep -E "tests passed|tests failed|\*\*\*Failed" "$L/main_make_selftest.log" | tail -6 ) &
  for s in fwd bwd decode pooling; do ( timeout 240 stdbuf -oL $B/seer_${s}_selftest > "$L/sweep_$s.log" 2>&1
    echo "sweep $s rc=$? | $(tail -1 "$L/sweep_$s.log") | FAIL lines $(grep -c FAIL "$L/sweep_$s.log")" ) & done
  wait; el "built, swept"
  SEER_ATTN_TEST_DEVICES=cuda timeout 200 python3 -m pytest -q -p no:cacheprovider -k "not hip" tests/test_decode.py \
    tests/test_seqlen_clamp.py tests/test_attention.py tests/test_pooling.py tests/test_autograd.py tests/test_opcheck.py \
    tests/test_compile.py tests/test_errors.py tests/test_compat.py tests/test_cuda_runtime.py tests/test_masks.py \
    tests/test_build.py tests/test_naive.py > "$L/pytest.log" 2>&1
  echo "pytest rc=$? $(tail -1 "$L/pytest.log")"; grep -E "^FAILED|^ERROR" "$L/pytest.log" | head -8
  SEER_ATTN_TEST_DEVICES=cuda timeout 120 compute-sanitizer --tool memcheck --print-limit 5 python3 -m pytest -q -p no:cacheprovider \
    tests/test_seqlen_clamp.py -k "outside or rows_past" > "$L/memcheck.log" 2>&1
  echo "memcheck rc=$? $(grep -E "ERROR SUMMARY" "$L/memcheck.log" | sort | uniq -c | tr '\n' ' ') $(tail -1 "$L/memcheck.log")"
  el tested
fi
if [ "$PART" = 2 ]; then
  for x in fwd bwd; do cp /tmp/b/main_$x $MB/seer_${x}_selftest; done
  timeout 200 stdbuf -oL $B/seer_bwd_selftest --time > "$L/bwd_time_branch.log" 2>&1; echo "bwd time branch rc=$?"
  timeout 120 stdbuf -oL $MB/seer_bwd_selftest --time > "$L/bwd_time_main.log" 2>&1; echo "bwd time main rc=$?"
  echo "bwd --time, sm90 rows: main | this tree"
  paste <(grep -E "^time|impl 1" "$L/bwd_time_main.log" | sed 's/(min.*//' | cut -c1-90) <(grep -E "^time|impl 1" "$L/bwd_time_branch.log" | sed 's/(min.*//; s/^time.*/|/')
  el "bwd timed"
  timeout 120 stdbuf -oL $B/seer_fwd_selftest --time > "$L/fwd_time_branch.log" 2>&1; echo "fwd time branch rc=$?"
  timeout 60 stdbuf -oL $MB/seer_fwd_selftest --time > "$L/fwd_time_main.log" 2>&1; echo "fwd time main rc=$?"
  timeout 60 stdbuf -oL /tmp/b/s7_fwd --time > "$L/fwd_time_s7.log" 2>&1; echo "fwd time s7 rc=$?"
  echo "fwd --time: main | wip/session7 | this tree"
  paste <(grep -E "^time|impl" "$L/fwd_time_main.log" | sed 's/(min.*//' | cut -c1-60) <(grep -E "^time|impl" "$L/fwd_time_s7.log" | sed 's/.*median/median/; s/(min.*//; s/^time.*/|/') <(grep -E "^time|impl" "$L/fwd_time_branch.log" | sed 's/.*median/median/; s/(min.*//; s/^time.*/|/')
  grep -A2 "per-token" "$L/fwd_time_branch.log"
  el "fwd timed"
  timeout 90 stdbuf -oL $B/seer_pooling_selftest --time > "$L/pool_time.log" 2>&1; echo "pooling time rc=$?"; cat "$L/pool_time.log"
  # Decode: this tree vs wip/decode-page-prefetch (s8pf_decode: the paged block-table reads one stage
  # ahead; not on this branch): its sweep, then D1 timing of both (paged16 vs contiguous rows).
  if [ -x /tmp/b/s8pf_decode ]; then
    timeout 120 stdbuf -oL /tmp/b/s8pf_decode > "$L/sweep_decode_pf.log" 2>&1
    echo "sweep decode (page prefetch) rc=$? | $(tail -1 "$L/sweep_decode_pf.log") | FAIL lines $(grep -c FAIL "$L/sweep_decode_pf.log")"
    for x in $B/seer_decode_selftest /tmp/b/s8pf_decode; do timeout 60 stdbuf -oL $x --time > "$L/decode_time_$(basename $x).log" 2>&1; done
    echo "decode --time, this tree:"; grep "^time" "$L/decode_time_seer_decode_selftest.log"
    echo "decode --time, page prefetch:"; grep "^time" "$L/decode_time_s8pf_decode.log"
  fi
  el timed
fi
if [ "$PART" = 3 ]; then
  build_exts; wait; el built
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
  for t in . $M; do echo "== $t"; (cd $t && timeout 100 python3 /tmp/fb_time.py 2>&1 | grep fwd+bwd | tee -a "$L/fb_time.log"); done
  el op-timed
  # bwd --time: cases 2D d = 1, 0.5, 0.1, then 1D; the 64-key dK/dV kernel (mangled name: Traits<.., 1>) runs
  # 11 times in each of the sm90 rows "atomic, q-major dQ, 64-key" and "deterministic, 64-key" of a case:
  # skip 2 cases (44) + the atomic row (11) + the deterministic row's warm-up (1) = 56.
  timeout 120 ncu --kernel-name-base mangled --kernel-name regex:'bwd_dkdv_sm90_kernel.*Li1EEELb' --launch-skip 56 \
    --launch-count 1 --kill yes --set full --import-source yes -o "$L/dkdv_d01" -f $B/seer_bwd_selftest --time \
    > "$L/ncu_dkdv_run.log" 2>&1; echo "ncu dkdv rc=$?"
  el "ncu dkdv"
  timeout 90 ncu --kernel-name regex:attention_fwd_sm90 --launch-skip 3 --launch-count 1 --kill yes --set full \
    --import-source yes -o "$L/fwd_d1" -f $B/seer_fwd_selftest --time > "$L/ncu_fwd_run.log" 2>&1; echo "ncu fwd rc=$?"
  for r in dkdv_d01 fwd_d1; do
    [ -f "$L/$r.ncu-rep" ] || continue
    ncu --import "$L/$r.ncu-rep" --page details > "$L/${r}_details.txt" 2>&1
    ncu --import "$L/$r.ncu-rep" --page source --csv --print-source sass > "$L/${r}_sass.csv" 2>&1
    grep -E "Stall|Warp Cycles|Issue Slots|Tensor|L2 Cache Throughput" "$L/${r}_details.txt" | head -12
    xz -T4 "$L/${r}_sass.csv"; rm -f "$L/$r.ncu-rep"  # keep the tarball small: the csv holds the per-instruction samples
  done
fi
el done
