"""Per-rep times of one op call over many back-to-back reps, with the GPU's SM clock and power sampled
beside them: whether a case's time depends on how long the GPU has been busy (clocks lowered under a
power or thermal limit), which a short kernel_times.py burst and bench.py's longer Timer loop see
differently.

    python benchmarks/sustained.py P1:2d:1.0 P1:fa2 --reps 120

A case is WORKLOAD:KIND[:DENSITY] as in kernel_times.py (forward only), WORKLOAD:fa2 (PyTorch's bundled
FlashAttention varlen forward, dense causal, GQA native) or WORKLOAD:fa4 (FlashAttention-4's varlen forward,
dense causal - needs flash_attn.cute and its CuTe DSL importable, ../shared/ANCHORS.md says how). Every rep
is timed like bench.py's Timer: the 256 MiB L2 flush, then the call between two CUDA events; the reps are
queued back to back. The sampler is
``nvidia-smi --query-gpu=clocks.sm,power.draw,... -lms 50`` in a subprocess; each case's table gives the rep
times and the samples over windows of reps (by wall time). Between cases the GPU idles ``--rest`` seconds.
CUDA only.
"""
import argparse
import os
import statistics
import subprocess
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import kernel_times  # noqa: E402

QUERY = "timestamp,clocks.sm,power.draw,temperature.gpu,clocks_event_reasons.active"


def fa2_fn(wl):
    inp = common.make_prefill_inputs(common.FULL_WORKLOADS[wl].seqlens, "cuda")
    q, k, v, cu, L = inp["q"], inp["k"], inp["v"], inp["cu"], inp["max_len"]

    def fwd():
        return torch.ops.aten._flash_attention_forward(q, k, v, cu, cu, L, L, 0.0, True, False,
                                                       scale=common.SM_SCALE)[0]
    return fwd


def fa4_fn(wl):
    try:
        import nvidia_cutlass_dsl  # the CuTe DSL; its wheel's .pth (not read outside a site dir) adds dsl_packages
        sys.path.insert(0, os.path.join(nvidia_cutlass_dsl.__path__[0], "dsl_packages"))
        from flash_attn.cute.interface import flash_attn_varlen_func
    except ImportError as e:
        sys.exit(f"sustained.py: case {wl}:fa4 needs FlashAttention-4 (flash_attn.cute) importable: {e}")
    inp = common.make_prefill_inputs(common.FULL_WORKLOADS[wl].seqlens, "cuda")
    q, k, v, cu, L = inp["q"], inp["k"], inp["v"], inp["cu"], inp["max_len"]

    def fwd():
        return flash_attn_varlen_func(q, k, v, cu_seqlens_q=cu, cu_seqlens_k=cu, max_seqlen_q=L, max_seqlen_k=L,
                                      softmax_scale=common.SM_SCALE, causal=True)
    return fwd


BASELINES = {"fa2": fa2_fn, "fa4": fa4_fn}


def run_case(fn, flush, reps):
    """[(wall seconds at the GPU-side start of rep i, ms of rep i)]."""
    ms = kernel_times.flushed_reps(fn, flush, reps)
    t = time.time()  # right after the synchronize: the last rep has just ended
    # The reps ran back to back: their starts are back-computed from the end (+ ~0.1 ms of flush each).
    starts = []
    for m in reversed(ms):
        t -= m / 1e3 + 0.1e-3
        starts.append(t)
    return list(zip(reversed(starts), ms))


def parse_samples(path):
    """[(wall seconds, SM MHz, W, temperature, clock event reasons)] of the sampler's CSV lines (local time stamps)."""
    out = []
    for line in open(path):
        parts = [x.strip() for x in line.split(",")]
        if len(parts) < 5:
            continue
        try:
            whole, frac = parts[0].split(".")
            ts = time.mktime(time.strptime(whole, "%Y/%m/%d %H:%M:%S")) + float("0." + frac)
            out.append((ts, float(parts[1].split()[0]), float(parts[2].split()[0]), parts[3], parts[4]))
        except (ValueError, IndexError):
            continue
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("cases", nargs="+")
    ap.add_argument("--reps", type=int, default=120)
    ap.add_argument("--window", type=int, default=10, help="reps per row of the table")
    ap.add_argument("--rest", type=float, default=5.0, help="idle seconds before each case")
    ap.add_argument("--log", default="/tmp/sustained_smi.csv")
    args = ap.parse_args()
    sa, flush = kernel_times.cuda_setup("sustained.py")
    smi = subprocess.Popen(["nvidia-smi", f"--query-gpu={QUERY}", "--format=csv,noheader", "-lms", "50"],
                           stdout=open(args.log, "w"), stderr=subprocess.DEVNULL)
    try:
        for case in args.cases:
            parts = case.split(":")
            fn = BASELINES[parts[1]](parts[0]) if parts[1] in BASELINES else kernel_times.case_fn(sa, case)
            fn()
            torch.cuda.synchronize()
            time.sleep(args.rest)
            rows = run_case(fn, flush, args.reps)
            time.sleep(0.3)
            samples = parse_samples(args.log)
            print(f"== {case}: {args.reps} reps back to back; median {statistics.median(m for _, m in rows):.3f} ms,"
                  f" first 5 {statistics.median(m for _, m in rows[:5]):.3f}, last 20 {statistics.median(m for _, m in rows[-20:]):.3f}")
            print("  reps        ms (median / min / max)     SM MHz (median)  W (median)  reasons")
            for i in range(0, len(rows), args.window):
                w = rows[i:i + args.window]
                t0, t1 = w[0][0], w[-1][0] + w[-1][1] / 1e3
                ss = [x for x in samples if t0 <= x[0] <= t1]
                clk = statistics.median(x[1] for x in ss) if ss else float("nan")
                pw = statistics.median(x[2] for x in ss) if ss else float("nan")
                rs = sorted({x[4] for x in ss})
                ms = [m for _, m in w]
                print(f"  {i:4d}-{i + len(w) - 1:<4d}  {statistics.median(ms):7.3f} / {min(ms):7.3f} / {max(ms):7.3f}"
                      f"     {clk:7.0f}        {pw:7.1f}     {' '.join(rs)}")
            torch.cuda.empty_cache()
    finally:
        smi.terminate()


if __name__ == "__main__":
    main()
