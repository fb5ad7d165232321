"""Autograd edges a training user hits: double backward (a gradient penalty) raises a clear error
instead of a misleading one or a silent value; pooling and decode outputs never require grad; the
torch.func transforms say plainly that they are not supported."""
import pytest
import torch

import seer_attn
from helpers import cu_from_lens

BF16 = torch.bfloat16


def _attn_inputs(device, kind, lens=(40, 1, 23), Hq=4, Hkv=2, D=64, bs=16):
    T, mx = sum(lens), max(lens)
    cu = cu_from_lens(list(lens), device)
    q, k, v = (torch.randn(T, h, D, dtype=BF16, device=device, requires_grad=True) for h in (Hq, Hkv, Hkv))
    nb = -(-mx // bs)
    mask = torch.rand(len(lens), Hkv, nb if kind == "2d" else mx, nb, device=device) < 0.7
    return q, k, v, mask, cu, mx


def _attn(kind, q, k, v, mask, cu, mx):
    if kind == "2d":
        return seer_attn.block_sparse_attn_2d(q, k, v, mask, cu, cu, mx, mx, block_size_q=16, block_size_k=16)
    return seer_attn.block_sparse_attn_1d(q, k, v, mask, cu, cu, mx, mx, block_size_k=16)


@pytest.mark.parametrize("kind", ["2d", "1d"])
def test_double_backward_raises(device, kind):
    q, k, v, mask, cu, mx = _attn_inputs(device, kind)
    out = _attn(kind, q, k, v, mask, cu, mx)
    gq, = torch.autograd.grad(out.float().square().sum(), q, create_graph=True)
    with pytest.raises(RuntimeError, match="double backward is not supported by seer_attn"):
        gq.float().square().sum().backward()


@pytest.mark.parametrize("kind", ["2d", "1d"])
def test_gradient_penalty_through_upstream_weight_raises(device, kind):
    # the attention inputs come from a projection; the penalty is on the weight's gradient
    q0, k, v, mask, cu, mx = _attn_inputs(device, kind)
    w = torch.randn(q0.shape[-1], q0.shape[-1], dtype=BF16, device=device, requires_grad=True)
    q = q0.detach() @ w
    out = _attn(kind, q, k.detach(), v.detach(), mask, cu, mx)
    gw, = torch.autograd.grad(out.float().sum(), w, create_graph=True)
    with pytest.raises(RuntimeError, match="double backward is not supported by seer_attn"):
        gw.float().norm().backward()


def test_single_backward_unaffected(device):
    # create_graph=False (the normal case) and create_graph=True without differentiating twice work
    q, k, v, mask, cu, mx = _attn_inputs(device, "2d")
    out = _attn("2d", q, k, v, mask, cu, mx)
    g1 = torch.autograd.grad(out.float().sum(), (q, k, v), retain_graph=True)
    g2 = torch.autograd.grad(out.float().sum(), (q, k, v), create_graph=True)
    for a, b in zip(g1, g2):
        assert torch.equal(a, b)


def test_pooling_and_decode_outputs_are_not_differentiable(device):
    q, k, _, _, cu, mx = _attn_inputs(device, "2d")
    for p in torch.ops.seer_attn.attn_pooling(q, k, cu, mx, 0.125, 16, True, False):  # the raw op
        assert not p.requires_grad and p.grad_fn is None
    for p in seer_attn.attention_pooling(q, k, cu, mx, block_size=16):
        assert not p.requires_grad
    B, S, Hq, Hkv, D = 2, 40, 4, 2, 64
    qd = torch.randn(B, Hq, D, dtype=BF16, device=device, requires_grad=True)
    kc = torch.randn(B, S, Hkv, D, dtype=BF16, device=device, requires_grad=True)
    vc = torch.randn(B, S, Hkv, D, dtype=BF16, device=device, requires_grad=True)
    sl = torch.tensor([40, 7], dtype=torch.int32, device=device)
    out, lse = seer_attn.block_sparse_decode(qd, kc, vc, sl, block_mask=torch.ones(B, Hkv, 3, dtype=torch.bool,
                                                                                   device=device),
                                             block_size=16, return_lse=True)
    assert not out.requires_grad and not lse.requires_grad
    with pytest.raises(RuntimeError, match="does not require grad"):
        out.float().sum().backward()


@pytest.mark.parametrize("kind", ["2d", "1d"])
def test_torch_func_grad_gives_a_clear_error(device, kind):
    q, k, v, mask, cu, mx = _attn_inputs(device, kind)
    f = lambda x: _attn(kind, x, k.detach(), v.detach(), mask, cu, mx).float().sum()  # noqa: E731
    with pytest.raises(RuntimeError, match="torch.func transforms .* are not supported"):
        torch.func.grad(f)(q.detach())
