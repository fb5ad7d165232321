"""Block-mask helpers: scores -> masks / indices, mask <-> indices, GQA reduction, and the mask
generators used by the demo, the tests and the benchmarks.

Everything here is plain vectorised PyTorch and device-agnostic (it runs where its inputs live).
Conventions (SPEC.md):

- A mask is bool (or integer, nonzero = keep). Key block ``n`` covers keys ``[n*B_k, (n+1)*B_k)`` of
  a sequence, query block ``m`` covers queries ``[m*B_q, (m+1)*B_q)``; the last block may be partial.
- 2D mask ``[B, H, ceil(max_seqlen_q/B_q), ceil(max_seqlen_k/B_k)]``; 1D (per-token) mask
  ``[B, H, max_seqlen_q, ceil(max_seqlen_k/B_k)]``; decode mask ``[B, H_kv, ceil(S_max/B_k)]``;
  decode indices ``[B, H_kv, K]`` int32, -1 padded.
- Causal masking is aligned bottom-right: query ``i`` of a sequence sees key ``j`` iff
  ``j <= i + (seqlen_k - seqlen_q)``. A block is "causal" for a query row when it is inside the
  sequence and not entirely above that diagonal.

No helper reads tensor values back to the host, except ``random_decode_indices(max_selected=None)``
(sizes its output from the data; a generator, not a hot path). ``cu_seqlens`` may be a Python list
or a tensor (then everything is computed on its device). ``mask_to_indices``,
``indices_to_mask``, ``topk_to_indices``, ``threshold_to_mask``, ``gqa_max_reduce`` and
``top_fraction_to_mask`` trace under ``torch.compile`` (``top_fraction_to_mask`` loops over row
chunks, a few at most, with shapes known at trace time).
"""
from __future__ import annotations

import math
from typing import Optional, Sequence, Union

import torch

__all__ = [
    "threshold_to_mask",
    "topk_to_indices",
    "indices_to_mask",
    "mask_to_indices",
    "gqa_max_reduce",
    "top_fraction_to_mask",
    "causal_block_mask",
    "diagonal_block_mask",
    "padded_from_packed",
    "random_block_mask_2d",
    "random_block_mask_1d",
    "random_decode_mask",
    "random_decode_indices",
]

# Temporaries of the per-row ranking are bounded to about this many elements per chunk
# (a chunk costs ~20 bytes per element: float32 keys + int64 order + int64 ranks).
_CHUNK_ELEMS = 1 << 26

SeqLens = Union[torch.Tensor, Sequence[int]]


# ----------------------------------------------------------------------------------------------
# scores -> mask / indices, mask <-> indices
# ----------------------------------------------------------------------------------------------
def threshold_to_mask(scores: torch.Tensor, threshold, keep_diagonal: bool = False) -> torch.Tensor:
    """Bool mask ``scores > threshold`` (same shape as ``scores``).

    ``threshold``: a Python number or a tensor broadcastable to ``scores`` (e.g. one threshold per
    head ``[1, H, 1, 1]``). ``keep_diagonal=True`` (for square 2D block scores
    ``[..., nb, nb]`` of self-attention, e.g. ``pooled_2d``) additionally keeps every diagonal block
    ``[..., i, i]``, so that no causal query block row ends up empty.
    NaN scores are never kept (the comparison is False).
    """
    mask = scores > threshold
    if keep_diagonal:
        if scores.dim() < 2:
            raise ValueError(f"threshold_to_mask: keep_diagonal needs a 2D block-score tensor, got shape {tuple(scores.shape)}")
        m, n = scores.shape[-2], scores.shape[-1]
        diag = torch.arange(m, device=scores.device)[:, None] == torch.arange(n, device=scores.device)[None, :]
        mask = mask | diag
    return mask


def topk_to_indices(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the ``k`` highest scores along the last dim, int32 ``[..., min(k, N)]``.

    The selected indices are sorted ascending; entries whose score is ``-inf`` (or NaN) are never
    selected and show up as ``-1`` padding at the end of the row (so a row with fewer than ``k``
    finite scores is padded). Mark blocks that must not be picked (outside the sequence, above the
    causal diagonal) with ``-inf`` before calling. Ties are broken arbitrarily (``torch.topk``).
    """
    n = scores.shape[-1]
    k = max(0, min(int(k), n))
    s = scores
    if s.is_floating_point():
        s = torch.where(torch.isnan(s), torch.full_like(s, -math.inf), s)
    vals, idx = torch.topk(s, k, dim=-1, largest=True, sorted=False)
    if s.is_floating_point():
        valid = vals > -math.inf
    else:
        valid = torch.ones_like(vals, dtype=torch.bool)
    # invalid -> sentinel n (sorts last), then back to -1
    idx = torch.where(valid, idx, torch.full_like(idx, n))
    idx, _ = torch.sort(idx, dim=-1)
    idx = torch.where(idx == n, torch.full_like(idx, -1), idx)
    return idx.to(torch.int32)


def indices_to_mask(indices: torch.Tensor, num_blocks: int) -> torch.Tensor:
    """Bool mask ``[..., num_blocks]`` with ``mask[..., i] = True`` for every index ``i`` in the
    row ``indices[..., :]``. Negative indices (the ``-1`` padding) and indices ``>= num_blocks``
    are ignored. Duplicates are harmless."""
    num_blocks = int(num_blocks)
    idx = indices.long()
    bad = (idx < 0) | (idx >= num_blocks)
    idx = torch.where(bad, torch.full_like(idx, num_blocks), idx)
    out = torch.zeros(*indices.shape[:-1], num_blocks + 1, dtype=torch.bool, device=indices.device)
    out.scatter_(-1, idx, True)
    return out[..., :num_blocks].contiguous()


def mask_to_indices(mask: torch.Tensor, max_selected: Optional[int] = None) -> torch.Tensor:
    """Kept positions of each row of ``mask`` (bool or integer, nonzero = keep), int32
    ``[..., K]`` sorted ascending and ``-1`` padded at the end.

    ``K = max_selected`` if given, else ``mask.shape[-1]`` (no host sync). With ``max_selected``
    smaller than a row's kept count, only the row's first ``K`` kept positions are returned.
    """
    n = mask.shape[-1]
    K = n if max_selected is None else int(max_selected)
    if K < 0:
        raise ValueError(f"mask_to_indices: max_selected must be >= 0, got {max_selected}")
    keep = mask != 0
    pos = torch.cumsum(keep.to(torch.int32), dim=-1) - 1  # slot of each kept entry
    target = torch.where(keep & (pos < K), pos, torch.full_like(pos, K)).long()
    out = torch.full((*mask.shape[:-1], K + 1), -1, dtype=torch.int32, device=mask.device)
    src = torch.arange(n, dtype=torch.int32, device=mask.device).expand_as(target)
    out.scatter_(-1, target, src)  # everything not kept lands in the discarded slot K
    return out[..., :K].contiguous()


def gqa_max_reduce(x: torch.Tensor, group: int, dim: int = 1) -> torch.Tensor:
    """Max over each GQA group of ``group`` consecutive heads along ``dim``:
    ``[.., H_q, ..] -> [.., H_q // group, ..]`` (query heads ``g*group .. g*group+group-1`` form kv
    head ``g``). Bool/integer masks give the union (any head keeps -> kept)."""
    dim = dim % x.dim()
    h = x.shape[dim]
    group = int(group)
    if group <= 0 or h % group != 0:
        raise ValueError(f"gqa_max_reduce: head dim {dim} of size {h} is not divisible by group={group}")
    y = x.unflatten(dim, (h // group, group))
    if x.dtype == torch.bool:
        return y.any(dim=dim + 1)
    return y.amax(dim=dim + 1)


# ----------------------------------------------------------------------------------------------
# Per-row "keep a fraction" ranking (shared by the gate-style helper and the random generators)
# ----------------------------------------------------------------------------------------------
def _keep_top_counts(scores: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Bool mask keeping, in each row (last dim) of ``scores``, the ``counts[row]`` highest entries
    (exactly, ties broken by sort order). ``counts`` broadcasts to ``scores.shape[:-1]``.
    Temporaries are bounded by processing rows in chunks."""
    shape = scores.shape
    n = shape[-1]
    rows = scores.reshape(-1, n)
    cnt = counts.expand(shape[:-1]).reshape(-1)
    out = torch.empty(rows.shape, dtype=torch.bool, device=scores.device)
    r = rows.shape[0]
    step = max(1, _CHUNK_ELEMS // max(n, 1))
    ar = torch.arange(n, device=scores.device)
    for s in range(0, r, step):  # a handful of chunks, not a per-row loop
        e = min(r, s + step)
        order = torch.argsort(rows[s:e], dim=-1, descending=True, stable=True)
        rank = torch.empty_like(order)
        rank.scatter_(-1, order, ar.expand(e - s, n))
        out[s:e] = rank < cnt[s:e, None]
    return out.reshape(shape)


def top_fraction_to_mask(scores: torch.Tensor, density, valid: Optional[torch.Tensor] = None,
                         force: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Density-controlled mask: in each row (last dim) keep the ``round(density * n_valid)``
    highest-scoring valid entries, where ``n_valid`` is the row's number of valid entries; at least
    one if the row has any valid entry. ``force`` entries (bool, broadcastable) are always kept first
    (they count towards the total) as long as they are valid. Invalid entries are never kept; a row
    with no valid entry keeps nothing.

    ``valid``: bool, broadcastable to ``scores`` (e.g. ``causal_block_mask(...)``); None = all valid.
    ``density``: a number in [0, 1] or a tensor broadcastable to ``scores.shape[:-1]``.
    Rounding is half-to-even (Python's ``round``). Exact counts (ties broken by position), NaN
    scores rank below every other valid score. No host sync. Returns bool, ``scores``' shape.
    """
    dev = scores.device
    s = scores if scores.is_floating_point() else scores.float()
    if valid is None:
        valid_b = torch.ones((), dtype=torch.bool, device=dev).expand(scores.shape)
    else:
        valid_b = (valid != 0).expand(scores.shape)
    # key: forced (valid) entries first (+inf), then valid ones by score (NaN lowest, infinities
    # clamped to finite so that they never tie with the forced / invalid keys), then invalid (-inf)
    fmax = torch.finfo(torch.float32).max
    key = torch.nan_to_num(s.float(), nan=-fmax, posinf=fmax, neginf=-fmax)
    key = key.masked_fill_(~valid_b, -math.inf)
    n_valid = valid_b.sum(-1)
    if force is not None:
        f = (force != 0) & valid_b
        key.masked_fill_(f, math.inf)
        n_force = f.sum(-1)
    else:
        n_force = torch.zeros_like(n_valid)
    if not isinstance(density, torch.Tensor):
        density = torch.tensor(float(density), device=dev)
    density = density.to(device=dev, dtype=torch.float64)
    cnt = torch.round(density * n_valid.to(torch.float64)).to(n_valid.dtype)
    cnt = torch.maximum(cnt, n_force)
    cnt = torch.where(n_valid > 0, torch.clamp(cnt, min=1), torch.zeros_like(cnt))
    cnt = torch.minimum(cnt, n_valid)
    # -inf keys of invalid entries sort last; ties between forced (+inf) entries are harmless since
    # every forced entry is counted in cnt.
    return _keep_top_counts(key, cnt) & valid_b


# ----------------------------------------------------------------------------------------------
# Block geometry of a varlen batch
# ----------------------------------------------------------------------------------------------
def _as_lengths(cu_seqlens: SeqLens, device) -> torch.Tensor:
    if isinstance(cu_seqlens, torch.Tensor):
        cu = cu_seqlens.to(device=device if device is not None else cu_seqlens.device, dtype=torch.int64)
    else:
        cu = torch.tensor([int(c) for c in cu_seqlens], dtype=torch.int64, device=device)
    if cu.dim() != 1 or cu.numel() < 2:
        raise ValueError(f"cu_seqlens must be 1-D with B+1 >= 2 entries, got shape {tuple(cu.shape)}")
    return cu[1:] - cu[:-1]


def _block_geometry(cu_seqlens_q: SeqLens, cu_seqlens_k: Optional[SeqLens], max_seqlen_q: int,
                    max_seqlen_k: int, block_size_q: int, block_size_k: int, causal: bool, device):
    """(valid [B,1,Mq,Nk] bool, diag [B,1,Mq,Nk] bool): blocks inside the sequence and not entirely
    above the causal diagonal for query block row m; diag marks the block holding the key aligned
    (bottom-right) with the last query of the row, clamped into the sequence's key range."""
    if device is None and isinstance(cu_seqlens_q, torch.Tensor):
        device = cu_seqlens_q.device
    lq = _as_lengths(cu_seqlens_q, device)
    lk = lq if cu_seqlens_k is None else _as_lengths(cu_seqlens_k, lq.device)
    if lk.shape != lq.shape:
        raise ValueError(f"cu_seqlens_q and cu_seqlens_k describe different batch sizes: {lq.numel()} vs {lk.numel()}")
    dev = lq.device
    bq, bk = int(block_size_q), int(block_size_k)
    mq = -(-int(max_seqlen_q) // bq)
    nk = -(-int(max_seqlen_k) // bk)
    lq_ = lq[:, None, None, None]
    lk_ = lk[:, None, None, None]
    m = torch.arange(mq, device=dev)[None, None, :, None]
    n = torch.arange(nk, device=dev)[None, None, None, :]
    row_ok = m * bq < lq_  # query block inside the sequence
    last_q = torch.minimum((m + 1) * bq, lq_) - 1  # last query of the row
    nk_seq = (lk_ + bk - 1) // bk  # key blocks of the sequence
    in_k = n < nk_seq
    if causal:
        lim = last_q + (lk_ - lq_)  # last visible key of the row
        valid = row_ok & in_k & (n * bk <= lim)
        diag_n = torch.div(lim, bk, rounding_mode="floor")
        diag = valid & (n == diag_n)
    else:
        valid = row_ok & in_k
        lim = torch.clamp(last_q + (lk_ - lq_), min=0)
        diag_n = torch.minimum(torch.div(lim, bk, rounding_mode="floor"), nk_seq - 1)
        diag = valid & (n == diag_n)
    return valid, diag


def causal_block_mask(cu_seqlens: SeqLens, max_seqlen_q: int, max_seqlen_k: int, block_size_q: int,
                      block_size_k: int, causal: bool = True, *, cu_seqlens_k: Optional[SeqLens] = None,
                      device=None) -> torch.Tensor:
    """Bool ``[B, 1, ceil(max_seqlen_q/B_q), ceil(max_seqlen_k/B_k)]``: the blocks that carry at
    least one visible (query, key) pair — inside the sequence and, if ``causal``, not entirely above
    the bottom-right causal diagonal. Use ``block_size_q=1`` for the per-token (1D) layout.
    ``cu_seqlens`` (list or tensor) describes the queries, and the keys too unless ``cu_seqlens_k``
    is given. Broadcasts over heads (expand it for a per-head mask)."""
    valid, _ = _block_geometry(cu_seqlens, cu_seqlens_k, max_seqlen_q, max_seqlen_k, block_size_q,
                               block_size_k, causal, device)
    return valid


def diagonal_block_mask(cu_seqlens: SeqLens, max_seqlen_q: int, max_seqlen_k: int, block_size_q: int,
                        block_size_k: int, causal: bool = True, *, cu_seqlens_k: Optional[SeqLens] = None,
                        device=None) -> torch.Tensor:
    """Bool ``[B, 1, Mq, Nk]`` marking, per query block row, the "diagonal" block: the key block
    holding the key aligned bottom-right with the row's last query (clamped into the sequence).
    Rows with no causal block mark nothing. Keeping it guarantees that the last query of every row
    sees at least one key."""
    _, diag = _block_geometry(cu_seqlens, cu_seqlens_k, max_seqlen_q, max_seqlen_k, block_size_q,
                              block_size_k, causal, device)
    return diag


def padded_from_packed(x: torch.Tensor, cu_seqlens: torch.Tensor, max_seqlen: int, fill=0) -> torch.Tensor:
    """Per-token rows packed by token ``[H, T, N]`` (e.g. ``pooled_1d`` or a gate's output) ->
    the 1D-mask layout ``[B, H, max_seqlen, N]`` (row ``t`` of sequence ``b`` at ``[b, :, t]``),
    other rows filled with ``fill``. Vectorised, no host sync (needs ``cu_seqlens`` on x's device
    only as an index source)."""
    h, t, n = x.shape
    cu = cu_seqlens.to(device=x.device, dtype=torch.int64)
    b = cu.numel() - 1
    tok = torch.arange(t, device=x.device)
    seq = torch.searchsorted(cu[1:], tok, right=True)  # sequence of each token
    seq_c = torch.clamp(seq, max=b - 1)
    pos = tok - cu[seq_c]
    ok = (seq < b) & (pos < max_seqlen)
    # route out-of-range tokens (beyond cu[-1] or max_seqlen) into a scratch row
    seq_i = torch.where(ok, seq_c, torch.full_like(seq_c, b))
    pos_i = torch.where(ok, pos, torch.zeros_like(pos))
    out = torch.full((b + 1, int(max_seqlen), h, n), fill, dtype=x.dtype, device=x.device)
    out[seq_i, pos_i] = x.transpose(0, 1)
    return out[:b].permute(0, 2, 1, 3).contiguous()


# ----------------------------------------------------------------------------------------------
# Random generators (WORKLOADS.md)
# ----------------------------------------------------------------------------------------------
def _rand(shape, generator, device):
    return torch.rand(shape, generator=generator, device=device)


def random_block_mask_2d(cu_seqlens: SeqLens, num_heads: int, max_seqlen_q: int, max_seqlen_k: int,
                         block_size_q: int, block_size_k: int, density: float, causal: bool = True,
                         generator: Optional[torch.Generator] = None, device=None, *,
                         cu_seqlens_k: Optional[SeqLens] = None) -> torch.Tensor:
    """Random 2D block mask, bool ``[B, num_heads, ceil(max_seqlen_q/B_q), ceil(max_seqlen_k/B_k)]``.

    For each (sequence, head, query block row): keep ``round(density * n)`` blocks (at least 1)
    chosen uniformly at random among the row's ``n`` causal blocks, always including the diagonal
    block (bottom-right aligned). Rows with no causal block (or outside the sequence) keep nothing.
    ``causal=False``: all in-sequence blocks are candidates. ``cu_seqlens`` (list or tensor) is
    used for keys too unless ``cu_seqlens_k`` is given. The device is ``device``, else the
    generator's, else cu_seqlens'. Fully vectorised (temporaries chunked).
    """
    if device is None and generator is not None:
        device = generator.device
    valid, diag = _block_geometry(cu_seqlens, cu_seqlens_k, max_seqlen_q, max_seqlen_k, block_size_q,
                                  block_size_k, causal, device)
    b, _, mq, nk = valid.shape
    scores = _rand((b, int(num_heads), mq, nk), generator, valid.device)
    return top_fraction_to_mask(scores, density, valid=valid, force=diag)


def random_block_mask_1d(cu_seqlens: SeqLens, num_heads: int, max_seqlen_q: int, max_seqlen_k: int,
                         block_size_q: int, block_size_k: int, density: float, causal: bool = True,
                         generator: Optional[torch.Generator] = None, device=None, per_token: bool = False,
                         *, cu_seqlens_k: Optional[SeqLens] = None) -> torch.Tensor:
    """Random 1D (per-token) block mask, bool ``[B, num_heads, max_seqlen_q, ceil(max_seqlen_k/B_k)]``.

    ``per_token=False`` (block-structured, WORKLOADS "GQA 1D mask"): drawn like
    ``random_block_mask_2d`` per query block row of ``block_size_q`` tokens and expanded to every
    token row of that block. ``per_token=True``: every token row drawn independently (the hard
    case for tiling), keeping ``round(density * n)`` of its ``n`` causal blocks incl. the token's
    own diagonal block. For the per-q-head ("sim") layout of a GQA model draw ``num_heads=H_kv``
    and ``repeat_interleave(group, dim=1)``.
    """
    if per_token:
        return random_block_mask_2d(cu_seqlens, num_heads, max_seqlen_q, max_seqlen_k, 1, block_size_k,
                                    density, causal, generator, device, cu_seqlens_k=cu_seqlens_k)
    m2 = random_block_mask_2d(cu_seqlens, num_heads, max_seqlen_q, max_seqlen_k, block_size_q, block_size_k,
                              density, causal, generator, device, cu_seqlens_k=cu_seqlens_k)
    b, h, mq, nk = m2.shape
    bq = int(block_size_q)
    m1 = m2[:, :, :, None, :].expand(b, h, mq, bq, nk).reshape(b, h, mq * bq, nk)
    return m1[:, :, : int(max_seqlen_q)].contiguous()


def _decode_geometry(cache_seqlens, s_max: int, block_size: int, left_pad: bool, device):
    if isinstance(cache_seqlens, torch.Tensor):
        ln = cache_seqlens.to(device=device if device is not None else cache_seqlens.device, dtype=torch.int64)
    else:
        ln = torch.tensor([int(x) for x in cache_seqlens], dtype=torch.int64, device=device)
    ln = torch.clamp(ln, min=0, max=int(s_max))
    nb = -(-int(s_max) // int(block_size))
    n = torch.arange(nb, device=ln.device)[None, None, :]
    ln_ = ln[:, None, None]
    bs = int(block_size)
    if left_pad:
        first = int(s_max) - ln_  # first valid slot
        lo = torch.div(first, bs, rounding_mode="floor")
        valid = (n >= lo) & (ln_ > 0)
    else:
        valid = n * bs < ln_
    # the block holding the newest token (last valid slot) is always kept
    last_slot = (int(s_max) - 1) if left_pad else (ln_ - 1)
    last_slot = last_slot + torch.zeros_like(ln_)
    force = valid & (n == torch.div(last_slot, bs, rounding_mode="floor"))
    return valid, force


def random_decode_mask(cache_seqlens, num_kv_heads: int, S_max: int, block_size: int, density: float,
                       left_pad: bool = False, generator: Optional[torch.Generator] = None,
                       device=None) -> torch.Tensor:
    """Random decode block mask, bool ``[B, num_kv_heads, ceil(S_max/block_size)]``.

    Per (sequence, kv head): keep ``round(density * n)`` (at least 1) of the ``n`` blocks holding
    valid cache slots (``[0, len)`` right-padded, ``[S_max - len, S_max)`` with ``left_pad``),
    chosen at random but always including the block of the newest token (the last valid slot).
    Sequences with an empty cache keep nothing. ``cache_seqlens``: list or int tensor ``[B]``."""
    if device is None and generator is not None:
        device = generator.device
    valid, force = _decode_geometry(cache_seqlens, S_max, block_size, left_pad, device)
    b, _, nb = valid.shape
    scores = _rand((b, int(num_kv_heads), nb), generator, valid.device)
    return top_fraction_to_mask(scores, density, valid=valid, force=force)


def random_decode_indices(cache_seqlens, num_kv_heads: int, S_max: int, block_size: int, density: float,
                          left_pad: bool = False, generator: Optional[torch.Generator] = None, device=None,
                          max_selected: Optional[int] = None) -> torch.Tensor:
    """Random decode block indices, int32 ``[B, num_kv_heads, K]``: the blocks of
    ``random_decode_mask`` (same arguments, same draw for the same generator state) in random order,
    ``-1`` padded at the end. ``K = max_selected`` if given, else the largest kept count (this reads
    one number back to the host: a generator, not a hot path)."""
    mask = random_decode_mask(cache_seqlens, num_kv_heads, S_max, block_size, density, left_pad,
                              generator, device)
    if max_selected is None:
        max_selected = int(mask.sum(-1).max().item()) if mask.numel() else 0
    idx = mask_to_indices(mask, max_selected)
    # shuffle the valid entries of each row, keep -1 at the end
    key = _rand(idx.shape, generator, idx.device)
    key = torch.where(idx >= 0, key, torch.full_like(key, 2.0))
    order = torch.argsort(key, dim=-1)
    return torch.gather(idx, -1, order)
