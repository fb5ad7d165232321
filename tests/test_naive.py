"""Self-checks of tests/naive.py against torch's own attention (no seer_attn involved), so that the
yardstick every other test uses is itself trusted; plus the proof that the accuracy rule can fail."""
import math

import pytest
import torch

import naive
from helpers import AccuracyError, build_attention_inputs, check_accuracy, cu_from_lens, run_naive_attention


def _sdpa_ref(q, k, v, lens_q, lens_k, allowed_fn):
    """float64 SDPA per sequence with an explicit boolean mask from allowed_fn(b, sq, sk) -> [H, sq, sk]."""
    outs = []
    cq = cu_from_lens(lens_q, "cpu").tolist()
    ck = cu_from_lens(lens_k, "cpu").tolist()
    Hq, Hkv = q.shape[1], k.shape[1]
    for b in range(len(lens_q)):
        qs = q[cq[b]:cq[b + 1]].double().transpose(0, 1)
        ks = k[ck[b]:ck[b + 1]].double().repeat_interleave(Hq // Hkv, dim=1).transpose(0, 1)
        vs = v[ck[b]:ck[b + 1]].double().repeat_interleave(Hq // Hkv, dim=1).transpose(0, 1)
        m = allowed_fn(b, qs.shape[1], ks.shape[1])
        o = torch.nn.functional.scaled_dot_product_attention(qs, ks, vs, attn_mask=m)
        outs.append(o.transpose(0, 1))
    return torch.cat(outs, 0)


@pytest.mark.parametrize("lens_q,lens_k", [([37, 64, 5], [37, 64, 5]), ([20, 9], [50, 9]), ([3, 17], [3, 40])])
def test_naive_dense_matches_sdpa(lens_q, lens_k):
    Hq, Hkv, D = 4, 2, 32
    q = torch.randn(sum(lens_q), Hq, D, dtype=torch.float64)
    k = torch.randn(sum(lens_k), Hkv, D, dtype=torch.float64)
    v = torch.randn(sum(lens_k), Hkv, D, dtype=torch.float64)
    nb_q, nb_k = -(-max(lens_q) // 16), -(-max(lens_k) // 16)
    mask = torch.ones(len(lens_q), 1, nb_q, nb_k, dtype=torch.bool)
    res = naive.attention(q, k, v, cu_from_lens(lens_q, "cpu"), cu_from_lens(lens_k, "cpu"), mask, kind="2d",
                          block_size_q=16, block_size_k=16, causal=False)
    ref = _sdpa_ref(q, k, v, lens_q, lens_k, lambda b, sq, sk: torch.ones(Hq, sq, sk, dtype=torch.bool))
    torch.testing.assert_close(res["out"], ref, rtol=1e-10, atol=1e-10)


def test_naive_causal_bottom_right_matches_sdpa():
    # sq < sk: bottom-right alignment = the last query sees every key
    lens_q, lens_k = [7, 16], [19, 16]
    Hq, D = 2, 16
    q = torch.randn(sum(lens_q), Hq, D, dtype=torch.float64)
    k = torch.randn(sum(lens_k), Hq, D, dtype=torch.float64)
    v = torch.randn(sum(lens_k), Hq, D, dtype=torch.float64)
    mask = torch.ones(2, Hq, 1, 2, dtype=torch.bool)
    res = naive.attention(q, k, v, cu_from_lens(lens_q, "cpu"), cu_from_lens(lens_k, "cpu"), mask, kind="2d",
                          block_size_q=16, block_size_k=16, causal=True)

    def allowed(b, sq, sk):
        i = torch.arange(sq)[:, None]
        j = torch.arange(sk)[None, :]
        return (j <= i + sk - sq).expand(Hq, sq, sk)

    ref = _sdpa_ref(q, k, v, lens_q, lens_k, allowed)
    torch.testing.assert_close(res["out"], ref, rtol=1e-10, atol=1e-10)
    # and the last row of sequence 0 equals plain full attention over its 19 keys
    s = (q[6].unsqueeze(1) * k[:19].transpose(0, 1)).sum(-1) / math.sqrt(D)  # [H, 19]
    o = torch.einsum("hj,jhd->hd", torch.softmax(s, -1), v[:19])
    torch.testing.assert_close(res["out"][6], o, rtol=1e-10, atol=1e-10)


def test_naive_block_mask_and_empty_rows():
    # 1D mask: token rows choose blocks; a row with no block -> out 0, lse -inf, no grad
    lens = [40]
    Hq, D, Bk = 2, 16, 16
    q = torch.randn(40, Hq, D, dtype=torch.float64)
    k = torch.randn(40, Hq, D, dtype=torch.float64)
    v = torch.randn(40, Hq, D, dtype=torch.float64)
    mask = torch.zeros(1, Hq, 40, 3, dtype=torch.bool)
    mask[0, :, 20:, 0] = True
    mask[0, 1, 35, 2] = True
    dout = torch.randn(40, Hq, D, dtype=torch.float64)
    dlse = torch.randn(Hq, 40, dtype=torch.float64)
    cu = cu_from_lens(lens, "cpu")
    res = naive.attention(q, k, v, cu, cu, mask, kind="1d", block_size_k=Bk, causal=True, dout=dout, dlse=dlse)
    assert torch.all(res["out"][:20] == 0) and torch.all(torch.isinf(res["lse"][:, :20]))
    assert torch.all(res["dq"][:20] == 0)
    assert not torch.isnan(res["dq"]).any() and not torch.isnan(res["dk"]).any()
    # keys 16.. are never visible except keys 32..35 for head 1 token 35 -> dk of keys 16..31 is 0
    assert torch.all(res["dk"][16:32] == 0) and torch.all(res["dv"][36:] == 0)
    # row 35, head 1 sees keys 0..15 and 32..35 (causal)
    keys = list(range(16)) + list(range(32, 36))
    s = (k[keys, 1] @ q[35, 1]) / math.sqrt(D)
    torch.testing.assert_close(res["out"][35, 1], torch.softmax(s, 0) @ v[keys, 1], rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(res["lse"][1, 35], torch.logsumexp(s, 0), rtol=1e-10, atol=1e-10)


def test_naive_gradients_gradcheck():
    lens = [5, 9]
    Hq, Hkv, D = 2, 1, 8
    cu = cu_from_lens(lens, "cpu")
    mask = torch.tensor([[[[1, 0, 0], [1, 1, 0], [0, 0, 0]]], [[[1, 1, 0], [0, 1, 1], [1, 0, 1]]]], dtype=torch.bool)
    dout = torch.randn(14, Hq, D, dtype=torch.float64)
    dlse = torch.randn(Hq, 14, dtype=torch.float64)
    q = torch.randn(14, Hq, D, dtype=torch.float64)
    k = torch.randn(14, Hkv, D, dtype=torch.float64)
    v = torch.randn(14, Hkv, D, dtype=torch.float64)
    res = naive.attention(q, k, v, cu, cu, mask, kind="2d", block_size_q=4, block_size_k=4, causal=True,
                          dout=dout, dlse=dlse)

    def loss(q_, k_, v_):
        r = naive.attention(q_, k_, v_, cu, cu, mask, kind="2d", block_size_q=4, block_size_k=4, causal=True)
        lse = r["lse"]
        return (r["out"] * dout).sum() + (torch.where(torch.isfinite(lse), lse, 0) * dlse).sum()

    eps = 1e-6
    for name, t in (("dq", q), ("dk", k), ("dv", v)):
        g = torch.zeros_like(t)
        flat = t.view(-1)
        for i in range(0, flat.numel(), 7):  # a sample of coordinates
            old = flat[i].item()
            flat[i] = old + eps
            lp = loss(q, k, v)
            flat[i] = old - eps
            lm = loss(q, k, v)
            flat[i] = old
            g.view(-1)[i] = (lp - lm) / (2 * eps)
        sel = torch.zeros(flat.numel(), dtype=torch.bool)
        sel[::7] = True
        torch.testing.assert_close(res[name].view(-1)[sel], g.view(-1)[sel], rtol=1e-5, atol=1e-6)


def test_naive_pooling_small():
    # one sequence of 3 tokens, block 2, one head: check against a hand computation
    q = torch.randn(3, 1, 4, dtype=torch.float64)
    k = torch.randn(3, 1, 4, dtype=torch.float64)
    cu = cu_from_lens([3], "cpu")
    p2, p1, lst = naive.pooling(q, k, cu, 3, block_size=2, causal=True)
    s = (q[:, 0] @ k[:, 0].T) / 2.0
    s = s.masked_fill(torch.ones(3, 3, dtype=torch.bool).triu(1), float("-inf"))
    P = torch.softmax(s, -1)
    m1 = torch.stack([P[:, :2].amax(-1), P[:, 2:].amax(-1)], -1)
    torch.testing.assert_close(p1[0], m1)
    m2 = torch.tensor([[P[:2, :2].max(), P[:2, 2:].max()], [P[2:, :2].max(), P[2:, 2:].max()]], dtype=torch.float64)
    m2 = m2 / (m2.sum(-1, keepdim=True) + 1e-6)
    torch.testing.assert_close(p2[0, 0], m2)
    assert p1[0, 0, 1] == 0 and p2[0, 0, 0, 1] == 0


def test_naive_decode_small():
    B, S, H, D, Bs = 2, 10, 1, 4, 4
    q = torch.randn(B, H, D, dtype=torch.float64)
    kc = torch.randn(B, S, H, D, dtype=torch.float64)
    vc = torch.randn(B, S, H, D, dtype=torch.float64)
    lens = torch.tensor([6, 3], dtype=torch.int32)
    mask = torch.tensor([[[0, 1, 1]], [[0, 0, 1]]], dtype=torch.bool)
    out, lse = naive.decode(q, kc, vc, lens, block_mask=mask, block_size=Bs)
    # seq 0 right pad: valid 0..5, blocks 1,2 -> slots 4,5
    s = (kc[0, 4:6, 0] @ q[0, 0]) / 2.0
    torch.testing.assert_close(out[0, 0], torch.softmax(s, 0) @ vc[0, 4:6, 0])
    # seq 1 right pad: valid 0..2, block 2 = slots 8..9 not valid -> empty
    assert torch.all(out[1] == 0) and torch.isinf(lse[1]).all()
    # left pad: seq 1 valid 7..9, block 2 holds 8,9; first_block_unmasked adds block 1 (slot 7)
    out, lse = naive.decode(q, kc, vc, lens, block_mask=mask, block_size=Bs, left_pad=True, first_block_unmasked=True)
    s = (kc[1, 7:10, 0] @ q[1, 0]) / 2.0
    torch.testing.assert_close(out[1, 0], torch.softmax(s, 0) @ vc[1, 7:10, 0])
    # indices form: same as mask, -1 padding and out-of-range entries ignored
    idx = torch.tensor([[[2, 1, -1]], [[-1, 2, 7]]], dtype=torch.int32)
    o2, l2 = naive.decode(q, kc, vc, lens, block_indices=idx, block_size=Bs, left_pad=True, first_block_unmasked=True)
    torch.testing.assert_close(o2, out)
    torch.testing.assert_close(l2, lse)


def test_accuracy_rule_can_fail():
    """The rule rejects (a) an output perturbed beyond the tolerance and (b) the result of a mask
    with one kept block dropped (a realistic kernel bug), computed here with the naive in float32
    as the 'kernel'."""
    inp = build_attention_inputs("cpu", kind="2d", seqlens_q=[70, 33], seqlens_k=[90, 33], Hq=2, Hkv=1, D=64,
                                 dtype=torch.bfloat16, Bq=16, Bk=16, density=0.6)
    ref = run_naive_attention(inp)
    lp = run_naive_attention(inp, dtype=torch.bfloat16)
    f32 = run_naive_attention(inp, dtype=torch.float32)
    for n in ("out", "lse", "dq", "dk", "dv"):
        err, err_lp, tol = check_accuracy(n, f32[n], ref[n], lp[n])   # an fp32 'kernel' passes
        assert err < tol
    # (a) perturbed output
    bad = f32["out"].clone()
    fin = torch.isfinite(ref["lse"]).T  # [T, H]
    t, h = fin.nonzero()[5].tolist()
    _, err_lp, tol = check_accuracy("out", f32["out"], ref["out"], lp["out"])
    bad[t, h, 3] += 1.5 * tol
    with pytest.raises(AccuracyError):
        check_accuracy("out", bad, ref["out"], lp["out"])
    # (b) one kept block dropped (a block that has visible pairs)
    mask = inp["mask"].clone()
    keep = mask[0, 0].nonzero().tolist()
    for m, n in keep:
        if n * 16 <= m * 16 + 15 + 20:  # causal for sequence 0 (sk - sq = 20)
            mask[0, 0, m, n] = False
            break
    inp2 = dict(inp, mask=mask)
    drop = run_naive_attention(inp2, dtype=torch.float32)
    with pytest.raises(AccuracyError):
        for n in ("out", "lse", "dq", "dk", "dv"):
            check_accuracy(n, drop[n], ref[n], lp[n])
