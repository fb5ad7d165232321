"""K/V traffic of the context-parallel ops of seer_attn.distributed on a WORKLOADS.md mask, computed on
the CPU from the mask alone (the same chunk flags and selection rule the ops use; no GPU, no
process group).

    python benchmarks/cp_sparsity.py [--seqlen 65536] [--density 0.1] [--worlds 2 4 8]

Default: P2 (one 65,536-token sequence, 32 q heads / 8 kv heads, 64x64 blocks, causal) at d = 0.1,
compared with d = 1 (the dense causal mask) and with a dense ring that sends every shard to every
rank. For each world size W (default chunk unit, 256 tokens) it prints the K/V rows sent per forward
(the backward sends the same rows again plus the same number of dK/dV rows back), the ring-step
calls made, and what per-kv-head or per-key-block selection would send instead.
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import workloads as wl  # noqa: E402
from seer_attn import distributed as sd  # noqa: E402


def traffic(mask, L, W):
    """(rows sent, calls, rows sent if selected per kv head / H_KV, remote key blocks needed)."""
    lay = sd._Layout([0, L], W, sd.DEFAULT_UNIT)
    flags = sd._chunk_flags(mask, "2d", lay, lay, wl.BLOCK, wl.BLOCK)
    chunks = sd._chunks_needed(flags, W, True)
    seg_len = {c: n for _, c, _, n, _ in (sg for s in range(W) for sg in lay.seg[s])}
    rows = sum(seg_len[c] for s in range(W) for r in range(W) if r != s for c in chunks[s][r])
    calls = sum(1 for s in range(W) for r in range(W) if r == s or chunks[s][r])
    g = wl.H_Q // wl.H_KV
    per_kv = mask.view(1, wl.H_KV, g, *mask.shape[2:]).any(2)
    rows_kv = 0
    for h in range(wl.H_KV):
        ch = sd._chunks_needed(sd._chunk_flags(per_kv[:, h:h + 1], "2d", lay, lay, wl.BLOCK, wl.BLOCK), W, True)
        rows_kv += sum(seg_len[c] for s in range(W) for r in range(W) if r != s for c in ch[s][r])
    return rows, calls, rows_kv / wl.H_KV


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seqlen", type=int, default=65536)
    ap.add_argument("--density", type=float, default=0.1)
    ap.add_argument("--worlds", type=int, nargs="+", default=[2, 4, 8])
    a = ap.parse_args()
    L = a.seqlen
    masks = {d: wl.mask_2d([L], wl.H_Q, d, "cpu") for d in (1.0, a.density)}
    for d, m in masks.items():
        nb = m.shape[-1]
        print(f"d={d}: kept causal block entries {int(m.sum())} of {wl.H_Q * nb * (nb + 1) // 2} "
              f"(the op's work follows these for every W)")
    print("K/V rows sent per forward (x H_KV x D x 2 x 2 bytes), dense ring = every shard to every other rank")
    for W in a.worlds:
        dense_ring = (W - 1) * L
        line = [f"W={W}: dense ring {dense_ring}"]
        for d, m in masks.items():
            rows, calls, rows_kv = traffic(m, L, W)
            line.append(f"d={d}: {rows} ({100 * rows / dense_ring:.1f}%), {calls} of {W * W} step calls, "
                        f"per-kv-head selection {rows_kv:.0f}")
        print("; ".join(line))


if __name__ == "__main__":
    main()
