"""Benchmark workloads of ../shared/WORKLOADS.md: shapes, inputs, random masks, exact pair counts,
and small dense float32 references used by `bench.py --check`.

Everything is vectorised PyTorch and runs where its inputs live (masks are drawn ON the device).
Self-attention only (seqlen_q == seqlen_k per sequence), so the bottom-right causal alignment of
SPEC.md coincides with top-left: query t sees key s iff s <= t.

Mask rule (WORKLOADS.md): for each (sequence, head, query-block row) keep
``max(1, round(d * n))`` of the row's ``n`` causal blocks, chosen uniformly at random, always
including the diagonal block. ``round`` is half-to-even (Python's ``round``, ``torch.round``).
Every mask is drawn from a fresh ``torch.Generator(device).manual_seed(seed)`` (seed 0), so masks
of the same shape at different densities are nested (the d = 0.1 mask is a subset of d = 0.2 ...).
The decode rule: keep ``max(1, round(d * n))`` of the ``n`` blocks holding valid cache slots,
always including the block of the newest token (the last valid slot).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import List

import torch

# ---- common settings (WORKLOADS.md) ------------------------------------------------------------
H_Q = 32
H_KV = 8
HEAD_DIM = 128
BLOCK = 64
DTYPE = torch.bfloat16
SM_SCALE = 1.0 / math.sqrt(HEAD_DIM)
SEED = 0

PREFILL_DENSITIES = (1.0, 0.5, 0.2, 0.1)
DECODE_DENSITIES = (0.1, 0.25, 0.5)
DECODE_BLOCKS = (32, 64)


@dataclass
class Workload:
    name: str
    kind: str  # "prefill" | "decode"
    seqlens: List[int] = field(default_factory=list)  # prefill
    batch: int = 0  # decode
    s_max: int = 0
    len_lo: int = 0

    @property
    def total_tokens(self) -> int:
        return sum(self.seqlens)

    def describe(self) -> str:
        if self.kind == "prefill":
            return f"{self.name}: prefill varlen seqlens {self.seqlens} (T = {self.total_tokens})"
        return (f"{self.name}: decode batch {self.batch}, S_max {self.s_max}, cache_seqlens uniform in "
                f"[{self.len_lo}, {self.s_max}] (one at {self.s_max})")


FULL_WORKLOADS = {
    "P1": Workload("P1", "prefill", seqlens=[16384, 8000, 4096, 2100, 1024, 700, 256, 77]),
    "P2": Workload("P2", "prefill", seqlens=[65536]),
    "D1": Workload("D1", "decode", batch=32, s_max=32768, len_lo=1024),
}

# Tiny shapes with the same structure, for `--device cpu` smoke tests of the control flow.
TINY_WORKLOADS = {
    "P1": Workload("P1", "prefill", seqlens=[200, 130, 64, 77, 5]),
    "P2": Workload("P2", "prefill", seqlens=[384]),
    "D1": Workload("D1", "decode", batch=3, s_max=512, len_lo=64),
}

# Small problem used by --check (one short packed batch; partial and aligned blocks, 1 short seq).
CHECK_SEQLENS = [333, 77, 64]


def get_workloads(tiny: bool):
    return TINY_WORKLOADS if tiny else FULL_WORKLOADS


def cu_seqlens_of(seqlens, device) -> torch.Tensor:
    cu = [0]
    for s in seqlens:
        cu.append(cu[-1] + int(s))
    return torch.tensor(cu, dtype=torch.int32, device=device)


def cdiv(a: int, b: int) -> int:
    return -(-int(a) // int(b))


# ---- inputs -------------------------------------------------------------------------------------
def make_prefill_inputs(seqlens, device, dtype=DTYPE, seed=SEED, h_q=H_Q, h_kv=H_KV, d=HEAD_DIM):
    """q [T, H_q, D], k/v [T, H_kv, D], dout [T, H_q, D] ~ N(0, 1); cu_seqlens int32 [B+1]."""
    torch.manual_seed(seed)
    t = sum(int(s) for s in seqlens)
    g = torch.Generator(device=device).manual_seed(seed)
    q = torch.randn(t, h_q, d, generator=g, device=device, dtype=dtype)
    k = torch.randn(t, h_kv, d, generator=g, device=device, dtype=dtype)
    v = torch.randn(t, h_kv, d, generator=g, device=device, dtype=dtype)
    dout = torch.randn(t, h_q, d, generator=g, device=device, dtype=dtype)
    return dict(q=q, k=k, v=v, dout=dout, cu=cu_seqlens_of(seqlens, device), max_len=max(seqlens),
                seqlens=list(int(s) for s in seqlens))


def make_decode_inputs(w: Workload, device, dtype=DTYPE, seed=SEED, h_q=H_Q, h_kv=H_KV, d=HEAD_DIM):
    """q [B, H_q, D]; k_cache/v_cache [B, S_max, H_kv, D]; cache_seqlens int32 [B] uniform in
    [len_lo, S_max], element 0 set to S_max."""
    torch.manual_seed(seed)
    gcpu = torch.Generator().manual_seed(seed)
    lens = torch.randint(w.len_lo, w.s_max + 1, (w.batch,), generator=gcpu, dtype=torch.int64)
    lens[0] = w.s_max
    g = torch.Generator(device=device).manual_seed(seed)
    q = torch.randn(w.batch, h_q, d, generator=g, device=device, dtype=dtype)
    kc = torch.randn(w.batch, w.s_max, h_kv, d, generator=g, device=device, dtype=dtype)
    vc = torch.randn(w.batch, w.s_max, h_kv, d, generator=g, device=device, dtype=dtype)
    return dict(q=q, k_cache=kc, v_cache=vc, cache_seqlens=lens.to(device=device, dtype=torch.int32),
                lens_host=lens.tolist())


# ---- random masks -------------------------------------------------------------------------------
_CHUNK_ELEMS = 1 << 25  # bound on the elements ranked at once (float32 key + int64 order + int64 rank)


def _keep_random(valid: torch.Tensor, forced: torch.Tensor, count: torch.Tensor, gen) -> torch.Tensor:
    """valid/forced bool [..., N]; count int [...]. Keeps `count` entries per row: the forced ones
    first, then uniformly random valid ones. Exact counts (rank by argsort, no thresholds)."""
    n = valid.shape[-1]
    key = torch.rand(valid.shape, generator=gen, device=valid.device)
    key = torch.where(forced, torch.full_like(key, 2.0), torch.where(valid, key, torch.full_like(key, -1.0)))
    order = torch.argsort(key, dim=-1, descending=True)
    ar = torch.arange(n, device=valid.device)
    keep_sorted = ar < count[..., None]
    out = torch.zeros(valid.shape, dtype=torch.bool, device=valid.device)
    out.scatter_(-1, order, keep_sorted.expand(order.shape))
    return out & valid


def _row_counts(n_causal: torch.Tensor, density: float) -> torch.Tensor:
    cnt = torch.round(n_causal.to(torch.float64) * float(density)).to(torch.int64)
    cnt = torch.clamp(cnt, min=1)
    cnt = torch.minimum(cnt, n_causal)
    return torch.where(n_causal > 0, cnt, torch.zeros_like(cnt))


def mask_2d(seqlens, num_heads: int, density: float, device, block: int = BLOCK, seed: int = SEED):
    """Random causal 2D block mask, bool [B, H, nb, nb] (nb = ceil(max_len / block)).
    Row i of sequence b (i < nb_b) has i + 1 causal blocks; entries outside a sequence are False."""
    B = len(seqlens)
    nb = cdiv(max(seqlens), block)
    nbs = torch.tensor([cdiv(s, block) for s in seqlens], device=device)[:, None, None, None]
    i = torch.arange(nb, device=device)[None, None, :, None]
    j = torch.arange(nb, device=device)[None, None, None, :]
    row_ok = i < nbs
    valid = (row_ok & (j <= i)).expand(B, num_heads, nb, nb)
    forced = (row_ok & (j == i)).expand(B, num_heads, nb, nb)
    n_causal = torch.where(row_ok, i + 1, torch.zeros_like(i))[..., 0].expand(B, num_heads, nb)
    cnt = _row_counts(n_causal, density)
    gen = torch.Generator(device=device).manual_seed(seed)
    out = torch.empty(B, num_heads, nb, nb, dtype=torch.bool, device=device)
    step = max(1, _CHUNK_ELEMS // (num_heads * nb * nb))
    for b0 in range(0, B, step):  # chunks of sequences (a handful), never per row
        b1 = min(B, b0 + step)
        out[b0:b1] = _keep_random(valid[b0:b1], forced[b0:b1], cnt[b0:b1], gen)
    return out


def expand_rows(m2d: torch.Tensor, seqlens, block: int = BLOCK) -> torch.Tensor:
    """2D block mask [B, H, nb, nk] -> 1D token mask [B, H, max_len, nk] (row t of sequence b takes
    block row t // block); rows t >= len_b are False. Contiguous."""
    B, H, nb, nk = m2d.shape
    S = max(seqlens)
    m1 = m2d.repeat_interleave(block, dim=2)[:, :, :S]
    lens = torch.tensor(list(seqlens), device=m2d.device)[:, None, None, None]
    t = torch.arange(S, device=m2d.device)[None, None, :, None]
    return (m1 & (t < lens)).contiguous()


def mask_1d_token(seqlens, num_heads: int, density: float, device, block: int = BLOCK, seed: int = SEED):
    """Random 1D mask drawn independently for every token row: bool [B, H, max_len, nk]. Row t of
    sequence b has t // block + 1 causal blocks (its own diagonal block always kept)."""
    B = len(seqlens)
    S = max(seqlens)
    nk = cdiv(S, block)
    out = torch.zeros(B, num_heads, S, nk, dtype=torch.bool, device=device)
    gen = torch.Generator(device=device).manual_seed(seed)
    j = torch.arange(nk, device=device)[None, None, None, :]
    rows = max(1, _CHUNK_ELEMS // (num_heads * nk))
    for b in range(B):  # sequences x row chunks: a handful of big vectorised steps
        L = int(seqlens[b])
        for t0 in range(0, L, rows):
            t1 = min(L, t0 + rows)
            t = torch.arange(t0, t1, device=device)[None, None, :, None]
            dblk = t // block
            valid = (j <= dblk).expand(1, num_heads, t1 - t0, nk)
            forced = (j == dblk).expand(1, num_heads, t1 - t0, nk)
            n_causal = (dblk[..., 0] + 1).expand(1, num_heads, t1 - t0)
            cnt = _row_counts(n_causal, density)
            out[b:b + 1, :, t0:t1] = _keep_random(valid, forced, cnt, gen)
    return out


def decode_mask(lens_dev: torch.Tensor, num_kv_heads: int, s_max: int, block: int, density: float,
                seed: int = SEED):
    """Random decode mask bool [B, H_kv, ceil(S_max/block)] over the valid blocks of each sequence
    (right-padded cache: slots [0, len)); the newest token's block is always kept."""
    device = lens_dev.device
    B = lens_dev.numel()
    nb = cdiv(s_max, block)
    L = lens_dev.to(torch.int64)[:, None, None]
    n = torch.arange(nb, device=device)[None, None, :]
    valid = (n * block < L).expand(B, num_kv_heads, nb)
    forced = (valid & (n == (L - 1) // block)).expand(B, num_kv_heads, nb)
    n_valid = ((L[..., 0] + block - 1) // block).expand(B, num_kv_heads)
    cnt = _row_counts(n_valid, density)
    gen = torch.Generator(device=device).manual_seed(seed)
    return _keep_random(valid, forced, cnt, gen)


def mask_to_indices_sorted(mask: torch.Tensor) -> torch.Tensor:
    """bool [..., N] -> int32 [..., K] kept indices ascending, -1 padded (K = max kept; host read)."""
    k = int(mask.sum(-1).max().item()) if mask.numel() else 0
    k = max(k, 1)
    n = mask.shape[-1]
    ar = torch.arange(n, device=mask.device, dtype=torch.int64).expand(mask.shape)
    key = torch.where(mask, ar, ar + n)  # kept first, ascending
    srt = torch.sort(key, dim=-1).values[..., :k]
    return torch.where(srt < n, srt, torch.full_like(srt, -1)).to(torch.int32)


# ---- exact pair / byte counts -------------------------------------------------------------------
def dense_causal_pairs(seqlens, num_heads: int = H_Q) -> int:
    return num_heads * sum(int(L) * (int(L) + 1) // 2 for L in seqlens)


def pairs_2d(m2d: torch.Tensor, seqlens, block: int = BLOCK, head_factor: int = 1) -> int:
    """Exact visible (query, key) pairs of a 2D block mask [B, H, nb, nk] under causal masking,
    summed over heads (times head_factor when the mask is shared by a GQA group)."""
    B, H, nb, nk = m2d.shape
    dev = m2d.device
    L = torch.tensor(list(seqlens), device=dev, dtype=torch.int64)[:, None, None]
    i = torch.arange(nb, device=dev, dtype=torch.int64)[None, :, None]
    j = torch.arange(nk, device=dev, dtype=torch.int64)[None, None, :]
    rows = torch.clamp(L - i * block, 0, block)
    cols = torch.clamp(L - j * block, 0, block)
    w = torch.where(j < i, rows * cols, torch.where(j == i, rows * (rows + 1) // 2, torch.zeros_like(rows * cols)))
    tot = 0
    for b in range(B):
        tot += int((m2d[b].to(torch.int64) * w[b][None]).sum().item())
    return tot * head_factor


def pairs_1d(m1d: torch.Tensor, seqlens, block: int = BLOCK, head_factor: int = 1) -> int:
    """Exact visible pairs of a 1D token mask [B, H, S, nk]: row t, block j contributes
    clamp(t - j*block + 1, 0, block) keys (t < len_b). Summed over heads (x head_factor)."""
    B, H, S, nk = m1d.shape
    dev = m1d.device
    j = torch.arange(nk, device=dev, dtype=torch.int64)[None, :]
    rows = max(1, _CHUNK_ELEMS // max(1, H * nk))
    tot = 0
    for b in range(B):
        L = int(seqlens[b])
        for t0 in range(0, L, rows):
            t1 = min(L, t0 + rows)
            t = torch.arange(t0, t1, device=dev, dtype=torch.int64)[:, None]
            w = torch.clamp(t - j * block + 1, 0, block).to(torch.int32)
            tot += int((m1d[b, :, t0:t1].to(torch.int32) * w[None]).sum(dtype=torch.int64).item())
    return tot * head_factor


def decode_kept_kv_bytes(mask: torch.Tensor, lens_dev: torch.Tensor, block: int, head_dim: int = HEAD_DIM,
                         elem_bytes: int = 2) -> int:
    """K + V bytes of the valid cache slots inside the kept blocks (right-padded cache)."""
    B, H, nb = mask.shape
    L = lens_dev.to(torch.int64)[:, None, None]
    n = torch.arange(nb, device=mask.device, dtype=torch.int64)[None, None, :]
    slots = torch.clamp(L - n * block, 0, block)
    return int((mask.to(torch.int64) * slots).sum().item()) * head_dim * elem_bytes * 2


def decode_dense_kv_bytes(lens_host, num_kv_heads: int = H_KV, head_dim: int = HEAD_DIM, elem_bytes: int = 2) -> int:
    return sum(int(x) for x in lens_host) * num_kv_heads * head_dim * elem_bytes * 2


# ---- dense float32 references (small problems only; used by --check) -----------------------------
def ref_attention(q, k, v, seqlens, vis_fn, sm_scale=SM_SCALE):
    """Dense float32 attention per sequence. vis_fn(b, L) -> bool [H_q, L, L] visibility (block
    mask x causal). Rows with no visible key give 0. Differentiable w.r.t. q, k, v."""
    hq, hk = q.shape[1], k.shape[1]
    g = hq // hk
    outs = []
    off = 0
    for b, L in enumerate(seqlens):
        qs = q[off:off + L].float().transpose(0, 1)  # [H, L, D]
        ks = k[off:off + L].float().transpose(0, 1).repeat_interleave(g, 0)
        vs = v[off:off + L].float().transpose(0, 1).repeat_interleave(g, 0)
        s = torch.matmul(qs, ks.transpose(1, 2)) * sm_scale
        vis = vis_fn(b, L)
        s = s.masked_fill(~vis, float("-inf"))
        mx = s.amax(-1, keepdim=True)
        mx = torch.where(torch.isfinite(mx), mx, torch.zeros_like(mx))
        p = torch.exp(s - mx)
        den = p.sum(-1, keepdim=True)
        p = p / torch.where(den > 0, den, torch.ones_like(den))
        outs.append(torch.matmul(p, vs).transpose(0, 1))
        off += L
    return torch.cat(outs, 0)


def vis_from_2d(m2d, block=BLOCK, g=1):
    """vis_fn for a 2D block mask [B, H_mask, nb, nk]; H_mask = H_q, or H_kv with g = H_q // H_kv."""
    def fn(b, L):
        t = torch.arange(L, device=m2d.device)
        mb = m2d[b]
        if g > 1:
            mb = mb.repeat_interleave(g, 0)
        vis = mb[:, (t // block)[:, None], (t // block)[None, :]]
        return vis & (t[None, :] <= t[:, None])[None]
    return fn


def vis_from_1d(m1d, block=BLOCK, g=1):
    def fn(b, L):
        t = torch.arange(L, device=m1d.device)
        mb = m1d[b]
        if g > 1:
            mb = mb.repeat_interleave(g, 0)
        vis = mb[:, :L][:, :, (t // block)]  # [H, L(rows), L(keys)]
        return vis & (t[None, :] <= t[:, None])[None]
    return fn


def ref_pooling(q, k, seqlens, block=BLOCK, sm_scale=SM_SCALE):
    """Per sequence: P = causal softmax probs [H_q, L, L] (float32); returns
    (pooled_2d list of [H_q, nb_b, nb_b] row-normalised, pooled_1d list of [H_q, L, nb_b],
     raw 2D block max list (before normalisation), for the gqa_reduce variant)."""
    hq, hk = q.shape[1], k.shape[1]
    g = hq // hk
    p2, p1, raw2 = [], [], []
    off = 0
    for L in seqlens:
        qs = q[off:off + L].float().transpose(0, 1)
        ks = k[off:off + L].float().transpose(0, 1).repeat_interleave(g, 0)
        s = torch.matmul(qs, ks.transpose(1, 2)) * sm_scale
        t = torch.arange(L, device=q.device)
        s = s.masked_fill(~(t[None, :] <= t[:, None])[None], float("-inf"))
        p = torch.softmax(s, -1)
        nb = cdiv(L, block)
        pad = nb * block - L
        pp = torch.nn.functional.pad(p, (0, pad, 0, pad))  # zeros never win a max of probs >= 0
        one = pp.view(hq, nb * block, nb, block).amax(-1)[:, :L]  # [H, L, nb]
        two = pp.view(hq, nb, block, nb, block).amax(dim=(2, 4))
        raw2.append(two)
        p2.append(two / (two.sum(-1, keepdim=True) + 1e-6))
        p1.append(one)
        off += L
    return p2, p1, raw2


def ref_decode(q, k_cache, v_cache, lens_host, mask, block, sm_scale=SM_SCALE):
    """Dense float32 decode over the valid slots of the kept blocks. q [B, H_q, D] -> [B, H_q, D]."""
    B, hq, D = q.shape
    hk = k_cache.shape[2]
    g = hq // hk
    out = torch.zeros(B, hq, D, dtype=torch.float32, device=q.device)
    for b in range(B):
        L = int(lens_host[b])
        slot = torch.arange(L, device=q.device)
        vis = mask[b][:, slot // block]  # [H_kv, L]
        vis = vis.repeat_interleave(g, 0)  # [H_q, L]
        ks = k_cache[b, :L].float().transpose(0, 1).repeat_interleave(g, 0)  # [H_q, L, D]
        vs = v_cache[b, :L].float().transpose(0, 1).repeat_interleave(g, 0)
        s = torch.einsum("hd,hld->hl", q[b].float(), ks) * sm_scale
        s = s.masked_fill(~vis, float("-inf"))
        p = torch.softmax(s, -1)
        p = torch.nan_to_num(p, nan=0.0)
        out[b] = torch.einsum("hl,hld->hd", p, vs)
    return out


def rel_err(a: torch.Tensor, ref: torch.Tensor) -> float:
    """max |a - ref| / max(max |ref|, 1e-6), in float32; inf if a has NaN/inf."""
    a = a.float()
    ref = ref.float()
    if not torch.isfinite(a).all():
        return float("inf")
    den = max(float(ref.abs().max().item()) if ref.numel() else 0.0, 1e-6)
    return float((a - ref).abs().max().item()) / den if a.numel() else 0.0
