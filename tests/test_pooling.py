"""Attention pooling (distillation targets) against the naive float64 pooling."""
import pytest
import torch

import naive
import seer_attn
from helpers import cdiv, check_accuracy, cu_from_lens

BF16, FP16 = torch.bfloat16, torch.float16
SEQ = [130, 1, 0, 257, 64]


def _inputs(device, lens, Hq, Hkv, D, dtype):
    T = sum(lens)
    q = torch.randn(T, Hq, D, dtype=dtype, device=device)
    k = torch.randn(T, Hkv, D, dtype=dtype, device=device)
    return q, k, cu_from_lens(lens, device)


def _region_1d(lens, nb, bs):
    """bool [T, nb]: the defined part of the packed 1D map (sequence b: columns < ceil(t_b/B))."""
    T = sum(lens)
    reg = torch.zeros(T, nb, dtype=torch.bool)
    s = 0
    for n in lens:
        reg[s:s + n, :cdiv(n, bs)] = True
        s += n
    return reg


def _check_pooling(device, lens, *, Hq=4, Hkv=2, D=64, dtype=BF16, bs=64, causal=True, gqa_reduce=False,
                   max_seqlen=None, sm_scale=None, k_bcast=False):
    q, k, cu = _inputs(device, lens, Hq, Hkv, D, dtype)
    if k_bcast:  # K broadcast over the kv heads: an expanded view with head stride 0
        k = k[:, :1].expand(k.shape)
    max_seqlen = max(lens) if max_seqlen is None else max_seqlen
    p2, p1 = seer_attn.attention_pooling(q, k, cu, max_seqlen, block_size=bs, sm_scale=sm_scale, causal=causal,
                                         gqa_reduce=gqa_reduce)
    r2, r1, _ = naive.pooling(q, k, cu, max_seqlen, block_size=bs, sm_scale=sm_scale, causal=causal,
                              gqa_reduce=gqa_reduce)
    l2, l1, _ = naive.pooling(q, k, cu, max_seqlen, block_size=bs, sm_scale=sm_scale, causal=causal,
                              gqa_reduce=gqa_reduce, dtype=dtype)
    nb = cdiv(max_seqlen, bs)
    h_out = Hkv if gqa_reduce else Hq
    assert p2.dtype == torch.float32 and p2.shape == (len(lens), h_out, nb, nb) and p2.device == q.device
    assert p1.dtype == dtype and p1.shape == (h_out, sum(lens), nb) and p1.device == q.device
    assert not p2.requires_grad and not p1.requires_grad
    # pooled_2d: whole tensor (entries outside a sequence / above the diagonal exactly 0)
    check_accuracy("pooled_2d", p2, r2, l2)
    # pooled_1d: the defined region of the packed map (sequence b: columns < ceil(t_b / B))
    reg = _region_1d(lens, nb, bs).to(p1.device)
    check_accuracy("pooled_1d", p1[:, reg], r1[:, reg], l1[:, reg])
    # rows of the 2D map sum to 1 (or are all 0 outside a sequence)
    rs = p2.double().sum(-1).cpu()
    ok = ((rs - 1).abs() < 1e-4) | (rs == 0)
    assert ok.all()
    if gqa_reduce:
        rs1 = p1[:, reg.any(1)].double().sum(-1)
        assert ((rs1 - 1).abs() < 2e-2).all()   # bf16 rows normalised
    return p2, p1


@pytest.mark.parametrize("dtype", [BF16, FP16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("gqa_reduce", [False, True], ids=["per_head", "gqa_reduce"])
@pytest.mark.parametrize("hq,hkv", [(4, 4), (8, 2), (6, 2)], ids=["g1", "g4", "g3"])
def test_pooling_basic(device, dtype, gqa_reduce, hq, hkv):
    _check_pooling(device, SEQ, Hq=hq, Hkv=hkv, dtype=dtype, gqa_reduce=gqa_reduce)


@pytest.mark.parametrize("bs", [16, 32, 128, 256])
@pytest.mark.parametrize("gqa_reduce", [False, True], ids=["per_head", "gqa_reduce"])
def test_pooling_block_sizes(device, bs, gqa_reduce):
    _check_pooling(device, [100, 1, 300, 17], bs=bs, gqa_reduce=gqa_reduce)


@pytest.mark.parametrize("D", [128, 256])
def test_pooling_head_dims(device, D):
    _check_pooling(device, SEQ, D=D)


@pytest.mark.parametrize("gqa_reduce", [False, True], ids=["per_head", "gqa_reduce"])
def test_pooling_noncausal(device, gqa_reduce):
    _check_pooling(device, SEQ, causal=False, gqa_reduce=gqa_reduce)


def test_pooling_sm_scale_and_larger_max_seqlen(device):
    _check_pooling(device, [70, 33], max_seqlen=200, sm_scale=0.2, bs=32)


def test_pooling_long(device):
    _check_pooling(device, [1000, 130], Hq=4, Hkv=1, D=128, bs=64, gqa_reduce=True)


@pytest.mark.slow
def test_pooling_second_sweep(device):
    # 3000 tokens at block 16 = 188 key blocks per row: more than the CUDA kernel stages in shared memory
    # for D 128 (about 160 at two CTAs per SM on an H100 / H200), so the last rows take the partial
    # second sweep (pooling_launch.cuh).
    _check_pooling(device, [3000, 40], Hq=2, Hkv=1, D=128, bs=16)


@pytest.mark.slow
@pytest.mark.parametrize("gqa_reduce", [False, True], ids=["per_head", "gqa_reduce"])
def test_pooling_second_sweep_whole_tiles(device, gqa_reduce):
    # Block 64 = one 64-key tile: the CUDA kernel closes a block per tile (pooling_kernel.cuh
    # `whole_tiles`), in the second sweep too. 10,600 tokens = 166 key blocks per row, past the ~160 the
    # D 128 staging holds at two CTAs per SM, so the last rows take the second sweep.
    _check_pooling(device, [10600, 90], Hq=2, Hkv=1, D=128, bs=64, gqa_reduce=gqa_reduce)


@pytest.mark.parametrize("gqa_reduce", [False, True], ids=["per_head", "gqa_reduce"])
def test_pooling_k_head_stride_zero(device, gqa_reduce):
    # K broadcast over the kv heads (head stride 0): no TMA map describes it, so on Hopper the op runs the
    # mma.sync kernel instead of the TMA one; the same maps either way
    _check_pooling(device, [130, 1, 257, 64], Hkv=2, D=128, gqa_reduce=gqa_reduce, k_bcast=True)


def test_unpack_pooled_1d(device):
    lens = [130, 1, 0, 257, 64]
    q, k, cu = _inputs(device, lens, 4, 2, 64, BF16)
    p2, p1 = seer_attn.attention_pooling(q, k, cu, max(lens), block_size=64)
    for cu_arg in (cu, cu.cpu().tolist()):
        lst = seer_attn.unpack_pooled_1d(p1, cu_arg, 64)
        assert isinstance(lst, list) and len(lst) == len(lens)
        s = 0
        for n, x in zip(lens, lst):
            assert x.shape == (4, n, cdiv(n, 64))
            assert torch.equal(x, p1[:, s:s + n, :cdiv(n, 64)])
            if x.numel():
                assert x.data_ptr() == p1[:, s:s + n].data_ptr()  # a view, no copy
            s += n
    _, _, ref_list = naive.pooling(q, k, cu, max(lens), block_size=64)
    for x, r in zip(lst, ref_list):
        assert x.shape == r.shape


def test_seed_attn_pooling(device):
    # seed: pooling_gt_2d, pooling_gt_1d = attn_pooling(q, k, cu_seqlens, max_seqlen, sm_scale, block_size)
    lens = [130, 1, 0, 257, 64]
    q, k, cu = _inputs(device, lens, 8, 2, 64, BF16)
    sm = 0.11
    g2, g1 = seer_attn.attn_pooling(q, k, cu, max(lens), sm, 32)
    p2, p1 = seer_attn.attention_pooling(q, k, cu, max(lens), block_size=32, sm_scale=sm)
    assert torch.equal(g2, p2)
    assert isinstance(g1, (list, tuple)) and len(g1) == len(lens)
    for x, y in zip(g1, seer_attn.unpack_pooled_1d(p1, cu, 32)):
        assert torch.equal(x, y)
    # per-head maps, not normalised (the seed's format)
    assert g2.shape[1] == 8 and g1[0].shape == (8, 130, cdiv(130, 32))


def test_gqa_reduce_equals_manual_reduction(device):
    # the fused reduction equals max over the group's heads of the per-head maps, then /(sum + 1e-6)
    lens = [100, 40]
    q, k, cu = _inputs(device, lens, 8, 2, 64, BF16)
    p2, p1 = seer_attn.attention_pooling(q, k, cu, 100, block_size=32)
    g2, g1 = seer_attn.attention_pooling(q, k, cu, 100, block_size=32, gqa_reduce=True)
    # un-normalise the per-head 2D map is impossible; compare the 1D map (not normalised per head)
    m = p1.double().reshape(2, 4, 140, -1).amax(1)
    m = m / (m.sum(-1, keepdim=True) + 1e-6)
    tol = 2 ** -7  # one bf16 rounding of values <= 1, twice
    assert (g1.double() - m).abs().max().item() <= tol
