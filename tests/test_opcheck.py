"""torch.library.opcheck on every op (schema, fake kernel, autograd registration, AOT dispatch)."""
import pytest
import torch

import seer_attn  # noqa: F401
from helpers import cu_from_lens

ops = torch.ops.seer_attn
BF16 = torch.bfloat16


def _attn_args(device, kind, requires_grad=True):
    lens_q, lens_k = [20, 1, 0, 37], [33, 1, 0, 37]
    Hq, Hkv, D, bq, bk = 4, 2, 64, 16, 16
    q = torch.randn(sum(lens_q), Hq, D, dtype=BF16, device=device, requires_grad=requires_grad)
    k = torch.randn(sum(lens_k), Hkv, D, dtype=BF16, device=device, requires_grad=requires_grad)
    v = torch.randn(sum(lens_k), Hkv, D, dtype=BF16, device=device, requires_grad=requires_grad)
    cu_q, cu_k = cu_from_lens(lens_q, device), cu_from_lens(lens_k, device)
    mq, mk = max(lens_q), max(lens_k)
    rows = -(-mq // bq) if kind == "2d" else mq
    mask = torch.rand(4, Hkv, rows, -(-mk // bk), device=device) < 0.6
    if kind == "2d":
        head = (q, k, v, cu_q, cu_k, mq, mk, mask, bq, bk, 0.125, True)
    else:
        head = (q, k, v, cu_q, cu_k, mq, mk, mask, bk, 0.125, True)
    return head


@pytest.mark.parametrize("kind", ["2d", "1d"])
@pytest.mark.parametrize("deterministic", [None, True])
def test_opcheck_fwd(device, kind, deterministic):
    args = _attn_args(device, kind)
    if deterministic is not None:
        args = args + (deterministic,)
    op = getattr(ops, f"block_sparse_{kind}_fwd").default
    torch.library.opcheck(op, args)


@pytest.mark.parametrize("kind", ["2d", "1d"])
@pytest.mark.parametrize("with_dlse", [False, True])
def test_opcheck_bwd(device, kind, with_dlse):
    args = _attn_args(device, kind, requires_grad=False)
    q, k, v, cu_q, cu_k, mq, mk, mask = args[:8]
    rest = args[8:]
    fwd = getattr(ops, f"block_sparse_{kind}_fwd")
    out, lse = fwd(*args)
    dout = torch.randn_like(out)
    dlse = torch.randn_like(lse) if with_dlse else None
    op = getattr(ops, f"block_sparse_{kind}_bwd").default
    torch.library.opcheck(op, (dout, q, k, v, out, lse, dlse, cu_q, cu_k, mq, mk, mask) + tuple(rest) + (False,))


@pytest.mark.parametrize("gqa_reduce", [False, True])
def test_opcheck_pooling(device, gqa_reduce):
    lens = [40, 1, 0, 17]
    q = torch.randn(sum(lens), 4, 64, dtype=BF16, device=device)
    k = torch.randn(sum(lens), 2, 64, dtype=BF16, device=device)
    torch.library.opcheck(ops.attn_pooling.default, (q, k, cu_from_lens(lens, device), 40, 0.125, 16, True, gqa_reduce))


@pytest.mark.parametrize("form", ["mask", "indices"])
def test_opcheck_decode(device, form):
    B, S, Hq, Hkv, D, bs = 3, 70, 4, 2, 64, 16
    q = torch.randn(B, Hq, D, dtype=BF16, device=device)
    kc = torch.randn(B, S, Hkv, D, dtype=BF16, device=device)
    vc = torch.randn(B, S, Hkv, D, dtype=BF16, device=device)
    sl = torch.tensor([70, 0, 33], dtype=torch.int32, device=device)
    nb = -(-S // bs)
    mask = (torch.rand(B, Hkv, nb, device=device) < 0.5) if form == "mask" else None
    idx = torch.tensor([[[0, 3, -1], [4, -1, -1]]] * B, dtype=torch.int32, device=device) if form == "indices" else None
    torch.library.opcheck(ops.block_sparse_decode.default, (q, kc, vc, sl, mask, idx, bs, 0.125, False, True, 0))
    torch.library.opcheck(ops.block_sparse_decode.default, (q, kc, vc, sl, mask, idx, bs, 0.125, True, False, 2))
