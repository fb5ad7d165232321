"""Input builders and the accuracy rule shared by the seer_attn tests."""
from __future__ import annotations

import math

import torch

LP_DTYPES = (torch.float16, torch.bfloat16)

# Absolute floor of the accuracy rule, relative to the magnitude of the true result.
# The rule is FlashAttention's: |X - X64| <= 2 * |X_lp - X64| + floor.  The floor only matters where
# the low-precision naive happens to be (nearly) exact; what an honest kernel can still differ by
# there is float32 accumulation order (its accumulators are fp32, the truth is fp64): a few units
# of fp32 roundoff (6e-8) times sqrt(#terms) -- ~1e-6 relative for the sizes here.  1e-5 relative
# covers that with margin while staying ~50x below one fp16 ulp (4.9e-4 relative) and ~400x below
# one bf16 ulp, so the floor cannot hide an error at the precision of the inputs/outputs.
FLOOR_REL = 1e-5


def cu_from_lens(lens, device) -> torch.Tensor:
    cu = [0]
    for n in lens:
        cu.append(cu[-1] + int(n))
    return torch.tensor(cu, dtype=torch.int32, device=device)


def cdiv(a, b):
    return -(-a // b)


def rand_varlen(Tq, Tk, Hq, Hkv, D, dtype, device, *, noncontig=False, requires_grad=True):
    """q [Tq, Hq, D], k/v [Tk, Hkv, D].  noncontig: views of a fused qkv tensor (when Tq == Tk) or
    views with padded head/row strides; only the last dim is contiguous."""
    if noncontig and Tq == Tk:
        qkv = torch.randn(Tq, Hq + 2 * Hkv, D, dtype=dtype, device=device)
        q, k, v = qkv[:, :Hq], qkv[:, Hq:Hq + Hkv], qkv[:, Hq + Hkv:]
    elif noncontig:
        q = torch.randn(Tq, 2 * Hq, D, dtype=dtype, device=device)[:, ::2]
        k = torch.randn(Hkv, Tk, D, dtype=dtype, device=device).transpose(0, 1)
        v = torch.randn(Tk, Hkv, D + 32, dtype=dtype, device=device)[:, :, 16:16 + D]
    else:
        q = torch.randn(Tq, Hq, D, dtype=dtype, device=device)
        k = torch.randn(Tk, Hkv, D, dtype=dtype, device=device)
        v = torch.randn(Tk, Hkv, D, dtype=dtype, device=device)
    if noncontig:
        assert not q.is_contiguous() and not k.is_contiguous() and not v.is_contiguous()
    # detach() keeps the strides: the leaves stay non-contiguous views
    return tuple(t.detach().requires_grad_(requires_grad) for t in (q, k, v))


def _values_like(keep: torch.Tensor, mask_dtype) -> torch.Tensor:
    """Turn a bool keep-tensor into `mask_dtype` using unusual nonzero values (nonzero = keep)."""
    if mask_dtype == torch.bool:
        return keep
    g = torch.Generator().manual_seed(1234)
    if mask_dtype == torch.uint8:
        vals = torch.tensor([1, 255, 7], dtype=torch.uint8)
    elif mask_dtype in (torch.int64, torch.int32):
        # 256 and 65536 are nonzero but vanish in a naive cast to uint8 / int16
        vals = torch.tensor([1, 256, -1, 65536], dtype=mask_dtype)
    else:
        vals = torch.tensor([1, 2, -3], dtype=mask_dtype)
    pick = vals[torch.randint(0, len(vals), keep.shape, generator=g)]
    return torch.where(keep, pick, torch.zeros((), dtype=mask_dtype))


def random_keep(shape, density, *, generator=None):
    return torch.rand(shape, generator=generator) < density


def make_mask(keep: torch.Tensor, *, mask_dtype=torch.bool, layout="contig", device="cpu"):
    """keep: bool [B, H_mask, R, C] -> mask tensor on device.

    layout: 'contig'; 'transposed' (column-major storage of the last two dims);
    'expand_heads' (keep must have H_mask == 1 rows repeated; returned as a stride-0 view expanded
    to `expand_to` heads is done by the caller); 'strided' (a slice of a bigger tensor).
    """
    m = _values_like(keep, mask_dtype).to(device)
    if layout == "contig":
        return m.contiguous()
    if layout == "transposed":
        return m.transpose(-1, -2).contiguous().transpose(-1, -2)
    if layout == "strided":
        B, H, R, C = m.shape
        big = torch.zeros(B, H, R + 3, 2 * C + 1, dtype=m.dtype, device=device)
        big[:, :, 1:R + 1, 1:2 * C + 1:2] = m
        out = big[:, :, 1:R + 1, 1:2 * C + 1:2]
        assert torch.equal(out, m)
        return out
    raise ValueError(layout)


def to64(x):
    return x.detach().cpu().to(torch.float64)


class AccuracyError(AssertionError):
    pass


def check_accuracy(name, x, x64, xlp, *, require_lp_error=True, floor_rel=FLOOR_REL, zeros="auto"):
    """FlashAttention's rule: max|x - x64| <= 2 * max|xlp - x64| + floor.

    Also: no NaN; +-inf exactly where the truth is +-inf; exact zeros where the truth is
    structurally zero (`zeros`: a bool tensor broadcastable to x, "auto" = where x64 == 0 -- right
    only when no exact zero can arise by cancellation -- or None); and the low-precision naive
    error is nonzero (so the comparison can fail) if require_lp_error.
    Returns (err, err_lp, tol).
    """
    x, x64, xlp = to64(x), to64(x64), to64(xlp)
    if x.shape != x64.shape:
        raise AccuracyError(f"{name}: shape {tuple(x.shape)} != expected {tuple(x64.shape)}")
    if torch.isnan(x).any():
        raise AccuracyError(f"{name}: {int(torch.isnan(x).sum())} NaN values")
    inf64 = torch.isinf(x64)
    if not torch.equal(torch.isinf(x), inf64):
        bad = int((torch.isinf(x) != inf64).sum())
        raise AccuracyError(f"{name}: inf pattern differs from the reference at {bad} positions "
                            f"(expected {int(inf64.sum())} infs, got {int(torch.isinf(x).sum())})")
    if inf64.any() and not torch.equal(x[inf64], x64[inf64]):
        raise AccuracyError(f"{name}: wrong sign of inf")
    fin = ~inf64
    if zeros is not None:
        z = (x64 == 0) if isinstance(zeros, str) else zeros.cpu().expand(x64.shape)
        z = z & fin
        if z.any() and (x[z] != 0).any():
            raise AccuracyError(f"{name}: {int((x[z] != 0).sum())} values should be exactly 0 "
                                f"(max |x| there {x[z].abs().max().item():.3e})")
    if not fin.any():
        return 0.0, 0.0, 0.0
    err = (x - x64)[fin].abs().max().item()
    err_lp = (xlp - x64)[fin].abs().max().item()
    scale = x64[fin].abs().max().item()
    tol = 2 * err_lp + floor_rel * max(1.0, scale)
    if require_lp_error and not err_lp > 0:
        raise AccuracyError(f"{name}: the low-precision naive error is 0: this comparison cannot fail")
    if not err <= tol:
        raise AccuracyError(f"{name}: max|x - x64| = {err:.4e} > tol {tol:.4e} "
                            f"(2 * naive low-precision error {err_lp:.4e} + floor; |x64| max {scale:.3e})")
    return err, err_lp, tol


def default_scale(D):
    return 1.0 / math.sqrt(D)


# ---------------------------------------------------------------------------------------------
# Attention (2D / 1D) end to end: build inputs, run the package, compare with the naive.
# ---------------------------------------------------------------------------------------------
def build_attention_inputs(device, *, kind, seqlens_q, seqlens_k=None, Hq=4, Hkv=2, D=64,
                           dtype=torch.bfloat16, Bq=64, Bk=64, mask_heads="kv", mask_dtype=torch.bool,
                           mask_layout="contig", density=0.5, mask_rows_struct=None, extra_rows=0,
                           extra_cols=0, noncontig=False, keep=None, keep_fn=None, pad_max=0, seed=0):
    """Returns a dict of inputs.  mask_heads: 'q' (H_q), 'kv' (H_kv), 'one' (1), 'expand'
    (a 1-head mask expanded with stride 0 to H_q heads).  For kind='1d', mask_rows_struct=n draws
    one row per n tokens and repeats it (block-structured rows); None = every token row drawn
    independently.  keep_fn(keep) may edit the bool keep-tensor [B, H_mask, rows, cols].
    pad_max: max_seqlen_q/k are passed that much larger than the longest sequence (they are upper
    bounds; the mask is sized for them)."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    seqlens_k = list(seqlens_q) if seqlens_k is None else list(seqlens_k)
    B = len(seqlens_q)
    Tq, Tk = sum(seqlens_q), sum(seqlens_k)
    max_q, max_k = max(max(seqlens_q), 1) + pad_max, max(max(seqlens_k), 1) + pad_max
    q, k, v = rand_varlen(Tq, Tk, Hq, Hkv, D, dtype, device, noncontig=noncontig)
    Hm = {"q": Hq, "kv": Hkv, "one": 1, "expand": 1}[mask_heads]
    nbk = cdiv(max_k, Bk) + extra_cols
    if kind == "2d":
        rows = cdiv(max_q, Bq) + extra_rows
    else:
        rows = max_q + extra_rows
    if keep is None:
        if kind == "1d" and mask_rows_struct:
            nr = cdiv(rows, mask_rows_struct)
            keep = random_keep((B, Hm, nr, nbk), density, generator=g)
            keep = keep.repeat_interleave(mask_rows_struct, dim=2)[:, :, :rows]
        else:
            keep = random_keep((B, Hm, rows, nbk), density, generator=g)
    if keep_fn is not None:
        keep = keep_fn(keep)
    if mask_layout in ("expand_rows", "expand_batch"):
        # stride-0 over the row (query block / token) dim or the batch dim: one row / one sequence's
        # mask shared by all
        dim = 2 if mask_layout == "expand_rows" else 0
        base = make_mask(keep.narrow(dim, 0, 1), mask_dtype=mask_dtype, device=device)
        mask = base.expand(keep.shape)
        assert mask.stride(dim) == 0
    else:
        mask = make_mask(keep, mask_dtype=mask_dtype, layout=mask_layout, device=device)
    if mask_heads == "expand":
        mask = mask.expand(B, Hq, mask.shape[2], mask.shape[3])
        assert mask.stride(1) == 0
    dout = torch.randn(Tq, Hq, D, dtype=dtype, device=device)
    if noncontig:
        dout = torch.randn(Hq, Tq, D, dtype=dtype, device=device).transpose(0, 1)
    dlse = torch.randn(Hq, Tq, dtype=torch.float32, device=device)
    return dict(q=q, k=k, v=v, mask=mask, cu_q=cu_from_lens(seqlens_q, device),
                cu_k=cu_from_lens(seqlens_k, device), max_q=max_q, max_k=max_k, Bq=Bq, Bk=Bk,
                kind=kind, dout=dout, dlse=dlse, dtype=dtype)


def call_attention(inp, *, causal=True, sm_scale=None, deterministic=False, return_lse=True):
    import seer_attn
    if inp["kind"] == "2d":
        return seer_attn.block_sparse_attn_2d(
            inp["q"], inp["k"], inp["v"], inp["mask"], inp["cu_q"], inp["cu_k"], inp["max_q"], inp["max_k"],
            block_size_q=inp["Bq"], block_size_k=inp["Bk"], sm_scale=sm_scale, causal=causal,
            return_lse=return_lse, deterministic=deterministic)
    return seer_attn.block_sparse_attn_1d(
        inp["q"], inp["k"], inp["v"], inp["mask"], inp["cu_q"], inp["cu_k"], inp["max_q"], inp["max_k"],
        block_size_k=inp["Bk"], sm_scale=sm_scale, causal=causal, return_lse=return_lse,
        deterministic=deterministic)


def run_package_attention(inp, *, causal=True, sm_scale=None, deterministic=False, use_dlse=False,
                          backward=True):
    """Forward (+ backward with dout, and dlse if use_dlse) through the public API.
    Returns dict out, lse, dq, dk, dv (detached)."""
    for t in (inp["q"], inp["k"], inp["v"]):
        t.grad = None
    out, lse = call_attention(inp, causal=causal, sm_scale=sm_scale, deterministic=deterministic)
    res = {"out": out.detach().clone(), "lse": lse.detach().clone()}
    if backward:
        if use_dlse:
            # dlse is nonzero everywhere, also on rows whose lse is -inf: their gradient must be 0
            torch.autograd.backward([out, lse], [inp["dout"], inp["dlse"]])
        else:
            torch.autograd.backward([out], [inp["dout"]])
        res.update(dq=inp["q"].grad.detach().clone(), dk=inp["k"].grad.detach().clone(),
                   dv=inp["v"].grad.detach().clone())
    return res


def run_naive_attention(inp, *, causal=True, sm_scale=None, use_dlse=False, backward=True, dtype=torch.float64):
    import naive
    return naive.attention(
        inp["q"], inp["k"], inp["v"], inp["cu_q"], inp["cu_k"], inp["mask"], kind=inp["kind"],
        block_size_q=inp["Bq"], block_size_k=inp["Bk"], sm_scale=sm_scale, causal=causal, dtype=dtype,
        dout=inp["dout"] if backward else None, dlse=inp["dlse"] if (backward and use_dlse) else None)


def check_attention(inp, *, causal=True, sm_scale=None, use_dlse=False, backward=True,
                    require_lp_error=True, got=None):
    """Run package + naive (float64 and input dtype) and apply the accuracy rule to every output."""
    if got is None:
        got = run_package_attention(inp, causal=causal, sm_scale=sm_scale, use_dlse=use_dlse, backward=backward)
    ref = run_naive_attention(inp, causal=causal, sm_scale=sm_scale, use_dlse=use_dlse, backward=backward)
    lp = run_naive_attention(inp, causal=causal, sm_scale=sm_scale, use_dlse=use_dlse, backward=backward,
                             dtype=inp["dtype"])
    q = inp["q"]
    # contract: dtypes, shapes, devices
    assert got["out"].dtype == q.dtype and got["out"].shape == q.shape
    assert got["out"].device == q.device
    assert got["lse"].dtype == torch.float32
    assert got["lse"].shape == (q.shape[1], q.shape[0])
    names = ["out", "lse"] + (["dq", "dk", "dv"] if backward else [])
    if backward:
        assert got["dq"].shape == q.shape and got["dk"].shape == inp["k"].shape and got["dv"].shape == inp["v"].shape
        assert got["dq"].dtype == q.dtype and got["dk"].dtype == q.dtype and got["dv"].dtype == q.dtype
    # structural zeros (dq of a row with a single visible key is 0 in exact arithmetic by
    # cancellation only; a kernel legitimately leaves fp32 noise there, so no "auto" zeros)
    zeros = {"out": ref["row_empty"][..., None], "lse": None, "dq": ref["row_empty"][..., None],
             "dk": ref["key_unused"][..., None], "dv": ref["key_unused"][..., None]}
    stats = {}
    for n in names:
        rle = require_lp_error if not isinstance(require_lp_error, dict) else require_lp_error.get(n, True)
        stats[n] = check_accuracy(n, got[n], ref[n], lp[n], require_lp_error=rle, zeros=zeros[n])
    check_lse_strict(got["lse"], ref["lse"],
                     lambda: run_naive_attention(inp, causal=causal, sm_scale=sm_scale, backward=False,
                                                 dtype=torch.float32)["lse"])
    return got, ref, stats


def check_lse_strict(lse, lse64, lse32_fn):
    """A second, stricter yardstick for the float32 lse: the naive with float32 math on the same
    (low-precision) inputs.  The contract is fp32 accumulation, so a kernel never rounds scores to
    the input dtype; its lse differs from the truth by fp32 roundoff only (~1e-6 relative: exp2
    approximations, the rounded sm_scale*log2(e), the order of the row sum).  The bf16-rounded
    scores of the main rule would let an lse bias of ~1e-2 pass, which shifts every P = exp(s - lse)
    of the backward by 1%; here the floor (1e-5 * max|lse|) is the real bound."""
    check_accuracy("lse (fp32 yardstick)", lse, lse64, lse32_fn(), require_lp_error=False, zeros=None)
