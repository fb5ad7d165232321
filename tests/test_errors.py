"""Bad input raises RuntimeError/ValueError naming the op (`seer_attn::<op>`), the argument and the
bad value (SPEC "Conventions": bad input never crashes the process)."""
import re

import pytest
import torch

import seer_attn
from helpers import cu_from_lens

ops = torch.ops.seer_attn
BF16, FP16 = torch.bfloat16, torch.float16


def _shape_re(shape):
    """A shape printed as [a, b] or (a, b) (or torch.Size([a, b]))."""
    inner = r",\s*".join(str(int(s)) for s in shape)
    return r"[\[(]\s*" + inner + r"\s*[\])]"


def _word(v):
    return r"(?<![\w.])" + re.escape(str(v)) + r"(?![\w])"


def expect_error(fn, op, arg, value_res):
    """fn() must raise RuntimeError/ValueError whose message names the op, the argument and the bad
    value (regexes in value_res)."""
    with pytest.raises((RuntimeError, ValueError)) as ei:
        fn()
    msg = str(ei.value)
    assert f"seer_attn::{op}" in msg, f"op name missing: {msg!r}"
    assert re.search(_word(arg), msg), f"argument {arg!r} missing: {msg!r}"
    for r in ([value_res] if isinstance(value_res, str) else value_res):
        assert re.search(r, msg), f"bad value /{r}/ missing: {msg!r}"


# ---------------------------------------------------------------------------------------------
# attention (2D and 1D), forward
# ---------------------------------------------------------------------------------------------
LENS = [20, 1, 0, 37]


def _attn(device, kind, Hq=4, Hkv=2, D=64, dtype=BF16):
    T = sum(LENS)
    q = torch.randn(T, Hq, D, dtype=dtype, device=device)
    k = torch.randn(T, Hkv, D, dtype=dtype, device=device)
    v = torch.randn(T, Hkv, D, dtype=dtype, device=device)
    cu = cu_from_lens(LENS, device)
    bq = bk = 16
    # larger than needed (allowed) so that only the mutated argument is wrong whatever order the
    # checks run in (e.g. block_size_k=8 needs 5 key blocks)
    rows = 5 if kind == "2d" else 37
    mask = torch.ones(len(LENS), Hkv, rows, 8, dtype=torch.bool, device=device)
    a = dict(q=q, k=k, v=v, cu_seqlens_q=cu, cu_seqlens_k=cu.clone(), max_seqlen_q=37, max_seqlen_k=37,
             block_mask=mask, block_size_q=bq, block_size_k=bk, sm_scale=0.125, causal=True)
    if kind == "1d":
        del a["block_size_q"]
    return a


def _call_fwd(kind, a):
    return getattr(ops, f"block_sparse_{kind}_fwd")(**a)


ATTN_CASES = {
    # id: (mutation(a, device) -> a, argument, value regexes)
    "q_float32": (lambda a, d: dict(a, q=a["q"].float()), "q", "float32"),
    "q_float64": (lambda a, d: dict(a, q=a["q"].double()), "q", "float64"),
    "k_dtype": (lambda a, d: dict(a, k=a["k"].half()), "k", "float16"),
    "v_dtype": (lambda a, d: dict(a, v=a["v"].half()), "v", "float16"),
    "q_rank": (lambda a, d: dict(a, q=a["q"][:, 0]), "q", _shape_re([58, 64])),
    "k_rank": (lambda a, d: dict(a, k=a["k"][None]), "k", _shape_re([1, 58, 2, 64])),
    "v_shape": (lambda a, d: dict(a, v=a["v"][:-1]), "v", _shape_re([57, 2, 64])),
    "heads_not_divisible": (lambda a, d: dict(a, k=a["k"][:, :1].expand(58, 3, 64).contiguous(),
                                              v=a["v"][:, :1].expand(58, 3, 64).contiguous(),
                                              block_mask=a["block_mask"][:, :1]), "k", _word(3)),
    "head_dim_80": (lambda a, d: dict(a, q=a["q"][..., :80].new_zeros(58, 4, 80), k=a["k"].new_zeros(58, 2, 80),
                                      v=a["v"].new_zeros(58, 2, 80)), "q", _word(80)),
    "head_dim_mismatch": (lambda a, d: dict(a, k=a["k"].new_zeros(58, 2, 128), v=a["v"].new_zeros(58, 2, 128)),
                          "k", _word(128)),
    "cu_q_int64": (lambda a, d: dict(a, cu_seqlens_q=a["cu_seqlens_q"].long()), "cu_seqlens_q", "int64"),
    "cu_k_int64": (lambda a, d: dict(a, cu_seqlens_k=a["cu_seqlens_k"].long()), "cu_seqlens_k", "int64"),
    "cu_k_len": (lambda a, d: dict(a, cu_seqlens_k=a["cu_seqlens_k"][:-1]), "cu_seqlens_k", _word(4)),
    "cu_q_rank": (lambda a, d: dict(a, cu_seqlens_q=a["cu_seqlens_q"][None]), "cu_seqlens_q", _shape_re([1, 5])),
    "block_size_k_8": (lambda a, d: dict(a, block_size_k=8), "block_size_k", _word(8)),
    "block_size_k_0": (lambda a, d: dict(a, block_size_k=0), "block_size_k", _word(0)),
    "block_size_k_24": (lambda a, d: dict(a, block_size_k=24), "block_size_k", _word(24)),
    "block_size_k_512": (lambda a, d: dict(a, block_size_k=512), "block_size_k", _word(512)),
    "mask_float": (lambda a, d: dict(a, block_mask=a["block_mask"].float()), "block_mask", "float32"),
    "mask_rank": (lambda a, d: dict(a, block_mask=a["block_mask"][0]), "block_mask",
                  lambda a: _shape_re(a["block_mask"][0].shape)),
    "mask_batch": (lambda a, d: dict(a, block_mask=a["block_mask"][:3]), "block_mask", _word(3)),
    "mask_heads_3": (lambda a, d: dict(a, block_mask=a["block_mask"][:, :1].expand(4, 3, *a["block_mask"].shape[2:])),
                     "block_mask", _word(3)),
    "mask_too_few_cols": (lambda a, d: dict(a, block_mask=a["block_mask"][..., :2]), "block_mask", _word(2)),
    "mask_too_few_rows": (lambda a, d: dict(a, block_mask=a["block_mask"][:, :, :2]), "block_mask", _word(2)),
    "max_seqlen_negative": (lambda a, d: dict(a, max_seqlen_q=-1), "max_seqlen_q", _word(-1)),
    "sm_scale_nan": (lambda a, d: dict(a, sm_scale=float("nan")), "sm_scale", "nan"),
    "sm_scale_negative": (lambda a, d: dict(a, sm_scale=-0.5), "sm_scale", _word(-0.5)),
}
ATTN_CASES_2D = {
    "block_size_q_8": (lambda a, d: dict(a, block_size_q=8), "block_size_q", _word(8)),
    "block_size_q_24": (lambda a, d: dict(a, block_size_q=24), "block_size_q", _word(24)),
    "block_size_q_512": (lambda a, d: dict(a, block_size_q=512), "block_size_q", _word(512)),
}
# data checks: the CPU reference reads cu_seqlens; on CUDA the op reads them only on the checked path
# (SEER_ATTN_CHECK_INPUTS=1, a device sync), with the same messages
ATTN_DATA_CASES = {
    "cu_q_not_monotone": (lambda a, d: dict(a, cu_seqlens_q=torch.tensor([0, 20, 10, 21, 58], dtype=torch.int32)),
                          "cu_seqlens_q", [_word(10), _word(20)]),
    "cu_k_not_monotone": (lambda a, d: dict(a, cu_seqlens_k=torch.tensor([0, 20, 21, 60, 58], dtype=torch.int32)),
                          "cu_seqlens_k", [_word(58), _word(60)]),
    "cu_q_past_end": (lambda a, d: dict(a, cu_seqlens_q=torch.tensor([0, 20, 21, 40, 70], dtype=torch.int32)),
                      "cu_seqlens_q", _word(70)),
    "max_seqlen_too_small": (lambda a, d: dict(a, max_seqlen_k=30), "max_seqlen_k", _word(30)),
}


def _resolve(value_res, a):
    if callable(value_res):
        return value_res(a)
    return value_res


@pytest.mark.parametrize("kind", ["2d", "1d"])
@pytest.mark.parametrize("case", list(ATTN_CASES) + list(ATTN_CASES_2D) + list(ATTN_DATA_CASES))
def test_attention_fwd_errors(device, kind, case, monkeypatch):
    if case in ATTN_CASES_2D and kind == "1d":
        pytest.skip("2D-only argument")
    if case in ATTN_DATA_CASES and device != "cpu":
        # CUDA reads cu_seqlens values only on request (a device sync): the checked path, same messages
        monkeypatch.setenv("SEER_ATTN_CHECK_INPUTS", "1")
    mut, arg, val = {**ATTN_CASES, **ATTN_CASES_2D, **ATTN_DATA_CASES}[case]
    a = _attn(device, kind)
    if kind == "1d" and case == "mask_too_few_rows":
        val = _word(2)
    bad = mut(a, device)
    for key in ("cu_seqlens_q", "cu_seqlens_k"):
        bad[key] = bad[key].to(device)
    expect_error(lambda: _call_fwd(kind, bad), f"block_sparse_{kind}_fwd", arg, _resolve(val, a))


@pytest.mark.parametrize("kind", ["2d", "1d"])
def test_attention_public_api_errors(device, kind):
    # the public wrapper surfaces the op's error
    a = _attn(device, kind)
    fn = seer_attn.block_sparse_attn_2d if kind == "2d" else seer_attn.block_sparse_attn_1d
    kw = dict(block_size_k=24)
    if kind == "2d":
        kw["block_size_q"] = 16
    expect_error(lambda: fn(a["q"], a["k"], a["v"], a["block_mask"], a["cu_seqlens_q"], a["cu_seqlens_k"], 37, 37,
                            **kw), f"block_sparse_{kind}_fwd", "block_size_k", _word(24))
    expect_error(lambda: fn(a["q"].float(), a["k"], a["v"], a["block_mask"], a["cu_seqlens_q"], a["cu_seqlens_k"],
                            37, 37), f"block_sparse_{kind}_fwd", "q", "float32")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("kind", ["2d", "1d"])
@pytest.mark.parametrize("which", ["k", "v", "cu_seqlens_q", "cu_seqlens_k", "block_mask"])
def test_attention_device_mix(kind, which):
    a = _attn("cuda", kind)
    a[which] = a[which].cpu()
    expect_error(lambda: _call_fwd(kind, a), f"block_sparse_{kind}_fwd", which, "cpu")


# ---------------------------------------------------------------------------------------------
# attention backward
# ---------------------------------------------------------------------------------------------
def _bwd_args(device, kind):
    a = _attn(device, kind)
    out, lse = _call_fwd(kind, a)
    b = dict(dout=torch.randn_like(out), q=a["q"], k=a["k"], v=a["v"], out=out, lse=lse, dlse=None,
             cu_seqlens_q=a["cu_seqlens_q"], cu_seqlens_k=a["cu_seqlens_k"], max_seqlen_q=37, max_seqlen_k=37,
             block_mask=a["block_mask"], block_size_k=16, sm_scale=0.125, causal=True, deterministic=False)
    if kind == "2d":
        b["block_size_q"] = 16
    return b


BWD_CASES = {
    "dout_float32": (lambda b: dict(b, dout=b["dout"].float()), "dout", "float32"),
    "dout_shape": (lambda b: dict(b, dout=b["dout"][:-1]), "dout", _shape_re([57, 4, 64])),
    "out_dtype": (lambda b: dict(b, out=b["out"].half()), "out", "float16"),
    "lse_dtype": (lambda b: dict(b, lse=b["lse"].to(BF16)), "lse", "bfloat16"),
    "lse_shape": (lambda b: dict(b, lse=b["lse"].T.contiguous()), "lse", _shape_re([58, 4])),
    "dlse_shape": (lambda b: dict(b, dlse=torch.zeros(4, 57)), "dlse", _shape_re([4, 57])),
    "dlse_dtype": (lambda b: dict(b, dlse=torch.zeros(4, 58, dtype=torch.float64)), "dlse", "float64"),
    "q_float32": (lambda b: dict(b, q=b["q"].float()), "q", "float32"),
    "block_size_k_24": (lambda b: dict(b, block_size_k=24), "block_size_k", _word(24)),
    "mask_float": (lambda b: dict(b, block_mask=b["block_mask"].float()), "block_mask", "float32"),
    "cu_int64": (lambda b: dict(b, cu_seqlens_k=b["cu_seqlens_k"].long()), "cu_seqlens_k", "int64"),
}


@pytest.mark.parametrize("kind", ["2d", "1d"])
@pytest.mark.parametrize("case", list(BWD_CASES))
def test_attention_bwd_errors(device, kind, case):
    mut, arg, val = BWD_CASES[case]
    b = _bwd_args(device, kind)
    bad = mut(b)
    for key in ("dlse",):
        if bad[key] is not None:
            bad[key] = bad[key].to(device)
    expect_error(lambda: getattr(ops, f"block_sparse_{kind}_bwd")(**bad), f"block_sparse_{kind}_bwd", arg, val)


# ---------------------------------------------------------------------------------------------
# pooling
# ---------------------------------------------------------------------------------------------
def _pool(device):
    T = sum(LENS)
    return dict(q=torch.randn(T, 4, 64, dtype=BF16, device=device), k=torch.randn(T, 2, 64, dtype=BF16, device=device),
                cu_seqlens=cu_from_lens(LENS, device), max_seqlen=37, sm_scale=0.125, block_size=16, causal=True,
                gqa_reduce=False)


POOL_CASES = {
    "q_float32": (lambda p: dict(p, q=p["q"].float()), "q", "float32"),
    "k_dtype": (lambda p: dict(p, k=p["k"].half()), "k", "float16"),
    "head_dim_80": (lambda p: dict(p, q=p["q"].new_zeros(58, 4, 80), k=p["k"].new_zeros(58, 2, 80)), "q", _word(80)),
    "block_size_24": (lambda p: dict(p, block_size=24), "block_size", _word(24)),
    "block_size_8": (lambda p: dict(p, block_size=8), "block_size", _word(8)),
    "block_size_512": (lambda p: dict(p, block_size=512), "block_size", _word(512)),
    "cu_int64": (lambda p: dict(p, cu_seqlens=p["cu_seqlens"].long()), "cu_seqlens", "int64"),
    "k_tokens": (lambda p: dict(p, k=p["k"][:-3]), "k", _word(55)),
    "heads_not_divisible": (lambda p: dict(p, k=p["k"][:, :1].expand(58, 3, 64).contiguous()), "k", _word(3)),
    "q_rank": (lambda p: dict(p, q=p["q"][:, 0]), "q", _shape_re([58, 64])),
}


# Cases on values of tensor data: the CPU reference always checks them, CUDA on the checked path
# (SEER_ATTN_CHECK_INPUTS=1; no device sync otherwise).
POOL_DATA_CASES = {
    "cu_not_monotone": (lambda p: dict(p, cu_seqlens=torch.tensor([0, 20, 10, 21, 58], dtype=torch.int32,
                                                                  device=p["q"].device)),
                        "cu_seqlens", [_word(10), _word(20)]),
}


def _error_case(device, case, cases, data_cases, monkeypatch):
    """(mutation, argument, value pattern) of an error case; data cases run off the CPU on the checked
    path (SEER_ATTN_CHECK_INPUTS=1: the CUDA ops read index values only on request)."""
    if case in data_cases:
        if device != "cpu":
            monkeypatch.setenv("SEER_ATTN_CHECK_INPUTS", "1")
        return data_cases[case]
    return cases[case]


@pytest.mark.parametrize("case", list(POOL_CASES) + list(POOL_DATA_CASES))
def test_pooling_errors(device, case, monkeypatch):
    mut, arg, val = _error_case(device, case, POOL_CASES, POOL_DATA_CASES, monkeypatch)
    bad = mut(_pool(device))
    expect_error(lambda: ops.attn_pooling(**bad), "attn_pooling", arg, val)


# ---------------------------------------------------------------------------------------------
# decode
# ---------------------------------------------------------------------------------------------
def _dec(device):
    B, S, Hq, Hkv, D, bs = 3, 70, 4, 2, 64, 16
    return dict(q=torch.randn(B, Hq, D, dtype=BF16, device=device),
                k_cache=torch.randn(B, S, Hkv, D, dtype=BF16, device=device),
                v_cache=torch.randn(B, S, Hkv, D, dtype=BF16, device=device),
                cache_seqlens=torch.tensor([70, 0, 33], dtype=torch.int32, device=device),
                block_mask=torch.ones(B, Hkv, 5, dtype=torch.bool, device=device), block_indices=None,
                block_size=bs, sm_scale=0.125, left_pad=False, first_block_unmasked=False, num_splits=0)


def _idx(device, dtype=torch.int32):
    return torch.tensor([[[0, 3, -1], [4, -1, -1]]] * 3, dtype=dtype, device=device)


DEC_CASES = {
    "both": (lambda d, dev: dict(d, block_indices=_idx(dev)), "block_indices", "both"),
    "neither": (lambda d, dev: dict(d, block_mask=None), "block_mask", "neither"),
    "indices_int64": (lambda d, dev: dict(d, block_mask=None, block_indices=_idx(dev, torch.int64)), "block_indices",
                      "int64"),
    "cache_seqlens_int64": (lambda d, dev: dict(d, cache_seqlens=d["cache_seqlens"].long()), "cache_seqlens", "int64"),
    "q_float32": (lambda d, dev: dict(d, q=d["q"].float()), "q", "float32"),
    "k_cache_dtype": (lambda d, dev: dict(d, k_cache=d["k_cache"].half()), "k_cache", "float16"),
    "k_cache_rank": (lambda d, dev: dict(d, k_cache=d["k_cache"][0]), "k_cache", _shape_re([70, 2, 64])),
    "v_cache_shape": (lambda d, dev: dict(d, v_cache=d["v_cache"][:, :-1]), "v_cache", _shape_re([3, 69, 2, 64])),
    "head_dim_80": (lambda d, dev: dict(d, q=d["q"].new_zeros(3, 4, 80), k_cache=d["k_cache"].new_zeros(3, 70, 2, 80),
                                        v_cache=d["v_cache"].new_zeros(3, 70, 2, 80)), "q", _word(80)),
    "heads_not_divisible": (lambda d, dev: dict(d, k_cache=d["k_cache"].new_zeros(3, 70, 3, 64),
                                                v_cache=d["v_cache"].new_zeros(3, 70, 3, 64),
                                                block_mask=d["block_mask"].new_ones(3, 3, 5)), "k_cache", _word(3)),
    "block_size_8": (lambda d, dev: dict(d, block_size=8, block_mask=d["block_mask"].new_ones(3, 2, 9)), "block_size",
                     _word(8)),
    "block_size_24": (lambda d, dev: dict(d, block_size=24), "block_size", _word(24)),
    "block_size_512": (lambda d, dev: dict(d, block_size=512), "block_size", _word(512)),
    "mask_too_small": (lambda d, dev: dict(d, block_mask=d["block_mask"][..., :4]), "block_mask", _word(4)),
    "mask_heads": (lambda d, dev: dict(d, block_mask=d["block_mask"].new_ones(3, 4, 5)), "block_mask", _word(4)),
    "mask_float": (lambda d, dev: dict(d, block_mask=d["block_mask"].float()), "block_mask", "float32"),
    "indices_heads": (lambda d, dev: dict(d, block_mask=None, block_indices=_idx(dev)[:, :1]), "block_indices", _word(1)),
    "cache_seqlens_len": (lambda d, dev: dict(d, cache_seqlens=d["cache_seqlens"][:2]), "cache_seqlens", _word(2)),
    "q_rank": (lambda d, dev: dict(d, q=d["q"][None, None]), "q", _shape_re([1, 1, 3, 4, 64])),
    "num_splits_negative": (lambda d, dev: dict(d, num_splits=-2), "num_splits", _word(-2)),
}


DEC_DATA_CASES = {
    "cache_seqlens_too_long": (lambda d, dev: dict(d, cache_seqlens=torch.tensor([71, 0, 3], dtype=torch.int32,
                                                                                 device=dev)),
                               "cache_seqlens", _word(71)),
}


@pytest.mark.parametrize("case", list(DEC_CASES) + list(DEC_DATA_CASES))
def test_decode_errors(device, case, monkeypatch):
    mut, arg, val = _error_case(device, case, DEC_CASES, DEC_DATA_CASES, monkeypatch)
    bad = mut(_dec(device), device)
    expect_error(lambda: ops.block_sparse_decode(**bad), "block_sparse_decode", arg, val)


def test_decode_public_api_both_or_neither(device):
    d = _dec(device)
    args = (d["q"], d["k_cache"], d["v_cache"], d["cache_seqlens"])
    for kw in (dict(block_mask=d["block_mask"], block_indices=_idx(device)), {}):
        with pytest.raises((RuntimeError, ValueError)) as ei:
            seer_attn.block_sparse_decode(*args, block_size=16, **kw)
        msg = str(ei.value)
        assert "block_sparse_decode" in msg and "block_mask" in msg and "block_indices" in msg, msg


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("which", ["k_cache", "v_cache", "cache_seqlens", "block_mask"])
def test_decode_device_mix(which):
    d = _dec("cuda")
    d[which] = d[which].cpu()
    expect_error(lambda: ops.block_sparse_decode(**d), "block_sparse_decode", which, "cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_pooling_device_mix():
    p = _pool("cuda")
    p["k"] = p["k"].cpu()
    expect_error(lambda: ops.attn_pooling(**p), "attn_pooling", "k", "cpu")


# ---------------------------------------------------------------------------------------------
# The C++ argument checks of the CUDA kernels, reached without a GPU
# ---------------------------------------------------------------------------------------------
def _cuda_kernel(op_name):
    """Call the op's CUDA-key kernel directly (redispatch), whatever device the tensors are on: its C++
    checks run before anything touches a GPU. None if the extension has no CUDA kernel for the op."""
    if seer_attn.kernel_status().get(op_name) != "cuda":
        return None
    try:
        ks = torch._C.DispatchKeySet(torch._C.DispatchKey.CUDA)
        overload = getattr(ops, op_name).default
    except AttributeError:  # pragma: no cover - very old torch
        return None
    return lambda **kw: overload.redispatch(ks, *kw.values())


@pytest.mark.parametrize("op_name", ["block_sparse_2d_fwd", "block_sparse_1d_fwd", "attn_pooling",
                                     "block_sparse_decode"])
def test_cpp_check_messages(op_name):
    """Regression: the C++ checks format numbers and shapes into their messages. Built with a toolchain
    that links a private libstdc++ into the extension (the GPU machine's), formatting through
    std::ostringstream segfaulted; the checks now build messages without iostreams. This runs the C++
    layer on CPU tensors (rank error on q: the first check of every op), so CI covers it too."""
    call = _cuda_kernel(op_name)
    if call is None:
        pytest.skip(f"no compiled CUDA kernel for {op_name} in this build")
    if op_name == "attn_pooling":
        a = _pool("cpu")
        a = dict(a, q=a["q"][:, 0])
        shape = a["q"].shape
    elif op_name == "block_sparse_decode":
        a = _dec("cpu")
        a = dict(a, q=a["q"][None, None])
        shape = a["q"].shape
    else:
        a = _attn("cpu", op_name.split("_")[2])
        a = dict(a, q=a["q"][:, 0])
        shape = a["q"].shape
    expect_error(lambda: call(**a), op_name, "q", _shape_re(list(shape)))
