"""How much K/V traffic and how many ring-step calls the context-parallel ops of seer_attn.distributed
skip on a WORKLOADS.md mask, computed on the CPU from the mask alone (no GPU, no process group).

    python benchmarks/cp_sparsity.py [--seqlen 65536] [--density 0.1] [--worlds 2 4 8]

Default: P2 (one 65,536-token sequence, 32 q heads / 8 kv heads, 64x64 blocks, causal) at d = 0.1.
For each world size W it reports, with the default chunk unit (256 tokens):
- shard transfers: (owner s, rank r != s) pairs where r keeps some block of s's K/V shard (what the
  forward sends, and the backward sends twice: K/V out, dK/dV back), vs W (W - 1) for a dense ring;
- the same per kv head (what sending per-kv-head slices of a shard would save);
- key blocks a rank needs of a remote shard (union over its query rows and heads) vs all of them
  (what sending only the kept key blocks would save);
- kept causal (q block, k block, q head) entries (the op's work follows these, whatever W is).
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import workloads as wl  # noqa: E402
from seer_attn import distributed as sd  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seqlen", type=int, default=65536)
    ap.add_argument("--density", type=float, default=0.1)
    ap.add_argument("--worlds", type=int, nargs="+", default=[2, 4, 8])
    a = ap.parse_args()
    torch.manual_seed(0)
    L, B = a.seqlen, wl.BLOCK
    mask = wl.mask_2d([L], wl.H_Q, a.density, "cpu")  # [1, 32, nb, nb] per q head
    nb = mask.shape[-1]
    g = wl.H_Q // wl.H_KV
    per_kv = mask.view(1, wl.H_KV, g, nb, nb).any(2)  # [1, 8, nb, nb]: what a kv head's shard must serve
    kept = int(mask.sum())
    dense = wl.H_Q * nb * (nb + 1) // 2
    print(f"seqlen {L}, density {a.density}: kept causal block entries {kept} of {dense} "
          f"({100 * kept / dense:.1f}%; the op's work follows these on every W)")
    cu = [0, L]
    for W in a.worlds:
        lay = sd._Layout(cu, W, sd.DEFAULT_UNIT)
        n2 = 2 * W
        bounds = lay.bounds[0]
        # chunk of every block
        starts = torch.tensor([c0 for c0, _ in bounds])
        chunk = torch.bucketize(torch.arange(nb) * B, starts, right=True) - 1
        rank_of = torch.where(chunk < W, chunk, n2 - 1 - chunk)  # owner rank of each block

        def need_matrix(m):  # m [H, nb, nb] bool -> [H, W(owner s), W(rank r)] bool
            h = m.shape[0]
            idx = (rank_of[None, :, None] * W + rank_of[None, None, :]).expand(h, nb, nb)  # r * W + s
            acc = torch.zeros(h, W * W, dtype=torch.int64)
            acc.scatter_add_(1, idx.reshape(h, -1), m.reshape(h, -1).to(torch.int64))
            return (acc.view(h, W, W) > 0).transpose(1, 2)  # [h, s, r]

        off = ~torch.eye(W, dtype=torch.bool)
        need = need_matrix(mask[0]).any(0)
        need_kv = need_matrix(per_kv[0])
        # key blocks of a remote shard that rank r needs at all (union over its rows and heads)
        cols_needed = 0
        cols_total = 0
        any_rows = mask[0].any(0)  # [nb(q), nb(k)]
        for r in range(W):
            rows_r = any_rows[rank_of == r].any(0)  # [nb(k)]
            for s in range(W):
                if s == r:
                    continue
                ks = rank_of == s
                cols_needed += int((rows_r & ks).sum())
                cols_total += int(ks.sum())
        print(f"W={W}: shard transfers {int((need & off).sum())} of {W * (W - 1)}; per kv head "
              f"{int((need_kv & off).sum())} of {wl.H_KV * W * (W - 1)}; remote key blocks needed "
              f"{cols_needed} of {cols_total} ({100 * cols_needed / max(cols_total, 1):.1f}%)")


if __name__ == "__main__":
    main()
