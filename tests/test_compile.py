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


def _fwd_bwd(fn, mod, x, mask, cu, mx, mark_dynamic=False):
    mod.zero_grad(set_to_none=True)
    xx = x.detach().clone().requires_grad_()
    if mark_dynamic:
        # the default mode's way to say "these sizes vary": every size but the fixed head/feature dims
        torch._dynamo.mark_dynamic(xx, 0)
        torch._dynamo.mark_dynamic(cu, 0)
        torch._dynamo.mark_dynamic(mask, [0, 2, 3])
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


# ---------------------------------------------------------------------------------------------------
# No recompiles on new sequence lengths / batch sizes (max_seqlen_* are SymInt in the schemas; the
# fake kernels never guard on a value). Counted with a backend that counts forward and backward graphs.
# ---------------------------------------------------------------------------------------------------
class GraphCounter:
    """aot_eager-like backend counting Dynamo frames and the forward / backward graphs AOTAutograd
    hands to the compilers (each runs eagerly, so results are bitwise those of aot_eager)."""

    def __init__(self):
        from torch._dynamo.backends.common import aot_autograd
        from torch._functorch.aot_autograd import make_boxed_func

        self.frames = self.fw = self.bw = 0

        def fw(gm, _):
            self.fw += 1
            return make_boxed_func(gm.forward)

        def bw(gm, _):
            self.bw += 1
            return make_boxed_func(gm.forward)

        self._aot = aot_autograd(fw_compiler=fw, bw_compiler=bw)

    def __call__(self, gm, example_inputs):
        self.frames += 1
        return self._aot(gm, example_inputs)


def _varlen_steps(n, seed=0):
    """n (lens) batches, every one with a new longest sequence (49, 51, ...: every mask dim is >= 2)
    and batch sizes cycling through 2..5; sequences of length 0 included."""
    g = torch.Generator().manual_seed(seed)
    steps = []
    for i in range(n):
        mx = 49 + 2 * i
        batch = 2 + (i * 3) % 4
        lens = [mx] + torch.randint(0, mx + 1, (batch - 1,), generator=g).tolist()
        steps.append(lens[i % batch:] + lens[:i % batch])
    # Dynamo gives equal sizes one symbol at a dynamic trace ("duck sizing"), so a first batch whose
    # sizes coincide by chance would cost one more graph; real shapes don't coincide, nor do these:
    for lens in steps[:2]:
        mx = max(lens)
        sizes = [sum(lens), len(lens), len(lens) + 1, mx, -(-mx // 16), 128]   # 128: x.size(1)
        assert len(set(sizes)) == len(sizes), lens
    return steps


def _step_inputs(device, kind, lens, Hq, Hkv, D, bs):
    mx = max(lens)
    x = torch.randn(sum(lens), Hq * D, dtype=BF16, device=device)
    rows = -(-mx // bs) if kind == "2d" else mx
    mask = torch.rand(len(lens), Hkv, rows, -(-mx // bs), device=device) < 0.7
    return x, mask, cu_from_lens(lens, device), mx


def _check_no_recompile(device, kind, dynamic, n_steps, max_graphs, mark=False):
    torch._dynamo.reset()
    Hq, Hkv, D, bs = 2, 1, 64, 16
    mod = SparseAttnBlock(kind, Hq, Hkv, D, bs).to(device)
    counter = GraphCounter()
    compiled = torch.compile(mod, fullgraph=True, backend=counter, dynamic=dynamic)
    for lens in _varlen_steps(n_steps):
        x, mask, cu, mx = _step_inputs(device, kind, lens, Hq, Hkv, D, bs)
        want = _fwd_bwd(mod, mod, x, mask, cu, mx)
        got = _fwd_bwd(compiled, mod, x, mask, cu, mx, mark_dynamic=mark)
        for n, a, b in zip(("y", "lse", "dx", "dWqkv", "dWo"), want, got):
            assert torch.equal(a, b), (n, lens)
    assert counter.frames <= max_graphs, counter.frames
    assert counter.fw == counter.frames and counter.bw == counter.frames, (counter.fw, counter.bw)


@pytest.mark.parametrize("kind", ["2d", "1d"])
def test_no_recompile_dynamic(device, kind):
    # 20 batches, each with a new max_seqlen (past the recompile limit of 8, which fullgraph=True turns
    # into an error) and a new batch size / token count: one forward and one backward graph in all
    _check_no_recompile(device, kind, dynamic=True, n_steps=20, max_graphs=1)


def test_no_recompile_mark_dynamic(device):
    # default mode: the marked tensor dims are symbolic from the start; the int max_seqlen is static in
    # the first graph and becomes symbolic in the second (automatic dynamic), never a third
    _check_no_recompile(device, "2d", dynamic=None, n_steps=10, max_graphs=2, mark=True)


def test_no_recompile_pooling(device):
    # pooling's output shape [B, H, nb, nb] follows max_seqlen symbolically
    torch._dynamo.reset()
    counter = GraphCounter()
    Hq, Hkv, D = 2, 1, 64

    def pool(q, k, cu, mx):
        return seer_attn.attention_pooling(q, k, cu, mx, block_size=16, gqa_reduce=True)

    compiled = torch.compile(pool, fullgraph=True, backend=counter, dynamic=True)
    for lens in _varlen_steps(10, seed=1):
        q = torch.randn(sum(lens), Hq, D, dtype=BF16, device=device)
        k = torch.randn(sum(lens), Hkv, D, dtype=BF16, device=device)
        cu = cu_from_lens(lens, device)
        want, got = pool(q, k, cu, max(lens)), compiled(q, k, cu, max(lens))
        assert got[0].shape == (len(lens), Hkv, -(-max(lens) // 16), -(-max(lens) // 16))
        assert torch.equal(want[0], got[0]) and torch.equal(want[1], got[1]), lens
    assert counter.frames == 1, counter.frames


def test_compile_max_seqlen_from_item(device):
    # max_seqlen computed inside the graph (an unbacked SymInt): the mask-size checks become runtime
    # asserts instead of a data-dependent-guard error, and a too-small mask still fails
    torch._dynamo.reset()
    Hq, Hkv, D, bs = 2, 1, 64, 16

    def fn(q, k, v, mask, cu):
        mx = (cu[1:] - cu[:-1]).max().item()
        return seer_attn.block_sparse_attn_2d(q, k, v, mask, cu, cu, mx, mx, block_size_q=bs, block_size_k=bs)

    with torch._dynamo.config.patch(capture_scalar_outputs=True):
        compiled = torch.compile(fn, fullgraph=True, backend="aot_eager", dynamic=True)
        for lens, nb in (([30, 5, 17], 2), ([3, 40], 3), ([64, 2, 9, 33], 4)):
            T = sum(lens)
            q = torch.randn(T, Hq, D, dtype=BF16, device=device, requires_grad=True)
            k = torch.randn(T, Hkv, D, dtype=BF16, device=device, requires_grad=True)
            v = torch.randn(T, Hkv, D, dtype=BF16, device=device, requires_grad=True)
            mask = torch.rand(len(lens), Hkv, nb + 1, nb + 1, device=device) < 0.7
            cu = cu_from_lens(lens, device)
            out = compiled(q, k, v, mask, cu)
            assert torch.equal(out, fn(q, k, v, mask, cu)), lens
            out.float().sum().backward()
        with pytest.raises(RuntimeError, match="block_mask|u0|Runtime assertion"):
            compiled(q, k, v, mask[:, :, :2, :2], cu)   # needs 4 blocks per dim, has 2


def test_no_recompile_mask_helpers(device):
    # mask helpers built inside the compiled step from a symbolic max_seqlen stay symbolic too
    torch._dynamo.reset()
    counter = GraphCounter()

    def build(cu, x, mx):
        return (seer_attn.causal_block_mask(cu, mx, mx, 16, 16),
                seer_attn.padded_from_packed(x, cu, mx))

    compiled = torch.compile(build, fullgraph=True, backend=counter, dynamic=True)
    for lens in _varlen_steps(6, seed=2):
        cu = cu_from_lens(lens, device)
        x = torch.randn(7, sum(lens), 9, device=device)
        for a, b in zip(build(cu, x, max(lens)), compiled(cu, x, max(lens))):
            assert torch.equal(a, b), lens
    assert counter.frames == 1, counter.frames
