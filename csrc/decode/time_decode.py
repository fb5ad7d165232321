#!/usr/bin/env python
"""Times seer_attn.block_sparse_decode on workload D1 (../shared/WORKLOADS.md): contiguous and paged
caches (page 16 / 64), L = 1 and 4 new tokens, block 32 / 64, density 0.1 / 0.5, mask and indices.
Prints one table (not a test; nothing is asserted):

    PYTHONPATH=. python csrc/decode/time_decode.py [--reps 30] [--quick]

us = median CUDA-event time per call (L2 flushed before each rep); GB/s = K+V bytes of the valid slots
of the kept blocks / time; %copy = that against a device-to-device copy measured in the same run.
Inputs come from benchmarks/workloads.py (D1: batch 32, S_max 32768, H_q 32, H_kv 8, D 128, bf16).
"""
import argparse
import os
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
sys.path.insert(0, ROOT)
import workloads as W  # noqa: E402

import seer_attn  # noqa: E402


def timeit(fn, reps, flush):
    start = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    end = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    for _ in range(3):
        fn()
    for i in range(reps):
        flush.zero_()
        start[i].record()
        fn()
        end[i].record()
    torch.cuda.synchronize()
    t = sorted(s.elapsed_time(e) for s, e in zip(start, end))
    return t[len(t) // 2] * 1e3  # us


def to_paged(cache, page, gen):
    """[B, S, H, D] -> pages [B * S / page, page, H, D] in a random physical order + table [B, S / page]."""
    B, S, H, D = cache.shape
    n = B * S // page
    perm = torch.randperm(n, generator=gen).to(cache.device)
    pages = torch.empty(n, page, H, D, dtype=cache.dtype, device=cache.device)
    pages[perm] = cache.reshape(n, page, H, D)
    return pages, perm.view(B, S // page).to(torch.int32)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--quick", action="store_true", help="block 64, density 0.1 only")
    a = ap.parse_args()
    dev = "cuda"
    w = W.FULL_WORKLOADS["D1"]
    inp = W.make_decode_inputs(w, dev)
    q, kc, vc, lens = inp["q"], inp["k_cache"], inp["v_cache"], inp["cache_seqlens"]
    flush = torch.empty(256 << 20, dtype=torch.uint8, device=dev)
    src = torch.empty(1 << 30, dtype=torch.uint8, device=dev)
    dst = torch.empty_like(src)
    t_copy = timeit(lambda: dst.copy_(src), 10, flush)
    copy_gbs = 2 * src.numel() / t_copy / 1e3
    print(f"device-to-device copy: {copy_gbs:.0f} GB/s (read + write)")
    gen = torch.Generator().manual_seed(0)
    paged = {p: (to_paged(kc, p, gen), to_paged(vc, p, gen)) for p in (16, 64)}
    blocks = (64,) if a.quick else (32, 64)
    dens = (0.1,) if a.quick else (0.1, 0.5)
    print(f"{'cache':>10} {'L':>2} {'block':>5} {'d':>4} {'form':>7} {'us':>8} {'GB/s':>7} {'%copy':>6}")
    for bs in blocks:
        for d in dens:
            mask = W.decode_mask(lens, kc.shape[2], kc.shape[1], bs, d)
            idx = W.mask_to_indices_sorted(mask)
            nbytes = W.decode_kept_kv_bytes(mask, lens, bs)
            for L in (1, 4):
                qq = q if L == 1 else q[:, None].expand(-1, L, -1, -1).contiguous()
                for name, (k, v, table) in [("contig", (kc, vc, None))] + [
                        (f"paged{p}", (kp, vp, tp)) for p, ((kp, tp), (vp, _)) in paged.items()]:
                    for form, sel in (("mask", dict(block_mask=mask)), ("indices", dict(block_indices=idx))):
                        def fn():
                            seer_attn.block_sparse_decode(qq, k, v, lens, block_size=bs, block_table=table, **sel)
                        t = timeit(fn, a.reps, flush)
                        gbs = nbytes / t / 1e3
                        print(f"{name:>10} {L:>2} {bs:>5} {d:>4} {form:>7} {t:8.1f} {gbs:7.0f} "
                              f"{100 * gbs / copy_gbs:5.0f}%")


if __name__ == "__main__":
    main()
