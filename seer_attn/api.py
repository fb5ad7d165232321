"""Public Python API of seer_attn: thin wrappers over the ``torch.ops.seer_attn.*`` custom ops.

Conventions (SPEC.md, csrc/ops.cpp):

- Packed varlen layout: ``q`` ``[T_q, H_q, D]``, ``k``/``v`` ``[T_k, H_kv, D]`` with
  ``H_q % H_kv == 0`` (GQA/MQA, K/V never repeated by the library); sequence ``b`` occupies rows
  ``cu_seqlens[b]:cu_seqlens[b+1]``; ``cu_seqlens_*`` int32 ``[B+1]`` on the device of q;
  ``max_seqlen_*`` are Python ints. q/k/v/out are float16 or bfloat16 (fp32 accumulation); only
  the last dim must be contiguous.
- ``sm_scale=None`` means ``1/sqrt(D)``. Causal masking is aligned bottom-right.
- Masks are bool or any integer dtype (nonzero = keep), any strides (stride-0 ``expand`` views
  cost nothing); their head dim may be ``H_q``, ``H_kv`` or 1. They are passed to the ops unchanged.
- A query row with no visible key gets output 0, LSE ``-inf`` and zero gradients.
- LSE is float32, natural log, ``[H_q, T_q]`` (decode: q's shape without D, ``[B, H_q]`` or ``[B, L, H_q]``).
- Autograd (attention ops, w.r.t. q, k, v and lse) and the fake kernels used by
  ``torch.compile`` come from the op registrations; the wrappers do no tensor-value-dependent
  Python work, no ``.item()`` and no host syncs (except the documented list-building helpers
  ``unpack_pooled_1d`` and the seed-compatible ``attn_pooling``), so they trace with
  ``torch.compile(fullgraph=True)``.
"""
from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple, Union

import torch

__all__ = [
    # clean API
    "block_sparse_attn_2d",
    "block_sparse_attn_1d",
    "attention_pooling",
    "unpack_pooled_1d",
    "block_sparse_decode",
    # seed-compatible names
    "block_1d_gqa_sparse_attn_varlen_sim_func",
    "block_1d_gqa_sparse_attn_varlen_func",
    "block_2d_sparse_attn_varlen_func",
    "attn_pooling",
    "block_sparse_flash_decode_gqa_mask",
    "block_sparse_flash_decode_gqa_indice",
    "block_sparse_flash_decode_leftpad_gqa_mask",
]


def _ops():
    return torch.ops.seer_attn


def _scale(sm_scale, head_dim):
    """sm_scale=None -> 1/sqrt(D). Python numbers are passed as float; SymFloats pass through."""
    if sm_scale is None:
        return 1.0 / math.sqrt(head_dim)
    if isinstance(sm_scale, torch.Tensor):
        raise TypeError("seer_attn: sm_scale must be a Python number (or None), got a Tensor")
    if isinstance(sm_scale, (int, float)):
        return float(sm_scale)
    return sm_scale


def _int_arg(name, x):
    if isinstance(x, torch.Tensor):
        raise TypeError(
            f"seer_attn: {name} must be a Python int (output shapes never depend on tensor data), got a Tensor"
        )
    return x


# ----------------------------------------------------------------------------------------------
# 1. 2D block-sparse varlen attention
# ----------------------------------------------------------------------------------------------
def block_sparse_attn_2d(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    block_mask: torch.Tensor,
    cu_seqlens_q: torch.Tensor,
    cu_seqlens_k: torch.Tensor,
    max_seqlen_q: int,
    max_seqlen_k: int,
    *,
    block_size_q: int = 64,
    block_size_k: int = 64,
    sm_scale: Optional[float] = None,
    causal: bool = True,
    return_lse: bool = False,
    deterministic: bool = False,
) -> Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
    """Varlen attention restricted to the (query block, key block) pairs kept by a 2D block mask.

    Args:
        q: ``[T_q, H_q, D]`` fp16/bf16. k, v: ``[T_k, H_kv, D]``, same dtype, ``H_q % H_kv == 0``.
        block_mask: ``[B, H_mask, >= ceil(max_seqlen_q/block_size_q), >= ceil(max_seqlen_k/block_size_k)]``,
            bool or integer (nonzero = keep), ``H_mask`` in ``{H_q, H_kv, 1}``, any strides. Entry
            ``[b, h, m, n]`` lets queries ``[m*B_q, (m+1)*B_q)`` of sequence b attend keys
            ``[n*B_k, (n+1)*B_k)``; entries outside the sequence or above the causal diagonal are ignored.
        cu_seqlens_q, cu_seqlens_k: int32 ``[B+1]``. max_seqlen_q, max_seqlen_k: Python ints.
        block_size_q, block_size_k: multiples of 16 in [16, 256] (may differ).
        sm_scale: softmax scale, default ``1/sqrt(D)``. causal: bottom-right aligned causal mask.
        return_lse: also return the float32 ``[H_q, T_q]`` log-sum-exp (differentiable).
        deterministic: deterministic backward (recorded by the forward op for autograd).

    Returns: ``out`` ``[T_q, H_q, D]`` (q's dtype), or ``(out, lse)``. Differentiable w.r.t. q, k, v
    (dk/dv are ``[T_k, H_kv, D]``, reduced over each GQA group).
    """
    out, lse = _ops().block_sparse_2d_fwd(
        q, k, v, cu_seqlens_q, cu_seqlens_k,
        _int_arg("max_seqlen_q", max_seqlen_q), _int_arg("max_seqlen_k", max_seqlen_k),
        block_mask, block_size_q, block_size_k, _scale(sm_scale, q.shape[-1]), causal, deterministic,
    )
    return (out, lse) if return_lse else out


# ----------------------------------------------------------------------------------------------
# 2. 1D (per-token) block-sparse varlen attention
# ----------------------------------------------------------------------------------------------
def block_sparse_attn_1d(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    block_mask: torch.Tensor,
    cu_seqlens_q: torch.Tensor,
    cu_seqlens_k: torch.Tensor,
    max_seqlen_q: int,
    max_seqlen_k: int,
    *,
    block_size_k: int = 64,
    sm_scale: Optional[float] = None,
    causal: bool = True,
    return_lse: bool = False,
    deterministic: bool = False,
) -> Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
    """Varlen attention where every query token picks its own key blocks (1D per-token mask).

    Args:
        q: ``[T_q, H_q, D]`` fp16/bf16. k, v: ``[T_k, H_kv, D]``, ``H_q % H_kv == 0``.
        block_mask: ``[B, H_mask, >= max_seqlen_q, >= ceil(max_seqlen_k/block_size_k)]``, bool or
            integer, any strides. Row ``t`` of sequence ``b`` lists the key blocks query token ``t``
            attends. ``H_mask = H_kv``: the choice is shared by each GQA group (NSA-style);
            ``H_mask = H_q``: per query head; ``H_mask = 1``: shared by all heads.
        block_size_k: multiple of 16 in [16, 256]. Other arguments as ``block_sparse_attn_2d``.

    Returns: ``out`` ``[T_q, H_q, D]`` or ``(out, lse)`` (lse float32 ``[H_q, T_q]``); differentiable.
    """
    out, lse = _ops().block_sparse_1d_fwd(
        q, k, v, cu_seqlens_q, cu_seqlens_k,
        _int_arg("max_seqlen_q", max_seqlen_q), _int_arg("max_seqlen_k", max_seqlen_k),
        block_mask, block_size_k, _scale(sm_scale, q.shape[-1]), causal, deterministic,
    )
    return (out, lse) if return_lse else out


# ----------------------------------------------------------------------------------------------
# 3. Attention pooling
# ----------------------------------------------------------------------------------------------
def attention_pooling(
    q: torch.Tensor,
    k: torch.Tensor,
    cu_seqlens: torch.Tensor,
    max_seqlen: int,
    *,
    block_size: int = 64,
    sm_scale: Optional[float] = None,
    causal: bool = True,
    gqa_reduce: bool = False,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Max-pooled attention maps (distillation targets for a sparsity gate). No gradient.

    With ``P`` the (causal) softmax attention probabilities of each head:

    - ``pooled_2d``: float32 ``[B, H_out, nb, nb]``, ``nb = ceil(max_seqlen/block_size)``:
      max of ``P`` over (query block i, key block j), each row then normalised to sum 1
      (``/ (sum + 1e-6)``); entries outside a sequence are 0.
    - ``pooled_1d``: q's dtype ``[H_out, T, nb]`` packed by token: for token t and key block j the
      max of ``P[t, keys of j]``, not normalised; blocks above the diagonal are 0. Sequence b's map is
      ``pooled_1d[:, cu[b]:cu[b+1], :ceil(t_b/block_size)]`` (see ``unpack_pooled_1d``;
      ``masks.padded_from_packed`` gives the 1D-mask layout ``[B, H_out, max_seqlen, nb]``).

    ``H_out = H_q``; with ``gqa_reduce=True`` ``H_out = H_kv``: the max over each GQA group's heads,
    then each row normalised (what a GQA-shared gate trains on), without materialising per-q-head maps.
    q ``[T, H_q, D]``, k ``[T, H_kv, D]`` (q and k share ``cu_seqlens``).
    """
    return _ops().attn_pooling(
        q.detach(), k.detach(), cu_seqlens, _int_arg("max_seqlen", max_seqlen),
        _scale(sm_scale, q.shape[-1]), block_size, causal, gqa_reduce,
    )


def unpack_pooled_1d(
    pooled_1d: torch.Tensor, cu_seqlens: Union[torch.Tensor, Sequence[int]], block_size: int
) -> List[torch.Tensor]:
    """Split a packed ``pooled_1d`` ``[H, T, nb]`` into the per-sequence list of views
    ``pooled_1d[:, s:e, :ceil((e-s)/block_size)]`` (``[H, t_i, ceil(t_i/block_size)]``, the seed's
    format). Reads ``cu_seqlens`` on the host (one device-to-host copy if it is a device tensor):
    not for use inside a compiled region."""
    if isinstance(cu_seqlens, torch.Tensor):
        cu = [int(c) for c in cu_seqlens.tolist()]
    else:
        cu = [int(c) for c in cu_seqlens]
    bs = int(block_size)
    return [pooled_1d[:, s:e, : -(-(e - s) // bs)] for s, e in zip(cu[:-1], cu[1:])]


# ----------------------------------------------------------------------------------------------
# 4. Block-sparse flash-decoding
# ----------------------------------------------------------------------------------------------
def block_sparse_decode(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    cache_seqlens: torch.Tensor,
    *,
    block_mask: Optional[torch.Tensor] = None,
    block_indices: Optional[torch.Tensor] = None,
    block_size: int = 64,
    sm_scale: Optional[float] = None,
    left_pad: bool = False,
    first_block_unmasked: bool = False,
    num_splits: int = 0,
    return_lse: bool = False,
    block_table: Optional[torch.Tensor] = None,
) -> Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
    """New query tokens (1 to 16 per sequence) attending the selected blocks of a varlen KV cache.

    Args:
        q: ``[B, H_q, D]`` (one token), ``[B, 1, H_q, D]`` or ``[B, L, H_q, D]`` with ``1 <= L <= 16``
            new tokens per sequence, fp16/bf16. The L tokens are the last L valid slots of the cache
            (already written there): token ``i`` sees the valid slots up to its own (causal among
            themselves); all L tokens use the same selected blocks of their kv head.
        k_cache, v_cache: ``[B, S_max, H_kv, D]``, or paged ``[num_pages, page_size, H_kv, D]`` with
            ``block_table``. cache_seqlens: int32 ``[B]`` (valid slots, including the L new tokens).
        block_mask: ``[B, H_kv, >= ceil(S_max/block_size)]`` bool/integer (shared by each GQA group),
            or block_indices: int32 ``[B, H_kv, K]``, ``-1`` padded, any order; a duplicate entry counts
            once; an entry outside ``[0, ceil(S_max/block_size))`` is ignored (an error when
            ``SEER_ATTN_CHECK_INPUTS=1``). Exactly one of the two. Block n covers the logical slots
            ``[n*block_size, (n+1)*block_size)``.
        left_pad: valid slots are ``[S_max - len, S_max)`` instead of ``[0, len)`` (dense caches only).
        first_block_unmasked: always attend the block holding the first valid slot.
        num_splits: split-KV count, 0 = automatic.
        return_lse: also return the float32 log-sum-exp (q's shape without D: ``[B, H_q]`` or
            ``[B, L, H_q]``).
        block_table: int32 ``[B, max_pages]`` for a paged cache: logical slot ``s`` of sequence ``b``
            is row ``s % page_size`` of page ``block_table[b, s // page_size]``; ``S_max = max_pages *
            page_size``; ``page_size`` (``k_cache.size(1)``) any multiple of 16, independent of
            ``block_size``; sequences may share pages. Only the entries of pages holding a valid slot
            are read; an entry outside ``[0, num_pages)`` is clamped (an error when
            ``SEER_ATTN_CHECK_INPUTS=1``), never read out of bounds.

    Returns: ``out`` with q's shape, or ``(out, lse)``. Slots not selected, outside ``cache_seqlens``
    or after a token's own slot are ignored; a row with nothing visible gets 0 (lse ``-inf``).
    No gradient.
    """
    if (block_mask is None) == (block_indices is None):
        raise ValueError("seer_attn.block_sparse_decode: pass exactly one of block_mask or block_indices")
    out, lse = _ops().block_sparse_decode(
        q, k_cache, v_cache, cache_seqlens, block_mask, block_indices, block_size,
        _scale(sm_scale, q.shape[-1]), left_pad, first_block_unmasked, num_splits, block_table,
    )
    return (out, lse) if return_lse else out


# ----------------------------------------------------------------------------------------------
# Seed-compatible names (same positional arguments as the seed; return only `out`)
# ----------------------------------------------------------------------------------------------
# Signatures as in microsoft/SeerAttention seer_attn/kernels/varlen/ (the attention names are the seed's
# autograd Functions' forward(q, k, v, cu_seqlens_k, cu_seqlens_q, max_seqlen, sm_scale,
# dense_block_mask, block_size=64); attn_pooling is attn_pooling_qk_varlen); pinned in tests/test_compat.py.
def block_1d_gqa_sparse_attn_varlen_sim_func(q, k, v, cu_seqlens_k, cu_seqlens_q, max_seqlen, sm_scale,
                                            dense_block_mask, block_size=64):
    """Seed name. q, k, v ``[T, H_q, D]`` (k/v already repeated to H_q heads), block_mask
    ``[B, H_q, >= max_seqlen, ceil(max_seqlen/block_size)]``; causal; returns ``out``.
    Runs the real sparse 1D kernel (per-head mask, ``H_kv = H_q``), not the seed's dense simulation.
    Note the seed's argument order ``cu_seqlens_k, cu_seqlens_q``; ``max_seqlen`` serves q and k."""
    return block_sparse_attn_1d(q, k, v, dense_block_mask, cu_seqlens_q, cu_seqlens_k, max_seqlen, max_seqlen,
                                block_size_k=block_size, sm_scale=sm_scale, causal=True)


def block_1d_gqa_sparse_attn_varlen_func(q, k, v, cu_seqlens_k, cu_seqlens_q, max_seqlen, sm_scale,
                                        dense_block_mask, block_size=64):
    """Seed name. q ``[T, H_q, D]``, k/v ``[T, H_kv, D]``, block_mask
    ``[B, H_kv, >= max_seqlen, ceil(max_seqlen/block_size)]`` shared by each GQA group; causal
    (bottom-right); returns ``out``. Seed argument order ``cu_seqlens_k, cu_seqlens_q``."""
    return block_sparse_attn_1d(q, k, v, dense_block_mask, cu_seqlens_q, cu_seqlens_k, max_seqlen, max_seqlen,
                                block_size_k=block_size, sm_scale=sm_scale, causal=True)


def block_2d_sparse_attn_varlen_func(q, k, v, cu_seqlens_k, cu_seqlens_q, max_seqlen, sm_scale, dense_block_mask,
                                    block_size=64):
    """Seed name. q ``[T, H_q, D]``, k/v ``[T, H_kv, D]`` (the seed's k/v repeated to H_q heads work
    too), block_mask ``[B, H_mask, ceil(max_seqlen/block_size), ceil(max_seqlen/block_size)]``;
    ``block_size_q = block_size_k = block_size``; causal; returns ``out``.
    Seed argument order ``cu_seqlens_k, cu_seqlens_q``."""
    return block_sparse_attn_2d(q, k, v, dense_block_mask, cu_seqlens_q, cu_seqlens_k, max_seqlen, max_seqlen,
                                block_size_q=block_size, block_size_k=block_size, sm_scale=sm_scale,
                                causal=True)


def attn_pooling(q, k, cu_seqlens, max_seqlen, sm_scale, block_size=64):
    """Seed name: ``pooling_gt_2d, pooling_gt_1d = attn_pooling(q, k, cu_seqlens, max_seqlen, sm_scale, block_size)``.

    ``pooling_gt_2d``: float32 ``[B, H_q, nb, nb]`` (rows normalised); ``pooling_gt_1d``: list of
    per-sequence views ``[H_q, t_i, ceil(t_i/block_size)]`` (not normalised) of one packed tensor.
    Building the list reads ``cu_seqlens`` on the host (as the seed did); use ``attention_pooling``
    for the sync-free packed form."""
    pooled_2d, pooled_1d = attention_pooling(q, k, cu_seqlens, max_seqlen, block_size=block_size,
                                             sm_scale=sm_scale, causal=True)
    return pooled_2d, unpack_pooled_1d(pooled_1d, cu_seqlens, block_size)


def _seed_max_cache_seqlen(fn, max_cache_seqlen, k_cache):
    """The seed asserts max_cache_seqlen == k_cache.size(1); so do we (a clear error instead)."""
    if isinstance(max_cache_seqlen, int) and max_cache_seqlen != k_cache.shape[1]:
        raise ValueError(f"seer_attn.{fn}: max_cache_seqlen must equal k_cache.size(1) "
                         f"({k_cache.shape[1]}), got {max_cache_seqlen}")


# The three decode names below keep the seed's signatures exactly (microsoft/SeerAttention,
# seer_attn/kernels/varlen/block_sparse_flash_decode_varlen_{mask,indice,mask_leftpad}.py); pinned in
# tests/test_compat.py.
def block_sparse_flash_decode_gqa_mask(q, k_cache, v_cache, cache_seqlens, max_cache_seqlen, block_mask,
                                       block_size, sm_scale=None):
    """Seed name: decode with a block mask ``[B, H_kv, ceil(S_max/block_size)]`` over a right-padded
    cache. ``max_cache_seqlen`` must equal ``k_cache.size(1)`` (as the seed asserts). Returns ``out``."""
    _seed_max_cache_seqlen("block_sparse_flash_decode_gqa_mask", max_cache_seqlen, k_cache)
    return block_sparse_decode(q, k_cache, v_cache, cache_seqlens, block_mask=block_mask, block_size=block_size,
                               sm_scale=sm_scale)


def block_sparse_flash_decode_gqa_indice(q, k_cache, v_cache, cache_seqlens, max_cache_seqlen,
                                         max_selected_blocks, block_indices, block_size, sm_scale=None):
    """Seed name: decode with block indices ``[B, H_kv, K]`` int32 (-1 padded) over a right-padded
    cache. As in the seed, only the first ``max_selected_blocks`` entries of each row are read
    (``max_selected_blocks > K`` is an error) and ``max_cache_seqlen`` must equal ``k_cache.size(1)``.
    Unlike the seed, a duplicate entry counts once. Returns ``out``."""
    fn = "block_sparse_flash_decode_gqa_indice"
    _seed_max_cache_seqlen(fn, max_cache_seqlen, k_cache)
    if isinstance(max_selected_blocks, int):
        if max_selected_blocks < 0 or max_selected_blocks > block_indices.shape[-1]:
            raise ValueError(f"seer_attn.{fn}: max_selected_blocks must be in [0, block_indices.size(-1)] "
                             f"([0, {block_indices.shape[-1]}]), got {max_selected_blocks}")
        if max_selected_blocks < block_indices.shape[-1]:
            block_indices = block_indices[..., :max_selected_blocks]
    return block_sparse_decode(q, k_cache, v_cache, cache_seqlens, block_indices=block_indices,
                               block_size=block_size, sm_scale=sm_scale)


def block_sparse_flash_decode_leftpad_gqa_mask(q, k_cache, v_cache, cache_seqlens, block_mask, block_size=32,
                                               sm_scale=None, first_block_unmasked=False, debug=False):
    """Seed name: decode over a left-padded cache (valid slots ``[S_max - len, S_max)``) with a block
    mask; ``first_block_unmasked=True`` always attends the block holding the first valid slot (default
    off, as in the seed). q ``[B, H_q, D]`` or ``[B, 1, H_q, D]``. ``debug=True`` (the seed's split
    partials) is not supported and raises. Returns ``out`` ``[B, H_q, D]`` (the seed squeezes a 4-D q)."""
    if debug:
        raise NotImplementedError(
            "seer_attn.block_sparse_flash_decode_leftpad_gqa_mask: debug=True (returning the split-KV "
            "partials and metadata) is not supported; call block_sparse_decode(..., return_lse=True) instead")
    if q.dim() == 4:
        if q.shape[1] != 1:
            raise ValueError("seer_attn.block_sparse_flash_decode_leftpad_gqa_mask: q must be [B, H, D] or "
                             f"[B, 1, H, D], got shape {tuple(q.shape)}")
        q = q.squeeze(1)
    return block_sparse_decode(q, k_cache, v_cache, cache_seqlens, block_mask=block_mask, block_size=block_size,
                               sm_scale=sm_scale, left_pad=True, first_block_unmasked=first_block_unmasked)
