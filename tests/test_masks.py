"""Mask helpers (seer_attn.masks, re-exported at top level): round trips and properties."""
import pytest
import torch

import naive
import seer_attn
from seer_attn import masks as M
from helpers import cdiv, cu_from_lens


def test_helpers_exported():
    for name in ("threshold_to_mask", "topk_to_indices", "indices_to_mask", "mask_to_indices", "gqa_max_reduce"):
        assert callable(getattr(seer_attn, name)), name


def test_threshold_to_mask(device):
    s = torch.randn(2, 3, 5, 5, device=device)
    m = M.threshold_to_mask(s, 0.3)
    assert m.dtype == torch.bool and torch.equal(m, s > 0.3)
    thr = torch.tensor([0.0, 0.5, 10.0], device=device).view(1, 3, 1, 1)
    assert torch.equal(M.threshold_to_mask(s, thr), s > thr)
    md = M.threshold_to_mask(s, 100.0, keep_diagonal=True)
    assert torch.equal(md, torch.eye(5, dtype=torch.bool, device=device).expand_as(md))
    s[0, 0, 0, 1] = float("nan")
    assert not M.threshold_to_mask(s, -1e9)[0, 0, 0, 1]


def test_topk_to_indices(device):
    s = torch.randn(2, 3, 10, device=device)
    s[0, 0, 3:] = float("-inf")      # only 3 finite: the rest -1 padded
    idx = M.topk_to_indices(s, 4)
    assert idx.dtype == torch.int32 and idx.shape == (2, 3, 4)
    assert idx[0, 0].tolist() == [0, 1, 2, -1]
    for b in range(2):
        for h in range(3):
            row = idx[b, h]
            valid = row[row >= 0]
            assert torch.equal(valid, valid.sort().values)              # ascending
            if (b, h) != (0, 0):
                top = torch.topk(s[b, h], 4).indices.sort().values.to(torch.int32)
                assert torch.equal(valid, top)
    assert M.topk_to_indices(s, 50).shape == (2, 3, 10)


@pytest.mark.parametrize("max_selected", [None, 3, 12])
def test_mask_indices_round_trip(device, max_selected):
    m = torch.rand(3, 2, 12, device=device) < 0.3
    idx = M.mask_to_indices(m, max_selected)
    K = 12 if max_selected is None else max_selected
    assert idx.dtype == torch.int32 and idx.shape == (3, 2, K)
    back = M.indices_to_mask(idx, 12)
    if max_selected is None or max_selected >= 12:
        assert torch.equal(back, m)
    else:
        # the first K kept positions of each row
        assert torch.all(back <= m)
        assert torch.equal(back.sum(-1), torch.clamp(m.sum(-1), max=K))
    # indices -> mask -> indices with out-of-range and -1 entries ignored, duplicates harmless
    idx2 = torch.tensor([[[5, -1, 2, 30, 2]]], dtype=torch.int32, device=device)
    mm = M.indices_to_mask(idx2, 8)
    assert mm[0, 0].nonzero().flatten().tolist() == [2, 5]
    assert M.mask_to_indices(mm)[0, 0].tolist() == [2, 5, -1, -1, -1, -1, -1, -1]
    # integer masks: nonzero = keep
    mi = torch.tensor([[0, 256, -1, 0, 3]], device=device)
    assert M.mask_to_indices(mi).tolist() == [[1, 2, 4, -1, -1]]


def test_gqa_max_reduce(device):
    x = torch.randn(2, 8, 5, 3, device=device)
    y = M.gqa_max_reduce(x, 4)
    assert torch.equal(y, x.view(2, 2, 4, 5, 3).amax(2))
    b = torch.rand(2, 8, 5, device=device) < 0.2
    assert torch.equal(M.gqa_max_reduce(b, 2), b.view(2, 4, 2, 5).any(2))
    with pytest.raises(ValueError):
        M.gqa_max_reduce(x, 3)


def _naive_block_causal(lens_q, lens_k, bq, bk, mq, nk):
    """[B, mq, nk]: block has at least one causal visible pair (from the naive token-level mask)."""
    out = torch.zeros(len(lens_q), mq, nk, dtype=torch.bool)
    for b, (sq, sk) in enumerate(zip(lens_q, lens_k)):
        if sq == 0 or sk == 0:
            continue
        c = naive.causal_mask(sq, sk)
        pad = torch.zeros(mq * bq, nk * bk, dtype=torch.bool)
        pad[:sq, :sk] = c
        out[b] = pad.view(mq, bq, nk, bk).any(3).any(1)
    return out


@pytest.mark.parametrize("bq,bk", [(64, 64), (32, 64), (64, 16), (1, 32)])
def test_causal_block_mask(bq, bk):
    lens_q, lens_k = [100, 1, 0, 64, 20], [130, 1, 0, 64, 5]
    mq, nk = cdiv(max(lens_q), bq), cdiv(max(lens_k), bk)
    m = M.causal_block_mask(cu_from_lens(lens_q, "cpu"), max(lens_q), max(lens_k), bq, bk,
                            cu_seqlens_k=cu_from_lens(lens_k, "cpu"))
    assert m.shape == (5, 1, mq, nk)
    assert torch.equal(m[:, 0], _naive_block_causal(lens_q, lens_k, bq, bk, mq, nk))


def test_random_block_mask_2d_properties():
    lens = [300, 1, 0, 130]
    g = torch.Generator().manual_seed(0)
    m = M.random_block_mask_2d(cu_from_lens(lens, "cpu"), 4, 300, 300, 64, 64, 0.5, generator=g)
    assert m.shape == (4, 4, 5, 5) and m.dtype == torch.bool
    valid = _naive_block_causal(lens, lens, 64, 64, 5, 5)[:, None]
    assert not (m & ~valid).any()                      # only causal, in-sequence blocks
    d = torch.diagonal(m[0], dim1=-2, dim2=-1)
    assert d.all()                                     # diagonal always kept
    cnt = m.sum(-1).float()
    n = valid.sum(-1).float().expand_as(cnt)
    exp = torch.where(n > 0, torch.clamp(torch.round(0.5 * n), min=1), torch.zeros_like(n))
    assert torch.equal(cnt, exp)


def test_random_block_mask_1d_properties():
    lens = [300, 1, 130]
    cu = cu_from_lens(lens, "cpu")
    m = M.random_block_mask_1d(cu, 2, 300, 300, 64, 32, 0.3, generator=torch.Generator().manual_seed(1))
    assert m.shape == (3, 2, 300, cdiv(300, 32))
    # block-structured: rows of one 64-token query block are equal
    assert torch.equal(m[0, :, 0:64], m[0, :, 0:1].expand(2, 64, m.shape[-1]))
    mt = M.random_block_mask_1d(cu, 2, 300, 300, 64, 32, 0.3, generator=torch.Generator().manual_seed(1),
                                per_token=True)
    valid = _naive_block_causal(lens, lens, 1, 32, 300, cdiv(300, 32))[:, None]
    assert not (mt & ~valid).any()
    # every valid token row keeps its own diagonal block
    tok = torch.arange(300)
    assert mt[0, :, tok, tok // 32].all()


@pytest.mark.parametrize("left_pad", [False, True])
def test_random_decode_mask_and_indices(left_pad):
    lens = [200, 1, 0, 77]
    S, bs = 200, 32
    nb = cdiv(S, bs)
    m = M.random_decode_mask(lens, 2, S, bs, 0.5, left_pad=left_pad, generator=torch.Generator().manual_seed(3))
    idx = M.random_decode_indices(lens, 2, S, bs, 0.5, left_pad=left_pad, generator=torch.Generator().manual_seed(3))
    assert m.shape == (4, 2, nb) and idx.dtype == torch.int32
    assert torch.equal(M.indices_to_mask(idx, nb), m)
    # only blocks holding valid slots; empty cache keeps nothing
    for b, L in enumerate(lens):
        lo, hi = (S - L, S) if left_pad else (0, L)
        for n in range(nb):
            has_valid = L > 0 and n * bs < hi and (n + 1) * bs > lo
            if not has_valid:
                assert not m[b, :, n].any()
    assert not m[2].any()


def test_padded_from_packed(device):
    lens = [5, 0, 3]
    cu = cu_from_lens(lens, device)
    x = torch.arange(2 * 8 * 4, dtype=torch.float32, device=device).view(2, 8, 4)
    p = M.padded_from_packed(x, cu, 6)
    assert p.shape == (3, 2, 6, 4)
    assert torch.equal(p[0, :, :5], x[:, 0:5]) and torch.all(p[0, :, 5:] == 0)
    assert torch.all(p[1] == 0)
    assert torch.equal(p[2, :, :3], x[:, 5:8])


def test_masks_drive_attention(device):
    # a generated mask plugs straight into the attention op and matches the naive
    from helpers import build_attention_inputs, check_attention
    lens = [200, 1, 77]
    keep = M.random_block_mask_2d(cu_from_lens(lens, "cpu"), 4, 200, 200, 32, 64, 0.4,
                                  generator=torch.Generator().manual_seed(5))
    inp = build_attention_inputs(device, kind="2d", seqlens_q=lens, Hq=4, Hkv=2, D=64, Bq=32, Bk=64,
                                 mask_heads="q", keep=keep)
    got, ref, _ = check_attention(inp)
    # diagonal kept: no causal row is empty
    assert not ref["row_empty"].any()
