"""Seed-compatible names (SPEC "Seed-compatible names"): called with the seed's positional arguments,
they must give what the clean API gives, and be differentiable like the seed's."""
import inspect

import pytest
import torch

import naive
import seer_attn
from helpers import build_attention_inputs, cdiv, check_accuracy, check_attention

BF16 = torch.bfloat16


def test_seed_names_importable():
    from seer_attn import (attn_pooling, block_1d_gqa_sparse_attn_varlen_func,  # noqa: F401
                           block_1d_gqa_sparse_attn_varlen_sim_func, block_2d_sparse_attn_varlen_func,
                           block_sparse_flash_decode_gqa_indice, block_sparse_flash_decode_gqa_mask,
                           block_sparse_flash_decode_leftpad_gqa_mask)


# The seed's signatures, copied from microsoft/SeerAttention (commit aba03e3),
# seer_attn/kernels/varlen/:
#   block_sparse_attn_varlen_gqa_simulate.py, block_sparse_attn_varlen_gqa.py, block_sparse_attn_varlen_2d.py:
#       the three attention names are `_block_sparse_attn_varlen.apply`, whose
#       forward(ctx, q, k, v, cu_seqlens_k, cu_seqlens_q, max_seqlen, sm_scale, dense_block_mask, block_size=64)
#   attn_pooling_kernel_varlen.py: attn_pooling_qk_varlen(q, k, cu_seqlens, max_seqlen, sm_scale, block_size=64)
#       (returns the 2D map and the per-sequence 1D list: the SPEC's `attn_pooling`)
#   block_sparse_flash_decode_varlen_mask.py, block_sparse_flash_decode_varlen_indice.py,
#   block_sparse_flash_decode_varlen_mask_leftpad.py: the three decode functions.
_E = inspect.Parameter.empty
_ATTN_SEED = [("q", _E), ("k", _E), ("v", _E), ("cu_seqlens_k", _E), ("cu_seqlens_q", _E), ("max_seqlen", _E),
              ("sm_scale", _E), ("dense_block_mask", _E), ("block_size", 64)]
SEED_SIGNATURES = {
    "block_1d_gqa_sparse_attn_varlen_sim_func": _ATTN_SEED,
    "block_1d_gqa_sparse_attn_varlen_func": _ATTN_SEED,
    "block_2d_sparse_attn_varlen_func": _ATTN_SEED,
    "attn_pooling": [("q", _E), ("k", _E), ("cu_seqlens", _E), ("max_seqlen", _E), ("sm_scale", _E),
                     ("block_size", 64)],
    "block_sparse_flash_decode_gqa_mask": [
        ("q", _E), ("k_cache", _E), ("v_cache", _E), ("cache_seqlens", _E), ("max_cache_seqlen", _E),
        ("block_mask", _E), ("block_size", _E), ("sm_scale", None)],
    "block_sparse_flash_decode_gqa_indice": [
        ("q", _E), ("k_cache", _E), ("v_cache", _E), ("cache_seqlens", _E), ("max_cache_seqlen", _E),
        ("max_selected_blocks", _E), ("block_indices", _E), ("block_size", _E), ("sm_scale", None)],
    "block_sparse_flash_decode_leftpad_gqa_mask": [
        ("q", _E), ("k_cache", _E), ("v_cache", _E), ("cache_seqlens", _E), ("block_mask", _E),
        ("block_size", 32), ("sm_scale", None), ("first_block_unmasked", False), ("debug", False)],
}


@pytest.mark.parametrize("name", list(SEED_SIGNATURES))
def test_seed_signature_pinned(name):
    sig = inspect.signature(getattr(seer_attn, name))
    got = [(p.name, p.default) for p in sig.parameters.values()]
    assert got == SEED_SIGNATURES[name], f"{name}{sig}"
    assert all(p.kind == inspect.Parameter.POSITIONAL_OR_KEYWORD for p in sig.parameters.values())


def _grads(out, inp):
    for t in (inp["q"], inp["k"], inp["v"]):
        t.grad = None
    out.backward(inp["dout"])
    return {"dq": inp["q"].grad.clone(), "dk": inp["k"].grad.clone(), "dv": inp["v"].grad.clone()}


def _compare_to_clean_and_naive(inp, seed_out):
    """seed_out: the compat function's output (inp's q/k/v). Forward must equal the clean API bit
    for bit (same op, same inputs); the backward is checked against the naive (the backward may use
    atomics, so bitwise equality is not required there)."""
    from helpers import call_attention
    clean = call_attention(inp, causal=True, return_lse=False)
    assert torch.equal(seed_out.detach(), clean.detach())
    got = {"out": seed_out.detach()}
    got.update(_grads(seed_out, inp))
    got["lse"] = call_attention(inp, causal=True)[1].detach()
    check_attention(inp, got=got)


# q lens != k lens: swapping the seed's (cu_seqlens_k, cu_seqlens_q) order would be caught
LENS_Q = [100, 1, 57, 64]
LENS_K = [130, 1, 57, 80]


def test_seed_block_2d(device):
    bs = 32
    mx = max(LENS_Q + LENS_K)
    inp = build_attention_inputs(device, kind="2d", seqlens_q=LENS_Q, seqlens_k=LENS_K, Hq=8, Hkv=2, D=64,
                                 Bq=bs, Bk=bs, mask_heads="q", extra_rows=cdiv(mx, bs) - cdiv(max(LENS_Q), bs))
    # the seed's mask is [B, H, ceil(max_seqlen/B), ceil(max_seqlen/B)] with one max_seqlen
    mask = inp["mask"]
    inp = dict(inp, max_q=mx, max_k=mx)
    out = seer_attn.block_2d_sparse_attn_varlen_func(inp["q"], inp["k"], inp["v"], inp["cu_k"], inp["cu_q"], mx,
                                                     0.125, mask, bs)
    assert out.shape == inp["q"].shape
    from helpers import call_attention
    clean = call_attention(inp, causal=True, sm_scale=0.125, return_lse=False)
    assert torch.equal(out.detach(), clean.detach())
    ref = naive.attention(inp["q"], inp["k"], inp["v"], inp["cu_q"], inp["cu_k"], mask, kind="2d", block_size_q=bs,
                          block_size_k=bs, sm_scale=0.125, dout=inp["dout"])
    lp = naive.attention(inp["q"], inp["k"], inp["v"], inp["cu_q"], inp["cu_k"], mask, kind="2d", block_size_q=bs,
                         block_size_k=bs, sm_scale=0.125, dout=inp["dout"], dtype=BF16)
    g = _grads(out, inp)
    check_accuracy("out", out, ref["out"], lp["out"], zeros=ref["row_empty"][..., None])
    for n in ("dq", "dk", "dv"):
        check_accuracy(n, g[n], ref[n], lp[n], zeros=None)


def test_seed_block_2d_repeated_kv(device):
    # the seed's README usage: k/v repeated to H_q heads, per-head mask
    bs = 64
    inp = build_attention_inputs(device, kind="2d", seqlens_q=[130, 1, 200], Hq=4, Hkv=4, D=128, Bq=bs, Bk=bs,
                                 mask_heads="q")
    out = seer_attn.block_2d_sparse_attn_varlen_func(inp["q"], inp["k"], inp["v"], inp["cu_k"], inp["cu_q"],
                                                     inp["max_q"], 1.0 / 128 ** 0.5, inp["mask"], bs)
    _compare_to_clean_and_naive(inp, out)


def test_seed_block_1d_gqa(device):
    bs = 64
    inp = build_attention_inputs(device, kind="1d", seqlens_q=LENS_Q, seqlens_k=LENS_K, Hq=8, Hkv=2, D=64, Bk=bs,
                                 mask_heads="kv", mask_rows_struct=16)
    mx = max(LENS_Q + LENS_K)
    # pad the mask rows to the single max_seqlen
    m = inp["mask"]
    mask = torch.zeros(m.shape[0], m.shape[1], mx, m.shape[3], dtype=m.dtype, device=m.device)
    mask[:, :, :m.shape[2]] = m
    inp = dict(inp, mask=mask, max_q=mx, max_k=mx)
    out = seer_attn.block_1d_gqa_sparse_attn_varlen_func(inp["q"], inp["k"], inp["v"], inp["cu_k"], inp["cu_q"],
                                                         mx, 1.0 / 8, mask, bs)
    _compare_to_clean_and_naive(inp, out)


def test_seed_block_1d_sim(device):
    # the "sim" layout: k/v repeated to H_q, per-q-head mask
    bs = 32
    inp = build_attention_inputs(device, kind="1d", seqlens_q=[130, 1, 0, 257], Hq=8, Hkv=2, D=64, Bk=bs,
                                 mask_heads="kv", mask_rows_struct=32)
    rep = lambda t: t.detach().repeat_interleave(4, dim=1).requires_grad_()  # noqa: E731
    inp = dict(inp, k=rep(inp["k"]), v=rep(inp["v"]), mask=inp["mask"].repeat_interleave(4, dim=1))
    out = seer_attn.block_1d_gqa_sparse_attn_varlen_sim_func(inp["q"], inp["k"], inp["v"], inp["cu_k"],
                                                             inp["cu_q"], inp["max_q"], 1.0 / 8, inp["mask"], bs)
    _compare_to_clean_and_naive(inp, out)


def _decode_inputs(device, lens, S, Hq=8, Hkv=2, D=64):
    B = len(lens)
    q = torch.randn(B, Hq, D, dtype=BF16, device=device)
    kc = torch.randn(B, S, Hkv, D, dtype=BF16, device=device)
    vc = torch.randn(B, S, Hkv, D, dtype=BF16, device=device)
    return q, kc, vc, torch.tensor(lens, dtype=torch.int32, device=device)


def test_seed_decode_mask(device):
    lens, S, bs = [200, 1, 77, 150], 200, 64
    q, kc, vc, sl = _decode_inputs(device, lens, S)
    mask = torch.rand(len(lens), 2, cdiv(S, bs)) < 0.5
    mask = mask.to(device)
    out = seer_attn.block_sparse_flash_decode_gqa_mask(q, kc, vc, sl, max(lens), mask, bs)
    clean = seer_attn.block_sparse_decode(q, kc, vc, sl, block_mask=mask, block_size=bs)
    assert torch.equal(out, clean)
    out2 = seer_attn.block_sparse_flash_decode_gqa_mask(q, kc, vc, sl, max(lens), mask, bs, 0.2)
    clean2 = seer_attn.block_sparse_decode(q, kc, vc, sl, block_mask=mask, block_size=bs, sm_scale=0.2)
    assert torch.equal(out2, clean2)
    r, _ = naive.decode(q, kc, vc, sl, block_mask=mask, block_size=bs)
    l, _ = naive.decode(q, kc, vc, sl, block_mask=mask, block_size=bs, dtype=BF16)
    check_accuracy("out", out, r, l)


def test_seed_decode_indices(device):
    lens, S, bs = [200, 1, 77, 150], 200, 32
    q, kc, vc, sl = _decode_inputs(device, lens, S)
    nb = cdiv(S, bs)
    K = 4
    idx = torch.full((len(lens), 2, K), -1, dtype=torch.int32)
    for b in range(len(lens)):
        for h in range(2):
            sel = torch.randperm(nb)[:3]
            idx[b, h, :3] = sel.to(torch.int32)
    idx = idx.to(device)
    out = seer_attn.block_sparse_flash_decode_gqa_indice(q, kc, vc, sl, max(lens), K, idx, bs)
    clean = seer_attn.block_sparse_decode(q, kc, vc, sl, block_indices=idx, block_size=bs)
    assert torch.equal(out, clean)
    r, _ = naive.decode(q, kc, vc, sl, block_indices=idx, block_size=bs)
    l, _ = naive.decode(q, kc, vc, sl, block_indices=idx, block_size=bs, dtype=BF16)
    check_accuracy("out", out, r, l)


def test_seed_decode_leftpad(device):
    lens, S = [200, 1, 77, 150], 200
    q, kc, vc, sl = _decode_inputs(device, lens, S)
    mask = (torch.rand(len(lens), 2, cdiv(S, 32)) < 0.4).to(device)
    mask[0, 0, 0] = False  # the seed's default (first_block_unmasked=False) must not attend it
    for fbu in (False, True):
        kw = {} if not fbu else {"first_block_unmasked": True}
        out = seer_attn.block_sparse_flash_decode_leftpad_gqa_mask(q, kc, vc, sl, mask, **kw)  # block_size=32
        clean = seer_attn.block_sparse_decode(q, kc, vc, sl, block_mask=mask, block_size=32, left_pad=True,
                                              first_block_unmasked=fbu)
        assert torch.equal(out, clean)
        r, _ = naive.decode(q, kc, vc, sl, block_mask=mask, block_size=32, left_pad=True, first_block_unmasked=fbu)
        l, _ = naive.decode(q, kc, vc, sl, block_mask=mask, block_size=32, left_pad=True, first_block_unmasked=fbu,
                            dtype=BF16)
        check_accuracy("out", out, r, l)
    out64 = seer_attn.block_sparse_flash_decode_leftpad_gqa_mask(q, kc, vc, sl, mask[:, :, :cdiv(S, 64)], 64, 0.3,
                                                                 True)
    clean64 = seer_attn.block_sparse_decode(q, kc, vc, sl, block_mask=mask[:, :, :cdiv(S, 64)], block_size=64,
                                            sm_scale=0.3, left_pad=True, first_block_unmasked=True)
    assert torch.equal(out64, clean64)
    # a 4-D q [B, 1, H, D] is squeezed, as in the seed
    out4 = seer_attn.block_sparse_flash_decode_leftpad_gqa_mask(q.unsqueeze(1), kc, vc, sl, mask)
    assert out4.shape == q.shape and torch.equal(out4, seer_attn.block_sparse_flash_decode_leftpad_gqa_mask(
        q, kc, vc, sl, mask))
    with pytest.raises(NotImplementedError, match="debug"):
        seer_attn.block_sparse_flash_decode_leftpad_gqa_mask(q, kc, vc, sl, mask, debug=True)


def test_seed_decode_keywords_we_check(device):
    # the seed asserts max_cache_seqlen == k_cache.size(1) and reads max_selected_blocks index entries
    lens, S, bs = [200, 1, 77, 150], 200, 32
    q, kc, vc, sl = _decode_inputs(device, lens, S)
    mask = (torch.rand(len(lens), 2, cdiv(S, bs)) < 0.5).to(device)
    with pytest.raises(ValueError, match="max_cache_seqlen.*199"):
        seer_attn.block_sparse_flash_decode_gqa_mask(q, kc, vc, sl, 199, mask, bs)
    idx = seer_attn.mask_to_indices(mask)
    with pytest.raises(ValueError, match="max_selected_blocks.*99"):
        seer_attn.block_sparse_flash_decode_gqa_indice(q, kc, vc, sl, S, 99, idx, bs)
    out = seer_attn.block_sparse_flash_decode_gqa_indice(q, kc, vc, sl, S, 2, idx, bs)
    assert torch.equal(out, seer_attn.block_sparse_decode(q, kc, vc, sl, block_indices=idx[..., :2], block_size=bs))


def test_seed_attention_default_block_size(device):
    # the seed's attention names default block_size=64: a call with 8 positional arguments works
    inp = build_attention_inputs(device, kind="2d", seqlens_q=[130, 64], Hq=4, Hkv=2, D=64, Bq=64, Bk=64,
                                 mask_heads="q")
    out = seer_attn.block_2d_sparse_attn_varlen_func(inp["q"], inp["k"], inp["v"], inp["cu_k"], inp["cu_q"],
                                                     inp["max_q"], 0.125, inp["mask"])
    ref = seer_attn.block_2d_sparse_attn_varlen_func(inp["q"], inp["k"], inp["v"], inp["cu_k"], inp["cu_q"],
                                                     inp["max_q"], 0.125, inp["mask"], 64)
    assert torch.equal(out, ref)
