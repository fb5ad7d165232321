#!/usr/bin/env python
"""Micro-benchmark + correctness check of the attention-pooling kernel (torch.ops.seer_attn.attn_pooling).

    PYTHONPATH=. python benchmarks/micro_pool.py            # checks, then P1 / P2 timings (< 60 s on an H100)
    PYTHONPATH=. python benchmarks/micro_pool.py --no-p2    # skip the 65536-token problem

1. Small cases against a float64 dense reference (per-head and gqa_reduce, block 48 / 64 / 16, fp16 /
   bf16, D 64 / 128 / 256, causal and not, empty sequences, tail rows, max_seqlen > longest), for
   each kernel configuration (SEER_POOL_CONFIG=0 / 1) and with the shared-memory staging forced to
   its minimum (SEER_POOL_STAGE_COLS=1: every long row takes the windowed second sweep).
   Accuracy rule: pooled_2d |err| <= 2 * |err of a float32 reference| + 1e-5; pooled_1d |err| <=
   half an output ulp at 1 + 2 * |err of the float32 reference| + 1e-5; exact zeros where the truth is 0.
2. P1 (bf16, seqlens [16384, 8000, 4096, 2100, 1024, 700, 256, 77], H_q 32, H_kv 8, D 128, block 64,
   causal) and P2 (one sequence of 65536): median of >= 10 CUDA-event timings after warm-up, peak
   memory above the inputs, per-head and gqa_reduce, for each configuration; plus float64 spot checks
   of whole 1D rows (first / middle / last rows of the longest sequence) and config-vs-config agreement.
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
import zlib

import torch

import seer_attn  # noqa: F401  (registers torch.ops.seer_attn)

OP = torch.ops.seer_attn.attn_pooling
DEV = "cuda"
FAILS: list[str] = []


def cdiv(a, b):
    return -(-a // b)


def set_env(config=None, stage_cols=None):
    for name, v in (("SEER_POOL_CONFIG", config), ("SEER_POOL_STAGE_COLS", stage_cols)):
        if v is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = str(v)


# ---------------------------------------------------------------------------------------------
# dense reference
# ---------------------------------------------------------------------------------------------
def reference(q, k, lens, max_seqlen, bs, sm_scale, causal, gqa, dtype):
    """(pooled_2d [B, H_out, nb, nb], pooled_1d [H_out, T, nb]) computed in `dtype` (float64 / float32)."""
    T, hq, D = q.shape
    hk = k.shape[1]
    g = hq // hk
    nb = cdiv(max_seqlen, bs)
    h_out = hk if gqa else hq
    p2 = torch.zeros(len(lens), h_out, nb, nb, dtype=dtype, device=q.device)
    p1 = torch.zeros(h_out, T, nb, dtype=dtype, device=q.device)
    s0 = 0
    for b, n in enumerate(lens):
        if n == 0:
            continue
        nbt = cdiv(n, bs)
        qs = q[s0:s0 + n].to(dtype).transpose(0, 1)
        ks = k[s0:s0 + n].to(dtype).transpose(0, 1).repeat_interleave(g, 0)
        s = torch.matmul(qs, ks.transpose(1, 2)) * sm_scale
        if causal:
            t = torch.arange(n, device=q.device)
            s = s.masked_fill(~(t[None, :] <= t[:, None])[None], float("-inf"))
        p = torch.softmax(s, -1)
        pad = nbt * bs - n
        pp = torch.nn.functional.pad(p, (0, pad, 0, pad))
        m1 = pp[:, :n, :].reshape(hq, n, nbt, bs).amax(-1)
        m2 = pp.reshape(hq, nbt, bs, nbt, bs).amax(dim=(2, 4))
        if gqa:
            m1 = m1.reshape(hk, g, n, nbt).amax(1)
            m2 = m2.reshape(hk, g, nbt, nbt).amax(1)
            m1 = m1 / (m1.sum(-1, keepdim=True) + 1e-6)
        m2 = m2 / (m2.sum(-1, keepdim=True) + 1e-6)
        p2[b, :, :nbt, :nbt] = m2
        p1[:, s0:s0 + n, :nbt] = m1
        s0 += n
    return p2, p1


def half_ulp_at_1(dtype):
    return {torch.bfloat16: 2.0 ** -8, torch.float16: 2.0 ** -11}[dtype] / 2


def check_case(name, lens, *, hq, hk, D, dtype, bs, causal, gqa, max_seqlen=None, sm_scale=None):
    g = torch.Generator(device=DEV).manual_seed(zlib.crc32(name.encode()))
    T = sum(lens)
    q = torch.randn(T, hq, D, generator=g, device=DEV, dtype=dtype)
    k = torch.randn(T, hk, D, generator=g, device=DEV, dtype=dtype)
    cu = torch.tensor([0] + list(torch.tensor(lens).cumsum(0).tolist()), dtype=torch.int32, device=DEV)
    max_seqlen = max(lens) if max_seqlen is None else max_seqlen
    sm_scale = 1.0 / math.sqrt(D) if sm_scale is None else sm_scale
    p2, p1 = OP(q, k, cu, max_seqlen, sm_scale, bs, causal, gqa)
    torch.cuda.synchronize()
    r2, r1 = reference(q, k, lens, max_seqlen, bs, sm_scale, causal, gqa, torch.float64)
    l2, l1 = reference(q, k, lens, max_seqlen, bs, sm_scale, causal, gqa, torch.float32)
    msgs = []
    if p2.shape != r2.shape or p1.shape != r1.shape:
        msgs.append(f"shapes {tuple(p2.shape)} {tuple(p1.shape)} vs {tuple(r2.shape)} {tuple(r1.shape)}")
    else:
        for what, x, r, lp, tol0 in (("2d", p2, r2, l2, 1e-5), ("1d", p1, r1, l1, 1e-5 + half_ulp_at_1(dtype))):
            x = x.double()
            if torch.isnan(x).any():
                msgs.append(f"{what}: NaN")
                continue
            err = (x - r).abs().max().item() if x.numel() else 0.0
            err_lp = (lp.double() - r).abs().max().item() if x.numel() else 0.0
            tol = 2 * err_lp + tol0
            zeros_bad = int(((r == 0) & (x != 0)).sum())
            if err > tol or zeros_bad:
                msgs.append(f"{what}: err {err:.3e} > tol {tol:.3e} (fp32 ref err {err_lp:.3e}) or "
                            f"{zeros_bad} non-zeros where the truth is 0")
    status = "ok  " if not msgs else "FAIL"
    env = f"cfg={os.environ.get('SEER_POOL_CONFIG', '-')} cols={os.environ.get('SEER_POOL_STAGE_COLS', '-')}"
    if msgs:
        FAILS.append(f"{name} [{env}]: " + "; ".join(msgs))
        print(f"  {status} {name:58s} {env}  " + "; ".join(msgs), flush=True)
    return not msgs


def run_checks(quick=False):
    print("== correctness vs float64 dense reference", flush=True)
    t0 = time.time()
    # empty sequence, single token, tail rows (not multiples of 128 / B), and a sequence long enough
    # (> 9 blocks of 64) for the windowed second sweep when the staging is forced to its minimum
    seq = [130, 1, 0, 700, 64, 300]
    n = n_ok = 0
    envs = [(0, None), (1, None), (0, 1), (1, 1)]
    for cfg, cols in envs:
        set_env(cfg, cols)
        cases = []
        for D in (64, 128, 256):
            for dtype in (torch.bfloat16, torch.float16):
                for gqa in (False, True):
                    for bs in (48, 64):
                        cases.append(dict(hq=4, hk=2, D=D, dtype=dtype, bs=bs, causal=True, gqa=gqa))
        cases += [
            dict(hq=6, hk=2, D=128, dtype=torch.bfloat16, bs=64, causal=False, gqa=False),
            dict(hq=6, hk=2, D=64, dtype=torch.float16, bs=48, causal=False, gqa=True),
            dict(hq=2, hk=1, D=128, dtype=torch.bfloat16, bs=16, causal=True, gqa=False),
            dict(hq=2, hk=1, D=256, dtype=torch.float16, bs=16, causal=False, gqa=True),
            dict(hq=2, hk=2, D=64, dtype=torch.bfloat16, bs=256, causal=True, gqa=False),
            dict(hq=4, hk=1, D=128, dtype=torch.bfloat16, bs=32, causal=True, gqa=True, max_seqlen=700,
                 sm_scale=0.2),
        ]
        if quick:
            cases = cases[::5]
        for c in cases:
            c = dict(c)
            lens = [1100, 130] if c.get("max_seqlen") else seq
            name = (f"D{c['D']} {str(c['dtype'])[6:]} B{c['bs']} {'causal' if c['causal'] else 'full'} "
                    f"{'gqa' if c['gqa'] else 'per-head'} hq{c['hq']}/{c['hk']}")
            if c.get("max_seqlen"):
                c["max_seqlen"] = max(lens) + 70
                name += " max_seqlen+70"
            n += 1
            n_ok += check_case(name, lens, **c)
    set_env(None, None)
    print(f"  {n_ok}/{n} cases ok ({time.time() - t0:.1f} s)", flush=True)


# ---------------------------------------------------------------------------------------------
# large problems: timing, memory, spot checks
# ---------------------------------------------------------------------------------------------
H_Q, H_KV, D, BLOCK = 32, 8, 128, 64
SM_SCALE = 1.0 / math.sqrt(D)
PROBLEMS = {"P1": [16384, 8000, 4096, 2100, 1024, 700, 256, 77], "P2": [65536]}


def make_inputs(lens, dtype=torch.bfloat16):
    g = torch.Generator(device=DEV).manual_seed(0)
    T = sum(lens)
    q = torch.randn(T, H_Q, D, generator=g, device=DEV, dtype=dtype)
    k = torch.randn(T, H_KV, D, generator=g, device=DEV, dtype=dtype)
    cu = torch.tensor([0] + list(torch.tensor(lens).cumsum(0).tolist()), dtype=torch.int32, device=DEV)
    return q, k, cu


def time_call(fn, reps, warmup=2):
    for _ in range(warmup):
        out = fn()
        del out
    torch.cuda.synchronize()
    ts = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        out = fn()
        b.record()
        del out
        torch.cuda.synchronize()
        ts.append(a.elapsed_time(b))
    return statistics.median(ts), min(ts), max(ts)


def peak_above(fn):
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    out = fn()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - base
    del out
    return peak / 2 ** 20


def spot_rows(q, k, lens, rows_of_longest, heads, gqa):
    """float64 1D rows (causal) of the first sequence (the longest one here) for q heads `heads`
    (per-head) -> dict (h, row) -> tensor[nb_t]; gqa: heads are kv heads, group max + normalise."""
    n = lens[0]
    nbt = cdiv(n, BLOCK)
    g = H_Q // H_KV
    out = {}
    kd = k[:n].double()
    for h in heads:
        qh = [h] if not gqa else list(range(h * g, (h + 1) * g))
        rows = torch.tensor(rows_of_longest, device=DEV)
        acc = None
        for hq in qh:
            s = (q[rows, hq].double() @ kd[:, hq // g].T) * SM_SCALE  # [R, n]
            s = s.masked_fill(torch.arange(n, device=DEV)[None, :] > rows[:, None], float("-inf"))
            p = torch.softmax(s, -1)
            p = torch.nn.functional.pad(p, (0, nbt * BLOCK - n)).reshape(len(rows_of_longest), nbt, BLOCK).amax(-1)
            acc = p if acc is None else torch.maximum(acc, p)
        if gqa:
            acc = acc / (acc.sum(-1, keepdim=True) + 1e-6)
        for i, r in enumerate(rows_of_longest):
            out[(h, r)] = acc[i]
    return out


def bench_problem(name, reps, configs):
    lens = PROBLEMS[name]
    q, k, cu = make_inputs(lens)
    T, L = sum(lens), max(lens)
    pairs = sum(n * (n + 1) // 2 for n in lens) * H_Q
    sweep_tf = 2.0 * pairs * D / 1e12  # one QK^T sweep, TFLOP
    print(f"== {name}: seqlens {lens if len(lens) < 10 else len(lens)}, T={T}, H_q {H_Q}, H_kv {H_KV}, D {D}, "
          f"block {BLOCK}, causal, bf16; {pairs:.3e} causal pairs (one QK^T sweep = {sweep_tf:.2f} TFLOP)",
          flush=True)
    n = lens[0]
    spot = [0, 1, 63, 64, 127, n // 2 - 1, n // 2 + 37, n - 129, n - 128, n - 65, n - 2, n - 1]
    outs = {}
    for gqa in (False, True):
        ref = spot_rows(q, k, lens, spot, [0, H_Q - 1] if not gqa else [0, H_KV - 1], gqa)
        for cfg in configs:
            set_env(cfg, None)
            fn = lambda: OP(q, k, cu, L, SM_SCALE, BLOCK, True, gqa)  # noqa: E731
            p2, p1 = fn()
            torch.cuda.synchronize()
            # spot check of whole 1D rows against float64
            err = max((p1[h, r, :cdiv(n, BLOCK)].double() - v).abs().max().item() for (h, r), v in ref.items())
            tail = max(p1[h, r, cdiv(n, BLOCK):].abs().max().item() if cdiv(n, BLOCK) < p1.shape[2] else 0.0
                       for (h, r) in ref)
            rs = p2.double().sum(-1)
            rows_ok = bool((((rs - 1).abs() < 1e-4) | (rs == 0)).all())
            ok = err <= 2.0 ** -8 + 1e-5 and tail == 0 and rows_ok
            if not ok:
                FAILS.append(f"{name} cfg {cfg} {'gqa' if gqa else 'per-head'}: spot err {err:.3e}, tail {tail}, "
                             f"2d rows normalised {rows_ok}")
            key = (gqa, cfg)
            outs[key] = (p2, p1)
            if len([x for x in outs if x[0] == gqa]) > 1:
                p2a, p1a = outs[(gqa, configs[0])]
                d1 = (p1a.float() - p1.float()).abs().max().item()
                d2 = (p2a - p2).abs().max().item()
                agree = f"vs cfg {configs[0]}: 1d {d1:.2e} 2d {d2:.2e}"
                if d1 > 2.0 ** -7 or d2 > 1e-4:
                    FAILS.append(f"{name} cfg {cfg} {'gqa' if gqa else 'per-head'}: disagrees with cfg "
                                 f"{configs[0]} ({agree})")
            else:
                agree = ""
            del p2, p1
            med, mn, mx = time_call(fn, reps)
            mem = peak_above(fn)
            print(f"  {'gqa_reduce' if gqa else 'per-head  '} cfg {cfg}: {med:8.3f} ms (min {mn:.3f}, max {mx:.3f}, "
                  f"n={reps})  peak above inputs {mem:7.1f} MiB  one-sweep-equiv {sweep_tf / (med * 1e-3):6.1f} TF/s  "
                  f"spot err {err:.2e} {'ok' if ok else 'FAIL'} {agree}", flush=True)
        for key in [x for x in outs if x[0] == gqa]:
            del outs[key]
        torch.cuda.empty_cache()
    set_env(None, None)
    del q, k, cu
    torch.cuda.empty_cache()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--no-p2", action="store_true", help="skip P2 (65536 tokens)")
    ap.add_argument("--quick", action="store_true", help="fewer correctness cases")
    ap.add_argument("--reps", type=int, default=12)
    ap.add_argument("--configs", default="0,1", help="kernel configurations to time (SEER_POOL_CONFIG)")
    a = ap.parse_args()
    if not torch.cuda.is_available():
        print("CUDA not available: nothing to do")
        return 0
    t0 = time.time()
    print(f"device {torch.cuda.get_device_name(0)}, torch {torch.__version__}", flush=True)
    run_checks(a.quick)
    configs = [int(x) for x in a.configs.split(",") if x.strip()]
    bench_problem("P1", max(10, a.reps), configs)
    if not a.no_p2:
        bench_problem("P2", 10, configs)
    print(f"== total {time.time() - t0:.1f} s; {len(FAILS)} failure(s)")
    for f in FAILS:
        print("  FAIL", f)
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
