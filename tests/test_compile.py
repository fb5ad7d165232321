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


# ---- no recompiles on new sequence lengths / batch sizes (max_seqlen is a SymInt in the schemas) ----
# The sizes below are chosen so that no varying size equals a fixed one (heads, head dim): with
# dynamic=True Dynamo gives equal sizes one symbol at the first trace ("duck sizing"), and a later
# batch where they differ would recompile for that reason alone, which says nothing about seer_attn.
# Batch sizes start at 3: sizes 0 and 1 are always specialised by Dynamo.
_DYN_HQ, _DYN_HKV, _DYN_D, _DYN_BS = 16, 2, 64, 16


def _dyn_batches(device, kind, n):
    import random
    rng = random.Random(0)
    for _ in range(n):
        B = rng.randint(3, 5)
        lens = [rng.randint(1, 160) for _ in range(B)]
        lens[rng.randrange(B)] = rng.randint(100, 160)   # key blocks per row: 7..10
        mx, T = max(lens), sum(lens)
        nb = -(-mx // _DYN_BS)
        rows = nb if kind == "2d" else mx
        mask = torch.rand(B, 1, rows, nb, device=device) < 0.6
        qkv = [torch.randn(T, h, _DYN_D, dtype=BF16, device=device, requires_grad=True)
               for h in (_DYN_HQ, _DYN_HKV, _DYN_HKV)]
        yield qkv, mask, cu_from_lens(lens, device), mx


def _attn_loss(kind):
    def f(q, k, v, mask, cu, mx):
        if kind == "2d":
            out, lse = seer_attn.block_sparse_attn_2d(q, k, v, mask, cu, cu, mx, mx, block_size_q=_DYN_BS,
                                                      block_size_k=_DYN_BS, return_lse=True)
        else:
            out, lse = seer_attn.block_sparse_attn_1d(q, k, v, mask, cu, cu, mx, mx, block_size_k=_DYN_BS,
                                                      return_lse=True)
        return out.float().square().sum() + torch.where(torch.isfinite(lse), lse, torch.zeros_like(lse)).sum()
    return f


@pytest.mark.parametrize("kind", ["2d", "1d"])
@pytest.mark.parametrize("mode", ["dynamic", "mark_dynamic"])
def test_compile_no_recompile_on_new_lengths(device, kind, mode):
    # 20 batches with new lengths (max_seqlen) and batch sizes, forward + backward: one graph
    # (dynamic=True), or two with the default mode and mark_dynamic (the first call specialises the
    # Python int max_seqlen, the second makes it dynamic); d6c8a62 compiled one graph per max_seqlen.
    import torch._dynamo.testing as dt
    torch._dynamo.reset()
    counter = dt.CompileCounterWithBackend("aot_eager")
    f = _attn_loss(kind)
    compiled = torch.compile(f, backend=counter, fullgraph=True, dynamic=True if mode == "dynamic" else None)
    seen = set()
    for (q, k, v), mask, cu, mx in _dyn_batches(device, kind, 20):
        seen.add((cu.numel() - 1, mx))
        if mode == "mark_dynamic":
            for t in (q, k, v):
                torch._dynamo.mark_dynamic(t, 0)
            torch._dynamo.mark_dynamic(cu, 0)
            for dim in (0, 2, 3):
                torch._dynamo.mark_dynamic(mask, dim)
        loss = compiled(q, k, v, mask, cu, mx)
        want = f(*(t.detach().requires_grad_() for t in (q, k, v)), mask, cu, mx)
        torch.testing.assert_close(loss, want)
        loss.backward()
        assert q.grad is not None and torch.isfinite(q.grad.float()).all()
    assert len(seen) >= 15
    assert counter.frame_count <= (1 if mode == "dynamic" else 2), counter.frame_count


def test_compile_pooling_no_recompile_on_new_lengths(device):
    import torch._dynamo.testing as dt
    torch._dynamo.reset()
    counter = dt.CompileCounterWithBackend("aot_eager")

    def pool(q, k, cu, mx):
        return seer_attn.attention_pooling(q, k, cu, mx, block_size=_DYN_BS, gqa_reduce=True)

    compiled = torch.compile(pool, backend=counter, fullgraph=True, dynamic=True)
    for (q, k, _), _, cu, mx in _dyn_batches(device, "2d", 12):
        a = compiled(q.detach(), k.detach(), cu, mx)
        b = pool(q.detach(), k.detach(), cu, mx)
        assert a[0].shape == b[0].shape and a[1].shape == b[1].shape
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert counter.frame_count == 1, counter.frame_count
