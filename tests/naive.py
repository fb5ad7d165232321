"""Independent, deliberately simple reference for the seer_attn tests.

Everything here is dense per sequence: the block mask is expanded to a [H, sq, sk] boolean token
mask, causal masking (bottom-right aligned) is a second boolean mask, and the softmax is the plain
torch.softmax with explicit handling of rows that see no key (out 0, lse -inf, zero gradients).
Gradients come from torch.autograd on the same computation. Nothing here shares code with the
package (seer_attn/reference.py), so a common mistake cannot hide in both.

`dtype` selects the arithmetic: torch.float64 gives the "truth" X64; the input dtype
(float16/bfloat16) gives X_lp, the same computation done as PyTorch would do it in low precision,
which the accuracy rule uses as the yardstick (FlashAttention's test rule).
"""
from __future__ import annotations

import math

import torch

__all__ = [
    "expand_block_mask_2d",
    "expand_block_mask_1d",
    "causal_mask",
    "attention",
    "pooling",
    "decode",
]


def _cu(cu) -> list[int]:
    return [int(x) for x in torch.as_tensor(cu).cpu().tolist()]


def expand_block_mask_2d(mask_b: torch.Tensor, sq: int, sk: int, bq: int, bk: int) -> torch.Tensor:
    """mask_b [H_mask, >=ceil(sq/bq), >=ceil(sk/bk)] (any dtype, nonzero = keep) -> bool [H_mask, sq, sk]."""
    nq, nk = -(-sq // bq), -(-sk // bk)
    m = mask_b[:, :nq, :nk] != 0
    m = m.repeat_interleave(bq, dim=1).repeat_interleave(bk, dim=2)
    return m[:, :sq, :sk]


def expand_block_mask_1d(mask_b: torch.Tensor, sq: int, sk: int, bk: int) -> torch.Tensor:
    """mask_b [H_mask, >=sq, >=ceil(sk/bk)] -> bool [H_mask, sq, sk]."""
    nk = -(-sk // bk)
    m = mask_b[:, :sq, :nk] != 0
    return m.repeat_interleave(bk, dim=2)[:, :, :sk]


def causal_mask(sq: int, sk: int, device="cpu") -> torch.Tensor:
    """Bottom-right aligned: key j visible to query i iff j <= i + sk - sq.  bool [sq, sk]."""
    i = torch.arange(sq, device=device).unsqueeze(1)
    j = torch.arange(sk, device=device).unsqueeze(0)
    return j <= i + (sk - sq)


def _masked_softmax(s: torch.Tensor, visible: torch.Tensor, lse_dtype):
    """s [..., n] scores, visible bool broadcastable. Returns (p, lse) with empty rows -> p 0, lse -inf.

    Written so that no NaN is ever produced, in the forward or in autograd's backward.
    """
    empty = ~visible.any(dim=-1, keepdim=True)
    s_m = s.masked_fill(~visible, float("-inf")).masked_fill(empty, 0.0)
    p = torch.softmax(s_m, dim=-1).masked_fill(empty, 0.0)
    lse = torch.logsumexp(s_m.to(lse_dtype), dim=-1).masked_fill(empty.squeeze(-1), float("-inf"))
    return p, lse


def attention(q, k, v, cu_seqlens_q, cu_seqlens_k, block_mask, *, kind: str, block_size_q: int = 1,
              block_size_k: int, sm_scale: float | None = None, causal: bool = True,
              dtype=torch.float64, dout=None, dlse=None):
    """Naive varlen block-sparse attention (2D: kind='2d', 1D per-token: kind='1d').

    q [T_q, H_q, D], k/v [T_k, H_kv, D]; block_mask [B, H_mask, rows, cols] (see SPEC).
    Computation in `dtype` (inputs are cast to it); the lse is computed in float64 for the float64
    run, and in float32 from the low-precision scores otherwise (the op's lse is a float32 output,
    so this is the honest low-precision yardstick for it; it is stricter than a bf16 logsumexp).
    Returns dict with out [T_q, H_q, D], lse [H_q, T_q], row_empty [T_q, H_q] (row sees no key),
    key_unused [T_k, H_kv] (no query of the group sees the key) and, if dout is given, dq, dk, dv
    (loss = sum(out * dout) + sum(lse * dlse) over rows with a finite lse).
    All results are on q's device in `dtype` (lse in float64/float32).
    """
    assert kind in ("2d", "1d")
    lse_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    Tq, Hq, D = q.shape
    Hkv = k.shape[1]
    assert Hq % Hkv == 0
    group = Hq // Hkv
    Hm = block_mask.shape[1]
    assert Hq % Hm == 0
    mgroup = Hq // Hm
    scale = 1.0 / math.sqrt(D) if sm_scale is None else sm_scale
    want_grad = dout is not None

    dev = q.device  # runs where the inputs live (float64 on a GPU is fast and exact enough)
    qd = q.detach().to(dtype).requires_grad_(want_grad)
    kd = k.detach().to(dtype).requires_grad_(want_grad)
    vd = v.detach().to(dtype).requires_grad_(want_grad)
    kv_head = torch.arange(Hq, device=dev) // group
    m_head = torch.arange(Hq, device=dev) // mgroup
    cq, ck = _cu(cu_seqlens_q), _cu(cu_seqlens_k)
    B = len(cq) - 1

    pieces_o, pieces_l = [], []   # assembled with torch.cat so autograd sees one graph
    pos = 0
    # structural zeros: query rows that see no key (out/dq exactly 0, lse -inf) and keys that no
    # query of their GQA group sees (dk/dv exactly 0)
    row_empty = torch.ones(Tq, Hq, dtype=torch.bool, device=dev)
    key_unused = torch.ones(k.shape[0], Hkv, dtype=torch.bool, device=dev)

    def gap(n):
        pieces_o.append(torch.zeros(n, Hq, D, dtype=dtype, device=dev))
        pieces_l.append(torch.full((Hq, n), float("-inf"), dtype=lse_dtype, device=dev))

    for b in range(B):
        q0, q1, k0, k1 = cq[b], cq[b + 1], ck[b], ck[b + 1]
        sq, sk = q1 - q0, k1 - k0
        if q0 > pos:
            gap(q0 - pos)
        pos = max(pos, q1)
        if sq <= 0:
            continue
        qs = qd[q0:q1].transpose(0, 1)                            # [Hq, sq, D]
        ks = kd[k0:k1].index_select(1, kv_head).transpose(0, 1)   # [Hq, sk, D]  (GQA by index)
        vs = vd[k0:k1].index_select(1, kv_head).transpose(0, 1)
        if kind == "2d":
            tok = expand_block_mask_2d(block_mask[b], sq, sk, block_size_q, block_size_k)
        else:
            tok = expand_block_mask_1d(block_mask[b], sq, sk, block_size_k)
        visible = tok[m_head]                                     # [Hq, sq, sk]
        if causal:
            visible = visible & causal_mask(sq, sk, dev)
        row_empty[q0:q1] = ~visible.any(-1).transpose(0, 1)
        key_unused[k0:k1] = ~visible.any(1).reshape(Hkv, group, sk).any(1).transpose(0, 1)
        s = torch.matmul(qs, ks.transpose(1, 2)) * scale
        p, l = _masked_softmax(s, visible, lse_dtype)
        o = torch.matmul(p, vs)                                   # [Hq, sq, D]
        pieces_o.append(o.transpose(0, 1))
        pieces_l.append(l)
    if Tq > pos:
        gap(Tq - pos)
    out_t = torch.cat(pieces_o, 0) if pieces_o else torch.zeros(0, Hq, D, dtype=dtype, device=dev)
    lse_t = torch.cat(pieces_l, 1) if pieces_l else torch.zeros(Hq, 0, dtype=lse_dtype, device=dev)

    res = {"out": out_t.detach(), "lse": lse_t.detach(), "row_empty": row_empty, "key_unused": key_unused}
    if want_grad:
        loss = (out_t * dout.detach().to(dev, dtype)).sum()
        if dlse is not None:
            fin = torch.isfinite(lse_t)
            loss = loss + (torch.where(fin, lse_t, 0.0) * dlse.detach().to(dev, lse_dtype)).sum()
        if loss.requires_grad:
            dq, dk, dv = torch.autograd.grad(loss, (qd, kd, vd), allow_unused=True)
        else:
            dq = dk = dv = None
        res["dq"] = torch.zeros_like(qd) if dq is None else dq
        res["dk"] = torch.zeros_like(kd) if dk is None else dk
        res["dv"] = torch.zeros_like(vd) if dv is None else dv
    return res


def pooling(q, k, cu_seqlens, max_seqlen, *, block_size: int, sm_scale: float | None = None,
            causal: bool = True, gqa_reduce: bool = False, dtype=torch.float64):
    """Naive attention pooling (SPEC section 3).

    Returns (pooled_2d [B, H_out, nb, nb] in dtype, pooled_1d packed [H_out, T, nb] in dtype,
    list of per-sequence 1D maps [H_out, t_b, ceil(t_b/B)]).  nb = ceil(max_seqlen / block_size).
    """
    T, Hq, D = q.shape
    Hkv = k.shape[1]
    group = Hq // Hkv
    scale = 1.0 / math.sqrt(D) if sm_scale is None else sm_scale
    Bs = block_size
    nb = -(-max_seqlen // Bs)
    cu = _cu(cu_seqlens)
    B = len(cu) - 1
    Hout = Hkv if gqa_reduce else Hq
    dev = q.device
    qd = q.detach().to(dtype)
    kd = k.detach().to(dtype)
    kv_head = torch.arange(Hq, device=dev) // group
    p2d = torch.zeros(B, Hout, nb, nb, dtype=dtype, device=dev)
    p1d = torch.zeros(Hout, T, nb, dtype=dtype, device=dev)
    lst = []
    for b in range(B):
        s0, s1 = cu[b], cu[b + 1]
        t = s1 - s0
        nbt = -(-t // Bs)
        if t == 0:
            lst.append(torch.zeros(Hout, 0, 0, dtype=dtype, device=dev))
            continue
        qs = qd[s0:s1].transpose(0, 1)
        ks = kd[s0:s1].index_select(1, kv_head).transpose(0, 1)
        s = torch.matmul(qs, ks.transpose(1, 2)) * scale    # [Hq, t, t]
        vis = causal_mask(t, t, dev) if causal else torch.ones(t, t, dtype=torch.bool, device=dev)
        p, _ = _masked_softmax(s, vis.expand(Hq, t, t), torch.float64)
        pad = nbt * Bs - t
        pp = torch.nn.functional.pad(p, (0, pad, 0, pad))   # zeros: P >= 0 so max is unaffected
        m1 = pp[:, :t, :].reshape(Hq, t, nbt, Bs).amax(-1)  # [Hq, t, nbt]
        m2 = pp.reshape(Hq, nbt, Bs, nbt, Bs).amax(dim=(2, 4))  # [Hq, nbt, nbt]
        if gqa_reduce:
            m1 = m1.reshape(Hkv, group, t, nbt).amax(1)
            m2 = m2.reshape(Hkv, group, nbt, nbt).amax(1)
            m1 = m1 / (m1.sum(-1, keepdim=True) + 1e-6)
        m2 = m2 / (m2.sum(-1, keepdim=True) + 1e-6)
        p2d[b, :, :nbt, :nbt] = m2
        p1d[:, s0:s1, :nbt] = m1
        lst.append(m1)
    return p2d, p1d, lst


def decode(q, k_cache, v_cache, cache_seqlens, *, block_mask=None, block_indices=None,
           block_size: int, sm_scale: float | None = None, left_pad: bool = False,
           first_block_unmasked: bool = False, dtype=torch.float64):
    """Naive block-sparse decode (SPEC section 4).

    q [B, H_q, D] (or [B, 1, H_q, D]); caches [B, S_max, H_kv, D]; cache_seqlens [B].
    Selection: block_mask [B, H_kv, >=nb] (nonzero keep) or block_indices [B, H_kv, K] (-1 padded,
    entries outside [0, nb) ignored); nb = ceil(S_max / block_size).  Valid slots: right pad
    [0, len), left pad [S_max - len, S_max).  first_block_unmasked: the block holding the first
    valid slot is always attended (if len > 0).  Returns (out [B, H_q, D] in dtype, lse [B, H_q]).
    """
    assert (block_mask is None) != (block_indices is None)
    if q.dim() == 4:
        q = q.reshape(q.shape[0], q.shape[2], q.shape[3])
    B, Hq, D = q.shape
    S = k_cache.shape[1]
    Hkv = k_cache.shape[2]
    group = Hq // Hkv
    scale = 1.0 / math.sqrt(D) if sm_scale is None else sm_scale
    lse_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    nb = -(-S // block_size)
    lens = _cu(cache_seqlens)
    dev = q.device
    if block_mask is not None:
        sel = block_mask[:, :, :nb].cpu() != 0
    else:
        sel = torch.zeros(B, Hkv, nb, dtype=torch.bool)
        idx = block_indices.cpu().long()
        for b in range(B):
            for h in range(Hkv):
                for n in idx[b, h].tolist():
                    if 0 <= n < nb:
                        sel[b, h, n] = True
    sel = sel.to(dev)
    qd = q.detach().to(dtype)
    kd = k_cache.detach().to(dtype)
    vd = v_cache.detach().to(dtype)
    kv_head = torch.arange(Hq, device=dev) // group
    out = torch.zeros(B, Hq, D, dtype=dtype, device=dev)
    lse = torch.full((B, Hq), float("-inf"), dtype=lse_dtype, device=dev)
    slot = torch.arange(S, device=dev)
    for b in range(B):
        L = lens[b]
        first = S - L if left_pad else 0
        valid = (slot >= first) & (slot < first + L)
        sb = sel[b].clone()
        if first_block_unmasked and L > 0:
            sb[:, first // block_size] = True
        tok = sb.repeat_interleave(block_size, dim=1)[:, :S] & valid   # [Hkv, S]
        vis = tok[kv_head]                                               # [Hq, S]
        kb = kd[b].index_select(1, kv_head).transpose(0, 1)              # [Hq, S, D]
        vb = vd[b].index_select(1, kv_head).transpose(0, 1)
        s = torch.matmul(kb, qd[b].unsqueeze(-1)).squeeze(-1) * scale    # [Hq, S]
        p, l = _masked_softmax(s, vis, lse_dtype)
        out[b] = torch.matmul(p.unsqueeze(1).to(dtype), vb).squeeze(1)
        lse[b] = l
    return out, lse
