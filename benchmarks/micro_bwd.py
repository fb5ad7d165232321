#!/usr/bin/env python3
"""Micro-benchmark of the 2D block-sparse backward: both paths (deterministic=True: dK/dV kernel +
dQ kernel; deterministic=False: fused dQ with fp32 atomics + convert) of the one dK/dV kernel
(bwd_dkdv_kernel.cuh; the v1 / v2 choice SEER_BWD_IMPL is gone: "v2" is the only implementation), checked
against a float32 dense reference on a small case, then timed side by side on the WORKLOADS.md
prefill shapes.

Run from the repo root on a CUDA machine with the extension built in place:
    PYTHONPATH=. python benchmarks/micro_bwd.py            # check + timings (~3-4 min on an H100)
    PYTHONPATH=. python benchmarks/micro_bwd.py --check    # correctness only
    PYTHONPATH=. python benchmarks/micro_bwd.py --budget 100

Timings: CUDA events, median of the runs after warm-up (10 for P1, 5 for P2), of
  bwd      torch.ops.seer_attn.block_sparse_2d_bwd alone (out/lse from one forward),
  fwd+bwd  block_sparse_2d_fwd followed by block_sparse_2d_bwd (atomic path),
for P1 (packed [16384, 8000, 4096, 2100, 1024, 700, 256, 77]) and P2 (one sequence of 65536),
bf16, D = 128, H_q = 32, H_kv = 8, block 64 x 64, causal, densities 1, 0.5, 0.1, with the WORKLOADS.md
mask (per (sequence, head, 64-query-block row) keep max(1, round(d * #causal blocks)) random causal
blocks including the diagonal), plus dense FA2 (aten._flash_attention_forward/_backward) when it runs.
TFLOP/s use the WORKLOADS.md convention: backward 10 * pairs * D, forward 4 * pairs * D (kept pairs).
"""
import argparse
import math
import statistics
import sys
import time

import torch

H_Q, H_KV, D, BLOCK = 32, 8, 128, 64
SCALE = 1.0 / math.sqrt(D)
TIME_BUDGET_S = 240.0  # default --budget: stop starting new timings after this many seconds


IMPLS = ["v2"]  # the one dK/dV kernel (column label)


# ---- masks (WORKLOADS.md rule, vectorised on the device) ------------------------------------------
def mask_2d(seqlens, heads, density, device, block=BLOCK, seed=0):
    """bool [B, heads, nb, nb]: per (seq, head, query-block row i < nb_b) keep max(1, round(d*(i+1)))
    of the i+1 causal blocks (always the diagonal), chosen at random."""
    B, nb = len(seqlens), -(-max(seqlens) // block)
    nbs = torch.tensor([-(-s // block) for s in seqlens], device=device)[:, None, None, None]
    i = torch.arange(nb, device=device)[None, None, :, None]
    j = torch.arange(nb, device=device)[None, None, None, :]
    row_ok = i < nbs
    valid = row_ok & (j <= i)
    forced = row_ok & (j == i)
    n_causal = torch.where(row_ok, i + 1, torch.zeros_like(i))[..., 0]  # [B, 1, nb]
    cnt = torch.round(n_causal.double() * density).long().clamp(min=1)
    cnt = torch.where(n_causal > 0, torch.minimum(cnt, n_causal), torch.zeros_like(cnt))
    gen = torch.Generator(device=device).manual_seed(seed)
    out = torch.empty(B, heads, nb, nb, dtype=torch.bool, device=device)
    for b in range(B):  # one sequence at a time bounds the argsort memory; never per row
        key = torch.rand(heads, nb, nb, generator=gen, device=device)
        key = torch.where(forced[b], 2.0, torch.where(valid[b], key, -1.0))
        order = torch.argsort(key, dim=-1, descending=True)
        keep_sorted = torch.arange(nb, device=device) < cnt[b][..., None]  # [1, nb, nb]
        m = torch.zeros(heads, nb, nb, dtype=torch.bool, device=device)
        m.scatter_(-1, order, keep_sorted.expand(heads, nb, nb).contiguous())
        out[b] = m & valid[b]
    return out


def kept_pairs(mask, seqlens, block=BLOCK):
    """Visible (query, key) pairs of the kept blocks, summed over sequences and heads (causal)."""
    total = 0
    for b, L in enumerate(seqlens):
        nb = -(-L // block)
        sizes = torch.clamp(L - torch.arange(nb, device=mask.device) * block, max=block).double()
        m = mask[b, :, :nb, :nb].double()
        full = sizes[:, None] * sizes[None, :]
        diag = torch.diag(sizes * (sizes + 1) / 2)
        w = torch.tril(full, -1) + diag
        total += float((m * w[None]).sum())
    return total


# ---- ops ------------------------------------------------------------------------------------------
def fwd(q, k, v, cu, L, mask, det):
    return torch.ops.seer_attn.block_sparse_2d_fwd(q, k, v, cu, cu, L, L, mask, BLOCK, BLOCK, SCALE, True, det)


def bwd(dout, q, k, v, out, lse, cu, L, mask, det):
    return torch.ops.seer_attn.block_sparse_2d_bwd(dout, q, k, v, out, lse, None, cu, cu, L, L, mask, BLOCK,
                                                   BLOCK, SCALE, True, det)


def cu_of(seqlens, device):
    cu = [0]
    for s in seqlens:
        cu.append(cu[-1] + s)
    return torch.tensor(cu, dtype=torch.int32, device=device)


# ---- correctness ----------------------------------------------------------------------------------
def reference(q, k, v, dout, seqlens, mask, hq, hkv):
    """float32 dense per sequence (mask expanded to tokens), autograd for the gradients."""
    qf, kf, vf = (x.float().detach().requires_grad_() for x in (q, k, v))
    outs, pos = [], 0
    g = hq // hkv
    for b, L in enumerate(seqlens):
        qs, ks, vs = qf[pos:pos + L], kf[pos:pos + L], vf[pos:pos + L]
        ks = ks.repeat_interleave(g, dim=1)
        vs = vs.repeat_interleave(g, dim=1)
        s = torch.einsum("qhd,khd->hqk", qs, ks) * SCALE
        tok = torch.arange(L, device=q.device)
        mb = mask[b, :, tok // BLOCK][:, :, tok // BLOCK]  # [H, L, L]
        vis = mb & (tok[None, :, None] >= tok[None, None, :])
        s = s.masked_fill(~vis, float("-inf"))
        p = torch.softmax(s, dim=-1).nan_to_num(0.0)
        outs.append(torch.einsum("hqk,khd->qhd", p, vs))
        pos += L
    out = torch.cat(outs + [torch.zeros(q.shape[0] - pos, hq, q.shape[2], device=q.device)])
    (out * dout.float()).sum().backward()
    return qf.grad, kf.grad, vf.grad


def check(device):
    torch.manual_seed(0)
    seqlens, hq, hkv, tail = [300, 77, 130, 1], 8, 2, 5
    T = sum(seqlens) + tail  # tail rows past cu_seqlens[-1]: zero gradients
    L = max(seqlens)
    g = torch.Generator(device=device).manual_seed(0)
    q = torch.randn(T, hq, D, generator=g, device=device, dtype=torch.bfloat16)
    k = torch.randn(T, hkv, D, generator=g, device=device, dtype=torch.bfloat16)
    v = torch.randn(T, hkv, D, generator=g, device=device, dtype=torch.bfloat16)
    dout = torch.randn(T, hq, D, generator=g, device=device, dtype=torch.bfloat16)
    mask = mask_2d(seqlens, hq, 0.5, device)
    mask[0, 1, 2, :] = False  # a query block whose rows see nothing: zero dq there
    cu = cu_of(seqlens, device)
    ref = reference(q, k, v, dout, seqlens, mask, hq, hkv)
    ok = True
    for impl in IMPLS:
        ok &= check_impl(impl, q, k, v, dout, cu, L, mask, seqlens, ref)
    return ok


def check_impl(impl, q, k, v, dout, cu, L, mask, seqlens, ref):
    ok = True
    results = {}
    for det in (True, False):
        out, lse = fwd(q, k, v, cu, L, mask, det)
        grads = bwd(dout, q, k, v, out, lse, cu, L, mask, det)
        results[det] = grads
        for name, x, r in zip(("dq", "dk", "dv"), grads, ref):
            err = (x.float() - r).abs().max().item()
            scale = r.abs().max().item() + 1e-6
            finite = bool(torch.isfinite(x).all())
            good = finite and err / scale < 2e-2
            ok &= good
            print(f"  check {impl} det={det!s:5} {name}: max|err| {err:.3e} max|ref| {scale:.3e} rel {err / scale:.2e} "
                  f"{'ok' if good else 'FAIL'}")
        tail_zero = bool((grads[0][sum(seqlens):] == 0).all()) and bool((grads[1][sum(seqlens):] == 0).all())
        empty_zero = bool((grads[0][128:192, 1] == 0).all())
        ok &= tail_zero and empty_zero
        print(f"  check {impl} det={det!s:5} tail rows zero: {tail_zero}, rows attending nothing zero: {empty_zero}")
    # determinism of the deterministic path (bitwise), and agreement of the two paths
    out, lse = fwd(q, k, v, cu, L, mask, True)
    again = bwd(dout, q, k, v, out, lse, cu, L, mask, True)
    same = all(torch.equal(a, b) for a, b in zip(again, results[True]))
    ok &= same
    print(f"  check {impl} deterministic path bitwise reproducible: {same}")
    return ok


# ---- timing ---------------------------------------------------------------------------------------
def time_ms(fn, reps=10, warmup=2):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        ts.append(a.elapsed_time(b))
    return statistics.median(ts)


def set_impl(impl):
    pass  # one dK/dV kernel: nothing to select


def bench(device, t_start, budget):
    workloads = [("P1", [16384, 8000, 4096, 2100, 1024, 700, 256, 77]), ("P2", [65536])]
    densities = [1.0, 0.5, 0.1]
    cols = " ".join(f"{'atom ' + i:>9} {'det ' + i:>8}" for i in IMPLS)
    fb = " ".join(f"{'f+b ' + i:>8}" for i in IMPLS)
    print(f"\nbackward ms (atomic / deterministic path) per implementation, fwd+bwd ms (atomic), fwd ms, "
          f"backward TF/s (atomic)\n{'wl':3} {'d':>4} | {cols} | {fb} | {'fwd':>7} | "
          + " ".join(f"{'TF/s ' + i:>8}" for i in IMPLS))
    for wname, seqlens in workloads:
        T, L = sum(seqlens), max(seqlens)
        g = torch.Generator(device=device).manual_seed(0)
        q = torch.randn(T, H_Q, D, generator=g, device=device, dtype=torch.bfloat16)
        k = torch.randn(T, H_KV, D, generator=g, device=device, dtype=torch.bfloat16)
        v = torch.randn(T, H_KV, D, generator=g, device=device, dtype=torch.bfloat16)
        dout = torch.randn(T, H_Q, D, generator=g, device=device, dtype=torch.bfloat16)
        cu = cu_of(seqlens, device)
        reps = 10 if wname == "P1" else 5
        for d in densities:
            if time.time() - t_start > budget:
                print(f"{wname:3} {d:4.2f} | skipped (time budget)")
                continue
            mask = mask_2d(seqlens, H_Q, d, device)
            pairs = kept_pairs(mask, seqlens)
            out, lse = fwd(q, k, v, cu, L, mask, False)
            r = {}
            for impl in IMPLS:
                set_impl(impl)
                for det in (False, True):
                    r[("b", det, impl)] = time_ms(lambda: bwd(dout, q, k, v, out, lse, cu, L, mask, det), reps)
                r[("fb", impl)] = time_ms(
                    lambda: bwd(dout, q, k, v, *fwd(q, k, v, cu, L, mask, False), cu, L, mask, False), reps)
            t_f = time_ms(lambda: fwd(q, k, v, cu, L, mask, False), reps)
            tf = lambda ms: 10 * pairs * D / (ms * 1e-3) / 1e12
            bcols = " ".join(f"{r[('b', False, i)]:9.2f} {r[('b', True, i)]:8.2f}" for i in IMPLS)
            fcols = " ".join(f"{r[('fb', i)]:8.2f}" for i in IMPLS)
            tcols = " ".join(f"{tf(r[('b', False, i)]):8.1f}" for i in IMPLS)
            print(f"{wname:3} {d:4.2f} | {bcols} | {fcols} | {t_f:7.2f} | {tcols}", flush=True)
            del mask, out, lse
        # dense FA2 (PyTorch bundled), causal, GQA native
        if time.time() - t_start > budget:
            print(f"{wname:3} FA2 skipped (time budget)")
            continue
        try:
            fo = torch.ops.aten._flash_attention_forward(q, k, v, cu, cu, L, L, 0.0, True, False, scale=SCALE)
            o, lse_f, rng, unused = fo[0], fo[1], fo[2], fo[3]

            def fa_bwd():
                return torch.ops.aten._flash_attention_backward(dout, q, k, v, o, lse_f, cu, cu, L, L, 0.0, True,
                                                                rng, unused, scale=SCALE)

            def fa_fb():
                f = torch.ops.aten._flash_attention_forward(q, k, v, cu, cu, L, L, 0.0, True, False, scale=SCALE)
                return torch.ops.aten._flash_attention_backward(dout, q, k, v, f[0], f[1], cu, cu, L, L, 0.0, True,
                                                                f[2], f[3], scale=SCALE)

            tb, tfb = time_ms(fa_bwd), time_ms(fa_fb)
            print(f"{wname:3} FA2 dense (aten._flash_attention_backward): bwd {tb:.2f} ms, fwd+bwd {tfb:.2f} ms",
                  flush=True)
        except Exception as e:  # noqa: BLE001 - baseline is optional
            print(f"{wname:3} FA2 dense: not available ({type(e).__name__}: {str(e).splitlines()[0][:160]})")
        del q, k, v, dout
        torch.cuda.empty_cache()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--check", action="store_true", help="correctness only")
    ap.add_argument("--budget", type=float, default=TIME_BUDGET_S, help="seconds after which no new timing starts")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("micro_bwd: CUDA is not available; nothing to do")
        return 0
    t0 = time.time()
    import seer_attn  # noqa: F401  (loads the extension, registers torch.ops.seer_attn.*)

    device = torch.device("cuda")
    print(f"device {torch.cuda.get_device_name()}, torch {torch.__version__}, CUDA {torch.version.cuda}")
    ok = check(device)
    print(f"check: {'PASS' if ok else 'FAIL'}  ({time.time() - t0:.1f} s)", flush=True)
    if not args.check:
        bench(device, t0, args.budget)
    print(f"total {time.time() - t0:.1f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
