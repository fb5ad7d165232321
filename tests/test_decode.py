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
    assert lse.shape == qq.shape[:-1] and lse.dtype == torch.float32
    if q4:
        out, lse = out.squeeze(1), lse.squeeze(1)
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


def test_decode_k_and_v_with_different_strides(device):
    # K contiguous, V a view with every other head of a wider cache (slot, head and batch strides all
    # differ from K's): the kernels address K and V each with its own strides
    q, kc, _, sl = _inputs(device, Hq=8, Hkv=2, D=128)
    B = len(LENS)
    vc = torch.randn(B, S_MAX + 5, 4, 128, dtype=q.dtype, device=device)[:, :S_MAX, ::2]
    assert vc.stride() != kc.stride() and vc.shape == kc.shape
    keep = _random_sel(B, 2, cdiv(S_MAX, 16), 0.6)
    _check(device, q, kc, vc, sl, block_mask=keep.to(device), bs=16)
    _check(device, q, kc, vc, sl, block_indices=_indices_from_keep(keep, cdiv(S_MAX, 16)).to(device), bs=16,
           left_pad=True, num_splits=3)


def test_decode_indices_out_of_range_ignored(device, monkeypatch):
    # indices >= nb are ignored (the naive ignores them too), unless SEER_ATTN_CHECK_INPUTS=1
    monkeypatch.delenv("SEER_ATTN_CHECK_INPUTS", raising=False)
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
        torch.testing.assert_close(o1, o2, rtol=2 ** -7, atol=2 ** -10)  # the two forms against each other


# ---------------------------------------------------------------------------------------------
# Multi-token decode, paged caches, the indices rule (issues 13 and 14)
# ---------------------------------------------------------------------------------------------
def _dense_from_pages(pages, table, lens, S):
    """Logical dense cache [B, S, H, D] of a paged cache, zeros outside the valid slots [0, len)."""
    B = table.shape[0]
    page = pages.shape[1]
    t = table.cpu().long().clamp(0, pages.shape[0] - 1)
    dense = pages[t.to(pages.device)].flatten(1, 2)[:, :S].clone()  # [B, S, H, D]
    slot = torch.arange(S, device=pages.device)
    valid = slot[None, :] < torch.as_tensor(lens, device=pages.device)[:, None]
    return torch.where(valid[:, :, None, None], dense, torch.zeros((), dtype=dense.dtype, device=dense.device))


def _zero_invalid(cache, lens, left_pad):
    """A dense cache with the slots outside [0, len) (or [S - len, S)) set to 0 (the test fills them
    with NaN; the float64 naive multiplies p = 0 by v, so it needs finite values there)."""
    S = cache.shape[1]
    slot = torch.arange(S, device=cache.device)[None, :]
    ln = torch.as_tensor(lens, device=cache.device)[:, None]
    valid = (slot >= S - ln) if left_pad else (slot < ln)
    return torch.where(valid[:, :, None, None], cache, torch.zeros((), dtype=cache.dtype, device=cache.device))


def _naive_multi(q4, kc, vc, lens, *, dtype=torch.float64, left_pad=False, **kw):
    """Naive L-token decode from the one-token naive: token i of L is the last-but-(L-1-i) valid slot,
    i.e. a one-token decode over the cache cut to S - (L-1-i) slots with len - (L-1-i) valid ones."""
    B, L, H, D = q4.shape
    S = kc.shape[1]
    outs, lses = [], []
    for i in range(L):
        cut = L - 1 - i
        li = torch.tensor([max(0, n - cut) for n in lens], dtype=torch.int32)
        o, l = naive.decode(q4[:, i], kc[:, :S - cut], vc[:, :S - cut], li, left_pad=left_pad, dtype=dtype, **kw)
        outs.append(o)
        lses.append(l)
    return torch.stack(outs, 1), torch.stack(lses, 1)


def _check_multi(device, q4, kc, vc, lens, *, block_table=None, pages=None, S=None, left_pad=False,
                 require_lp_error=True, **kw):
    """Runs seer_attn on (kc, vc[, block_table]) and checks against the naive on the logical dense cache
    (pages -> dense when block_table is given). kw: block_mask/block_indices/block_size/... ."""
    sl = torch.tensor(lens, dtype=torch.int32, device=device)
    out, lse = seer_attn.block_sparse_decode(q4, kc, vc, sl, block_table=block_table, left_pad=left_pad,
                                             return_lse=True, **kw)
    assert out.shape == q4.shape and lse.shape == q4.shape[:-1] and lse.dtype == torch.float32
    if block_table is not None:
        dk, dv = _dense_from_pages(kc, block_table, lens, S), _dense_from_pages(vc, block_table, lens, S)
    else:
        dk, dv = _zero_invalid(kc, lens, left_pad), _zero_invalid(vc, lens, left_pad)
    q_4 = q4 if q4.dim() == 4 else q4.unsqueeze(1)
    kw = {k: v for k, v in kw.items() if k != "num_splits"}
    r_out, r_lse = _naive_multi(q_4, dk, dv, lens, left_pad=left_pad, **kw)
    l_out, l_lse = _naive_multi(q_4, dk, dv, lens, left_pad=left_pad, dtype=q4.dtype, **kw)
    o, l = (out, lse) if q4.dim() == 4 else (out.unsqueeze(1), lse.unsqueeze(1))
    check_accuracy("out", o, r_out, l_out, require_lp_error=require_lp_error)
    check_accuracy("lse", l, r_lse, l_lse, require_lp_error=require_lp_error)
    return out, lse


def _paged(device, lens, *, page, Hkv=2, D=64, dtype=BF16, extra_pages=3, shared=False, seed=0, nan=True):
    """Paged k/v caches [num_pages, page, Hkv, D] with pages in random physical order, NaN in every
    unused slot of a used page and in every unused page; block_table [B, max_pages] whose entries past a
    sequence's used pages are out of range (never read). shared: sequence 1 uses sequence 0's first
    pages (a shared prefix), then its own."""
    g = torch.Generator().manual_seed(seed)
    B = len(lens)
    max_pages = max(cdiv(n, page) for n in lens) + 1
    need = [cdiv(n, page) for n in lens]
    n_prefix = min(need[0], need[1]) if shared and B > 1 else 0
    n_pages = sum(need) - n_prefix + extra_pages
    perm = torch.randperm(n_pages, generator=g).tolist()
    table = torch.full((B, max_pages), n_pages + 7, dtype=torch.int32)  # out of range: never read
    nxt = 0
    for b in range(B):
        for p in range(need[b]):
            if shared and b == 1 and p < n_prefix:
                table[b, p] = table[0, p]
            else:
                table[b, p] = perm[nxt]
                nxt += 1
    kp = torch.randn(n_pages, page, Hkv, D, generator=g).to(dtype)
    vp = torch.randn(n_pages, page, Hkv, D, generator=g).to(dtype)
    if nan:
        used = torch.zeros(n_pages, page, dtype=torch.bool)
        for b in range(B):
            for s in range(lens[b]):
                used[table[b, s // page], s % page] = True
        kp[~used] = float("nan")
        vp[~used] = float("nan")
    return kp.to(device), vp.to(device), table.to(device)


def _sel(form, B, Hkv, nb, density, seed, device):
    keep = _random_sel(B, Hkv, nb, density, seed=seed)
    if form == "mask":
        return dict(block_mask=keep.to(device))
    return dict(block_indices=_indices_from_keep(keep, nb).to(device))


# SPEC: page_size any multiple of 16, independent of block_size: every power-of-two pair, and pages that are
# not powers of two, where blocks straddle pages at other offsets (a 16-key tile never straddles one)
PAGED_CASES = [(page, bs) for page in (16, 64, 256) for bs in (16, 32, 64, 128)] + \
    [(48, 32), (48, 64), (80, 48), (80, 128), (48, 256)]


@pytest.mark.parametrize("form", ["mask", "indices"])
@pytest.mark.parametrize("page,bs", PAGED_CASES)
def test_decode_paged(device, form, page, bs):
    lens = [300, 1, 0, 129, 64]
    kp, vp, table = _paged(device, lens, page=page, seed=page + bs)
    S = table.shape[1] * page
    q = torch.randn(len(lens), 8, 64, dtype=BF16, device=device)
    sel = _sel(form, len(lens), 2, cdiv(S, bs), 0.5, bs, device)
    _check_multi(device, q, kp, vp, lens, block_table=table, S=S, block_size=bs, **sel)
    _check_multi(device, q, kp, vp, lens, block_table=table, S=S, block_size=bs, first_block_unmasked=True,
                 num_splits=3, **sel)


@pytest.mark.parametrize("form", ["mask", "indices"])
def test_decode_paged_shared_pages(device, form):
    # sequence 1 shares sequence 0's first pages (prefix caching); a block spans two pages (page 16,
    # block 64) and a page holds several blocks (page 64, block 16)
    lens = [200, 150, 90]
    for page, bs in ((16, 64), (64, 16)):
        kp, vp, table = _paged(device, lens, page=page, shared=True, seed=page)
        assert torch.equal(table[0, :2], table[1, :2])
        S = table.shape[1] * page
        q = torch.randn(len(lens), 2, 4, 64, dtype=BF16, device=device)
        sel = _sel(form, len(lens), 2, cdiv(S, bs), 0.6, page, device)
        _check_multi(device, q, kp, vp, lens, block_table=table, S=S, block_size=bs, **sel)


def _nan_in_unused_slots(kc, vc, lens, left_pad):
    """Dense caches [B, S, H_kv, D] with NaN in every slot outside the valid ones of each sequence."""
    S = kc.shape[1]
    slot = torch.arange(S, device=kc.device)[None, :]
    ln = torch.tensor(lens, device=kc.device)[:, None]
    unused = ((slot < S - ln) if left_pad else (slot >= ln))[:, :, None, None]
    return kc.masked_fill(unused, float("nan")), vc.masked_fill(unused, float("nan"))


@pytest.mark.parametrize("L", [L if L in (1, 2, 5, 16) else pytest.param(L, marks=pytest.mark.slow)
                               for L in range(1, 17)])
def test_decode_multi_token(device, L):
    # L new tokens: causal among themselves; dense right-padded, dense left-padded (+ first block),
    # paged; lengths shorter than L (the first tokens then see nothing); NaN in every unused slot
    lens = [130, 1, 0, 37, L, 64]
    B, Hkv, D, S, bs = len(lens), 2, 64, 160, 32
    q = torch.randn(B, L, 8, D, dtype=BF16, device=device)
    kc = torch.randn(B, S, Hkv, D, dtype=BF16, device=device)
    vc = torch.randn(B, S, Hkv, D, dtype=BF16, device=device)
    sel = _sel("mask" if L % 2 else "indices", B, Hkv, cdiv(S, bs), 0.5, L, device)
    for left_pad in (False, True):
        kn, vn = _nan_in_unused_slots(kc, vc, lens, left_pad)
        _check_multi(device, q, kn, vn, lens, left_pad=left_pad, first_block_unmasked=left_pad, block_size=bs,
                     **sel)
    kp, vp, table = _paged(device, lens, page=16, seed=L)
    _check_multi(device, q, kp, vp, lens, block_table=table, S=table.shape[1] * 16, block_size=bs,
                 num_splits=2, **_sel("mask", B, Hkv, cdiv(table.shape[1] * 16, bs), 0.5, L, device))


@pytest.mark.slow
@pytest.mark.parametrize("L", [1, 4, 16])
def test_decode_multi_token_large_group(device, L):
    # group 32: L x group rows span several 16-row head chunks of the kernel
    lens = [700, 5, 333]
    kp, vp, table = _paged(device, lens, page=64, Hkv=1, D=128, seed=L)
    S = table.shape[1] * 64
    q = torch.randn(len(lens), L, 32, 128, dtype=BF16, device=device)
    sel = _sel("indices", len(lens), 1, cdiv(S, 64), 0.3, L, device)
    _check_multi(device, q, kp, vp, lens, block_table=table, S=S, block_size=64, **sel)


def test_decode_nan_in_unused_slots_dense(device):
    # L = 1, dense caches, NaN everywhere outside the valid slots: the output stays exact
    lens = [200, 1, 0, 77]
    q, kc, vc, _ = _inputs(device, lens=lens, Hq=8, Hkv=2, D=64)
    for left_pad in (False, True):
        kn, vn = _nan_in_unused_slots(kc, vc, lens, left_pad)
        for form in ("mask", "indices"):
            sel = _sel(form, len(lens), 2, cdiv(S_MAX, 16), 0.7, 3, device)
            _check_multi(device, q, kn, vn, lens, left_pad=left_pad, block_size=16, num_splits=4, **sel)


def test_decode_indices_duplicates_count_once(device):
    # the same block listed several times is attended once (on CPU and CUDA alike)
    lens = [200, 77, 150]
    q, kc, vc, sl = _inputs(device, lens=lens, Hq=8, Hkv=2, D=64)
    nb = cdiv(S_MAX, 32)
    keep = _random_sel(len(lens), 2, nb, 0.4, seed=5)
    idx = _indices_from_keep(keep, nb, pad=0)
    dup = torch.cat([idx, idx.flip(-1), idx[..., :1]], dim=-1)  # every entry at least twice
    once = seer_attn.block_sparse_decode(q, kc, vc, sl, block_indices=idx.to(device), block_size=32)
    for ns in (0, 1, 3):
        twice = seer_attn.block_sparse_decode(q, kc, vc, sl, block_indices=dup.to(device), block_size=32,
                                              num_splits=ns)
        r, _ = naive.decode(q, kc, vc, sl, block_indices=idx, block_size=32)
        l, _ = naive.decode(q, kc, vc, sl, block_indices=idx, block_size=32, dtype=BF16)
        check_accuracy("out(duplicates)", twice, r, l)
        check_accuracy("out(once)", once, r, l)


def test_decode_check_inputs_indices_and_table(device, monkeypatch):
    # out-of-range indices / table entries: ignored / clamped by default, an error under
    # SEER_ATTN_CHECK_INPUTS=1 (naming the argument and the value)
    lens = [100, 20]
    kp, vp, table = _paged(device, lens, page=16, nan=False)
    S = table.shape[1] * 16
    q = torch.randn(2, 4, 64, dtype=BF16, device=device)
    sl = torch.tensor(lens, dtype=torch.int32, device=device)
    nb = cdiv(S, 32)
    idx = torch.tensor([[[0, nb + 3, 2, -1], [1, -5, 3, 0]]] * 2, dtype=torch.int32, device=device)
    monkeypatch.delenv("SEER_ATTN_CHECK_INPUTS", raising=False)
    out = seer_attn.block_sparse_decode(q, kp, vp, sl, block_indices=idx, block_size=32, block_table=table)
    ok_idx = torch.where((idx >= 0) & (idx < nb), idx, torch.full_like(idx, -1))
    ref = seer_attn.block_sparse_decode(q, kp, vp, sl, block_indices=ok_idx, block_size=32, block_table=table)
    assert torch.equal(out, ref)
    bad_table = table.clone()
    bad_table[1, 0] = 10 ** 6       # a used page out of range: clamped to the last page
    bad_table[0, 1] = -3            # clamped to page 0
    clamped = table.clone()
    clamped[1, 0] = kp.shape[0] - 1
    clamped[0, 1] = 0
    got = seer_attn.block_sparse_decode(q, kp, vp, sl, block_indices=ok_idx, block_size=32, block_table=bad_table)
    want = seer_attn.block_sparse_decode(q, kp, vp, sl, block_indices=ok_idx, block_size=32, block_table=clamped)
    assert torch.equal(got, want)
    monkeypatch.setenv("SEER_ATTN_CHECK_INPUTS", "1")
    seer_attn.block_sparse_decode(q, kp, vp, sl, block_indices=ok_idx, block_size=32, block_table=table)
    with pytest.raises(RuntimeError, match=rf"seer_attn::block_sparse_decode: block_indices .*got {nb + 3}\b"):
        seer_attn.block_sparse_decode(q, kp, vp, sl, block_indices=idx, block_size=32, block_table=table)
    with pytest.raises(RuntimeError, match=r"seer_attn::block_sparse_decode: block_table .*= (1000000|-3)\b"):
        seer_attn.block_sparse_decode(q, kp, vp, sl, block_indices=ok_idx, block_size=32, block_table=bad_table)


def _paged_args(device, page=16):
    lens = [40, 17]
    kp, vp, table = _paged(device, lens, page=page, nan=False)
    q = torch.randn(2, 4, 64, dtype=BF16, device=device)
    sl = torch.tensor(lens, dtype=torch.int32, device=device)
    mask = torch.ones(2, 2, cdiv(table.shape[1] * page, 16), dtype=torch.bool, device=device)
    return q, kp, vp, sl, mask, table


@pytest.mark.parametrize("case", ["page_24", "table_int64", "table_1d", "table_batch", "left_pad", "L_17",
                                  "mask_too_small"])
def test_decode_paged_errors(device, case):
    q, kp, vp, sl, mask, table = _paged_args(device)
    kw = dict(block_mask=mask, block_size=16, block_table=table)
    if case == "page_24":
        kp, vp = kp.new_zeros(kp.shape[0], 24, 2, 64), vp.new_zeros(vp.shape[0], 24, 2, 64)
        kw["block_mask"] = torch.ones(2, 2, cdiv(table.shape[1] * 24, 16), dtype=torch.bool, device=device)
        arg, val = "page size", "24"
    elif case == "table_int64":
        kw["block_table"] = table.long()
        arg, val = "block_table", "int64"
    elif case == "table_1d":
        kw["block_table"] = table[0]
        arg, val = "block_table", r"\[" + str(table.shape[1]) + r"\]"
    elif case == "table_batch":
        kw["block_table"] = table[:1]
        arg, val = "block_table", r"got 1\b"
    elif case == "left_pad":
        kw["left_pad"] = True
        arg, val = "left_pad", "True"
    elif case == "L_17":
        q = torch.randn(2, 17, 4, 64, dtype=BF16, device=device)
        arg, val = "q", r"got 17\b"
    else:
        kw["block_mask"] = mask[..., :-1]
        arg, val = "block_mask", rf"got {mask.shape[-1] - 1}\b"
    with pytest.raises(RuntimeError) as ei:
        seer_attn.block_sparse_decode(q, kp, vp, sl, **kw)
    msg = str(ei.value)
    assert "seer_attn::block_sparse_decode" in msg and arg in msg, msg
    import re
    assert re.search(val, msg), msg


def test_decode_paged_cuda_graph(device):
    # the paged path (mask and indices, L = 1 and 4) captured in a CUDA graph and replayed on new data
    if device != "cuda":
        pytest.skip("CUDA graphs")
    import math
    B, Hq, Hkv, D, page, bs = 5, 16, 4, 128, 64, 32
    lens_l = [1000, 3, 0, 517, 64]
    kp, vp, table = _paged(device, lens_l, page=page, Hkv=Hkv, D=D, nan=False)
    S = table.shape[1] * page
    nb = math.ceil(S / bs)
    lens = torch.tensor(lens_l, dtype=torch.int32, device=device)
    for L in (1, 4):
        q = torch.randn(B, L, Hq, D, device=device, dtype=BF16)
        mask = torch.rand(B, Hkv, nb, device=device) < 0.3
        for sel in (dict(block_mask=mask), dict(block_indices=seer_attn.mask_to_indices(mask))):
            def step():
                return seer_attn.block_sparse_decode(q, kp, vp, lens, block_size=bs, block_table=table,
                                                     return_lse=True, **sel)
            s = torch.cuda.Stream()
            s.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(s):
                step()
            torch.cuda.current_stream().wait_stream(s)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                out_g, lse_g = step()
            for _ in range(2):
                q.copy_(torch.randn_like(q))
                mask.copy_(torch.rand(B, Hkv, nb, device=device) < 0.3)
                if "block_indices" in sel:
                    sel["block_indices"].copy_(seer_attn.mask_to_indices(mask, sel["block_indices"].shape[-1]))
                graph.replay()
                out_e, lse_e = step()
                torch.testing.assert_close(out_g, out_e, rtol=0, atol=0)
                torch.testing.assert_close(lse_g, lse_e, rtol=0, atol=0)


@pytest.mark.parametrize("form", ["mask", "indices"])
def test_decode_paged_multi_token_opcheck_and_compile(device, form):
    # the op with block_table and a 4-D q: opcheck (schema, fake kernel, dispatch) and
    # torch.compile(fullgraph=True) give the eager result
    lens = [40, 17, 0]
    kp, vp, table = _paged(device, lens, page=16, nan=False)
    S = table.shape[1] * 16
    q = torch.randn(3, 3, 4, 64, dtype=BF16, device=device)
    sl = torch.tensor(lens, dtype=torch.int32, device=device)
    sel = _sel(form, 3, 2, cdiv(S, 16), 0.5, 1, device)
    mask, idx = sel.get("block_mask"), sel.get("block_indices")
    op = torch.ops.seer_attn.block_sparse_decode.default
    torch.library.opcheck(op, (q, kp, vp, sl, mask, idx, 16, 0.125, False, True, 0, table))
    torch.library.opcheck(op, (q, kp, vp, sl, mask, idx, 16, 0.125, False, False, 2), {"block_table": table})

    def dec(q, kp, vp, sl, table):
        return seer_attn.block_sparse_decode(q * 1.0, kp, vp, sl, block_size=16, block_table=table, return_lse=True,
                                             **sel)

    torch._dynamo.reset()
    a = dec(q, kp, vp, sl, table)
    b = torch.compile(dec, fullgraph=True, backend="aot_eager")(q, kp, vp, sl, table)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


# ---- long rows (tens / hundreds of thousands of blocks): CUDA only (the float64 reference of the CPU
# path would take minutes); the second is checked against the same op on the compacted cache ----
@pytest.mark.parametrize("form", ["mask", "indices"])
@pytest.mark.parametrize("left_pad,fbu", [(False, False), (True, True)], ids=["right_pad", "left_pad_fbu"])
@pytest.mark.parametrize("num_splits", [1, 0])
def test_decode_long_rows(device, form, left_pad, fbu, num_splits):
    # 20000 blocks of 16 slots, 4% kept, two sequences (one 70001 slots shorter), left or right padded.
    if device != "cuda":
        pytest.skip("long rows: CUDA only")
    bs, S = 16, 16 * 20000
    lens = [S, S - 70001]
    q, kc, vc, sl = _inputs(device, lens=lens, S=S, Hq=2, Hkv=1, D=64)
    keep = _random_sel(len(lens), 1, S // bs, 0.04, seed=3)
    kw = dict(block_mask=keep.to(device)) if form == "mask" else dict(block_indices=_indices_from_keep(keep, S // bs).to(device))
    _check(device, q, kc, vc, sl, bs=bs, left_pad=left_pad, first_block_unmasked=fbu, num_splits=num_splits, **kw)


@pytest.mark.parametrize("form", ["mask", "indices"])
@pytest.mark.parametrize("num_splits", [1, 3])
def test_decode_very_long_row_vs_compacted(device, form, num_splits):
    # 270000 blocks of 16 slots, 3000 kept (one in the last block). The float64 reference runs on the
    # compacted cache (the kept blocks side by side, all kept), which is the same attention; the op on
    # the compacted cache is checked too.
    if device != "cuda":
        pytest.skip("long rows: CUDA only")
    bs, nb = 16, 270000
    S = bs * nb
    g = torch.Generator(device=device).manual_seed(5)
    q = torch.randn(1, 2, 64, generator=g, device=device, dtype=BF16)
    kc = torch.randn(1, S, 1, 64, generator=g, device=device, dtype=BF16)
    vc = torch.randn(1, S, 1, 64, generator=g, device=device, dtype=BF16)
    sl = torch.tensor([S], dtype=torch.int32, device=device)
    sel = torch.randperm(nb, generator=torch.Generator().manual_seed(6))[:3000].sort().values
    sel[-1] = nb - 1  # the row's last block
    keep = torch.zeros(1, 1, nb, dtype=torch.bool)
    keep[0, 0, sel] = True
    kw = dict(block_mask=keep.to(device)) if form == "mask" else dict(block_indices=_indices_from_keep(keep, nb).to(device))
    out, lse = seer_attn.block_sparse_decode(q, kc, vc, sl, block_size=bs, num_splits=num_splits, return_lse=True, **kw)
    slots = (sel.to(device)[:, None] * bs + torch.arange(bs, device=device)[None]).reshape(-1)
    kc2, vc2 = kc[:, slots].contiguous(), vc[:, slots].contiguous()
    n2 = slots.numel()
    sl2 = torch.tensor([n2], dtype=torch.int32, device=device)
    kw2 = dict(block_mask=torch.ones(1, 1, n2 // bs, dtype=torch.bool, device=device), block_size=bs)
    out2, lse2 = seer_attn.block_sparse_decode(q, kc2, vc2, sl2, num_splits=num_splits, return_lse=True, **kw2)
    r_out, r_lse = naive.decode(q, kc2, vc2, sl2, **kw2)
    l_out, l_lse = naive.decode(q, kc2, vc2, sl2, dtype=q.dtype, **kw2)
    for o, l in ((out, lse), (out2, lse2)):
        check_accuracy("out", o, r_out, l_out)
        check_accuracy("lse", l, r_lse, l_lse)
        check_lse_strict(l, r_lse, lambda: naive.decode(q, kc2, vc2, sl2, dtype=torch.float32, **kw2)[1])
