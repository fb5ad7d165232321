#!/usr/bin/env python3
"""Micro-benchmark of the 2D block-sparse forward (torch.ops.seer_attn.block_sparse_2d_fwd).

Standalone: uses the installed / in-place-built package (run from the repository root with
PYTHONPATH=. after building the extension), needs a CUDA GPU. Steps:
  1. correctness on small cases against a float32 dense reference (out and lse), for every kernel
     variant compared below;
  2. timing (CUDA events, median of --reps after warm-up) of the 2D forward on the WORKLOADS.md
     shapes P1 / P2 (bf16, D 128, H_q 32, H_kv 8, block 64x64, causal) at densities 1, 0.5, 0.1,
     mask per (sequence, q head, 64-query-block row): round(d * #causal blocks) random causal blocks,
     diagonal always kept (drawn on the GPU); ms and TF/s on the kept causal (query, key) pairs;
  3. dense FlashAttention-2 (torch.ops.aten._flash_attention_forward) on the same shapes.

Variants (all checked and timed in the same run): SEER_FWD_IMPL=mma forces the mma.sync kernel, with
SEER_FWD_VARIANT "0" = 2 warps x 32 rows, kBlockN 32 (its default) or "1" = 4 warps x 16 rows,
kBlockN 64; without SEER_FWD_IMPL an sm_90a build on an H100 / H200 runs the wgmma kernel (kBlockN 64). The run
of results/v3_h100_micro_fwd.log also timed a 128-key wgmma tile, since removed (slower).

    PYTHONPATH=. python benchmarks/micro_fwd.py [--reps 10] [--workloads P1,P2] [--densities 1,0.5,0.1]
"""
import argparse
import math
import os
import statistics
import sys

import torch

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))
import seer_attn  # noqa: E402,F401  (registers torch.ops.seer_attn)

H_Q, H_KV, D, BLOCK = 32, 8, 128, 64
DTYPE = torch.bfloat16
WORKLOADS = {"P1": [16384, 8000, 4096, 2100, 1024, 700, 256, 77], "P2": [65536]}
# (name, SEER_FWD_VARIANT, SEER_FWD_IMPL): the wgmma kernels run only on an sm_90a build on a
# compute-capability-9.0 GPU; elsewhere their rows repeat the mma.sync default and say so.
VARIANTS = [("mma 2w x 32r, N32", "0", "mma"), ("mma 4w x 16r, N64", "1", "mma"),
            ("wgmma 64x64 (default)", "0", "")]


def set_variant(v):
    variant, impl = v if isinstance(v, tuple) else (v, "")
    os.environ["SEER_FWD_VARIANT"] = variant
    if impl:
        os.environ["SEER_FWD_IMPL"] = impl
    else:
        os.environ.pop("SEER_FWD_IMPL", None)


def cdiv(a, b):
    return -(-a // b)


def cu_of(seqlens, dev):
    cu = [0]
    for s in seqlens:
        cu.append(cu[-1] + s)
    return torch.tensor(cu, dtype=torch.int32, device=dev)


def random_mask(seqlens, heads, density, block_q, block_k, dev, seed=0):
    """bool [B, heads, nbq, nbk]: per (seq, head, q-block row) keep max(1, round(d * n_causal)) random
    causal key blocks, always including the diagonal one(s). Vectorised (argsort of random keys)."""
    g = torch.Generator(device=dev).manual_seed(seed)
    B, S = len(seqlens), max(seqlens)
    nbq, nbk = cdiv(S, block_q), cdiv(S, block_k)
    out = torch.zeros(B, heads, nbq, nbk, dtype=torch.bool, device=dev)
    i = torch.arange(nbq, device=dev)[:, None]
    j = torch.arange(nbk, device=dev)[None, :]
    for b, L in enumerate(seqlens):
        row_ok = i * block_q < L
        last_key_blk = torch.clamp((torch.clamp((i + 1) * block_q, max=L) - 1) // block_k, min=0)  # block of the row's last token
        valid = row_ok & (j <= last_key_blk) & (j * block_k < L)
        forced = valid & (j == last_key_blk)
        n = valid.sum(-1)
        cnt = torch.clamp(torch.round(n.double() * density).long(), min=1)
        cnt = torch.where(n > 0, torch.minimum(cnt, n), torch.zeros_like(cnt))
        key = torch.rand(heads, nbq, nbk, generator=g, device=dev)
        key = torch.where(forced, torch.full_like(key, 2.0), torch.where(valid, key, torch.full_like(key, -1.0)))
        order = torch.argsort(key, dim=-1, descending=True)
        keep = (torch.arange(nbk, device=dev) < cnt[:, None]).expand(heads, nbq, nbk)
        m = torch.zeros(heads, nbq, nbk, dtype=torch.bool, device=dev)
        m.scatter_(-1, order, keep)
        out[b] = m & valid
        del key, order, keep, m
    return out


def kept_pairs(mask, seqlens, block):
    """Exact visible causal (query, key) pairs of a 2D mask [B, H, nb, nb] with B_q == B_k == block."""
    dev = mask.device
    nb = mask.shape[2]
    i = torch.arange(nb, device=dev, dtype=torch.int64)[:, None]
    j = torch.arange(mask.shape[3], device=dev, dtype=torch.int64)[None, :]
    tot = 0
    for b, L in enumerate(seqlens):
        rows = torch.clamp(L - i * block, 0, block)
        cols = torch.clamp(L - j * block, 0, block)
        w = torch.where(j < i, rows * cols, torch.where(j == i, rows * (rows + 1) // 2, torch.zeros_like(rows * cols)))
        tot += int((mask[b].to(torch.int64) * w[None]).sum().item())
    return tot


def reference(q, k, v, cu, seqlens, mask, bq, bk, scale):
    """float32 dense reference per sequence (mask expanded to tokens, causal). out [T,Hq,D], lse [Hq,T]."""
    Hq, Hkv = q.shape[1], k.shape[1]
    out = torch.zeros(q.shape, dtype=torch.float32, device=q.device)
    lse = torch.full((Hq, q.shape[0]), -math.inf, dtype=torch.float32, device=q.device)
    hm_div = Hq // mask.shape[1]
    for b, L in enumerate(seqlens):
        s0 = int(cu[b])
        qb = q[s0:s0 + L].float().transpose(0, 1)  # [Hq, L, D]
        kb = k[s0:s0 + L].float().transpose(0, 1).repeat_interleave(Hq // Hkv, 0)
        vb = v[s0:s0 + L].float().transpose(0, 1).repeat_interleave(Hq // Hkv, 0)
        t = torch.arange(L, device=q.device)
        m = mask[b].repeat_interleave(hm_div, 0)[:, t // bq][:, :, t // bk]  # [Hq, L, L]
        vis = m & (t[None, :, None] >= t[None, None, :])
        s = torch.einsum("hid,hjd->hij", qb, kb) * scale
        s = s.masked_fill(~vis, -math.inf)
        l = torch.logsumexp(s, -1)  # -inf for empty rows
        p = torch.exp(s - torch.where(torch.isinf(l), torch.zeros_like(l), l)[..., None])
        out[s0:s0 + L] = torch.einsum("hij,hjd->hid", p, vb).transpose(0, 1)
        lse[:, s0:s0 + L] = l
    return out, lse


def check(dev):
    ok = True
    cases = [  # seqlens, Hq, Hkv, D, block_q, block_k, density
        ([333, 77, 64, 1], 8, 2, 128, 64, 64, 0.5),
        ([333, 77, 64, 1], 8, 2, 128, 64, 64, 1.0),
        ([300, 129], 4, 2, 128, 128, 64, 0.6),
        ([200, 65], 4, 1, 64, 64, 32, 0.5),
        ([200, 65], 4, 4, 256, 64, 64, 0.5),
    ]
    for vname, *v in VARIANTS:
        set_variant(tuple(v))
        for seqlens, hq, hkv, d, bq, bk, dens in cases:
            torch.manual_seed(0)
            T = sum(seqlens)
            q = torch.randn(T, hq, d, device=dev, dtype=DTYPE)
            k = torch.randn(T, hkv, d, device=dev, dtype=DTYPE)
            vv = torch.randn(T, hkv, d, device=dev, dtype=DTYPE)
            cu = cu_of(seqlens, dev)
            mask = random_mask(seqlens, hq, dens, bq, bk, dev, seed=1)
            S = max(seqlens)
            scale = 1.0 / math.sqrt(d)
            out, lse = torch.ops.seer_attn.block_sparse_2d_fwd(q, k, vv, cu, cu, S, S, mask, bq, bk, scale, True)
            ro, rl = reference(q, k, vv, cu.tolist(), seqlens, mask, bq, bk, scale)
            e_out = (out.float() - ro).abs().max().item()
            fin = torch.isfinite(rl)
            e_lse = (lse[fin] - rl[fin]).abs().max().item() if fin.any() else 0.0
            lse_inf_ok = bool(torch.all(torch.isinf(lse[~fin]) & (lse[~fin] < 0))) if (~fin).any() else True
            good = e_out < 3e-2 and e_lse < 2e-3 * max(1.0, rl[fin].abs().max().item()) and lse_inf_ok \
                and bool(torch.isfinite(out).all())
            ok &= good
            print(f"check [{vname}] seqlens={seqlens} Hq={hq} Hkv={hkv} D={d} bq={bq} bk={bk} d={dens}: "
                  f"max|out err| {e_out:.3g} max|lse err| {e_lse:.3g} -> {'ok' if good else 'FAIL'}")
    set_variant("0")
    return ok


def time_ms(fn, reps, warmup=3):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(reps):
        a = torch.cuda.Event(enable_timing=True)
        b = torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        ts.append(a.elapsed_time(b))
    return statistics.median(ts)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--workloads", default="P1,P2")
    ap.add_argument("--densities", default="1,0.5,0.1")
    ap.add_argument("--no-check", action="store_true")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("micro_fwd.py needs a CUDA device")
        return 1
    dev = torch.device("cuda")
    print(f"GPU {torch.cuda.get_device_name()}, torch {torch.__version__}, CUDA {torch.version.cuda}")
    ok = True if args.no_check else check(dev)
    dens_list = [float(x) for x in args.densities.split(",")]
    scale = 1.0 / math.sqrt(D)
    rows = []
    for wname in args.workloads.split(","):
        seqlens = WORKLOADS[wname]
        T, S = sum(seqlens), max(seqlens)
        g = torch.Generator(device=dev).manual_seed(0)
        q = torch.randn(T, H_Q, D, generator=g, device=dev, dtype=DTYPE)
        k = torch.randn(T, H_KV, D, generator=g, device=dev, dtype=DTYPE)
        v = torch.randn(T, H_KV, D, generator=g, device=dev, dtype=DTYPE)
        cu = cu_of(seqlens, dev)
        dense_pairs = H_Q * sum(L * (L + 1) // 2 for L in seqlens)
        t1 = {}
        for dens in dens_list:
            mask = random_mask(seqlens, H_Q, dens, BLOCK, BLOCK, dev, seed=0)
            pairs = kept_pairs(mask, seqlens, BLOCK)
            for vname, *vv in VARIANTS:
                set_variant(tuple(vv))
                fn = lambda: torch.ops.seer_attn.block_sparse_2d_fwd(q, k, v, cu, cu, S, S, mask, BLOCK, BLOCK, scale, True)
                ms = time_ms(fn, args.reps)
                if dens == 1.0:
                    t1[vname] = ms
                tf = 4.0 * pairs * D / (ms * 1e-3) / 1e12
                rel = f"  ({ms / (dens * t1[vname]):.2f} x d*t(1))" if vname in t1 and dens != 1.0 else ""
                line = f"{wname} d={dens:<4} seer [{vname:<24}] {ms:9.3f} ms {tf:7.1f} TF/s{rel}"
                print(line)
                rows.append(line)
            set_variant("0")
            del mask
        # dense FA2 (PyTorch bundled), causal
        fa_line = None
        for expand in (False, True):
            try:
                kk = k.repeat_interleave(H_Q // H_KV, 1) if expand else k
                vv2 = v.repeat_interleave(H_Q // H_KV, 1) if expand else v
                fn = lambda: torch.ops.aten._flash_attention_forward(q, kk, vv2, cu, cu, S, S, 0.0, True, False, scale=scale)
                ms = time_ms(fn, args.reps)
                tf = 4.0 * dense_pairs * D / (ms * 1e-3) / 1e12
                fa_line = f"{wname} d=1    FA2 dense{' (k/v expanded)' if expand else ''}: {ms:9.3f} ms {tf:7.1f} TF/s"
                break
            except Exception as e:  # noqa: BLE001
                fa_line = f"{wname} FA2 dense not available: {type(e).__name__}: {str(e)[:120]}"
        print(fa_line)
        rows.append(fa_line)
        del q, k, v
        torch.cuda.empty_cache()
    print("\nsummary:")
    for r in rows:
        print(" ", r)
    print("correctness:", "ok" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
