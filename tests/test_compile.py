"""torch.compile(fullgraph=True) of small attention modules, forward + backward: no graph break,
same result as eager."""
import pytest
import torch

import seer_attn
from helpers import cu_from_lens

BF16 = torch.bfloat16


class SparseAttnBlock(torch.nn.Module):
    """A projection, block-sparse attention, an output projection: what a model layer looks like."""

    def __init__(self, kind, Hq, Hkv, D, block_size):
        super().__init__()
        self.kind, self.Hq, self.Hkv, self.D, self.bs = kind, Hq, Hkv, D, block_size
        self.qkv = torch.nn.Linear(Hq * D, (Hq + 2 * Hkv) * D, bias=False, dtype=BF16)
        self.o = torch.nn.Linear(Hq * D, Hq * D, bias=False, dtype=BF16)

    def forward(self, x, mask, cu, max_seqlen):
        T = x.shape[0]
        qkv = self.qkv(x).view(T, self.Hq + 2 * self.Hkv, self.D)
        q, k, v = qkv.split([self.Hq, self.Hkv, self.Hkv], dim=1)   # non-contiguous views
        if self.kind == "2d":
            out, lse = seer_attn.block_sparse_attn_2d(q, k, v, mask, cu, cu, max_seqlen, max_seqlen,
                                                      block_size_q=self.bs, block_size_k=self.bs, return_lse=True)
        else:
            out, lse = seer_attn.block_sparse_attn_1d(q, k, v, mask, cu, cu, max_seqlen, max_seqlen,
                                                      block_size_k=self.bs, return_lse=True)
        lse = torch.where(torch.isfinite(lse), lse, torch.zeros_like(lse))
        return self.o(out.reshape(T, -1)), lse


def _setup(device, kind):
    torch.manual_seed(0)
    lens = [50, 1, 0, 70]
    Hq, Hkv, D, bs = 4, 2, 64, 16
    mod = SparseAttnBlock(kind, Hq, Hkv, D, bs).to(device)
    x = torch.randn(sum(lens), Hq * D, dtype=BF16, device=device)
    cu = cu_from_lens(lens, device)
    rows = -(-70 // bs) if kind == "2d" else 70
    mask = torch.rand(len(lens), Hkv, rows, -(-70 // bs), device=device) < 0.6
    return mod, x, mask, cu, 70


def _fwd_bwd(fn, mod, x, mask, cu, mx):
    mod.zero_grad(set_to_none=True)
    xx = x.detach().clone().requires_grad_()
    y, lse = fn(xx, mask, cu, mx)
    (y.float().square().mean() + 1e-3 * lse.sum()).backward()
    return y.detach(), lse.detach(), xx.grad, mod.qkv.weight.grad.clone(), mod.o.weight.grad.clone()


def _run_compile(device, kind, backend):
    torch._dynamo.reset()
    mod, x, mask, cu, mx = _setup(device, kind)
    eager = _fwd_bwd(mod, mod, x, mask, cu, mx)
    compiled = torch.compile(mod, fullgraph=True, backend=backend)
    got = _fwd_bwd(compiled, mod, x, mask, cu, mx)
    # the attention op is opaque to the compiler; what surrounds it may be fused differently by
    # Inductor (bf16 linear layers), so compare to rounding; aot_eager must be bitwise equal
    names = ("y", "lse", "dx", "dWqkv", "dWo")
    for n, a, b in zip(names, eager, got):
        assert not torch.isnan(b).any(), n
        if backend == "aot_eager":
            assert torch.equal(a, b), n
        else:
            torch.testing.assert_close(b.float(), a.float(), rtol=2e-2, atol=2e-2 * a.float().abs().max().item(),
                                       msg=n)
    # a second call with the same shapes does not recompile, and gives the same result
    again = _fwd_bwd(compiled, mod, x, mask, cu, mx)
    for n, a, b in zip(names, got, again):
        assert torch.equal(a, b), n


@pytest.mark.parametrize("kind", ["2d", "1d"])
def test_compile_fullgraph_aot_eager(device, kind):
    # fullgraph=True fails on any graph break; aot_eager traces the fake kernels and the registered
    # autograd through AOTAutograd (the part that matters for custom ops) without codegen cost
    _run_compile(device, kind, "aot_eager")


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["2d", "1d"])
def test_compile_fullgraph_inductor(device, kind):
    _run_compile(device, kind, "inductor")


def test_compile_decode_and_pooling(device):
    torch._dynamo.reset()
    B, S, Hq, Hkv, D = 3, 100, 4, 2, 64
    q = torch.randn(B, Hq, D, dtype=BF16, device=device)
    kc = torch.randn(B, S, Hkv, D, dtype=BF16, device=device)
    vc = torch.randn(B, S, Hkv, D, dtype=BF16, device=device)
    sl = torch.tensor([100, 1, 40], dtype=torch.int32, device=device)
    mask = torch.rand(B, Hkv, 4, device=device) < 0.5

    def dec(q, kc, vc, sl, mask):
        return seer_attn.block_sparse_decode(q * 1.0, kc, vc, sl, block_mask=mask, block_size=32, return_lse=True)

    a = dec(q, kc, vc, sl, mask)
    b = torch.compile(dec, fullgraph=True, backend="aot_eager")(q, kc, vc, sl, mask)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])

    lens = [60, 1, 39]
    qq = torch.randn(100, Hq, D, dtype=BF16, device=device)
    kk = torch.randn(100, Hkv, D, dtype=BF16, device=device)
    cu = cu_from_lens(lens, device)

    def pool(q, k, cu):
        return seer_attn.attention_pooling(q, k, cu, 60, block_size=16, gqa_reduce=True)

    a = pool(qq, kk, cu)
    b = torch.compile(pool, fullgraph=True, backend="aot_eager")(qq, kk, cu)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_compile_dynamic_token_count(device):
    # a new total token count (varlen batches differ every step) must not break the graph
    torch._dynamo.reset()
    mod, x, mask, cu, mx = _setup(device, "2d")
    compiled = torch.compile(mod, fullgraph=True, backend="aot_eager", dynamic=True)
    for lens in ([50, 1, 0, 70], [33, 70, 12, 5]):
        cu = cu_from_lens(lens, device)
        xx = torch.randn(sum(lens), x.shape[1], dtype=BF16, device=device)
        a = _fwd_bwd(mod, mod, xx, mask, cu, mx)
        b = _fwd_bwd(compiled, mod, xx, mask, cu, mx)
        for n, u, w in zip(("y", "lse", "dx", "dWqkv", "dWo"), a, b):
            assert torch.equal(u, w), n
