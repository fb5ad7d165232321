"""2D and 1D block-sparse varlen attention, forward + backward, against the float64 naive
(tests/naive.py) with FlashAttention's accuracy rule (tests/helpers.py: check_accuracy)."""
import pytest
import torch

import seer_attn  # noqa: F401
from helpers import (AccuracyError, build_attention_inputs, check_accuracy, check_attention,
                     run_naive_attention, run_package_attention)

BF16, FP16 = torch.bfloat16, torch.float16
# a batch with a length-1 sequence, an empty sequence (repeated cu_seqlens value), lengths that are
# not multiples of the block sizes (130, 257) and one that is (64)
SEQ = [130, 1, 0, 257, 64]
KINDS = ["2d", "1d"]


def _run(device, kind, *, causal=True, sm_scale=None, use_dlse=False, require_lp_error=True, **kw):
    kw.setdefault("seqlens_q", SEQ)
    inp = build_attention_inputs(device, kind=kind, **kw)
    return check_attention(inp, causal=causal, sm_scale=sm_scale, use_dlse=use_dlse,
                           require_lp_error=require_lp_error)


# ---------------------------------------------------------------------------------------------
# cases common to 2D and 1D masks
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", [BF16, FP16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("hq,hkv", [(2, 2), (6, 2), (8, 2), (8, 1)], ids=["g1", "g3", "g4", "g8"])
def test_gqa_groups_and_dtypes(device, kind, dtype, hq, hkv):
    _run(device, kind, Hq=hq, Hkv=hkv, D=64, dtype=dtype)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("D", [128, 256])
@pytest.mark.parametrize("dtype", [BF16, FP16], ids=["bf16", "fp16"])
def test_head_dims(device, kind, D, dtype):
    # fp16 at D 128 / 256 too: other kernel instantiations than bf16's (sm90 D 128, sm80 D 256)
    _run(device, kind, Hq=4, Hkv=2, D=D, dtype=dtype, use_dlse=True)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("hq,hkv,mask_heads", [(32, 1, "kv"), (32, 2, "one"), (14, 2, "kv"), (24, 2, "kv")],
                         ids=["g32", "g16-bcast", "g7", "g12"])
def test_large_and_odd_gqa_groups(device, kind, hq, hkv, mask_heads):
    # SPEC: any group size. 1D masks per kv head pack the group's heads into the 64-row tiles: groups
    # above 16 take several packs per tile row (g32, g16), groups 7 / 12 packs that do not divide 64
    _run(device, kind, Hq=hq, Hkv=hkv, D=64, mask_heads=mask_heads, use_dlse=True)


@pytest.mark.parametrize("kind", KINDS)
def test_no_query_rows(device, kind):
    # T_q = 0 (every sequence has keys but no query): empty out / lse, and dk = dv = 0 (written, not left
    # to the allocator: poison it first, with blocks of dk / dv's exact size, which the caching allocator
    # hands out again)
    inp = build_attention_inputs(device, kind=kind, seqlens_q=[0, 0, 0], seqlens_k=[40, 0, 17], Hq=4, Hkv=2, D=64)
    junk = [torch.full_like(inp["k"], float("nan")) for _ in range(8)]
    del junk
    got = run_package_attention(inp, use_dlse=True)
    assert got["out"].shape == (0, 4, 64) and got["lse"].shape == (4, 0)
    assert got["dq"].shape == (0, 4, 64)
    for name in ("dk", "dv"):
        assert got[name].shape == (57, 2, 64) and torch.equal(got[name], torch.zeros_like(got[name])), name


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("sm_scale", [None, 40.0], ids=["scale-default", "scale-40"])
def test_very_negative_logits(device, kind, sm_scale):
    # SPEC: no finite sentinels. Every logit of a row shares a large negative offset (about -3.3e4, or
    # -1e7 with sm_scale 40): softmax is unchanged, lse moves with it; a kernel masking with -1e4 or -1e6
    # would let masked keys win (check_lse_strict's float32 yardstick catches an lse that far off)
    inp = build_attention_inputs(device, kind=kind, seqlens_q=[130, 1, 257, 64], Hq=4, Hkv=2, D=64)
    with torch.no_grad():
        inp["q"][..., 0] = 512.0
        inp["k"][..., 0] = -512.0
    if sm_scale is None:
        check_attention(inp, sm_scale=sm_scale, use_dlse=True, require_lp_error=False)
        return
    # At the -1e7 offset float32 cannot hold the scores (ulp(2.6e5) * 40 ~ 1 nat): the naive with float32
    # math on these inputs is off by 58% of max|out| and 23% of max|dq| (CPU, benchmarks/NOTES.md v11), so
    # the gradient rule would compare noise with noise. What this case tests is the sentinel: lse against
    # the strict float32 yardstick (check_lse_strict), out by the rule, finite gradients.
    got = run_package_attention(inp, sm_scale=sm_scale, use_dlse=True)
    check_attention(inp, sm_scale=sm_scale, backward=False, require_lp_error=False, got=got)
    for name in ("dq", "dk", "dv"):
        assert torch.isfinite(got[name]).all(), name


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("causal", [True, False], ids=["causal", "noncausal"])
@pytest.mark.parametrize("lens_q,lens_k", [
    ([50, 1, 100, 7], [120, 70, 100, 64]),     # seqlen_q < seqlen_k (bottom-right causal)
    ([120, 70, 3, 64], [50, 1, 3, 7]),         # seqlen_q > seqlen_k (leading rows see nothing)
], ids=["q_lt_k", "q_gt_k"])
def test_seqlen_q_ne_k(device, kind, causal, lens_q, lens_k):
    _run(device, kind, seqlens_q=lens_q, seqlens_k=lens_k, Hq=4, Hkv=2, D=64, causal=causal)


@pytest.mark.parametrize("kind", KINDS)
def test_no_keys_for_some_sequence(device, kind):
    # a sequence with queries but zero keys: every row empty (out 0, lse -inf, zero grads)
    _run(device, kind, seqlens_q=[40, 17, 33], seqlens_k=[40, 0, 20], Hq=2, Hkv=1, D=64, causal=False)


@pytest.mark.parametrize("kind", KINDS)
def test_noncausal(device, kind):
    _run(device, kind, Hq=4, Hkv=2, D=64, causal=False)


@pytest.mark.parametrize("kind", KINDS)
def test_sm_scale(device, kind):
    _run(device, kind, Hq=4, Hkv=1, D=64, sm_scale=0.31)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("mask_heads", ["q", "kv", "one", "expand"])
def test_mask_head_dims(device, kind, mask_heads):
    # H_mask = H_q / H_kv / 1, and a stride-0 head dim (a 1-head mask expanded to H_q heads)
    _run(device, kind, Hq=8, Hkv=2, D=64, mask_heads=mask_heads)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("layout", ["transposed", "strided", "expand_rows", "expand_batch"])
def test_mask_strides(device, kind, layout):
    _run(device, kind, Hq=4, Hkv=2, D=64, mask_layout=layout)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("mask_dtype", [torch.uint8, torch.int64, torch.int32], ids=["uint8", "int64", "int32"])
def test_mask_dtypes(device, kind, mask_dtype):
    # integer masks use unusual nonzero values (255, 256, -1, 65536): nonzero = keep
    _run(device, kind, Hq=4, Hkv=2, D=64, mask_dtype=mask_dtype)


@pytest.mark.parametrize("kind", KINDS)
def test_mask_larger_than_needed(device, kind):
    # extra rows/cols hold random garbage: they must be ignored
    _run(device, kind, Hq=4, Hkv=2, D=64, extra_rows=3, extra_cols=2)


@pytest.mark.parametrize("kind", KINDS)
def test_max_seqlen_upper_bound(device, kind):
    # max_seqlen_q/k larger than the longest sequence (only an upper bound)
    _run(device, kind, seqlens_q=[50, 1, 100], seqlens_k=[70, 1, 90], Hq=4, Hkv=2, D=64, pad_max=77)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("same_lens", [True, False], ids=["fused_qkv", "strided_views"])
def test_noncontiguous_inputs(device, kind, same_lens):
    lens_k = None if same_lens else [140, 5, 0, 250, 64]
    _run(device, kind, seqlens_k=lens_k, Hq=4, Hkv=2, D=64, noncontig=True)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("D", [64, 128])
def test_kv_head_stride_zero(device, kind, D):
    # K / V broadcast over the kv heads (expanded views, head stride 0): no TMA map describes a stride-0 head,
    # so the Hopper kernels gather whole K / V groups with cp.async - the path every other test leaves to TMA
    inp = build_attention_inputs(device, kind=kind, seqlens_q=[130, 1, 257, 64], Hq=4, Hkv=2, D=D)
    for name in ("k", "v"):
        t = inp[name]
        inp[name] = t[:, :1].detach().expand(t.shape).requires_grad_()
        assert inp[name].stride(1) == 0
    check_attention(inp, use_dlse=True)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("causal", [True, False], ids=["causal", "noncausal"])
def test_dlse(device, kind, causal):
    # loss uses lse too; dlse is nonzero on rows whose lse is -inf as well (must be ignored there)
    _run(device, kind, seqlens_q=[70, 1, 0, 130], seqlens_k=[90, 1, 0, 100], Hq=4, Hkv=2, D=64,
         use_dlse=True, causal=causal)


def _fully_masked_keep(kind):
    def f(keep):
        keep = keep.clone()
        keep[0] = False                 # sequence 0: nothing kept at all
        keep[3, -1] = False             # sequence 3, last mask head: nothing kept
        keep[3, 0, 1] = False           # sequence 3, head 0: one row (block row or token) empty
        keep[3, 0, 3] = False
        return keep
    return f


@pytest.mark.parametrize("kind", KINDS)
def test_fully_masked_rows(device, kind):
    inp = build_attention_inputs(device, kind=kind, seqlens_q=SEQ, Hq=4, Hkv=2, D=64, mask_heads="q",
                                 keep_fn=_fully_masked_keep(kind))
    got, ref, _ = check_attention(inp)
    # explicit: empty rows give exactly 0 / -inf / 0 gradient
    empty = ref["row_empty"].cpu()
    assert empty[:130].all() and empty.sum() > 130
    assert torch.all(got["out"].cpu()[empty] == 0)
    assert torch.all(got["lse"].cpu().T[empty] == float("-inf"))
    assert torch.all(got["dq"].cpu()[empty] == 0)
    assert not torch.isnan(got["dk"]).any() and not torch.isnan(got["dv"]).any()


@pytest.mark.parametrize("kind", KINDS)
def test_everything_masked(device, kind):
    inp = build_attention_inputs(device, kind=kind, seqlens_q=[33, 64, 1], Hq=2, Hkv=1, D=64,
                                 keep_fn=lambda keep: torch.zeros_like(keep))
    got, ref, _ = check_attention(inp, require_lp_error=False)
    assert torch.all(got["out"] == 0) and torch.all(got["lse"] == float("-inf"))
    for n in ("dq", "dk", "dv"):
        assert torch.all(got[n] == 0), n


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("density", [0.15, 1.0])
def test_density(device, kind, density):
    _run(device, kind, Hq=4, Hkv=2, D=64, density=density)


def _visible_tile_density(mask, seqlens, block):
    """Kept fraction of the causally visible (query block, key block) tiles of a 2D mask with
    B_q = B_k = block and seqlen_q = seqlen_k: what the tile-mask builder counts for the backward's dQ
    path choice (csrc/attention/bwd_common.h dq_fused, dkdv_split)."""
    kept = visible = 0
    for b, n_tok in enumerate(seqlens):
        nb = -(-n_tok // block)
        vis = torch.ones(nb, nb, dtype=torch.bool).tril()
        m = mask[b, :, :nb, :nb].bool().cpu()
        kept += int((m & vis).sum())
        visible += int(vis.sum()) * m.shape[0]
    return kept / visible


@pytest.mark.parametrize("density", [0.05, 0.5, 0.95])
def test_bwd_dq_paths(device, density):
    # The default (atomic) sm90 backward, decided on the device from the kept-tile density: at most 30%
    # the 64-key dK/dV CTA and the q-major dQ kernel; up to 75% the 128-key CTA and the q-major dQ kernel;
    # above, the 128-key CTA adds dQ itself. Each path against the reference, D 128, rows of several
    # tiles; the density check documents which path each case takes there.
    lens = [1100, 700, 300]
    inp = build_attention_inputs(device, kind="2d", seqlens_q=lens, Hq=4, Hkv=2, D=128, density=density, seed=3)
    tile_density = _visible_tile_density(inp["mask"], lens, 64)
    path = lambda d: 0 if d <= 0.3 else 1 if d <= 0.75 else 2
    assert path(tile_density) == path(density), tile_density
    check_attention(inp, use_dlse=True)


@pytest.mark.parametrize("kind", KINDS)
def test_only_seqlen_one(device, kind):
    # every sequence has one token: out = v of that token (or 0 where the mask drops it)
    _run(device, kind, seqlens_q=[1, 1, 1, 1, 1], Hq=4, Hkv=2, D=64, density=0.7,
         require_lp_error={"out": False, "dq": False, "dk": False, "dv": False})


@pytest.mark.parametrize("kind", KINDS)
def test_deterministic(device, kind):
    inp = build_attention_inputs(device, kind=kind, seqlens_q=[300, 1, 200], Hq=8, Hkv=2, D=64, density=0.7)
    a = run_package_attention(inp, deterministic=True, use_dlse=True)
    b = run_package_attention(inp, deterministic=True, use_dlse=True)
    for n in ("out", "lse", "dq", "dk", "dv"):
        assert torch.equal(a[n], b[n]), f"{n} differs between two deterministic runs"
    check_attention(inp, use_dlse=True, got=a)


@pytest.mark.parametrize("kind", KINDS)
def test_many_sequences(device, kind):
    # many short sequences of random lengths (0..100), q and k lengths differing
    g = torch.Generator().manual_seed(7)
    lens_q = torch.randint(0, 101, (30,), generator=g).tolist()
    lens_k = [max(0, n + int(d)) for n, d in zip(lens_q, torch.randint(-20, 40, (30,), generator=g))]
    _run(device, kind, seqlens_q=lens_q, seqlens_k=lens_k, Hq=4, Hkv=2, D=64, Bq=32, Bk=32, use_dlse=True)


@pytest.mark.parametrize("kind", KINDS)
def test_workload_like(device, kind):
    # the benchmark configuration (H_q 32, H_kv 8, D 128, block 64), scaled down in length
    _run(device, kind, seqlens_q=[300, 77, 130], Hq=32, Hkv=8, D=128, mask_heads="q" if kind == "2d" else "kv",
         mask_rows_struct=64)


@pytest.mark.parametrize("kind", KINDS)
def test_perturbed_package_output_fails(device, kind):
    """The checks can fail on the package's own output: one element nudged past the tolerance."""
    inp = build_attention_inputs(device, kind=kind, seqlens_q=[100, 37], Hq=4, Hkv=2, D=64)
    got, ref, stats = check_attention(inp, use_dlse=True)
    lp = run_naive_attention(inp, use_dlse=True, dtype=inp["dtype"])
    for n in ("out", "dq", "dk", "dv"):
        err, err_lp, tol = stats[n]
        bad = got[n].clone()
        live = ~(ref[n] == 0).cpu()
        idx = tuple(live.nonzero()[len(live.nonzero()) // 2].tolist())
        bad[idx] = (bad[idx].double() + 1.5 * tol + 2 * abs(bad[idx].double())
                    * torch.finfo(bad.dtype).eps).to(bad.dtype)
        with pytest.raises(AccuracyError):
            check_accuracy(n, bad, ref[n], lp[n])
    bad = got["lse"].clone()
    bad[torch.isfinite(bad)] += 1e-3   # a small lse bias: caught by the fp32 yardstick
    from helpers import check_lse_strict
    with pytest.raises(AccuracyError):
        check_lse_strict(bad, ref["lse"], lambda: run_naive_attention(inp, backward=False, dtype=torch.float32)["lse"])


@pytest.mark.parametrize("kind", KINDS)
def test_long_multi_tile(device, kind):
    # ~1000 tokens: many row tiles and key blocks per sequence, several sequences
    _run(device, kind, seqlens_q=[1000, 77, 260], Hq=4, Hkv=1, D=128, Bq=64, Bk=64, density=0.5,
         mask_rows_struct=None)


# The Hopper forward's pair kernel (row tiles of 128 rows whose halves share one K/V stream;
# tile_scheduler.h fwd_pick_pair) runs where the 64-row halves keep (nearly) the same blocks: dense masks
# of long sequences, 2D masks with B_q 128, 1D masks shared by a GQA group, per-token masks that keep
# almost every block. These inputs make the device pick it (on other devices they are ordinary cases).
@pytest.mark.parametrize("kind,causal,kw", [
    ("2d", True, dict(density=1.0, seqlens_q=[1100, 77, 640], D=128)),
    ("2d", False, dict(density=0.7, Bq=128, seqlens_q=[512, 300, 1000])),
    ("1d", True, dict(density=0.6, Hq=8, Hkv=2, mask_rows_struct=64, seqlens_q=[900, 129, 64])),
    ("1d", True, dict(density=0.9, Hq=8, Hkv=2, D=128, mask_heads="q", seqlens_q=[700], dtype=FP16)),
], ids=["2d-dense-causal", "2d-bq128", "1d-gqa-shared", "1d-per-token"])
def test_forward_pair_tiles(device, kind, causal, kw):
    _run(device, kind, causal=causal, **kw)


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("D", [64, 128, 256])
def test_long_multi_tile_head_dims(device, kind, D):
    _run(device, kind, seqlens_q=[1500, 300, 513], Hq=8, Hkv=2, D=D, density=0.3, use_dlse=True)


# ---------------------------------------------------------------------------------------------
# 2D only: block sizes (B_q != B_k allowed)
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bq,bk", [(16, 16), (32, 64), (64, 16), (48, 80), (256, 16), (128, 128), (64, 128),
                                   (16, 256)])
def test_2d_block_sizes(device, bq, bk):
    _run(device, "2d", Hq=4, Hkv=2, D=64, Bq=bq, Bk=bk)


@pytest.mark.parametrize("bq,bk", [(32, 64), (48, 80)])
def test_2d_block_sizes_q_ne_k(device, bq, bk):
    _run(device, "2d", seqlens_q=[50, 1, 100, 7], seqlens_k=[120, 70, 100, 64], Hq=6, Hkv=2, D=128, Bq=bq, Bk=bk)


# ---------------------------------------------------------------------------------------------
# 1D only
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bk", [16, 32, 48, 128, 256])
def test_1d_block_sizes(device, bk):
    _run(device, "1d", Hq=4, Hkv=2, D=64, Bk=bk)


@pytest.mark.parametrize("mask_heads", ["kv", "q"], ids=["gqa_shared", "per_head"])
@pytest.mark.parametrize("rows", [None, 16, 64], ids=["per_token", "struct16", "struct64"])
def test_1d_row_structure(device, mask_heads, rows):
    # per-token-independent rows (hard for tiling) and block-structured rows
    _run(device, "1d", Hq=8, Hkv=2, D=128, mask_heads=mask_heads, mask_rows_struct=rows)


def test_1d_sim_layout(device):
    # the seed's "sim" layout: per-q-head mask, k/v repeated to H_q heads (so H_kv == H_q here)
    inp = build_attention_inputs(device, kind="1d", seqlens_q=SEQ, Hq=8, Hkv=2, D=64, mask_heads="kv",
                                 mask_rows_struct=16)
    rep = lambda t: t.detach().repeat_interleave(4, dim=1).requires_grad_()  # noqa: E731
    inp_sim = dict(inp, k=rep(inp["k"]), v=rep(inp["v"]), mask=inp["mask"].repeat_interleave(4, dim=1))
    check_attention(inp_sim)
