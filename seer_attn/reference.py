"""Pure-PyTorch reference implementation of every seer_attn op (the op contract, in executable form).

One function per op of csrc/ops.cpp, with the op's exact name, argument names, order and outputs.
seer_attn/ops.py registers them as the ops' CPU implementation, and as the CUDA implementation of any
op whose CUDA kernel is not part of the build, so they work on any device (the inputs' device).

Semantics (SPEC.md is authoritative):

* Packed varlen layout: q [T_q, H_q, D], k/v [T_k, H_kv, D]. Sequence b owns query rows
  cu_seqlens_q[b]:cu_seqlens_q[b+1] (sq of them) and key rows cu_seqlens_k[b]:cu_seqlens_k[b+1] (sk).
  Query head h reads kv head h // G (G = H_q // H_kv) and mask head h // (H_q // H_mask).
* Visibility of key j to query i (both sequence-local):
      2D mask:  block_mask[b, hm, i // B_q, j // B_k] != 0
      1D mask:  block_mask[b, hm, i,        j // B_k] != 0
  and, when causal, j <= i + sk - sq (bottom-right aligned).
* Scores s = sm_scale * q.k over visible keys; out = softmax(s) v; lse = logsumexp(s) (natural log).
  A row with no visible key gets out = 0, lse = -inf and contributes no gradient. No finite sentinels.
* Backward (P = exp(s - lse) recomputed from the GIVEN lse, as the kernels do):
      dP = dout v^T,  D_i = sum(dout_i * out_i) - dlse_i,  dS = P * (dP - D_i),
      dq = sm_scale * dS k,  dk = sm_scale * dS^T q,  dv = P^T dout   (dk, dv summed over the GQA group).
* Rows / tokens outside every sequence (cu_seqlens[-1] < T) get zeros (and lse = -inf).

Implementation notes: everything is computed in float32 (inputs upcast) and cast back at the end
(out/dq/dk/dv/pooled_1d to the input dtype; lse and pooled_2d stay float32). Inputs are never
modified and outputs are fresh tensors. Work is done per sequence, per tile of heads (whole GQA
groups of consecutive kv heads where possible) and per chunk of query rows, so that score-sized
temporaries stay below ``_MAX_TEMP_ELEMS`` elements: nothing of size T x T is ever built. (One
kv head's keys of one sequence, upcast to float32, are copied per tile: linear in the sequence
length.) ``deterministic`` and ``num_splits`` are accepted and ignored: the reference is deterministic
and does not split.
"""
import math

import torch
import torch.nn.functional as F

from . import checks

__all__ = [
    "block_sparse_2d_fwd",
    "block_sparse_2d_bwd",
    "block_sparse_1d_fwd",
    "block_sparse_1d_bwd",
    "attn_pooling",
    "block_sparse_decode",
]

# Upper bound (elements) on score-sized temporaries ([heads, rows, keys] float32 chunks). Module-level
# so that tests can lower it to exercise the chunking paths.
_MAX_TEMP_ELEMS = 1 << 24

_NEG_INF = float("-inf")


# ===================================================================================================
# Tiling helpers
# ===================================================================================================
def _head_tiles(h_kv, group, n_keys, head_dim):
    """Split the heads of one sequence into tiles that bound the temporaries.

    Yields (hk0, hk1, g_ranges): a tile covers kv heads [hk0, hk1) and, for each of them, the q heads
    hk * group + g for g in the ranges of g_ranges. Usually a tile holds whole GQA groups
    (g_ranges == [(0, group)]); only when one group's scores for a single query row would not fit is the
    group split (then hk1 == hk0 + 1 and g_ranges lists the sub-ranges, all of equal size but the last).
    """
    n_keys = max(n_keys, 1)
    per_kv_head = max(group * n_keys, n_keys * head_dim)  # scores of one row / the upcast keys
    if per_kv_head <= _MAX_TEMP_ELEMS:
        kv_per_tile = max(1, min(h_kv, _MAX_TEMP_ELEMS // per_kv_head))
        for hk0 in range(0, h_kv, kv_per_tile):
            yield hk0, min(h_kv, hk0 + kv_per_tile), [(0, group)]
    else:
        g_per_tile = max(1, _MAX_TEMP_ELEMS // n_keys)
        g_ranges = [(g0, min(group, g0 + g_per_tile)) for g0 in range(0, group, g_per_tile)]
        for hk in range(h_kv):
            yield hk, hk + 1, g_ranges


def _rows_per_chunk(n_heads, n_keys, n_rows, multiple=1):
    """Query rows per chunk so that n_heads x rows x n_keys stays below the budget (at least `multiple`,
    and a multiple of it)."""
    rows = _MAX_TEMP_ELEMS // max(n_heads * max(n_keys, 1), 1)
    rows = max(multiple, rows // multiple * multiple)
    return max(1, min(rows, n_rows))


def _sequence_bounds(cu_seqlens):
    """Host list of (start, end) per sequence (reads cu_seqlens: a device sync on CUDA)."""
    cu = cu_seqlens.tolist()
    return [(cu[b], cu[b + 1]) for b in range(len(cu) - 1)]


def _q_tile(x, t0, t1, hk0, hk1, g0, g1, group):
    """Rows t0:t1 of a packed [T, H_q, D] tensor, heads (hk, g) of the tile, as contiguous float32
    [n, g, rows, D] (a copy for fp16/bf16 inputs; only read afterwards)."""
    x = x[t0:t1].unflatten(1, (-1, group))[:, hk0:hk1, g0:g1]  # [rows, n, g, D] (a view)
    return x.permute(1, 2, 0, 3).to(torch.float32, memory_format=torch.contiguous_format)


def _kv_tile(x, t0, t1, hk0, hk1):
    """Rows t0:t1 of a packed [T, H_kv, D] tensor, kv heads [hk0, hk1), as contiguous float32
    [n, rows, D] (a copy for fp16/bf16 inputs; only read afterwards)."""
    return x[t0:t1, hk0:hk1].permute(1, 0, 2).to(torch.float32, memory_format=torch.contiguous_format)


def _group_matmul(a, b):
    """Per kv head matmul shared by its q heads: a [n, g, r, x] @ b [n, x, y] -> [n, g, r, y].

    The group's q heads are folded into the rows of one bmm per kv head (instead of broadcasting b over
    g, which would materialise g copies of it)."""
    n, g, r, x = a.shape
    return torch.bmm(a.reshape(n, g * r, x), b).view(n, g, r, b.shape[-1])


def _group_matmul_t(a, b):
    """Transposed product summed over the group: sum over g, r of a[n, g, r, :]^T b[n, g, r, :]
    -> [n, y_a, y_b] (a [n, g, r, y_a], b [n, g, r, y_b]); used for dk and dv."""
    n, g, r, y = a.shape
    return torch.bmm(a.reshape(n, g * r, y).transpose(1, 2), b.reshape(n, g * r, b.shape[-1]))


def _softmax_rows(s):
    """Row softmax of float32 scores s [..., n_keys] where hidden keys are -inf.

    Returns (p, lse): p = exp(s - lse) (all zeros for a row with no visible key) and lse [...]
    (-inf for such a row). Never NaN: the row max of an all -inf row is replaced by 0 before
    subtracting. s is consumed (overwritten in place)."""
    row_max = s.amax(dim=-1, keepdim=True)
    row_max = torch.where(row_max == _NEG_INF, torch.zeros_like(row_max), row_max)
    p = s.sub_(row_max).exp_()  # exp(-inf) = 0 for hidden keys
    row_sum = p.sum(dim=-1, keepdim=True)
    lse = (row_max + row_sum.log()).squeeze(-1)  # log(0) = -inf for empty rows
    p = p.div_(torch.where(row_sum > 0, row_sum, torch.ones_like(row_sum)))
    return p, lse


# ===================================================================================================
# 1 + 2. Block-sparse varlen attention (shared by the 2D and 1D masks)
# ===================================================================================================
# A 2D mask is a 1D mask whose rows repeat B_q times: query row i reads mask row i // row_div, with
# row_div = B_q for a 2D mask and 1 for a 1D (per-token) mask.
def _mask_head_index(h_q, h_mask, group, hk0, hk1, g0, g1, device):
    """Mask head of every q head of the tile, as an index tensor [n, g] (or [n, 1] when the mask head
    only depends on the kv head, so the mask is broadcast over the group instead of copied)."""
    heads_per_mask = h_q // h_mask
    hk = torch.arange(hk0, hk1, device=device)
    if heads_per_mask % group == 0:  # H_mask divides H_kv (H_mask = H_kv or 1): shared by the group
        return (hk * group // heads_per_mask).unsqueeze(1)
    heads = hk.unsqueeze(1) * group + torch.arange(g0, g1, device=device).unsqueeze(0)
    return heads // heads_per_mask


def _visible(block_mask_b, mask_heads, i0, i1, row_div, sq, sk, block_size_k, causal):
    """Boolean visibility [n, g or 1, rows, sk] of the sequence's keys for query rows i0:i1.

    block_mask_b: the sequence's mask [H_mask, rows, key_blocks]; mask_heads: [n, g or 1] index."""
    device = block_mask_b.device
    n_key_blocks = (sk + block_size_k - 1) // block_size_k
    mask_rows = torch.arange(i0, i1, device=device) // row_div
    m = block_mask_b[:, :, :n_key_blocks].index_select(1, mask_rows) != 0  # [H_mask, rows, kb]
    m = m[mask_heads]  # [n, g, rows, kb]
    key_block = torch.arange(sk, device=device) // block_size_k
    vis = m.index_select(-1, key_block)  # [n, g, rows, sk]
    if causal:
        i = torch.arange(i0, i1, device=device).unsqueeze(1)
        j = torch.arange(sk, device=device).unsqueeze(0)
        vis = vis & (j <= i + (sk - sq))  # bottom-right aligned causal mask [rows, sk]
    return vis


def _scores(q_t, k_t, sm_scale, vis):
    """sm_scale * q k^T with hidden keys at -inf: q_t [n, g, rows, D], k_t [n, sk, D] -> [n, g, rows, sk]
    float32 (vis broadcasts to that shape)."""
    s = _group_matmul(q_t, k_t.transpose(1, 2)).mul_(sm_scale)
    return s.masked_fill_(~vis, _NEG_INF)


def _tiles(q, k, v, cu_seqlens_q, cu_seqlens_k, block_mask, row_div, block_size_k, causal):
    """The walk both directions share: per sequence, per (kv-head, q-head) tile and per row chunk, yields
    (k0, k1, hk0, hk1, g0, g1, t0, t1, k_t, v_t, vis) - key range, head ranges, packed query rows
    [t0, t1), the K / V tiles [n, sk, D] and the visibility [n|1, g|1, r, sk]. Sequences with no rows
    or no keys are skipped (their rows keep out = 0, lse = -inf, zero gradients)."""
    h_q, d = q.shape[1], q.shape[2]
    h_kv = k.shape[1]
    group = h_q // h_kv
    seqs = zip(_sequence_bounds(cu_seqlens_q), _sequence_bounds(cu_seqlens_k))
    for b, ((q0, q1), (k0, k1)) in enumerate(seqs):
        sq, sk = q1 - q0, k1 - k0
        if sq == 0 or sk == 0:
            continue
        for hk0, hk1, g_ranges in _head_tiles(h_kv, group, sk, d):
            k_t = _kv_tile(k, k0, k1, hk0, hk1)  # [n, sk, D]
            v_t = _kv_tile(v, k0, k1, hk0, hk1)
            for g0, g1 in g_ranges:
                mask_heads = _mask_head_index(h_q, block_mask.shape[1], group, hk0, hk1, g0, g1,
                                              block_mask.device)
                rows = _rows_per_chunk((hk1 - hk0) * (g1 - g0), sk, sq)
                for i0 in range(0, sq, rows):
                    i1 = min(sq, i0 + rows)
                    vis = _visible(block_mask[b], mask_heads, i0, i1, row_div, sq, sk, block_size_k, causal)
                    yield k0, k1, hk0, hk1, g0, g1, q0 + i0, q0 + i1, k_t, v_t, vis


def _attention_fwd(q, k, v, cu_seqlens_q, cu_seqlens_k, block_mask, row_div, block_size_k, sm_scale,
                   causal):
    """Forward of both mask kinds. Returns (out [T_q, H_q, D] q.dtype, lse [H_q, T_q] float32)."""
    t_q, h_q, d = q.shape
    h_kv = k.shape[1]
    group = h_q // h_kv
    out = torch.zeros((t_q, h_q, d), dtype=q.dtype, device=q.device)
    lse = torch.full((h_q, t_q), _NEG_INF, dtype=torch.float32, device=q.device)
    out_view = out.view(t_q, h_kv, group, d)  # [T, n, g, D]
    lse_view = lse.view(h_kv, group, t_q)  # [n, g, T]
    for _, _, hk0, hk1, g0, g1, t0, t1, k_t, v_t, vis in _tiles(q, k, v, cu_seqlens_q, cu_seqlens_k, block_mask,
                                                              row_div, block_size_k, causal):
        q_t = _q_tile(q, t0, t1, hk0, hk1, g0, g1, group)  # [n, g, r, D]
        p, lse_t = _softmax_rows(_scores(q_t, k_t, sm_scale, vis))
        o_t = _group_matmul(p, v_t)  # [n, g, r, D]; zero rows stay zero
        out_view[t0:t1, hk0:hk1, g0:g1] = o_t.permute(2, 0, 1, 3).to(q.dtype)
        lse_view[hk0:hk1, g0:g1, t0:t1] = lse_t
    return out, lse


def _attention_bwd(dout, q, k, v, out, lse, dlse, cu_seqlens_q, cu_seqlens_k, block_mask, row_div,
                   block_size_k, sm_scale, causal):
    """Backward of both mask kinds. Returns (dq, dk, dv) shaped and typed like (q, k, v)."""
    t_q, h_q, d = q.shape
    t_k, h_kv = k.shape[0], k.shape[1]
    group = h_q // h_kv
    dq = torch.zeros((t_q, h_q, d), dtype=q.dtype, device=q.device)
    dq_view = dq.view(t_q, h_kv, group, d)
    # dk / dv receive contributions from every q head of a group (and every row chunk): float32 sums.
    dk_acc = torch.zeros((t_k, h_kv, d), dtype=torch.float32, device=q.device)
    dv_acc = torch.zeros((t_k, h_kv, d), dtype=torch.float32, device=q.device)
    lse_view = lse.unflatten(0, (h_kv, group))  # [n, g, T_q]
    dlse_view = None if dlse is None else dlse.unflatten(0, (h_kv, group))
    for k0, k1, hk0, hk1, g0, g1, t0, t1, k_t, v_t, vis in _tiles(q, k, v, cu_seqlens_q, cu_seqlens_k, block_mask,
                                                                row_div, block_size_k, causal):
        q_t = _q_tile(q, t0, t1, hk0, hk1, g0, g1, group)  # [n, g, r, D]
        do_t = _q_tile(dout, t0, t1, hk0, hk1, g0, g1, group)
        o_t = _q_tile(out, t0, t1, hk0, hk1, g0, g1, group)
        lse_t = lse_view[hk0:hk1, g0:g1, t0:t1].float()  # [n, g, r]

        # P = exp(s - lse) from the given lse; a row with lse = -inf has P = 0.
        s = _scores(q_t, k_t, sm_scale, vis)
        row_ok = (lse_t != _NEG_INF).unsqueeze(-1)
        lse_safe = torch.where(row_ok, lse_t.unsqueeze(-1), torch.zeros_like(lse_t).unsqueeze(-1))
        p = s.sub_(lse_safe).exp_().masked_fill_(~row_ok, 0.0)

        # D_i = rowsum(dout * out) - dlse_i; dS = P * (dP - D_i).
        d_i = (do_t * o_t).sum(dim=-1)  # [n, g, r]
        if dlse_view is not None:
            d_i = d_i - dlse_view[hk0:hk1, g0:g1, t0:t1].float()
        d_i = torch.where(row_ok.squeeze(-1), d_i, torch.zeros_like(d_i))
        dp = _group_matmul(do_t, v_t.transpose(1, 2))  # [n, g, r, sk]
        ds = dp.sub_(d_i.unsqueeze(-1)).mul_(p)

        dq_t = _group_matmul(ds, k_t).mul_(sm_scale)  # [n, g, r, D]
        dq_view[t0:t1, hk0:hk1, g0:g1] = dq_t.permute(2, 0, 1, 3).to(q.dtype)
        # Sum over the group's q heads (g) and the chunk's rows (r) in one product.
        dk_acc[k0:k1, hk0:hk1] += _group_matmul_t(ds, q_t).mul_(sm_scale).permute(1, 0, 2)
        dv_acc[k0:k1, hk0:hk1] += _group_matmul_t(p, do_t).permute(1, 0, 2)
    return dq, dk_acc.to(k.dtype), dv_acc.to(v.dtype)


# ---- 1. 2D block mask --------------------------------------------------------------------------------
def block_sparse_2d_fwd(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, block_mask,
                        block_size_q, block_size_k, sm_scale, causal, deterministic=False):
    """Varlen attention with a 2D block mask [B, H_mask, >= ceil(max_seqlen_q/B_q), >= ceil(max_seqlen_k/B_k)].

    Query i of sequence b sees key j iff block_mask[b, hm, i // B_q, j // B_k] != 0 (and j <= i + sk - sq
    when causal). Returns out [T_q, H_q, D] (q.dtype) and lse [H_q, T_q] (float32)."""
    op = "block_sparse_2d_fwd"
    checks.check_attention(op, q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, block_mask,
                           block_size_q, block_size_k, sm_scale, "2d")
    checks.check_data_attention(op, q, k, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k)
    return _attention_fwd(q, k, v, cu_seqlens_q, cu_seqlens_k, block_mask, block_size_q, block_size_k,
                          sm_scale, causal)


def block_sparse_2d_bwd(dout, q, k, v, out, lse, dlse, cu_seqlens_q, cu_seqlens_k, max_seqlen_q,
                        max_seqlen_k, block_mask, block_size_q, block_size_k, sm_scale, causal, deterministic):
    """Backward of block_sparse_2d_fwd: returns dq [T_q, H_q, D], dk, dv [T_k, H_kv, D] (group-reduced).
    dlse (None or float32 [H_q, T_q]) is the gradient flowing into lse."""
    op = "block_sparse_2d_bwd"
    checks.check_attention_bwd(op, dout, q, k, v, out, lse, dlse, cu_seqlens_q, cu_seqlens_k, max_seqlen_q,
                               max_seqlen_k, block_mask, block_size_q, block_size_k, sm_scale, "2d")
    checks.check_data_attention(op, q, k, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k)
    return _attention_bwd(dout, q, k, v, out, lse, dlse, cu_seqlens_q, cu_seqlens_k, block_mask,
                          block_size_q, block_size_k, sm_scale, causal)


# ---- 2. 1D (per-token) block mask ----------------------------------------------------------------
def block_sparse_1d_fwd(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, block_mask,
                        block_size_k, sm_scale, causal, deterministic=False):
    """Varlen attention with a 1D (per-token) mask [B, H_mask, >= max_seqlen_q, >= ceil(max_seqlen_k/B_k)].

    Query i of sequence b sees key j iff block_mask[b, hm, i, j // B_k] != 0 (and j <= i + sk - sq when
    causal). Returns out [T_q, H_q, D] (q.dtype) and lse [H_q, T_q] (float32)."""
    op = "block_sparse_1d_fwd"
    checks.check_attention(op, q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, block_mask,
                           1, block_size_k, sm_scale, "1d")
    checks.check_data_attention(op, q, k, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k)
    return _attention_fwd(q, k, v, cu_seqlens_q, cu_seqlens_k, block_mask, 1, block_size_k, sm_scale, causal)


def block_sparse_1d_bwd(dout, q, k, v, out, lse, dlse, cu_seqlens_q, cu_seqlens_k, max_seqlen_q,
                        max_seqlen_k, block_mask, block_size_k, sm_scale, causal, deterministic):
    """Backward of block_sparse_1d_fwd (see block_sparse_2d_bwd)."""
    op = "block_sparse_1d_bwd"
    checks.check_attention_bwd(op, dout, q, k, v, out, lse, dlse, cu_seqlens_q, cu_seqlens_k, max_seqlen_q,
                               max_seqlen_k, block_mask, 1, block_size_k, sm_scale, "1d")
    checks.check_data_attention(op, q, k, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k)
    return _attention_bwd(dout, q, k, v, out, lse, dlse, cu_seqlens_q, cu_seqlens_k, block_mask, 1,
                          block_size_k, sm_scale, causal)


# ===================================================================================================
# 3. Attention pooling
# ===================================================================================================
def _row_normalise(x):
    """x / (row sum + 1e-6) over the last dim (the seed's normalisation of pooled maps)."""
    return x / (x.sum(dim=-1, keepdim=True) + 1e-6)


def attn_pooling(q, k, cu_seqlens, max_seqlen, sm_scale, block_size, causal, gqa_reduce):
    """Max-pooled attention maps (distillation targets). P = softmax over visible keys of each q head
    (causal: key j <= query i, both sequence-local; else all keys of the sequence). nb = ceil(max_seqlen /
    block_size).

    pooled_1d [H_out, T, nb] (q.dtype): pooled_1d[h, cu[b] + t, j] = max over keys of block j of P[h, t, :];
        zero for blocks beyond the sequence or above the diagonal, and for tokens outside every sequence.
        Not normalised (unless gqa_reduce).
    pooled_2d [B, H_out, nb, nb] (float32): max of P over (query block i, key block j), then each row
        divided by (row sum + 1e-6); zero outside the sequence's blocks.
    gqa_reduce: H_out = H_kv; both maps take the max over the group's q heads of the un-normalised pooled
        values, then every row of both maps is normalised (/ (sum + 1e-6)). Otherwise H_out = H_q.
    """
    op = "attn_pooling"
    checks.check_pooling(op, q, k, cu_seqlens, max_seqlen, sm_scale, block_size)
    checks.check_data_pooling(op, q, cu_seqlens, max_seqlen)

    t, h_q, d = q.shape
    h_kv = k.shape[1]
    group = h_q // h_kv
    bs = block_size
    nb = (max_seqlen + bs - 1) // bs
    bounds = _sequence_bounds(cu_seqlens)
    h_out = h_kv if gqa_reduce else h_q
    pooled_2d = torch.zeros((len(bounds), h_out, nb, nb), dtype=torch.float32, device=q.device)
    pooled_1d = torch.zeros((h_out, t, nb), dtype=q.dtype, device=q.device)
    # Per-q-head outputs viewed as [n, g, ...] so that a tile (kv heads x group sub-range) is a slice.
    p2d_view = pooled_2d if gqa_reduce else pooled_2d.unflatten(1, (h_kv, group))
    p1d_view = pooled_1d if gqa_reduce else pooled_1d.unflatten(0, (h_kv, group))

    for b, (s0, s1) in enumerate(bounds):
        n_tok = s1 - s0
        if n_tok == 0:
            continue
        nbk = (n_tok + bs - 1) // bs  # key (and query) blocks of this sequence
        for hk0, hk1, g_ranges in _head_tiles(h_kv, group, n_tok, d):
            k_t = _kv_tile(k, s0, s1, hk0, hk1)  # [n, s, D]
            g_max = max(g1 - g0 for g0, g1 in g_ranges)
            # Row chunks are whole query blocks so that each 2D row is finished within one chunk.
            rows = _rows_per_chunk((hk1 - hk0) * g_max, n_tok, n_tok, multiple=bs)
            for i0 in range(0, n_tok, rows):
                i1 = min(n_tok, i0 + rows)
                rb0, rb1 = i0 // bs, (i1 + bs - 1) // bs  # query blocks of the chunk
                group_max_1d = group_max_2d = None  # gqa_reduce: running max over group sub-ranges
                for g0, g1 in g_ranges:
                    q_t = _q_tile(q, s0 + i0, s0 + i1, hk0, hk1, g0, g1, group)  # [n, g, r, D]
                    s = _group_matmul(q_t, k_t.transpose(1, 2)).mul_(sm_scale)  # [n, g, r, s]
                    if causal:
                        i = torch.arange(i0, i1, device=q.device).unsqueeze(1)
                        j = torch.arange(n_tok, device=q.device).unsqueeze(0)
                        s.masked_fill_(j > i, _NEG_INF)
                    p, _ = _softmax_rows(s)
                    # 1D: max over the keys of each key block (zero-padding the last partial block is
                    # harmless since P >= 0).
                    p = F.pad(p, (0, nbk * bs - n_tok))
                    m1 = p.unflatten(-1, (nbk, bs)).amax(dim=-1)  # [n, g, r, nbk]
                    # 2D: max over the queries of each query block.
                    m2 = F.pad(m1, (0, 0, 0, (rb1 - rb0) * bs - (i1 - i0)))
                    m2 = m2.unflatten(2, (rb1 - rb0, bs)).amax(dim=3)  # [n, g, rb, nbk]
                    if gqa_reduce:
                        m1, m2 = m1.amax(dim=1), m2.amax(dim=1)  # max over the group's q heads
                        if group_max_1d is not None:
                            m1, m2 = torch.maximum(m1, group_max_1d), torch.maximum(m2, group_max_2d)
                        group_max_1d, group_max_2d = m1, m2
                    else:
                        p1d_view[hk0:hk1, g0:g1, s0 + i0:s0 + i1, :nbk] = m1.to(q.dtype)
                        p2d_view[b, hk0:hk1, g0:g1, rb0:rb1, :nbk] = _row_normalise(m2)
                if gqa_reduce:
                    p1d_view[hk0:hk1, s0 + i0:s0 + i1, :nbk] = _row_normalise(group_max_1d).to(q.dtype)
                    p2d_view[b, hk0:hk1, rb0:rb1, :nbk] = _row_normalise(group_max_2d)
    return pooled_2d, pooled_1d


# ===================================================================================================
# 4. Block-sparse flash-decoding
# ===================================================================================================
def _selected_blocks(block_mask, block_indices, b, n_blocks):
    """Selected key blocks of sequence b, as a bool [H_kv, n_blocks]: mask != 0, or the entries of
    block_indices in [0, n_blocks). Duplicate entries count once; -1 padding and out-of-range entries
    are ignored (out-of-range ones are an error under SEER_ATTN_CHECK_INPUTS=1, checked before)."""
    if block_mask is not None:
        return block_mask[b, :, :n_blocks] != 0
    idx = block_indices[b].long()  # [H_kv, K]
    keep = (idx >= 0) & (idx < n_blocks)
    selected = torch.zeros((idx.shape[0], n_blocks + 1), dtype=torch.bool, device=idx.device)
    # Ignored entries are scattered into the extra column n_blocks, which is then dropped.
    selected.scatter_(1, torch.where(keep, idx, torch.full_like(idx, n_blocks)), True)
    return selected[:, :n_blocks]


def _paged_rows(cache, block_table, b, length):
    """The first `length` logical slots of sequence b of a paged cache [num_pages, page_size, H_kv, D]
    as a [length, H_kv, D] tensor: slot s lives at page block_table[b, s // page_size], row
    s % page_size. Only the pages holding a valid slot are read; their table entries are clamped into
    [0, num_pages) (out-of-range entries are an error under SEER_ATTN_CHECK_INPUTS=1, checked before)."""
    page = cache.shape[1]
    n_used = (length + page - 1) // page
    pages = block_table[b, :n_used].long().clamp(0, cache.shape[0] - 1).to(cache.device)
    return cache.index_select(0, pages).flatten(0, 1)[:length]


def block_sparse_decode(q, k_cache, v_cache, cache_seqlens, block_mask, block_indices, block_size, sm_scale,
                        left_pad, first_block_unmasked, num_splits, block_table=None):
    """L new query tokens per sequence (L = 1 for q [B, H_q, D]) over a KV cache, attending only to
    selected key blocks.

    q [B, H_q, D] or [B, L, H_q, D] (1 <= L <= 16); caches [B, S_max, H_kv, D] (dense) or, with
    block_table int32 [B, max_pages], [num_pages, page_size, H_kv, D] (paged: logical slot s of sequence
    b is row s % page_size of page block_table[b, s // page_size]; S_max = max_pages * page_size);
    cache_seqlens int32 [B]. Block n covers logical slots [n * block_size, (n+1) * block_size),
    nb = ceil(S_max / block_size). Valid slots: [0, len), or [S_max - len, S_max) when left_pad (dense
    only). The L tokens are the last L valid slots: token i (0-based) sees valid slots up to its own,
    j <= i + len - L in valid-slot order (bottom-right causal; a token with no slot sees nothing).
    Selected blocks of (b, kv head): block_mask[b, hk, n] != 0, or the entries of block_indices[b, hk]
    in [0, nb) (duplicates count once). first_block_unmasked: the block holding the first valid slot is
    always selected. The L tokens and the q heads of a kv head's group share the selection. Returns out
    (q's shape and dtype) and lse (float32, q's shape without D); a row attending nothing gets 0 / -inf.
    num_splits is ignored."""
    op = "block_sparse_decode"
    checks.check_decode(op, q, k_cache, v_cache, cache_seqlens, block_mask, block_indices, block_size,
                        sm_scale, num_splits, left_pad, block_table)
    batch, n_tok, h_q, h_kv, s_max = checks.decode_geometry(q, k_cache, block_table)
    checks.check_data_decode(op, k_cache, cache_seqlens, block_indices, block_size, block_table, s_max,
                             strict=checks.check_inputs_enabled())

    d = q.shape[-1]
    q4 = q.reshape(batch, n_tok, h_q, d)
    group = h_q // h_kv
    n_blocks = (s_max + block_size - 1) // block_size
    out = torch.zeros((batch, n_tok, h_q, d), dtype=q.dtype, device=q.device)
    lse = torch.full((batch, n_tok, h_q), _NEG_INF, dtype=torch.float32, device=q.device)

    tok = torch.arange(n_tok, device=q.device)
    for b, length in enumerate(cache_seqlens.tolist()):
        if length == 0:
            continue
        lo, hi = (s_max - length, s_max) if left_pad else (0, length)  # valid slots [lo, hi)
        selected = _selected_blocks(block_mask, block_indices, b, n_blocks).to(q.device)  # [H_kv, nb]
        if first_block_unmasked:
            selected[:, lo // block_size] = True
        slot_block = torch.arange(lo, hi, device=q.device) // block_size
        j = torch.arange(length, device=q.device)
        causal = j[None, :] <= tok[:, None] + (length - n_tok)  # [L, len]
        vis_all = selected[:, slot_block][:, None, None, :] & causal  # [H_kv, 1, L, len]
        if block_table is None:
            k_b, v_b = k_cache[b], v_cache[b]
        else:
            k_b, v_b = _paged_rows(k_cache, block_table, b, length), _paged_rows(v_cache, block_table, b, length)
            lo, hi = 0, length
        for hk0, hk1, g_ranges in _head_tiles(h_kv, group, length, d):
            k_t = _kv_tile(k_b, lo, hi, hk0, hk1)  # [n, len, D]
            v_t = _kv_tile(v_b, lo, hi, hk0, hk1)
            vis = vis_all[hk0:hk1]  # [n, 1, L, len]
            for g0, g1 in g_ranges:
                q_t = _q_tile(q4[b], 0, n_tok, hk0, hk1, g0, g1, group)  # [n, g, L, D]
                p, lse_t = _softmax_rows(_scores(q_t, k_t, sm_scale, vis))
                o_t = _group_matmul(p, v_t)  # [n, g, L, D]
                out[b].view(n_tok, h_kv, group, d)[:, hk0:hk1, g0:g1] = o_t.permute(2, 0, 1, 3).to(q.dtype)
                lse[b].view(n_tok, h_kv, group)[:, hk0:hk1, g0:g1] = lse_t.permute(2, 0, 1)
    return out.view(q.shape), lse.view(q.shape[:-1])
