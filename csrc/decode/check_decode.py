#!/usr/bin/env python3
"""Standalone GPU check + benchmark of seer_attn::block_sparse_decode (the CUDA kernels of csrc/decode).

    python csrc/decode/check_decode.py            # build ops.cpp + csrc/decode only (torch JIT), test
    python csrc/decode/check_decode.py --installed  # use the installed seer_attn package's op instead
    python csrc/decode/check_decode.py --bench    # also time workload D1 (GB/s on the kept K/V bytes)

Compares against an independent float64 implementation written here (per sequence and kv head: the
set of attended slots, dense softmax over them). Exits non-zero on the first mismatch.
"""
import argparse
import glob
import math
import os
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def build_standalone():
    from torch.utils.cpp_extension import load

    srcs = [os.path.join(ROOT, "csrc", "ops.cpp"), os.path.join(HERE, "decode_api.cpp"),
            os.path.join(HERE, "decode_dispatch.cu")] + sorted(glob.glob(os.path.join(HERE, "instantiations", "*.cu")))
    with open(os.path.join(os.path.dirname(torch.__file__), "include", "ATen", "ATen.h")) as f:
        std = "c++20" if "C++20" in f.read() else "c++17"  # what this torch's headers need
    load(name="seer_attn_decode_check", sources=srcs, extra_include_paths=[os.path.join(ROOT, "csrc")],
         extra_cflags=["-O2", f"-std={std}"],
         extra_cuda_cflags=["-O3", "--use_fast_math", f"-std={std}", "-gencode", "arch=compute_90,code=sm_90"],
         is_python_module=False, verbose=True)


def naive(q, k, v, seqlens, mask, idx, bs, scale, left_pad, fbu):
    """float64 reference: out [B, H_q, D], lse [B, H_q]."""
    B, Hq, D = q.shape
    S, Hkv = k.shape[1], k.shape[2]
    g = Hq // Hkv
    nb = (S + bs - 1) // bs
    out = torch.zeros(B, Hq, D, dtype=torch.float64)
    lse = torch.full((B, Hq), -math.inf, dtype=torch.float64)
    qd, kd, vd = q.double().cpu(), k.double().cpu(), v.double().cpu()
    lens = seqlens.cpu().tolist()
    for b in range(B):
        L = min(max(lens[b], 0), S)
        if L == 0:
            continue
        lo, hi = (S - L, S) if left_pad else (0, L)
        for h in range(Hkv):
            sel = torch.zeros(nb, dtype=torch.bool)
            if mask is not None:
                sel = mask[b, h, :nb].cpu() != 0
            else:
                for n in idx[b, h].cpu().tolist():
                    if 0 <= n < nb:
                        sel[n] = True
            if fbu:
                sel[lo // bs] = True
            slots = [s for s in range(lo, hi) if sel[s // bs]]
            if not slots:
                continue
            ks, vs = kd[b, slots, h], vd[b, slots, h]  # [n, D]
            qs = qd[b, h * g:(h + 1) * g]  # [g, D]
            s = qs @ ks.T * scale
            m = s.max(dim=1, keepdim=True).values
            p = torch.exp(s - m)
            l = p.sum(dim=1, keepdim=True)
            out[b, h * g:(h + 1) * g] = (p / l) @ vs
            lse[b, h * g:(h + 1) * g] = (m + torch.log(l)).squeeze(1)
    return out, lse


def run_case(op, *, B=3, Hq=8, Hkv=2, D=128, S=300, bs=32, dtype=torch.bfloat16, form="mask", density=0.5,
             left_pad=False, fbu=False, splits=0, seqlens=None, mask_dtype=torch.bool, mask_bcast=False,
             noncontig=False, seed=0, dev="cuda"):
    torch.manual_seed(seed)
    nb = (S + bs - 1) // bs
    if noncontig:  # q from a wider tensor, caches from a fused [B, S, 2, Hkv, D] tensor
        q = torch.randn(B, Hq, 2 * D, device=dev, dtype=dtype)[:, :, D:]
        kv = torch.randn(B, S, 2, Hkv, D, device=dev, dtype=dtype)
        k, v = kv[:, :, 0], kv[:, :, 1]
    else:
        q = torch.randn(B, Hq, D, device=dev, dtype=dtype)
        k = torch.randn(B, S, Hkv, D, device=dev, dtype=dtype)
        v = torch.randn(B, S, Hkv, D, device=dev, dtype=dtype)
    if seqlens is None:
        seqlens = torch.randint(0, S + 1, (B,), device=dev, dtype=torch.int32)
    else:
        seqlens = torch.tensor(seqlens, device=dev, dtype=torch.int32)
    mask = idx = None
    if form == "mask":
        if mask_bcast:
            mask = (torch.rand(B, 1, nb + 3, device=dev) < density).expand(B, Hkv, nb + 3)
        else:
            mask = torch.rand(B, Hkv, nb + 3, device=dev) < density
        mask = mask.to(mask_dtype)
    else:
        K = max(1, int(nb * density))
        idx = torch.stack([torch.stack([torch.randperm(nb + 2, device=dev)[:K] for _ in range(Hkv)])
                           for _ in range(B)]).to(torch.int32)
        idx[:, :, ::3] = -1  # padding anywhere, and entries >= nb (ignored)
    scale = 1.0 / math.sqrt(D)
    out, lse = op(q, k, v, seqlens, mask, idx, bs, scale, left_pad, fbu, splits)
    if dev == "cuda":
        torch.cuda.synchronize()
    ro, rl = naive(q, k, v, seqlens, mask, idx, bs, scale, left_pad, fbu)
    assert not torch.isnan(out).any() and not torch.isnan(lse).any(), "NaN in output"
    err_o = (out.double().cpu() - ro).abs().max().item()
    fin = torch.isfinite(rl)
    assert torch.equal(torch.isfinite(lse.cpu()), fin), "lse -inf pattern differs"
    err_l = (lse.double().cpu()[fin] - rl[fin]).abs().max().item() if fin.any() else 0.0
    assert (out.cpu()[~fin] == 0).all(), "empty rows must be 0"
    tol = 3e-2 if dtype == torch.bfloat16 else 5e-3  # P is rounded to 16 bits before P @ V
    ok = err_o < tol and err_l < 1e-3
    return ok, err_o, err_l


def test_cases():
    cases = []
    for D in (64, 128, 256):
        for dtype in (torch.float16, torch.bfloat16):
            cases.append(dict(D=D, dtype=dtype))
    for bs in (16, 48, 64, 256):
        cases.append(dict(bs=bs, S=700))
    for Hq, Hkv in ((4, 4), (7, 1), (16, 2), (20, 1), (32, 1), (64, 2)):
        cases.append(dict(Hq=Hq, Hkv=Hkv))
    for form in ("mask", "indices"):
        for left_pad in (False, True):
            for fbu in (False, True):
                for splits in (0, 1, 3, 17):
                    cases.append(dict(form=form, left_pad=left_pad, fbu=fbu, splits=splits))
    cases += [
        dict(seqlens=[0, 300, 1], fbu=True),                 # empty, full, single slot
        dict(seqlens=[-5, 10_000, 299], left_pad=True),      # out-of-range lengths are clamped
        dict(density=0.0, splits=4),                        # nothing selected: 0 / -inf
        dict(density=0.0, fbu=True, left_pad=True, splits=4),
        dict(density=1.0, S=5000, splits=0, B=2),
        dict(S=20000, bs=16, density=0.9, B=1, Hq=32, Hkv=8),  # > kListCap blocks in one split
        dict(mask_dtype=torch.int64), dict(mask_dtype=torch.uint8), dict(mask_bcast=True),
        dict(noncontig=True), dict(noncontig=True, form="indices", left_pad=True),
    ]
    return cases


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--installed", action="store_true")
    ap.add_argument("--bench", action="store_true")
    args = ap.parse_args()
    if args.installed:
        import seer_attn  # noqa: F401  (registers the ops)
    else:
        build_standalone()
    op = torch.ops.seer_attn.block_sparse_decode
    bad = 0
    for i, c in enumerate(test_cases()):
        ok, eo, el = run_case(op, seed=i, **c)
        print(f"{'ok  ' if ok else 'FAIL'} out {eo:.2e} lse {el:.2e}  {c}")
        bad += 0 if ok else 1

    # CUDA graph capture (no host sync inside the op).
    B, Hq, Hkv, D, S, bs = 4, 16, 4, 128, 4096, 64
    q = torch.randn(B, Hq, D, device="cuda", dtype=torch.bfloat16)
    k = torch.randn(B, S, Hkv, D, device="cuda", dtype=torch.bfloat16)
    v = torch.randn_like(k)
    sl = torch.full((B,), 3000, device="cuda", dtype=torch.int32)
    m = torch.rand(B, Hkv, S // bs, device="cuda") < 0.3
    op(q, k, v, sl, m, None, bs, 0.088, False, False, 0)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        o_g, l_g = op(q, k, v, sl, m, None, bs, 0.088, False, False, 0)
    g.replay()
    torch.cuda.synchronize()
    o_e, l_e = op(q, k, v, sl, m, None, bs, 0.088, False, False, 0)
    graph_ok = torch.equal(o_g, o_e) and torch.equal(l_g, l_e)
    print("graph capture", "ok" if graph_ok else "FAIL")
    bad += 0 if graph_ok else 1

    if args.bench:
        bench(op)
    print("FAILED cases:", bad)
    sys.exit(1 if bad else 0)


def bench(op):
    """Workload D1: batch 32, S_max 32768, H_q 32, H_kv 8, D 128, bf16, lengths uniform in [1024, 32768]
    (one at 32768), density over each sequence's valid blocks. GB/s = kept K+V bytes / time."""
    torch.manual_seed(0)
    B, S, Hq, Hkv, D = 32, 32768, 32, 8, 128
    q = torch.randn(B, Hq, D, device="cuda", dtype=torch.bfloat16)
    k = torch.randn(B, S, Hkv, D, device="cuda", dtype=torch.bfloat16)
    v = torch.randn_like(k)
    lens = torch.randint(1024, S + 1, (B,), dtype=torch.int32)
    lens[0] = S
    sl = lens.cuda()
    for bs in (32, 64):
        nb = S // bs
        for d in (0.1, 0.25, 0.5):
            mask = torch.zeros(B, Hkv, nb, dtype=torch.bool)
            kept = 0
            K = 0
            for b in range(B):
                vb = (int(lens[b]) + bs - 1) // bs
                n = max(1, round(d * vb))
                K = max(K, n)
                for h in range(Hkv):
                    mask[b, h, torch.randperm(vb)[:n]] = True
                    kept += min(n * bs, int(lens[b]))  # approx (a partial last block may be kept)
            idx = torch.full((B, Hkv, K), -1, dtype=torch.int32)
            for b in range(B):
                for h in range(Hkv):
                    sel = mask[b, h].nonzero().flatten()
                    idx[b, h, :sel.numel()] = sel.to(torch.int32)
            mask, idx = mask.cuda(), idx.cuda()
            nbytes = kept * D * 2 * 2
            for form, m_, i_ in (("mask", mask, None), ("indices", None, idx)):
                fn = lambda: op(q, k, v, sl, m_, i_, bs, 1 / math.sqrt(D), False, False, 0)  # noqa: E731
                for _ in range(5):
                    fn()
                ts = []
                for _ in range(30):
                    st, en = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                    st.record()
                    fn()
                    en.record()
                    torch.cuda.synchronize()
                    ts.append(st.elapsed_time(en) * 1e3)
                t = sorted(ts)[len(ts) // 2]
                print(f"D1 block {bs} d {d} {form:8s}: {t:8.1f} us  {nbytes / t / 1e3:8.0f} GB/s")


if __name__ == "__main__":
    main()
