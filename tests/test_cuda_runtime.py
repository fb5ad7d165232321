"""CUDA-only properties of the kernels that the CPU reference cannot show:

- no op synchronises the device (torch.cuda.set_sync_debug_mode("error") turns a sync into an error);
- block_sparse_decode can be captured in a CUDA graph and replayed on new data;
- the deterministic backward is bitwise reproducible, and the default (atomic) one agrees with it;
- offsets past 2^31 elements are computed in 64 bits (~30 GB of GPU memory; skipped on smaller cards);
- inputs that are contiguous views at an odd storage offset (not 16-byte aligned) are copied, not
  read misaligned, by every op.
(Both forward mainloops, mma.sync and the Hopper warp-specialised one, are compared with float64 on the
same cases by the torch-free selftest, csrc/attention/selftest/fwd_selftest.cpp.)
"""
import math

import pytest
import torch

import seer_attn
from helpers import build_attention_inputs, check_attention, cu_from_lens

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _attn_inputs(lens, Hq=8, Hkv=2, D=128, B=64, dtype=torch.bfloat16, density=0.5, seed=0):
    g = torch.Generator(device="cuda").manual_seed(seed)
    T = sum(lens)
    q = torch.randn(T, Hq, D, device="cuda", dtype=dtype, generator=g)
    k = torch.randn(T, Hkv, D, device="cuda", dtype=dtype, generator=g)
    v = torch.randn(T, Hkv, D, device="cuda", dtype=dtype, generator=g)
    cu = cu_from_lens(lens, "cuda")
    nb = math.ceil(max(lens) / B)
    mask2d = torch.rand(len(lens), Hq, nb, nb, device="cuda", generator=g) < density
    mask1d = torch.rand(len(lens), Hkv, max(lens), nb, device="cuda", generator=g) < density
    return q, k, v, cu, max(lens), mask2d, mask1d


@cuda
def test_no_device_sync_in_any_op():
    q, k, v, cu, S, mask2d, mask1d = _attn_inputs([300, 77, 1, 0, 129])
    for t in (q, k, v):
        t.requires_grad_(True)
    B, Hkv, D = 4, 2, 128
    kc = torch.randn(B, 1000, Hkv, D, device="cuda", dtype=torch.bfloat16)
    vc = torch.randn_like(kc)
    lens = torch.tensor([1000, 3, 0, 517], device="cuda", dtype=torch.int32)
    dmask = torch.rand(B, Hkv, math.ceil(1000 / 64), device="cuda") < 0.3
    idx = seer_attn.mask_to_indices(dmask)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        out2 = seer_attn.block_sparse_attn_2d(q, k, v, mask2d, cu, cu, S, S)
        out1 = seer_attn.block_sparse_attn_1d(q, k, v, mask1d, cu, cu, S, S)
        out1d = seer_attn.block_sparse_attn_1d(q, k, v, mask1d, cu, cu, S, S, deterministic=True)
        (out2.float().sum() + out1.float().sum() + out1d.float().sum()).backward()
        seer_attn.attention_pooling(q.detach(), k.detach(), cu, S)
        seer_attn.attention_pooling(q.detach(), k.detach(), cu, S, gqa_reduce=True)
        seer_attn.block_sparse_decode(q[:B].detach(), kc, vc, lens, block_mask=dmask)
        seer_attn.block_sparse_decode(q[:B].detach(), kc, vc, lens, block_indices=idx, left_pad=True,
                                      first_block_unmasked=True)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize()


@cuda
@pytest.mark.parametrize("form", ["mask", "indices"])
def test_decode_cuda_graph_capture_and_replay(form):
    B, Hq, Hkv, D, S, bs = 6, 16, 4, 128, 2000, 64
    nb = math.ceil(S / bs)
    q = torch.randn(B, Hq, D, device="cuda", dtype=torch.bfloat16)
    kc = torch.randn(B, S, Hkv, D, device="cuda", dtype=torch.bfloat16)
    vc = torch.randn_like(kc)
    lens = torch.randint(1, S + 1, (B,), device="cuda", dtype=torch.int32)
    mask = torch.rand(B, Hkv, nb, device="cuda") < 0.3
    sel = dict(block_mask=mask) if form == "mask" else dict(block_indices=seer_attn.mask_to_indices(mask))

    def step():
        return seer_attn.block_sparse_decode(q, kc, vc, lens, block_size=bs, return_lse=True, **sel)

    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        step()  # warm-up outside capture (allocator, split heuristic cache)
    torch.cuda.current_stream().wait_stream(s)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out_g, lse_g = step()
    for _ in range(2):  # new data in the captured buffers, then replay
        q.copy_(torch.randn_like(q))
        lens.copy_(torch.randint(1, S + 1, (B,), device="cuda", dtype=torch.int32))
        if form == "mask":
            mask.copy_(torch.rand(B, Hkv, nb, device="cuda") < 0.3)
        graph.replay()
        out_e, lse_e = step()
        torch.testing.assert_close(out_g, out_e, rtol=0, atol=0)
        torch.testing.assert_close(lse_g, lse_e, rtol=0, atol=0)


@cuda
@pytest.mark.parametrize("kind", ["2d", "1d"])
def test_deterministic_backward_is_bitwise_reproducible(kind):
    q, k, v, cu, S, mask2d, mask1d = _attn_inputs([700, 333, 64], Hq=8, Hkv=2)
    dout = torch.randn_like(q)

    def grads(deterministic):
        qq, kk, vv = (t.detach().clone().requires_grad_(True) for t in (q, k, v))
        if kind == "2d":
            out = seer_attn.block_sparse_attn_2d(qq, kk, vv, mask2d, cu, cu, S, S, deterministic=deterministic)
        else:
            out = seer_attn.block_sparse_attn_1d(qq, kk, vv, mask1d, cu, cu, S, S, deterministic=deterministic)
        out.backward(dout)
        return qq.grad, kk.grad, vv.grad

    a, b, c = grads(True), grads(True), grads(False)
    for x, y, z in zip(a, b, c):
        assert torch.equal(x, y)  # deterministic: bitwise
        # atomic path: same math, fp32 accumulation in another order -> agrees to rounding
        torch.testing.assert_close(z.float(), x.float(), rtol=2e-2, atol=2e-2)


@cuda
def test_offsets_past_2_pow_31_elements():
    # q/out hold > 2^31 elements; only the last sequences are compared with a dense fp32 computation.
    Hq, Hkv, D, L = 16, 1, 128, 1024
    nseq = (2**31) // (L * Hq * D) + 2
    T = nseq * L
    free = torch.cuda.mem_get_info()[0]
    if free < 40 * 2**30:  # q, out, dout, dq (4.3 GB each) + the fp32 dq workspace (8.6 GB)
        pytest.skip("needs ~40 GB of free GPU memory")
    q = torch.randn(T, Hq, D, device="cuda", dtype=torch.bfloat16)
    assert q.numel() > 2**31
    k = torch.randn(T, Hkv, D, device="cuda", dtype=torch.bfloat16)
    v = torch.randn(T, Hkv, D, device="cuda", dtype=torch.bfloat16)
    cu = torch.arange(0, T + 1, L, device="cuda", dtype=torch.int32)
    nb = L // 64
    mask = (torch.rand(1, Hq, nb, nb, device="cuda") < 0.5).expand(nseq, Hq, nb, nb)
    q.requires_grad_(True)
    out = seer_attn.block_sparse_attn_2d(q, k, v, mask, cu, cu, L, L)
    dout = torch.randn_like(out)
    out.backward(dout)
    s = T - L
    qs = q.detach()[s:].float().requires_grad_(True)
    ks, vs = k[s:].float(), v[s:].float()
    keep = mask[0].repeat_interleave(64, 1).repeat_interleave(64, 2)
    keep = keep & torch.ones(L, L, device="cuda", dtype=torch.bool).tril()
    scores = torch.einsum("qhd,khd->hqk", qs, ks.expand(L, Hq, D)) / math.sqrt(D)
    scores = scores.masked_fill(~keep, float("-inf"))
    p = torch.softmax(scores, dim=-1).nan_to_num(0.0)
    ref = torch.einsum("hqk,khd->qhd", p, vs.expand(L, Hq, D))
    ref.backward(dout[s:].float())
    torch.testing.assert_close(out[s:].float(), ref, rtol=2e-2, atol=2e-2)
    torch.testing.assert_close(q.grad[s:].float(), qs.grad, rtol=3e-2, atol=3e-2)


def _misaligned(t):
    """The same values as t, as a contiguous view whose data pointer is 2 bytes off 16-byte alignment."""
    flat = torch.empty(t.numel() + 8, dtype=t.dtype, device=t.device)
    v = flat[1:1 + t.numel()].view(t.shape)
    v.copy_(t)
    assert v.is_contiguous() and v.data_ptr() % 16 != 0
    return v


@cuda
def test_misaligned_contiguous_inputs():
    q, k, v, cu, S, mask2d, _ = _attn_inputs([300, 77, 129])
    ref = seer_attn.block_sparse_attn_2d(q, k, v, mask2d, cu, cu, S, S)
    got = seer_attn.block_sparse_attn_2d(_misaligned(q), _misaligned(k), _misaligned(v), mask2d, cu, cu, S, S)
    assert torch.equal(got, ref)
    ref_p = seer_attn.attention_pooling(q, k, cu, S)
    got_p = seer_attn.attention_pooling(_misaligned(q), _misaligned(k), cu, S)
    assert all(torch.equal(a, b) for a, b in zip(got_p, ref_p))
    kc = torch.randn(3, 200, 2, 128, device="cuda", dtype=torch.bfloat16)
    vc = torch.randn_like(kc)
    lens = torch.tensor([200, 1, 77], device="cuda", dtype=torch.int32)
    dmask = torch.ones(3, 2, math.ceil(200 / 64), dtype=torch.bool, device="cuda")
    ref_d = seer_attn.block_sparse_decode(q[:3], kc, vc, lens, block_mask=dmask)
    got_d = seer_attn.block_sparse_decode(_misaligned(q[:3].contiguous()), _misaligned(kc), _misaligned(vc), lens,
                                          block_mask=dmask)
    assert torch.equal(got_d, ref_d)
