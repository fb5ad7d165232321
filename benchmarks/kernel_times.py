"""Per-kernel GPU time of one op call at a WORKLOADS.md workload (torch.profiler), beside the CUDA-event
time of the whole call: where an op's time goes besides its main kernel (mask builders, work queues,
preprocess / convert passes, the benchmark's own loss kernels).

    python benchmarks/kernel_times.py P1:2d:1.0 P1:2d:0.1:fb P2:gqa:0.1 P1:pool D1:64:0.1

A case is WORKLOAD:KIND[:DENSITY[:fb]]: KIND is 2d, gqa, head or token (benchmarks/common.py mask kinds;
":fb" times forward+backward with the bench's loss), pool (attention pooling, per head), or for D1 the
decode block size (mask form). Each call is preceded by the bench's 256 MiB L2 flush, which shows up as a
FillFunctor<int> kernel of ~0.08 ms (H100). CUDA only: this measures kernels, there is nothing to time on a
CPU. NOTES v22 item 1 is what it first showed (the tile-mask builders at 10% of P1's d = 0.1 forward).
"""
import argparse
import collections
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402


def case_fn(sa, case):
    """The closure one case times."""
    parts = case.split(":")
    wl, kind = parts[0], parts[1]
    dens = float(parts[2]) if len(parts) > 2 else 1.0
    if wl == "D1":
        w = common.FULL_WORKLOADS["D1"]
        inp = common.make_decode_inputs(w, "cuda")
        m = common.decode_mask(inp["cache_seqlens"], w.s_max, int(kind), dens)
        return common.decode_fn(sa, inp["q"], inp["k_cache"], inp["v_cache"], inp["cache_seqlens"], int(kind), mask=m)
    inp = common.make_prefill_inputs(common.FULL_WORKLOADS[wl].seqlens, "cuda")
    if kind == "pool":
        return common.pool_fn(sa, inp, False)
    m, _ = common.prefill_mask(kind, inp["seqlens"], dens, "cuda")
    fwd, fwd_bwd = common.attn_fns(sa, "2d" if kind == "2d" else "1d", inp, m)
    return fwd_bwd if len(parts) > 3 and parts[3] == "fb" else fwd


def flushed_reps(fn, flush, reps):
    """Event ms of each of `reps` calls queued back to back, each after the L2 flush (3 warm calls first)."""
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    ev = []
    for _ in range(reps):
        flush.zero_()
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        fn()
        e.record()
        ev.append((s, e))
    torch.cuda.synchronize()
    return [s.elapsed_time(e) for s, e in ev]


def kernel_times(fn, flush, reps=5):
    """(median event ms of a call, {kernel name: [launches, total us]} over `reps` calls)."""
    from torch.profiler import ProfilerActivity, profile
    event_ms = sorted(flushed_reps(fn, flush, reps))[reps // 2]
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(reps):
            flush.zero_()
            fn()
        torch.cuda.synchronize()
    agg = collections.defaultdict(lambda: [0, 0.0])
    for e in prof.events():
        if e.device_type == torch.autograd.DeviceType.CUDA:
            agg[e.name][0] += 1
            agg[e.name][1] += e.time_range.elapsed_us()
    return event_ms, agg


def cuda_setup(script):
    """(the package under test, the 256 MiB L2-flush buffer), after printing the device; exits without CUDA."""
    if not torch.cuda.is_available():
        sys.exit(f"{script}: needs a CUDA device (it times kernels)")
    sa = common.import_seer_attn()
    flush = torch.empty(64 << 20, dtype=torch.int32, device="cuda")
    print(f"device: {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    return sa, flush


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("cases", nargs="+", help="WORKLOAD:KIND[:DENSITY[:fb]], e.g. P1:2d:0.1 or D1:64:0.1")
    p.add_argument("--reps", type=int, default=5)
    args = p.parse_args()
    sa, flush = cuda_setup("kernel_times.py")
    for case in args.cases:
        event_ms, agg = kernel_times(case_fn(sa, case), flush, args.reps)
        print(f"== {case}: CUDA-event median {event_ms:.3f} ms per call; kernels per call:")
        for name, (n, us) in sorted(agg.items(), key=lambda kv: -kv[1][1]):
            print(f"  {us / args.reps / 1e3:8.3f} ms  x{n / args.reps:4.1f}  {name[:110]}")
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
