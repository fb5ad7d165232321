"""Input validation for the seer_attn ops, shared by the reference (seer_attn/reference.py) and the fake
(meta) kernels (seer_attn/ops.py). The C++ API layer (csrc/*/..._api.cpp) mirrors the same messages.

Two kinds of checks:

* ``check_<family>(...)`` look only at metadata (shapes, dtypes, devices, strides and the plain
  int/float arguments). They never read tensor values, so they work on fake/meta tensors and inside
  ``torch.compile`` graphs. With symbolic shapes and a symbolic ``max_seqlen`` (a SymInt, see
  csrc/ops.cpp) they never guard on a value: the relations between sizes and ``max_seqlen`` go
  through ``_require`` (``torch._check``), which adds a guard that only fails on bad input (backed
  symbols: a new length does not recompile) or a runtime assert (unbacked symbols, e.g. a
  ``max_seqlen`` from ``.item()`` inside the graph). Messages print a symbol's concrete value.
* ``check_data_<family>(...)`` read tensor VALUES (cu_seqlens, cache_seqlens): they copy small index
  tensors to the host (a device sync on CUDA). The reference calls them; fake kernels must not.

Every error is a ``RuntimeError`` whose message has the form

    seer_attn::<op>: <argument> <what is wrong>, got <value>

Exact message templates (``{op}`` is the op name, e.g. ``block_sparse_2d_fwd``; ``{arg}`` the argument
name as in the op schema; dtypes print as ``torch.float16``, shapes as ``[2, 3]``, devices as ``cuda:0``):

  metadata (check_attention / check_attention_bwd / check_pooling / check_decode)
  ---------------------------------------------------------------------------------------------------
  {arg} must be a {n}-D tensor {layout}, got shape {shape}            rank; layout e.g. [T_q, H_q, D]
  q must be float16 or bfloat16, got {dtype}
  {arg} must have the same dtype as q ({q.dtype}), got {dtype}         k, v, k_cache, v_cache, dout, out
  {arg} must be on the same device as q ({q.device}), got {device}     every tensor argument
  {arg} must have a contiguous last dim (stride(-1) == 1), got stride(-1) = {s}     q, k, v, caches
  q head dim must be one of 64, 128, 256, got {D}
  {arg} head dim must equal q's ({D}), got {d}                         k, v, k_cache, v_cache
  {arg} must have at least one head, got {h}                           k, k_cache
  {arg} number of heads must divide q's ({H_q}), got {h}               k, k_cache
  v must have the same shape as k ({shape}), got {shape}               (v_cache / k_cache likewise)
  {arg} must be int32, got {dtype}                                     cu_seqlens*, cache_seqlens, block_indices
  {arg} must be a 1-D tensor of B+1 >= 1 entries, got shape {shape}    cu_seqlens*
  cu_seqlens_k must have the same number of entries as cu_seqlens_q ({n}), got {m}
  {arg} must be a multiple of 16 in [16, 256], got {value}             block_size, block_size_q, block_size_k
  {arg} must be >= 0, got {value}                                      max_seqlen*, num_splits
  sm_scale must be finite and > 0, got {value}
  block_mask must be bool or an integer dtype, got {dtype}
  {arg} size(0) must equal the batch size ({B}), got {n}              block_mask; decode: k_cache, cache_seqlens, block_indices
  block_mask size(1) must be H_q ({H_q}), H_kv ({H_kv}) or 1, got {n}           (attention)
  {arg} size(1) must equal the number of kv heads ({H_kv}), got {n}    (decode: block_mask, block_indices)
  block_mask size(2) must be >= ceil(max_seqlen_q / block_size_q) ({n}), got {m}   (2D)
  block_mask size(2) must be >= max_seqlen_q ({n}), got {m}                        (1D)
  block_mask size(3) must be >= ceil(max_seqlen_k / block_size_k) ({n}), got {m}
  block_mask size(2) must be >= ceil(S_max / block_size) ({n}), got {m}            (decode)
  k must have the same number of tokens as q ({T}), got {t}            (attn_pooling)
  cache_seqlens must be a 1-D tensor [B], got shape {shape}
  block_mask/block_indices exactly one must be given, got both | got neither    (decode)
  q must be a 3-D tensor [B, H_q, D] or a 4-D tensor [B, L, H_q, D], got shape {shape}   (decode)
  q size(1) (new tokens per sequence, L) must be in [1, 16], got {L}                     (decode)
  block_table must be a 2-D tensor [B, max_pages] | must be int32 | size(0) must equal the batch size
  k_cache page size (size(1) with a block_table) must be a positive multiple of 16, got {n}
  left_pad must be False with a block_table (a paged cache is right-padded), got True
  dout must have the same shape as q ({shape}), got {shape}            (out likewise)
  lse must be a tensor, got None
  lse must be float32, got {dtype}                                     (dlse likewise)
  lse must have shape [H_q, T_q] ({shape}), got {shape}                (dlse likewise)

  data (check_data_attention / check_data_pooling / check_data_decode)
  ---------------------------------------------------------------------------------------------------
  {arg}[0] must be 0, got {value}                                      cu_seqlens*
  {arg} must be non-decreasing, got {arg}[{i+1}] = {a} < {arg}[{i}] = {b}
  {arg}[-1] must be <= {x}.size(0) ({T}), got {value}                  x = q for _q / pooling, k for _k
  {max_arg} must be >= the longest sequence in {arg} ({L}), got {value}
  cache_seqlens entries must be in [0, S_max] ([0, {S}]), got {value}
  with SEER_ATTN_CHECK_INPUTS=1 only (decode):
  block_indices entries must be -1 or in [0, {nb}) (ceil(S_max / block_size)), got {value}
  block_table entries of used pages must be in [0, num_pages) ([0, {n}]), got block_table[b, p] = {value}
"""
import math
import os

import torch
from torch.fx.experimental.symbolic_shapes import sym_eq

__all__ = [
    "SUPPORTED_HEAD_DIMS",
    "check_attention",
    "check_attention_bwd",
    "check_data_attention",
    "check_pooling",
    "check_data_pooling",
    "check_decode",
    "check_data_decode",
    "check_inputs_enabled",
    "decode_geometry",
]

# Head dims the kernels are built for. The reference itself computes any head dim; this tuple is what
# the op contract accepts (extend it together with the C++ checks and kernel instantiations).
SUPPORTED_HEAD_DIMS = (64, 128, 256)
# Block sizes: multiples of BLOCK_MULTIPLE in [MIN_BLOCK_SIZE, MAX_BLOCK_SIZE].
MIN_BLOCK_SIZE, MAX_BLOCK_SIZE, BLOCK_MULTIPLE = 16, 256, 16

_QKV_DTYPES = (torch.float16, torch.bfloat16)


# ---------------------------------------------------------------------------------------------------
# Small helpers. Each raises RuntimeError("seer_attn::<op>: <message>").
# ---------------------------------------------------------------------------------------------------
def _fail(op, message):
    raise RuntimeError(f"seer_attn::{op}: {message}")


def _show(x):
    """A value for a message: the concrete value of a symbolic int (its hint) where one is known."""
    if isinstance(x, torch.SymInt):
        node = x.node
        if node.has_hint():
            return str(node.hint)
    return str(x)


def _shape(t):
    return "[" + ", ".join(_show(n) for n in t.shape) + "]"


def _require(op, cond, message):
    """Fail with ``message()`` unless ``cond``. A plain bool is tested directly; a SymBool (shapes or
    max_seqlen symbolic under torch.compile) goes through ``torch._check``: a guard that is true for
    every valid input (so valid inputs never recompile), or a runtime assert for unbacked symbols,
    where a bool() would raise a data-dependent-guard error."""
    if isinstance(cond, bool):
        if not cond:
            _fail(op, message())
    else:
        torch._check(cond, lambda: f"seer_attn::{op}: {message()}")


def _check_rank(op, name, t, ndim, layout):
    if t.dim() != ndim:
        _fail(op, f"{name} must be a {ndim}-D tensor {layout}, got shape {_shape(t)}")


def _check_device(op, name, t, ref):
    if t.device != ref.device:
        _fail(op, f"{name} must be on the same device as q ({ref.device}), got {t.device}")


def _check_qkv_dtype(op, name, t, q):
    """q must be fp16/bf16; every other floating input must share q's dtype."""
    if name == "q":
        if t.dtype not in _QKV_DTYPES:
            _fail(op, f"q must be float16 or bfloat16, got {t.dtype}")
    elif t.dtype != q.dtype:
        _fail(op, f"{name} must have the same dtype as q ({q.dtype}), got {t.dtype}")


def _check_last_dim_contiguous(op, name, t):
    # A size-1 last dim has an arbitrary stride and is trivially contiguous.
    if t.size(-1) != 1 and t.stride(-1) != 1:
        _fail(op, f"{name} must have a contiguous last dim (stride(-1) == 1), got stride(-1) = {t.stride(-1)}")


def _check_qkv_tensors(op, named):
    """q and its key/value tensors, given as ((name, tensor), ...) with q first: each has q's 16-bit
    dtype, the others are on q's device, and every last dim is contiguous (checked in this order)."""
    q = named[0][1]
    for name, t in named:
        _check_qkv_dtype(op, name, t, q)
    for name, t in named[1:]:
        _check_device(op, name, t, q)
    for name, t in named:
        _check_last_dim_contiguous(op, name, t)


def _check_head_dim(op, name, d, q_d):
    if name == "q":
        if d not in SUPPORTED_HEAD_DIMS:
            dims = ", ".join(str(x) for x in SUPPORTED_HEAD_DIMS)
            _fail(op, f"q head dim must be one of {dims}, got {d}")
    elif d != q_d:
        _fail(op, f"{name} head dim must equal q's ({q_d}), got {d}")


def _check_kv_heads(op, name, h_kv, h_q):
    if h_kv < 1:
        _fail(op, f"{name} must have at least one head, got {h_kv}")
    if h_q % h_kv != 0:
        _fail(op, f"{name} number of heads must divide q's ({h_q}), got {h_kv}")


def _check_block_size(op, name, value):
    if not (MIN_BLOCK_SIZE <= value <= MAX_BLOCK_SIZE and value % BLOCK_MULTIPLE == 0):
        _fail(op, f"{name} must be a multiple of {BLOCK_MULTIPLE} in [{MIN_BLOCK_SIZE}, {MAX_BLOCK_SIZE}], "
                  f"got {value}")


def _check_non_negative(op, name, value):
    _require(op, value >= 0, lambda: f"{name} must be >= 0, got {_show(value)}")


def _check_sm_scale(op, sm_scale):
    if not (math.isfinite(float(sm_scale)) and float(sm_scale) > 0):
        _fail(op, f"sm_scale must be finite and > 0, got {sm_scale}")


def _check_int32(op, name, t):
    if t.dtype != torch.int32:
        _fail(op, f"{name} must be int32, got {t.dtype}")


def _check_cu_seqlens(op, name, cu, q):
    """cu_seqlens: int32, 1-D, at least one entry (B + 1 with B >= 0), on q's device."""
    _check_int32(op, name, cu)
    if cu.dim() != 1 or cu.size(0) < 1:
        _fail(op, f"{name} must be a 1-D tensor of B+1 >= 1 entries, got shape {_shape(cu)}")
    _check_device(op, name, cu, q)


def _check_mask_dtype(op, mask):
    if mask.dtype.is_floating_point or mask.dtype.is_complex:
        _fail(op, f"block_mask must be bool or an integer dtype, got {mask.dtype}")


def _ceil_div(a, b):
    return (a + b - 1) // b


def _same_sizes(a, b):
    """Size equality of two shapes as one (Sym)bool, without guarding on each size."""
    return sym_eq(list(a), list(b))


def _same_shape(a, b):
    return a.dim() == b.dim() and _same_sizes(a.shape, b.shape)


# ---------------------------------------------------------------------------------------------------
# 1 + 2. Block-sparse varlen attention (2D and 1D masks)
# ---------------------------------------------------------------------------------------------------
def check_attention(op, q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, block_mask,
                    block_size_q, block_size_k, sm_scale, mask_kind):
    """Metadata checks of block_sparse_{2d,1d}_fwd (and the shared part of the backward).

    mask_kind: "2d" (block_mask [B, H_mask, >= ceil(max_seqlen_q/B_q), >= ceil(max_seqlen_k/B_k)]) or
    "1d" (block_mask [B, H_mask, >= max_seqlen_q, >= ceil(max_seqlen_k/B_k)]; block_size_q is ignored).
    """
    if mask_kind not in ("2d", "1d"):
        raise ValueError(f"check_attention: mask_kind must be '2d' or '1d', got {mask_kind!r}")
    # q/k/v: rank, dtype, device, layout, head dims, heads.
    _check_rank(op, "q", q, 3, "[T_q, H_q, D]")
    _check_rank(op, "k", k, 3, "[T_k, H_kv, D]")
    _check_rank(op, "v", v, 3, "[T_k, H_kv, D]")
    _check_qkv_tensors(op, (("q", q), ("k", k), ("v", v)))
    for name, t in (("q", q), ("k", k), ("v", v)):
        _check_head_dim(op, name, t.size(2), q.size(2))
    _check_kv_heads(op, "k", k.size(1), q.size(1))
    _require(op, _same_shape(v, k), lambda: f"v must have the same shape as k ({_shape(k)}), got {_shape(v)}")

    # Sequences.
    _check_cu_seqlens(op, "cu_seqlens_q", cu_seqlens_q, q)
    _check_cu_seqlens(op, "cu_seqlens_k", cu_seqlens_k, q)
    _require(op, cu_seqlens_k.size(0) == cu_seqlens_q.size(0),
             lambda: f"cu_seqlens_k must have the same number of entries as cu_seqlens_q "
                     f"({_show(cu_seqlens_q.size(0))}), got {_show(cu_seqlens_k.size(0))}")
    _check_non_negative(op, "max_seqlen_q", max_seqlen_q)
    _check_non_negative(op, "max_seqlen_k", max_seqlen_k)

    # Scalars.
    if mask_kind == "2d":
        _check_block_size(op, "block_size_q", block_size_q)
    _check_block_size(op, "block_size_k", block_size_k)
    _check_sm_scale(op, sm_scale)

    # Mask.
    batch, h_q, h_kv = cu_seqlens_q.size(0) - 1, q.size(1), k.size(1)
    _check_rank(op, "block_mask", block_mask, 4, "[B, H_mask, rows, key_blocks]")
    _check_mask_dtype(op, block_mask)
    _check_device(op, "block_mask", block_mask, q)
    _require(op, block_mask.size(0) == batch,
             lambda: f"block_mask size(0) must equal the batch size ({_show(batch)}), got {_show(block_mask.size(0))}")
    h_mask = block_mask.size(1)
    if h_mask != h_q and h_mask != h_kv and h_mask != 1:
        _fail(op, f"block_mask size(1) must be H_q ({h_q}), H_kv ({h_kv}) or 1, got {h_mask}")
    if mask_kind == "2d":
        need_rows = _ceil_div(max_seqlen_q, block_size_q)
        _require(op, block_mask.size(2) >= need_rows,
                 lambda: f"block_mask size(2) must be >= ceil(max_seqlen_q / block_size_q) ({_show(need_rows)}), "
                         f"got {_show(block_mask.size(2))}")
    else:
        _require(op, block_mask.size(2) >= max_seqlen_q,
                 lambda: f"block_mask size(2) must be >= max_seqlen_q ({_show(max_seqlen_q)}), "
                         f"got {_show(block_mask.size(2))}")
    need_cols = _ceil_div(max_seqlen_k, block_size_k)
    _require(op, block_mask.size(3) >= need_cols,
             lambda: f"block_mask size(3) must be >= ceil(max_seqlen_k / block_size_k) ({_show(need_cols)}), "
                     f"got {_show(block_mask.size(3))}")


def check_attention_bwd(op, dout, q, k, v, out, lse, dlse, cu_seqlens_q, cu_seqlens_k, max_seqlen_q,
                        max_seqlen_k, block_mask, block_size_q, block_size_k, sm_scale, mask_kind):
    """Metadata checks of block_sparse_{2d,1d}_bwd: everything check_attention checks, plus dout / out
    (like q), lse (float32 [H_q, T_q]) and dlse (None or like lse). Strides of dout/out/lse/dlse are
    not checked: the autograd wrapper / C++ layer brings them to a supported layout."""
    check_attention(op, q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, block_mask,
                    block_size_q, block_size_k, sm_scale, mask_kind)
    for name, t in (("dout", dout), ("out", out)):
        _check_rank(op, name, t, 3, "[T_q, H_q, D]")
        _require(op, _same_shape(t, q),
                 lambda: f"{name} must have the same shape as q ({_shape(q)}), got {_shape(t)}")
        _check_qkv_dtype(op, name, t, q)
        _check_device(op, name, t, q)
    lse_shape = [q.size(1), q.size(0)]
    for name, t in (("lse", lse), ("dlse", dlse)):
        if t is None:
            if name == "lse":
                _fail(op, "lse must be a tensor, got None")
            continue
        if t.dtype != torch.float32:
            _fail(op, f"{name} must be float32, got {t.dtype}")
        _require(op, t.dim() == 2 and _same_sizes(t.shape, lse_shape),
                 lambda: f"{name} must have shape [H_q, T_q] ([{_show(lse_shape[0])}, {_show(lse_shape[1])}]), "
                         f"got {_shape(t)}")
        _check_device(op, name, t, q)


def _check_data_cu_seqlens(op, name, cu, total, total_name, max_name, max_seqlen):
    """cu_seqlens values: start at 0, non-decreasing, last <= total rows, every length <= max_seqlen."""
    values = cu.tolist()
    if values[0] != 0:
        _fail(op, f"{name}[0] must be 0, got {values[0]}")
    longest = 0
    for i in range(len(values) - 1):
        length = values[i + 1] - values[i]
        if length < 0:
            _fail(op, f"{name} must be non-decreasing, got {name}[{i + 1}] = {values[i + 1]} < "
                      f"{name}[{i}] = {values[i]}")
        longest = max(longest, length)
    if values[-1] > total:
        _fail(op, f"{name}[-1] must be <= {total_name}.size(0) ({total}), got {values[-1]}")
    if longest > max_seqlen:
        _fail(op, f"{max_name} must be >= the longest sequence in {name} ({longest}), got {max_seqlen}")


def check_data_attention(op, q, k, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k):
    """Value checks of cu_seqlens_q / cu_seqlens_k (reads them on the host: not for fake kernels)."""
    _check_data_cu_seqlens(op, "cu_seqlens_q", cu_seqlens_q, q.size(0), "q", "max_seqlen_q", max_seqlen_q)
    _check_data_cu_seqlens(op, "cu_seqlens_k", cu_seqlens_k, k.size(0), "k", "max_seqlen_k", max_seqlen_k)


# ---------------------------------------------------------------------------------------------------
# 3. Attention pooling
# ---------------------------------------------------------------------------------------------------
def check_pooling(op, q, k, cu_seqlens, max_seqlen, sm_scale, block_size):
    """Metadata checks of attn_pooling: q [T, H_q, D], k [T, H_kv, D] (same T), cu_seqlens int32 [B+1]."""
    _check_rank(op, "q", q, 3, "[T, H_q, D]")
    _check_rank(op, "k", k, 3, "[T, H_kv, D]")
    _check_qkv_dtype(op, "q", q, q)
    _check_qkv_dtype(op, "k", k, q)
    _check_device(op, "k", k, q)
    _check_last_dim_contiguous(op, "q", q)
    _check_last_dim_contiguous(op, "k", k)
    _check_head_dim(op, "q", q.size(2), q.size(2))
    _check_head_dim(op, "k", k.size(2), q.size(2))
    _check_kv_heads(op, "k", k.size(1), q.size(1))
    _require(op, k.size(0) == q.size(0),
             lambda: f"k must have the same number of tokens as q ({_show(q.size(0))}), got {_show(k.size(0))}")
    _check_cu_seqlens(op, "cu_seqlens", cu_seqlens, q)
    _check_non_negative(op, "max_seqlen", max_seqlen)
    _check_block_size(op, "block_size", block_size)
    _check_sm_scale(op, sm_scale)


def check_data_pooling(op, q, cu_seqlens, max_seqlen):
    """Value checks of cu_seqlens for attn_pooling (reads it on the host)."""
    _check_data_cu_seqlens(op, "cu_seqlens", cu_seqlens, q.size(0), "q", "max_seqlen", max_seqlen)


# ---------------------------------------------------------------------------------------------------
# 4. Block-sparse flash-decoding
# ---------------------------------------------------------------------------------------------------
# Multi-token decode: q [B, L, H_q, D] with 1 <= L <= MAX_DECODE_TOKENS new tokens per sequence.
MAX_DECODE_TOKENS = 16
# Paged caches: the page size (k_cache.size(1) with a block_table) is a multiple of PAGE_MULTIPLE.
PAGE_MULTIPLE = 16


def decode_geometry(q, k_cache, block_table):
    """(batch, L, H_q, H_kv, S_max) of a decode call from shapes only. S_max, the logical slots per
    sequence, is k_cache.size(1) for a dense cache and max_pages * page_size for a paged one."""
    batch = q.size(0)
    n_tok = q.size(1) if q.dim() == 4 else 1
    h_q = q.size(-2)
    h_kv = k_cache.size(2)
    if block_table is None:
        s_max = k_cache.size(1)
    else:
        s_max = block_table.size(1) * k_cache.size(1)
    return batch, n_tok, h_q, h_kv, s_max


def check_decode(op, q, k_cache, v_cache, cache_seqlens, block_mask, block_indices, block_size, sm_scale,
                 num_splits=0, left_pad=False, block_table=None):
    """Metadata checks of block_sparse_decode: q [B, H_q, D] or [B, L, H_q, D] (1 <= L <= 16), caches
    [B, S_max, H_kv, D] (or, with block_table int32 [B, max_pages], paged [num_pages, page_size, H_kv, D]
    with page_size a multiple of 16 and S_max = max_pages * page_size), cache_seqlens int32 [B], exactly
    one of block_mask [B, H_kv, >= ceil(S_max/block_size)] (bool/integer) or block_indices int32
    [B, H_kv, K]. left_pad and block_table exclude each other."""
    if q.dim() not in (3, 4):
        _fail(op, f"q must be a 3-D tensor [B, H_q, D] or a 4-D tensor [B, L, H_q, D], got shape {_shape(q)}")
    paged = block_table is not None
    layout = "[num_pages, page_size, H_kv, D]" if paged else "[B, S_max, H_kv, D]"
    _check_rank(op, "k_cache", k_cache, 4, layout)
    _check_rank(op, "v_cache", v_cache, 4, layout)
    _check_qkv_tensors(op, (("q", q), ("k_cache", k_cache), ("v_cache", v_cache)))
    _check_head_dim(op, "q", q.size(-1), q.size(-1))
    _check_head_dim(op, "k_cache", k_cache.size(3), q.size(-1))
    _check_head_dim(op, "v_cache", v_cache.size(3), q.size(-1))
    _check_kv_heads(op, "k_cache", k_cache.size(2), q.size(-2))
    if v_cache.shape != k_cache.shape:
        _fail(op, f"v_cache must have the same shape as k_cache ({_shape(k_cache)}), got {_shape(v_cache)}")
    batch = q.size(0)
    if q.dim() == 4 and not (1 <= q.size(1) <= MAX_DECODE_TOKENS):
        _fail(op, f"q size(1) (new tokens per sequence, L) must be in [1, {MAX_DECODE_TOKENS}], got {q.size(1)}")
    if paged:
        _check_rank(op, "block_table", block_table, 2, "[B, max_pages]")
        _check_int32(op, "block_table", block_table)
        _check_device(op, "block_table", block_table, q)
        if block_table.size(0) != batch:
            _fail(op, f"block_table size(0) must equal the batch size ({batch}), got {block_table.size(0)}")
        page = k_cache.size(1)
        if page < PAGE_MULTIPLE or page % PAGE_MULTIPLE != 0:
            _fail(op, f"k_cache page size (size(1) with a block_table) must be a positive multiple of "
                      f"{PAGE_MULTIPLE}, got {page}")
        if left_pad:
            _fail(op, "left_pad must be False with a block_table (a paged cache is right-padded), got True")
    elif k_cache.size(0) != batch:
        _fail(op, f"k_cache size(0) must equal the batch size ({batch}), got {k_cache.size(0)}")
    _, _, _, h_kv, s_max = decode_geometry(q, k_cache, block_table)

    _check_int32(op, "cache_seqlens", cache_seqlens)
    if cache_seqlens.dim() != 1:
        _fail(op, f"cache_seqlens must be a 1-D tensor [B], got shape {_shape(cache_seqlens)}")
    if cache_seqlens.size(0) != batch:
        _fail(op, f"cache_seqlens size(0) must equal the batch size ({batch}), "
                  f"got {cache_seqlens.size(0)}")
    _check_device(op, "cache_seqlens", cache_seqlens, q)

    _check_block_size(op, "block_size", block_size)
    _check_sm_scale(op, sm_scale)
    _check_non_negative(op, "num_splits", num_splits)

    if (block_mask is None) == (block_indices is None):
        _fail(op, "block_mask/block_indices exactly one must be given, got "
                  + ("neither" if block_mask is None else "both"))
    if block_mask is not None:
        _check_rank(op, "block_mask", block_mask, 3, "[B, H_kv, key_blocks]")
        _check_mask_dtype(op, block_mask)
        _check_device(op, "block_mask", block_mask, q)
        if block_mask.size(0) != batch:
            _fail(op, f"block_mask size(0) must equal the batch size ({batch}), got {block_mask.size(0)}")
        if block_mask.size(1) != h_kv:
            _fail(op, f"block_mask size(1) must equal the number of kv heads ({h_kv}), got {block_mask.size(1)}")
        need = _ceil_div(s_max, block_size)
        if block_mask.size(2) < need:
            _fail(op, f"block_mask size(2) must be >= ceil(S_max / block_size) ({need}), got {block_mask.size(2)}")
    else:
        _check_rank(op, "block_indices", block_indices, 3, "[B, H_kv, K]")
        _check_int32(op, "block_indices", block_indices)
        _check_device(op, "block_indices", block_indices, q)
        if block_indices.size(0) != batch:
            _fail(op, f"block_indices size(0) must equal the batch size ({batch}), "
                      f"got {block_indices.size(0)}")
        if block_indices.size(1) != h_kv:
            _fail(op, f"block_indices size(1) must equal the number of kv heads ({h_kv}), "
                      f"got {block_indices.size(1)}")


def check_inputs_enabled():
    """SEER_ATTN_CHECK_INPUTS=1: also run the value checks that the CUDA ops only do on request
    (attention / pooling cu_seqlens, decode cache_seqlens; here, where the CPU reference checks the
    rest always: decode block_indices and block_table entries), read per call."""
    return os.environ.get("SEER_ATTN_CHECK_INPUTS") == "1"


def check_data_decode(op, k_cache, cache_seqlens, block_indices=None, block_size=None, block_table=None,
                      s_max=None, strict=False):
    """Value checks of block_sparse_decode (reads the tensors on the host): cache_seqlens entries in
    [0, S_max]; with strict (SEER_ATTN_CHECK_INPUTS=1) also every block_indices entry in {-1} or
    [0, ceil(S_max / block_size)), and every block_table entry of a page holding a valid slot
    (page p < ceil(len / page_size)) in [0, num_pages). Without strict, such entries are ignored
    (indices) or clamped into [0, num_pages) (table), never read out of bounds."""
    if s_max is None:
        s_max = k_cache.size(1)
    lens = cache_seqlens.tolist()
    for value in lens:
        if value < 0 or value > s_max:
            _fail(op, f"cache_seqlens entries must be in [0, S_max] ([0, {s_max}]), got {value}")
    if not strict:
        return
    if block_indices is not None and block_indices.numel() > 0:
        nb = _ceil_div(s_max, block_size)
        idx = block_indices.detach().cpu()
        bad = (idx < -1) | (idx >= nb)
        if bool(bad.any()):
            value = int(idx[bad][0])
            _fail(op, f"block_indices entries must be -1 or in [0, {nb}) (ceil(S_max / block_size)), got {value}")
    if block_table is not None:
        page, n_pages = k_cache.size(1), k_cache.size(0)
        table = block_table.detach().cpu()
        for b, length in enumerate(lens):
            used = table[b, :_ceil_div(length, page)]
            bad = (used < 0) | (used >= n_pages)
            if bool(bad.any()):
                p = int(torch.nonzero(bad)[0, 0])
                _fail(op, f"block_table entries of used pages must be in [0, num_pages) ([0, {n_pages})), "
                          f"got block_table[{b}, {p}] = {int(used[p])}")
