"""Registration of the seer_attn ops: CPU implementation (the reference), fake kernels, autograd.

The schemas live in csrc/ops.cpp. CUDA implementations are registered in C++ by the extension; for an
op whose CUDA kernel is not part of this build (e.g. a ROCm or CPU-only build), the reference is
registered for CUDA as well, so every op works on every device. `kernel_status()` says which is which.
"""
import functools
import math

import torch
from torch._functorch.utils import enable_single_level_autograd_function

from . import checks, reference

NS = "seer_attn"
ATTN_FWD = ("block_sparse_2d_fwd", "block_sparse_1d_fwd")
ALL_OPS = tuple(reference.__all__)  # every op has its reference (the CPU implementation)

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
# called from here. The mask, cu_seqlens and ints are not differentiable. The backward ops, pooling
# and decode have an autograd that raises a clear error when a gradient reaches them.
#
# Each op gets an Autograd kernel built on an autograd.Function with a separate setup_context
# (torch.library.register_autograd generates a Function whose forward takes ctx, which torch.func
# transforms refuse), so torch.func.grad / vjp work like plain autograd and torch.compile.
# ---------------------------------------------------------------------------------------------
_lib = torch.library.Library(NS, "IMPL")


def _register_autograd(name, setup_context, backward):
    op = getattr(torch.ops.seer_attn, name).default
    below_autograd = torch._C._after_autograd_keyset

    def forward(*args):
        # Like a C++ autograd kernel: skip the autograd keys but keep the caller's grad mode (enabled,
        # or this Function would not run). autograd.Function disables it for forward; under nested
        # torch.func transforms the lower levels must still record their own nodes.
        with torch.enable_grad(), torch._C._AutoDispatchBelowAutograd():
            return op(*args)

    fn = type(f"seer_attn_{name}", (torch.autograd.function._SingleLevelFunction,), {
        "forward": staticmethod(forward),
        "setup_context": staticmethod(setup_context),
        "backward": staticmethod(backward),
    })

    def autograd_kernel(keyset, *args):
        if torch.is_grad_enabled() and torch._C._any_requires_grad(*args):
            if torch._C._are_functorch_transforms_active():
                # Inside torch.func.grad/vjp the dispatcher has already entered the transform's level:
                # this kernel sees that level's wrapper tensors, like a C++ autograd kernel would, and
                # records one single-level node on them (what functorch does for its own Functions).
                with enable_single_level_autograd_function():
                    return fn.apply(*args)
            return fn.apply(*args)
        with torch._C._AutoDispatchBelowAutograd():
            return op.redispatch(keyset & below_autograd, *args)

    _lib.impl(name, autograd_kernel, "Autograd", with_keyset=True)


def _make_autograd(kind):
    n_before_mask = 8  # q, k, v, cu_q, cu_k, max_q, max_k, block_mask
    n_fwd_extra = 5 if kind == "2d" else 4  # block sizes, sm_scale, causal, deterministic

    def setup_context(ctx, inputs, output):
        q, k, v, cu_q, cu_k, max_q, max_k, mask = inputs[:n_before_mask]
        ctx.n_inputs = len(inputs)
        extra = list(inputs[n_before_mask:])
        # The dispatcher drops trailing arguments equal to their schema default (deterministic=False).
        extra += [False] * (n_fwd_extra - len(extra))
        ctx.extra = extra
        ctx.maxes = (max_q, max_k)
        out, lse = output
        ctx.save_for_backward(q, k, v, out, lse, cu_q, cu_k, mask)
        # An unused output's gradient arrives as None instead of a zero tensor: no zeros to allocate,
        # and the backward op skips dlse entirely.
        ctx.set_materialize_grads(False)

    def backward(ctx, dout, dlse):
        q, k, v, out, lse, cu_q, cu_k, mask = ctx.saved_tensors
        if dout is None:
            dout = torch.zeros_like(out)
        elif dout.stride(-1) != 1:
            dout = dout.contiguous()
        if dlse is not None:
            dlse = dlse.contiguous()
        bwd = getattr(torch.ops.seer_attn, f"block_sparse_{kind}_bwd")
        dq, dk, dv = bwd(dout, q, k, v, out, lse, dlse, cu_q, cu_k, ctx.maxes[0], ctx.maxes[1], mask,
                         *ctx.extra)
        return (dq, dk, dv) + (None,) * (ctx.n_inputs - 3)

    _register_autograd(f"block_sparse_{kind}_fwd", setup_context, backward)


def _no_context(ctx, inputs, output):
    pass


def _register_not_differentiable(name, why):
    """Autograd for an op without a gradient formula: calling it on inputs that require grad still
    works (the outputs get a grad_fn), but any gradient that reaches it - a backward through its
    outputs, torch.autograd.grad, torch.func.grad - raises a RuntimeError naming the op, instead of
    autograd's fallback (a misleading error, or a silently missing term)."""
    message = f"{NS}::{name}: {why}"

    def backward(ctx, *grads):
        raise RuntimeError(message)

    _register_autograd(name, _no_context, backward)


def default_scale(head_dim):
    return 1.0 / math.sqrt(head_dim)


_register_impls()
_register_fakes()
_make_autograd("2d")
_make_autograd("1d")
for _kind in ("2d", "1d"):
    # The backward ops have no derivative formula: differentiating through a backward (double backward,
    # a gradient penalty, also when routed through an upstream weight) must fail, never run silently.
    _register_not_differentiable(
        f"block_sparse_{_kind}_bwd",
        "double backward is not supported by seer_attn (the backward op is not differentiable; "
        "a gradient penalty or other higher-order gradient through this attention cannot be computed)")
_register_not_differentiable(
    "attn_pooling",
    "not differentiable: the pooled maps are distillation targets; detach q and k "
    "(seer_attn.attention_pooling does) or compute the maps under torch.no_grad()")
_register_not_differentiable(
    "block_sparse_decode",
    "not differentiable: block_sparse_decode has no backward (inference only); use "
    "block_sparse_attn_2d / block_sparse_attn_1d for training, or call it under torch.no_grad()")
