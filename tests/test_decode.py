"""Block-sparse flash-decoding against the naive float64 decode (SPEC section 4)."""
import pytest
import torch

import naive
import seer_attn
from helpers import cdiv, check_accuracy, check_lse_strict, make_mask

BF16, FP16 = torch.bfloat16, torch.float16
LENS = [200, 1, 0, 77, 150, 64]   # full cache, length 1, empty, partial blocks
S_MAX = 200                        # not a multiple of 16/32/64/128


def _inputs(device, *, lens=LENS, S=S_MAX, Hq=8, Hkv=2, D=128, dtype=BF16, noncontig=False):
    B = len(lens)
    q = torch.randn(B, Hq, D, dtype=dtype, device=device)
    if noncontig:
        # k/v: views of a fused kv cache with a larger S allocation; q: a strided view
        kv = torch.randn(B, S + 8, 2, Hkv, D, dtype=dtype, device=device)
        kc, vc = kv[:, :S, 0], kv[:, :S, 1]
        q = torch.randn(B, Hq, 2 * D, dtype=dtype, device=device)[:, :, D:]
        assert not kc.is_contiguous() and not q.is_contiguous()
    else:
        kc = torch.randn(B, S, Hkv, D, dtype=dtype, device=device)
        vc = torch.randn(B, S, Hkv, D, dtype=dtype, device=device)
    seqlens = torch.tensor(lens, dtype=torch.int32, device=device)
    return q, kc, vc, seqlens


def _random_sel(B, Hkv, nb, density, extra_cols=0, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(B, Hkv, nb + extra_cols, generator=g) < density


def _indices_from_keep(keep, nb, pad=2, seed=1, interleave=False):
    """int32 [B, H, K]: the kept blocks (< nb) of each row in random order, -1 padded at the end
    (interleave=True: the -1 entries at random positions)."""
    g = torch.Generator().manual_seed(seed)
    B, H, _ = keep.shape
    rows = [[torch.nonzero(keep[b, h, :nb]).flatten() for h in range(H)] for b in range(B)]
    K = max(1, max(len(r) for rr in rows for r in rr)) + pad
    idx = torch.full((B, H, K), -1, dtype=torch.int32)
    for b in range(B):
        for h in range(H):
            r = rows[b][h][torch.randperm(len(rows[b][h]), generator=g)]
            if interleave:
                slots = torch.randperm(K, generator=g)[:len(r)].sort().values
                idx[b, h, slots] = r.to(torch.int32)
            else:
                idx[b, h, :len(r)] = r.to(torch.int32)
    return idx


def _check(device, q, kc, vc, seqlens, *, block_mask=None, block_indices=None, bs=64, left_pad=False,
           first_block_unmasked=False, num_splits=0, sm_scale=None, require_lp_error=True, q4=False):
    qq = q.unsqueeze(1) if q4 else q
    out, lse = seer_attn.block_sparse_decode(
        qq, kc, vc, seqlens, block_mask=block_mask, block_indices=block_indices, block_size=bs,
        sm_scale=sm_scale, left_pad=left_pad, first_block_unmasked=first_block_unmasked,
        num_splits=num_splits, return_lse=True)
    kw = dict(block_mask=block_mask, block_indices=block_indices, block_size=bs, sm_scale=sm_scale,
              left_pad=left_pad, first_block_unmasked=first_block_unmasked)
    r_out, r_lse = naive.decode(q, kc, vc, seqlens, **kw)
    l_out, l_lse = naive.decode(q, kc, vc, seqlens, dtype=q.dtype, **kw)
    assert out.shape == qq.shape and out.dtype == q.dtype and out.device == q.device
    assert lse.shape == (q.shape[0], q.shape[1]) and lse.dtype == torch.float32
    if q4:
        out = out.squeeze(1)
    rle = require_lp_error if isinstance(require_lp_error, dict) else {"out": require_lp_error, "lse": require_lp_error}
    check_accuracy("out", out, r_out, l_out, require_lp_error=rle["out"])
    check_accuracy("lse", lse, r_lse, l_lse, require_lp_error=rle["lse"])
    check_lse_strict(lse, r_lse, lambda: naive.decode(q, kc, vc, seqlens, dtype=torch.float32, **kw)[1])
    return out, lse, r_lse


@pytest.mark.parametrize("dtype", [BF16, FP16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("hq,hkv", [(2, 2), (8, 2), (8, 1)], ids=["g1", "g4", "g8"])
@pytest.mark.parametrize("form", ["mask", "indices"])
def test_decode_basic(device, dtype, hq, hkv, form):
    q, kc, vc, sl = _inputs(device, Hq=hq, Hkv=hkv, dtype=dtype)
    nb = cdiv(S_MAX, 64)
    keep = _random_sel(len(LENS), hkv, nb, 0.5)
    if form == "mask":
        _check(device, q, kc, vc, sl, block_mask=keep.to(device))
    else:
        _check(device, q, kc, vc, sl, block_indices=_indices_from_keep(keep, nb).to(device))


@pytest.mark.parametrize("left_pad", [False, True], ids=["right_pad", "left_pad"])
@pytest.mark.parametrize("fbu", [False, True], ids=["plain", "first_block_unmasked"])
@pytest.mark.parametrize("form", ["mask", "indices"])
@pytest.mark.parametrize("bs", [16, 32, 64, 128])
def test_decode_padding_and_block_sizes(device, left_pad, fbu, form, bs):
    q, kc, vc, sl = _inputs(device, Hq=8, Hkv=2, D=64)
    nb = cdiv(S_MAX, bs)
    keep = _random_sel(len(LENS), 2, nb, 0.4, seed=bs)
    if form == "mask":
        sel = dict(block_mask=keep.to(device))
    else:
        sel = dict(block_indices=_indices_from_keep(keep, nb).to(device))
    _check(device, q, kc, vc, sl, bs=bs, left_pad=left_pad, first_block_unmasked=fbu, **sel)


@pytest.mark.parametrize("D", [64, 256])
def test_decode_head_dims(device, D):
    q, kc, vc, sl = _inputs(device, Hq=8, Hkv=2, D=D)
    keep = _random_sel(len(LENS), 2, cdiv(S_MAX, 32), 0.5)
    _check(device, q, kc, vc, sl, block_mask=keep.to(device), bs=32)


@pytest.mark.parametrize("left_pad", [False, True], ids=["right_pad", "left_pad"])
def test_decode_empty_selection(device, left_pad):
    # nothing selected: out 0, lse -inf (first_block_unmasked rescues every non-empty sequence)
    q, kc, vc, sl = _inputs(device, Hq=8, Hkv=2, D=64)
    nb = cdiv(S_MAX, 64)
    empty_mask = torch.zeros(len(LENS), 2, nb, dtype=torch.bool, device=device)
    out, lse, _ = _check(device, q, kc, vc, sl, block_mask=empty_mask, left_pad=left_pad, require_lp_error=False)
    assert torch.all(out == 0) and torch.all(lse == float("-inf"))
    empty_idx = torch.full((len(LENS), 2, 3), -1, dtype=torch.int32, device=device)
    out, lse, _ = _check(device, q, kc, vc, sl, block_indices=empty_idx, left_pad=left_pad, require_lp_error=False)
    assert torch.all(out == 0) and torch.all(lse == float("-inf"))
    out, lse, r_lse = _check(device, q, kc, vc, sl, block_mask=empty_mask, left_pad=left_pad, first_block_unmasked=True)
    nonempty = torch.tensor(LENS) > 0
    assert torch.isfinite(lse.cpu()[nonempty]).all() and torch.all(lse.cpu()[~nonempty] == float("-inf"))
    assert torch.all(out[~nonempty.to(out.device)] == 0)


def test_decode_zero_width_indices(device):
    # K = 0: no index at all
    q, kc, vc, sl = _inputs(device, Hq=4, Hkv=2, D=64)
    idx = torch.empty(len(LENS), 2, 0, dtype=torch.int32, device=device)
    out, lse, _ = _check(device, q, kc, vc, sl, block_indices=idx, require_lp_error=False)
    assert torch.all(out == 0)


@pytest.mark.parametrize("left_pad", [False, True], ids=["right_pad", "left_pad"])
def test_decode_cache_seqlens_1_and_0(device, left_pad):
    lens = [1, 0, 1, 0]
    q, kc, vc, sl = _inputs(device, lens=lens, S=100, Hq=4, Hkv=1, D=64)
    nb = cdiv(100, 32)
    full = torch.ones(4, 1, nb, dtype=torch.bool, device=device)
    out, lse, _ = _check(device, q, kc, vc, sl, block_mask=full, bs=32, left_pad=left_pad,
                         require_lp_error={"out": False, "lse": True})
    # one valid slot: out = that slot's v exactly; empty cache: 0 / -inf
    slot = 99 if left_pad else 0
    torch.testing.assert_close(out[0], vc[0, slot].expand(4, 64), rtol=0, atol=0)
    assert torch.all(out[1] == 0) and torch.all(lse[1] == float("-inf"))


def test_decode_q_4d(device):
    q, kc, vc, sl = _inputs(device, Hq=8, Hkv=2, D=64)
    keep = _random_sel(len(LENS), 2, cdiv(S_MAX, 64), 0.5).to(device)
    _check(device, q, kc, vc, sl, block_mask=keep, q4=True)
    o3 = seer_attn.block_sparse_decode(q, kc, vc, sl, block_mask=keep)
    o4 = seer_attn.block_sparse_decode(q.unsqueeze(1), kc, vc, sl, block_mask=keep)
    assert o4.shape == (len(LENS), 1, 8, 64)
    assert torch.equal(o4.squeeze(1), o3)


def test_decode_return_lse_flag(device):
    q, kc, vc, sl = _inputs(device, Hq=8, Hkv=2, D=64)
    keep = _random_sel(len(LENS), 2, cdiv(S_MAX, 64), 0.5).to(device)
    o = seer_attn.block_sparse_decode(q, kc, vc, sl, block_mask=keep)
    assert isinstance(o, torch.Tensor)
    o2, lse = seer_attn.block_sparse_decode(q, kc, vc, sl, block_mask=keep, return_lse=True)
    assert torch.equal(o, o2) and lse.shape == (len(LENS), 8)


@pytest.mark.parametrize("num_splits", [1, 2, 5, 16])
def test_decode_num_splits(device, num_splits):
    # split-KV with many splits over few selected blocks: empty splits must combine NaN-free
    lens = [3000, 1, 0, 1500, 2047]
    q, kc, vc, sl = _inputs(device, lens=lens, S=3000, Hq=8, Hkv=2, D=128)
    nb = cdiv(3000, 64)
    keep = _random_sel(len(lens), 2, nb, 0.1)
    _check(device, q, kc, vc, sl, block_mask=keep.to(device), num_splits=num_splits)
    _check(device, q, kc, vc, sl, block_indices=_indices_from_keep(keep, nb).to(device), num_splits=num_splits,
           left_pad=True, first_block_unmasked=True)


def test_decode_mask_variants(device):
    # integer mask with odd nonzero values, larger than needed, stride-0 over heads, sm_scale
    q, kc, vc, sl = _inputs(device, Hq=8, Hkv=2, D=64)
    nb = cdiv(S_MAX, 64)
    keep = _random_sel(len(LENS), 2, nb, 0.5, extra_cols=3)
    m_int = make_mask(keep[:, :, None, :], mask_dtype=torch.int64, device=device)[:, :, 0]
    _check(device, q, kc, vc, sl, block_mask=m_int, sm_scale=0.3)
    m_u8 = make_mask(keep[:, :, None, :], mask_dtype=torch.uint8, device=device)[:, :, 0]
    _check(device, q, kc, vc, sl, block_mask=m_u8)
    m_b = keep[:, :1].to(device).expand(len(LENS), 2, nb + 3)
    assert m_b.stride(1) == 0
    _check(device, q, kc, vc, sl, block_mask=m_b)


def test_decode_noncontiguous(device):
    q, kc, vc, sl = _inputs(device, Hq=8, Hkv=2, D=64, noncontig=True)
    keep = _random_sel(len(LENS), 2, cdiv(S_MAX, 32), 0.5)
    _check(device, q, kc, vc, sl, block_mask=keep.to(device), bs=32)
    _check(device, q, kc, vc, sl, block_indices=_indices_from_keep(keep, cdiv(S_MAX, 32)).to(device), bs=32,
           left_pad=True)


def test_decode_indices_out_of_range_ignored(device):
    # indices >= nb are ignored (the naive ignores them too)
    q, kc, vc, sl = _inputs(device, Hq=8, Hkv=2, D=64)
    nb = cdiv(S_MAX, 64)
    keep = _random_sel(len(LENS), 2, nb, 0.5)
    idx = _indices_from_keep(keep, nb, pad=2)
    idx[:, :, -1] = torch.where(idx[:, :, -1] < 0, nb + 5, idx[:, :, -1])
    _check(device, q, kc, vc, sl, block_indices=idx.to(device))


def test_decode_indices_interleaved_padding(device):
    # -1 entries between valid ones (SPEC: "padded with -1, any order"; a kernel must not stop at
    # the first -1)
    q, kc, vc, sl = _inputs(device, Hq=8, Hkv=2, D=64)
    nb = cdiv(S_MAX, 32)
    keep = _random_sel(len(LENS), 2, nb, 0.5)
    _check(device, q, kc, vc, sl, bs=32, block_indices=_indices_from_keep(keep, nb, pad=3, interleave=True).to(device))


def test_decode_mask_vs_indices_agree(device):
    q, kc, vc, sl = _inputs(device, Hq=8, Hkv=2, D=128)
    nb = cdiv(S_MAX, 32)
    keep = _random_sel(len(LENS), 2, nb, 0.5)
    for left_pad in (False, True):
        o1 = seer_attn.block_sparse_decode(q, kc, vc, sl, block_mask=keep.to(device), block_size=32, left_pad=left_pad)
        o2 = seer_attn.block_sparse_decode(q, kc, vc, sl, block_indices=_indices_from_keep(keep, nb).to(device),
                                           block_size=32, left_pad=left_pad)
        # same blocks: equal up to the order of accumulation (at most an ulp or two of the output)
        r, _ = naive.decode(q, kc, vc, sl, block_mask=keep, block_size=32, left_pad=left_pad)
        l, _ = naive.decode(q, kc, vc, sl, block_mask=keep, block_size=32, left_pad=left_pad, dtype=q.dtype)
        check_accuracy("out(mask)", o1, r, l)
        check_accuracy("out(indices)", o2, r, l)


# ---- block_indices rule: a block listed twice counts once; out-of-range entries are ignored, or an
# error under SEER_ATTN_CHECK_INPUTS=1 (CPU reference and CUDA kernel alike) ----
def _dup_and_range_inputs(device, bs=32):
    q, kc, vc, seqlens = _inputs(device)
    nb = cdiv(S_MAX, bs)
    keep = _random_sel(len(LENS), 2, nb, 0.4, seed=3)
    idx = _indices_from_keep(keep, nb, pad=0, seed=4)   # [B, H, K], no duplicates, -1 padded
    return q, kc, vc, seqlens, idx, nb


@pytest.mark.parametrize("num_splits", [1, 3])
def test_decode_indices_duplicates_count_once(device, num_splits):
    q, kc, vc, seqlens, idx, nb = _dup_and_range_inputs(device)
    dup = torch.cat([idx, idx, idx[:, :, :1]], dim=2)       # every entry twice, the first thrice
    dup = dup[:, :, torch.randperm(dup.shape[2], generator=torch.Generator().manual_seed(5))]
    ref = seer_attn.block_sparse_decode(q, kc, vc, seqlens, block_indices=idx.to(device), block_size=32,
                                        num_splits=num_splits, return_lse=True)
    got = seer_attn.block_sparse_decode(q, kc, vc, seqlens, block_indices=dup.to(device), block_size=32,
                                        num_splits=num_splits, return_lse=True)
    torch.testing.assert_close(got[1], ref[1], rtol=0, atol=1e-5)   # lse: a doubled block would add log 2
    torch.testing.assert_close(got[0].float(), ref[0].float(), rtol=0, atol=1e-2)


def test_decode_indices_out_of_range(device, monkeypatch):
    q, kc, vc, seqlens, idx, nb = _dup_and_range_inputs(device)
    bad = idx.clone()
    bad[0, 0, -1] = nb          # one past the last block of the cache
    bad[1, 1, -1] = -7          # a negative other than the -1 padding
    bad = torch.cat([bad, torch.full_like(bad[:, :, :1], 10 * nb)], dim=2)
    monkeypatch.delenv("SEER_ATTN_CHECK_INPUTS", raising=False)
    ref = seer_attn.block_sparse_decode(q, kc, vc, seqlens, block_indices=idx.to(device), block_size=32,
                                        return_lse=True)
    got = seer_attn.block_sparse_decode(q, kc, vc, seqlens, block_indices=bad.to(device), block_size=32,
                                        return_lse=True)
    torch.testing.assert_close(got[1], ref[1], rtol=0, atol=1e-5)
    torch.testing.assert_close(got[0].float(), ref[0].float(), rtol=0, atol=1e-2)
    monkeypatch.setenv("SEER_ATTN_CHECK_INPUTS", "1")
    with pytest.raises(RuntimeError, match=r"seer_attn::block_sparse_decode: block_indices entries must be -1 "
                                           r"or in \[0, 7\)"):
        seer_attn.block_sparse_decode(q, kc, vc, seqlens, block_indices=bad.to(device), block_size=32)
    # valid indices still pass the check
    seer_attn.block_sparse_decode(q, kc, vc, seqlens, block_indices=idx.to(device), block_size=32)
