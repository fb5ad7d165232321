"""Autograd edges: double backward and gradient penalties fail clearly (never silently), the ops
without a gradient say so, and torch.func.grad works over the attention ops."""
import pytest
import torch

import seer_attn
from helpers import cu_from_lens

ops = torch.ops.seer_attn
BF16 = torch.bfloat16
Hq, Hkv, D, BS = 4, 2, 64, 16
LENS = [37, 0, 20]


def _inputs(device, kind, requires_grad=True):
    mx = max(LENS)
    q = torch.randn(sum(LENS), Hq, D, dtype=BF16, device=device, requires_grad=requires_grad)
    k = torch.randn(sum(LENS), Hkv, D, dtype=BF16, device=device, requires_grad=requires_grad)
    v = torch.randn(sum(LENS), Hkv, D, dtype=BF16, device=device, requires_grad=requires_grad)
    rows = -(-mx // BS) if kind == "2d" else mx
    mask = torch.rand(len(LENS), Hkv, rows, -(-mx // BS), device=device) < 0.7
    return q, k, v, mask, cu_from_lens(LENS, device), mx


def _attn(kind, q, k, v, mask, cu, mx, return_lse=False):
    if kind == "2d":
        return seer_attn.block_sparse_attn_2d(q, k, v, mask, cu, cu, mx, mx, block_size_q=BS, block_size_k=BS,
                                              return_lse=return_lse)
    return seer_attn.block_sparse_attn_1d(q, k, v, mask, cu, cu, mx, mx, block_size_k=BS, return_lse=return_lse)


def _loss(kind, q, k, v, mask, cu, mx):
    out, lse = _attn(kind, q, k, v, mask, cu, mx, return_lse=True)
    lse = torch.where(torch.isfinite(lse), lse, torch.zeros_like(lse))
    return out.float().square().sum() + 0.1 * lse.sum()


def _double_backward_error(kind):
    return rf"seer_attn::block_sparse_{kind}_bwd: double backward is not supported by seer_attn"


@pytest.mark.parametrize("kind", ["2d", "1d"])
def test_double_backward_raises(device, kind):
    q, k, v, mask, cu, mx = _inputs(device, kind)
    # create_graph=True alone is fine and gives the first-order gradients unchanged
    grads = torch.autograd.grad(_loss(kind, q, k, v, mask, cu, mx), (q, k, v), create_graph=True)
    plain = torch.autograd.grad(_loss(kind, q, k, v, mask, cu, mx), (q, k, v))
    for g, p in zip(grads, plain):
        assert g.requires_grad and torch.equal(g.detach(), p)
    # differentiating through them is what fails, clearly
    penalty = sum(g.float().square().sum() for g in grads)
    with pytest.raises(RuntimeError, match=_double_backward_error(kind)):
        penalty.backward()
    with pytest.raises(RuntimeError, match=_double_backward_error(kind)):
        torch.autograd.grad(grads[0].float().sum(), v)


@pytest.mark.parametrize("kind", ["2d", "1d"])
def test_gradient_penalty_through_upstream_weight_raises(device, kind):
    # WGAN-GP style: the penalty on d loss / d x must reach the projection weight through the
    # attention's second derivative; that term does not exist, so backward must fail, not drop it
    _, _, _, mask, cu, mx = _inputs(device, kind, requires_grad=False)
    proj = torch.nn.Linear(D, (Hq + 2 * Hkv) * D, bias=False, dtype=BF16, device=device)
    x = torch.randn(sum(LENS), D, dtype=BF16, device=device, requires_grad=True)
    qkv = proj(x).view(-1, Hq + 2 * Hkv, D)
    q, k, v = qkv.split([Hq, Hkv, Hkv], dim=1)
    (dx,) = torch.autograd.grad(_loss(kind, q, k, v, mask, cu, mx), x, create_graph=True)
    penalty = (dx.float().norm() - 1).square()
    with pytest.raises(RuntimeError, match=_double_backward_error(kind)):
        penalty.backward()
    assert proj.weight.grad is None


@pytest.mark.parametrize("kind", ["2d", "1d"])
def test_func_grad_matches_autograd(device, kind):
    q, k, v, mask, cu, mx = _inputs(device, kind)
    want = torch.autograd.grad(_loss(kind, q, k, v, mask, cu, mx), (q, k, v))
    got = torch.func.grad(lambda q, k, v: _loss(kind, q, k, v, mask, cu, mx), argnums=(0, 1, 2))(
        q.detach(), k.detach(), v.detach())
    for name, a, b in zip("qkv", want, got):
        assert torch.equal(a, b), name
    # out only (lse unused: its gradient is None, not zeros)
    got_q = torch.func.grad(lambda q: _attn(kind, q, k.detach(), v.detach(), mask, cu, mx).float().sum())(q.detach())
    want_q, = torch.autograd.grad(_attn(kind, q, k, v, mask, cu, mx).float().sum(), q)
    assert torch.equal(got_q, want_q)
    # a second order through torch.func fails like the autograd one
    inner = torch.func.grad(lambda q: _loss(kind, q, k.detach(), v.detach(), mask, cu, mx))
    with pytest.raises(RuntimeError, match=_double_backward_error(kind)):
        torch.func.grad(lambda q: inner(q).float().sum())(q.detach())


def _pool_inputs(device):
    q = torch.randn(sum(LENS), Hq, D, dtype=BF16, device=device, requires_grad=True)
    k = torch.randn(sum(LENS), Hkv, D, dtype=BF16, device=device, requires_grad=True)
    return q, k, cu_from_lens(LENS, device), max(LENS)


def test_pooling_op_not_differentiable(device):
    q, k, cu, mx = _pool_inputs(device)
    p2, p1 = ops.attn_pooling(q, k, cu, mx, 0.125, BS, True, False)
    for p in (p2, p1):
        with pytest.raises(RuntimeError, match=r"seer_attn::attn_pooling: not differentiable"):
            torch.autograd.grad(p.float().sum(), q)
    with pytest.raises(RuntimeError, match=r"seer_attn::attn_pooling: not differentiable"):
        torch.func.grad(lambda q: ops.attn_pooling(q, k.detach(), cu, mx, 0.125, BS, True, False)[0].sum())(q.detach())
    with torch.no_grad():
        assert not ops.attn_pooling(q, k, cu, mx, 0.125, BS, True, False)[0].requires_grad


def test_pooling_wrappers_give_constant_targets(device):
    # the wrappers detach q and k: the maps are targets, a loss on them sends nothing back to q/k
    q, k, cu, mx = _pool_inputs(device)
    p2, p1 = seer_attn.attention_pooling(q, k, cu, mx, block_size=BS)
    s2, s1 = seer_attn.attn_pooling(q, k, cu, mx, 0.125, BS)
    assert not any(t.requires_grad for t in (p2, p1, s2, *s1))
    gate = torch.zeros_like(p2, requires_grad=True)
    (gate - p2).square().sum().backward()
    assert gate.grad is not None and q.grad is None and k.grad is None


def test_decode_not_differentiable(device):
    B, S = 3, 64
    q = torch.randn(B, Hq, D, dtype=BF16, device=device, requires_grad=True)
    kc = torch.randn(B, S, Hkv, D, dtype=BF16, device=device, requires_grad=True)
    vc = torch.randn(B, S, Hkv, D, dtype=BF16, device=device)
    lens = torch.tensor([64, 1, 30], dtype=torch.int32, device=device)
    mask = torch.ones(B, Hkv, S // BS, dtype=torch.bool, device=device)

    def dec(q, kc):
        return seer_attn.block_sparse_decode(q, kc, vc, lens, block_mask=mask, block_size=BS)

    msg = r"seer_attn::block_sparse_decode: not differentiable"
    with pytest.raises(RuntimeError, match=msg):
        dec(q, kc).float().sum().backward()
    with pytest.raises(RuntimeError, match=msg):
        torch.autograd.grad(dec(q.detach(), kc).float().sum(), kc)
    with pytest.raises(RuntimeError, match=msg):
        torch.func.grad(lambda q: dec(q, kc.detach()).float().sum())(q.detach())
    assert q.grad is None and kc.grad is None
    with torch.no_grad():
        ref = dec(q, kc)
    assert not ref.requires_grad
    assert torch.equal(dec(q, kc).detach(), ref)   # the forward itself is unaffected
