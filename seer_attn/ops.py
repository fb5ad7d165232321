"""Registration of the seer_attn ops: CPU implementation (the reference), fake kernels, autograd.

The schemas live in csrc/ops.cpp. CUDA implementations are registered in C++ by the extension; for an
op whose CUDA kernel is not part of this build (e.g. a ROCm or CPU-only build), the reference is
registered for CUDA as well, so every op works on every device. `kernel_status()` says which is which.
"""
import functools
import math

import torch

from . import checks, reference

NS = "seer_attn"
ATTN_FWD = ("block_sparse_2d_fwd", "block_sparse_1d_fwd")
ALL_OPS = (
    "block_sparse_2d_fwd",
    "block_sparse_2d_bwd",
    "block_sparse_1d_fwd",
    "block_sparse_1d_bwd",
    "attn_pooling",
    "block_sparse_decode",
)

_status = {}


def _as_kernel(fn):
    """A reference function as an op kernel: kernels run below autograd, so the PyTorch ops inside
    must not record a graph of their own (autograd is the op's registered formula, or none)."""
    @functools.wraps(fn)
    def kernel(*args, **kwargs):
        with torch.no_grad():
            return fn(*args, **kwargs)
    return kernel


def _register_impls():
    for name in ALL_OPS:
        qual = f"{NS}::{name}"
        fn = _as_kernel(getattr(reference, name))
        torch.library.register_kernel(qual, "cpu", fn)
        if torch._C._dispatch_has_kernel_for_dispatch_key(qual, "CUDA"):
            # ROCm builds register their HIP kernels under the CUDA dispatch key too.
            _status[name] = "hip" if torch.version.hip is not None else "cuda"
        else:
            torch.library.register_kernel(qual, "cuda", fn)
            _status[name] = "reference"


def kernel_status():
    """{op name: "cuda" (compiled kernel) | "hip" (compiled MFMA kernel, ROCm build) | "reference" (pure-PyTorch
    fallback on the GPU)}.
    On CPU every op runs the reference."""
    return dict(_status)


# ---------------------------------------------------------------------------------------------
# Fake (meta) kernels: shapes only depend on shapes and int arguments, never on tensor data.
# ---------------------------------------------------------------------------------------------
def _attn_fwd_fake(kind):
    def fake(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, block_mask, *args):
        if kind == "2d":
            block_size_q, block_size_k, sm_scale, causal = args[:4]
        else:
            block_size_q, (block_size_k, sm_scale, causal) = 1, args[:3]
        checks.check_attention(f"block_sparse_{kind}_fwd", q, k, v, cu_seqlens_q, cu_seqlens_k,
                               max_seqlen_q, max_seqlen_k, block_mask, block_size_q, block_size_k,
                               sm_scale, kind)
        out = q.new_empty(q.shape)
        lse = q.new_empty((q.shape[1], q.shape[0]), dtype=torch.float32)
        return out, lse
    return fake


def _attn_bwd_fake(kind):
    def fake(dout, q, k, v, out, lse, dlse, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k,
             block_mask, *args):
        if kind == "2d":
            block_size_q, block_size_k, sm_scale, causal, deterministic = args[:5]
        else:
            block_size_q, (block_size_k, sm_scale, causal, deterministic) = 1, args[:4]
        checks.check_attention_bwd(f"block_sparse_{kind}_bwd", dout, q, k, v, out, lse, dlse,
                                   cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, block_mask,
                                   block_size_q, block_size_k, sm_scale, kind)
        return q.new_empty(q.shape), k.new_empty(k.shape), v.new_empty(v.shape)
    return fake


def _pooling_fake(q, k, cu_seqlens, max_seqlen, sm_scale, block_size, causal, gqa_reduce):
    checks.check_pooling("attn_pooling", q, k, cu_seqlens, max_seqlen, sm_scale, block_size)
    nb = (max_seqlen + block_size - 1) // block_size
    h_out = k.shape[1] if gqa_reduce else q.shape[1]
    batch = cu_seqlens.shape[0] - 1
    pooled_2d = q.new_empty((batch, h_out, nb, nb), dtype=torch.float32)
    pooled_1d = q.new_empty((h_out, q.shape[0], nb), dtype=q.dtype)
    return pooled_2d, pooled_1d


def _decode_fake(q, k_cache, v_cache, cache_seqlens, block_mask, block_indices, block_size, sm_scale,
                 left_pad, first_block_unmasked, num_splits, block_table=None):
    checks.check_decode("block_sparse_decode", q, k_cache, v_cache, cache_seqlens, block_mask,
                        block_indices, block_size, sm_scale, num_splits, left_pad, block_table)
    out = q.new_empty(q.shape)
    lse = q.new_empty(q.shape[:-1], dtype=torch.float32)
    return out, lse


def _register_fakes():
    for kind in ("2d", "1d"):
        torch.library.register_fake(f"{NS}::block_sparse_{kind}_fwd", _attn_fwd_fake(kind))
        torch.library.register_fake(f"{NS}::block_sparse_{kind}_bwd", _attn_bwd_fake(kind))
    torch.library.register_fake(f"{NS}::attn_pooling", _pooling_fake)
    torch.library.register_fake(f"{NS}::block_sparse_decode", _decode_fake)


# ---------------------------------------------------------------------------------------------
# Autograd: the forward ops are differentiable in q, k, v (and through lse); the backward ops are
# called from here. The mask, cu_seqlens and ints are not differentiable.
# ---------------------------------------------------------------------------------------------
def _make_autograd(kind):
    n_before_mask = 8  # q, k, v, cu_q, cu_k, max_q, max_k, block_mask

    def setup_context(ctx, inputs, output):
        q, k, v, cu_q, cu_k, max_q, max_k, mask = inputs[:n_before_mask]
        ctx.extra = inputs[n_before_mask:]  # block sizes, sm_scale, causal[, deterministic]
        ctx.maxes = (max_q, max_k)
        out, lse = output
        ctx.save_for_backward(q, k, v, out, lse, cu_q, cu_k, mask)

    def backward(ctx, dout, dlse):
        q, k, v, out, lse, cu_q, cu_k, mask = ctx.saved_tensors
        extra = list(ctx.extra)
        # Schema defaults are not passed to setup_context when the caller omitted them.
        n_fwd_extra = 5 if kind == "2d" else 4
        if len(extra) < n_fwd_extra:
            extra.append(False)
        if dout is None:
            dout = torch.zeros_like(out)
        elif dout.stride(-1) != 1:
            dout = dout.contiguous()
        if dlse is not None:
            dlse = dlse.contiguous()
        bwd = getattr(torch.ops.seer_attn, f"block_sparse_{kind}_bwd")
        dq, dk, dv = bwd(dout, q, k, v, out, lse, dlse, cu_q, cu_k, ctx.maxes[0], ctx.maxes[1], mask,
                         *extra)
        return (dq, dk, dv) + (None,) * (n_before_mask - 3 + len(ctx.extra))

    torch.library.register_autograd(f"{NS}::block_sparse_{kind}_fwd", backward,
                                    setup_context=setup_context)


def _make_backward_ops_non_differentiable(kind):
    """Double backward (a gradient of the gradient, e.g. a gradient penalty) is not implemented: the
    backward op gets a formula that says so, instead of PyTorch's generic errors or a silent value."""
    op = f"{NS}::block_sparse_{kind}_bwd"

    def setup_context(ctx, inputs, output):
        pass

    def backward(ctx, *grads):
        raise RuntimeError(f"{op}: double backward is not supported by seer_attn (the gradient of the attention "
                           "gradient, e.g. a gradient penalty through block_sparse_attn_{2d,1d}, is not implemented)")

    torch.library.register_autograd(op, backward, setup_context=setup_context)


def _make_outputs_non_differentiable(name):
    """Pooling (distillation targets) and decode have no gradient: their outputs never require grad,
    whatever their inputs do (a loss on them alone then fails with PyTorch's 'does not require grad')."""
    def setup_context(ctx, inputs, output):
        ctx.mark_non_differentiable(*output)

    def backward(ctx, *grads):  # never called: every output is non-differentiable
        raise RuntimeError(f"{NS}::{name} is not differentiable")

    torch.library.register_autograd(f"{NS}::{name}", backward, setup_context=setup_context)


def default_scale(head_dim):
    return 1.0 / math.sqrt(head_dim)


_register_impls()
_register_fakes()
_make_autograd("2d")
_make_autograd("1d")
_make_backward_ops_non_differentiable("2d")
_make_backward_ops_non_differentiable("1d")
_make_outputs_non_differentiable("attn_pooling")
_make_outputs_non_differentiable("block_sparse_decode")
