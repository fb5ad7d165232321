"""Context parallelism (seer_attn.distributed) on CPU with the gloo backend: spawned process groups of
world size 2 and 4 (one spawn per world size runs every case), compared against the float64 naive
with FlashAttention's accuracy rule (the same rule the single-process op is held to), plus bad input
(a clear error on every rank, no hang: every spawn has a deadline). A world-size-1 NCCL run when a
GPU is visible."""
import datetime
import os
import tempfile
import time

import pytest
import torch
import torch.multiprocessing as mp

import seer_attn
import seer_attn.distributed as sd
from helpers import (build_attention_inputs, check_accuracy, check_attention, check_lse_strict,
                     run_naive_attention, run_package_attention)

TIMEOUT_S = 120  # a hang fails the test instead of blocking CI

SEQ = [300, 1, 0, 130, 520]  # varlen: a 1-token and an empty sequence, lengths not multiples of 64


def _drop_rows(keep):  # some query blocks / rows keep nothing at all
    keep = keep.clone()
    keep[:, :, 1::3] = False
    return keep


CASES = {
    "2d_d1_gqa": dict(kind="2d", Hq=4, Hkv=2, density=1.0, mask_heads="kv", unit=64),
    "2d_d01_q_heads": dict(kind="2d", Hq=4, Hkv=2, density=0.1, mask_heads="q", unit=64),
    "2d_bq32_bk64_empty_rows": dict(kind="2d", Hq=4, Hkv=1, density=0.5, Bq=32, Bk=64, unit=64,
                                    keep_fn="drop_rows", use_dlse=True),
    "2d_noncausal": dict(kind="2d", Hq=2, Hkv=2, density=0.3, causal=False, unit=128),
    "2d_noncausal_q_ne_k": dict(kind="2d", Hq=2, Hkv=1, density=0.5, causal=False, unit=64,
                                seqlens_k=[200, 70, 3, 130, 400]),
    "2d_default_unit": dict(kind="2d", Hq=2, Hkv=1, density=0.3, seqlens=[1100, 300]),
    "1d_d1_gqa": dict(kind="1d", Hq=4, Hkv=2, density=1.0, mask_heads="kv", mask_rows_struct=16, unit=64),
    "1d_d01_token_rows": dict(kind="1d", Hq=4, Hkv=2, density=0.1, mask_heads="q", unit=64, dtype=torch.float16,
                              use_dlse=True),
    "1d_empty_rows": dict(kind="1d", Hq=2, Hkv=1, density=0.3, mask_heads="one", unit=64, keep_fn="drop_rows"),
}
BAD = ("bad_mask_shape", "bad_unit", "bad_local_shape", "bad_causal_q_ne_k")


def _inputs(spec, device="cpu"):
    kw = dict(spec)
    for key in ("unit", "causal", "use_dlse"):
        kw.pop(key, None)
    kw["seqlens_q"] = kw.pop("seqlens", SEQ)
    if kw.pop("keep_fn", None) == "drop_rows":
        kw["keep_fn"] = _drop_rows
    return build_attention_inputs(device, D=64, **kw)


def _cp(inp, q, k, v, mask, spec, group=None):
    kw = dict(sm_scale=None, causal=spec.get("causal", True), group=group, return_lse=True,
              unit=spec.get("unit", sd.DEFAULT_UNIT))
    if inp["kind"] == "2d":
        return sd.block_sparse_attn_2d_cp(q, k, v, mask, inp["cu_q"], inp["cu_k"], inp["max_q"], inp["max_k"],
                                          block_size_q=inp["Bq"], block_size_k=inp["Bk"], **kw)
    return sd.block_sparse_attn_1d_cp(q, k, v, mask, inp["cu_q"], inp["cu_k"], inp["max_q"], inp["max_k"],
                                      block_size_k=inp["Bk"], **kw)


def _run_case(spec, rank, device):
    """Forward + backward through shard -> cp attention -> unshard. Every rank returns the full
    results (they must agree)."""
    inp = _inputs(spec, device)
    unit = spec.get("unit", sd.DEFAULT_UNIT)
    cu_q, cu_k = inp["cu_q"], inp["cu_k"]
    q, k, v = inp["q"], inp["k"], inp["v"]
    ql, kl, vl = sd.shard(q, cu_q, unit=unit), sd.shard(k, cu_k, unit=unit), sd.shard(v, cu_k, unit=unit)
    out_l, lse_l = _cp(inp, ql, kl, vl, inp["mask"], spec)
    dout_l = sd.shard(inp["dout"], cu_q, unit=unit)
    if spec.get("use_dlse"):
        dlse_l = sd.shard(inp["dlse"].t(), cu_q, unit=unit).t()
        torch.autograd.backward([out_l, lse_l], [dout_l, dlse_l])
    else:
        torch.autograd.backward([out_l], [dout_l])
    out = sd.unshard(out_l.detach(), cu_q, unit=unit, total=q.shape[0])
    lse = sd.unshard(lse_l.detach().t().contiguous(), cu_q, unit=unit, total=q.shape[0]).t()
    return {n: t.detach().cpu() for n, t in
            dict(out=out, lse=lse, dq=q.grad, dk=k.grad, dv=v.grad).items()}


def _run_bad(name, rank):
    spec = CASES["2d_d01_q_heads"]
    inp = _inputs(spec)
    unit = spec["unit"]
    ql = sd.shard(inp["q"], inp["cu_q"], unit=unit)
    kl, vl = sd.shard(inp["k"], inp["cu_k"], unit=unit), sd.shard(inp["v"], inp["cu_k"], unit=unit)
    mask = inp["mask"]
    if name == "bad_mask_shape":
        mask = mask[:, :, :, :-1]  # one key block too few
    elif name == "bad_unit":
        spec = dict(spec, unit=64)
        inp = dict(inp, Bk=128)  # block_size_k 128 does not divide the chunk unit 64
    elif name == "bad_causal_q_ne_k":
        inp = dict(inp, cu_k=torch.tensor([0, 300, 301, 301, 431, 950], dtype=torch.int32))  # seq 4: 519 keys
        kl, vl = sd.shard(inp["k"], inp["cu_k"], unit=unit), sd.shard(inp["v"], inp["cu_k"], unit=unit)
    elif name == "bad_local_shape" and rank == 1:
        ql = ql[:-1]  # only rank 1 passes a wrong shard: the others must not hang
    try:
        _cp(inp, ql, kl, vl, mask, spec)
    except ValueError as e:
        return ("error", str(e))
    return ("no error", "")


def _worker(rank, world, port, backend, names, out_dir):
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    torch.set_num_threads(1)
    device = "cpu"
    if backend == "nccl":
        torch.cuda.set_device(rank)
        device = "cuda"
    torch.distributed.init_process_group(backend, rank=rank, world_size=world,
                                         timeout=datetime.timedelta(seconds=TIMEOUT_S // 2))
    res = {}
    for name in names:
        try:
            if name == "demo":
                res[name] = sd._demo_body(rank, world)
            else:
                res[name] = _run_bad(name, rank) if name in BAD else _run_case(CASES[name], rank, device)
        except Exception as e:  # recorded, reported by the test of that case
            res[name] = ("exception", f"{type(e).__name__}: {e}")
    torch.save(res, os.path.join(out_dir, f"rank{rank}.pt"))
    torch.distributed.destroy_process_group()


def _spawn(world, names, backend="gloo"):
    with tempfile.TemporaryDirectory() as out_dir:
        ctx = mp.start_processes(_worker, args=(world, sd.free_port(), backend, names, out_dir), nprocs=world,
                                 join=False, start_method="spawn")
        deadline = time.time() + TIMEOUT_S
        while not ctx.join(timeout=1):
            if time.time() > deadline:
                for p in ctx.processes:
                    if p.is_alive():
                        p.kill()
                pytest.fail(f"world size {world}: the processes did not finish in {TIMEOUT_S} s (hang)")
        return [torch.load(os.path.join(out_dir, f"rank{r}.pt")) for r in range(world)]


_RESULTS = {}


def _results(world):
    if world not in _RESULTS:
        extra = ["demo"] if world == 2 else []
        _RESULTS[world] = _spawn(world, list(CASES) + list(BAD) + ["2d_d01_q_heads"] + extra)
    return _RESULTS[world]


@pytest.mark.parametrize("world", [2, 4])
@pytest.mark.parametrize("name", list(CASES))
def test_cp_matches_single_process(world, name):
    spec = CASES[name]
    per_rank = [r[name] for r in _results(world)]
    for r, got in enumerate(per_rank):
        assert isinstance(got, dict), f"rank {r}: {got}"
    got = per_rank[0]
    for r, other in enumerate(per_rank[1:], 1):  # unshard and the gradients agree on every rank
        for n in got:
            assert torch.equal(got[n], other[n]), f"rank {r} differs from rank 0 in {n}"
    # the rule the single-process op is held to (tests/test_attention.py: helpers.check_attention),
    # applied to the CP result; the naive references are computed once per case for both world sizes
    ref, lp, lse32 = _naive(name)
    zeros = {"out": ref["row_empty"][..., None], "lse": None, "dq": ref["row_empty"][..., None],
             "dk": ref["key_unused"][..., None], "dv": ref["key_unused"][..., None]}
    for n in ("out", "lse", "dq", "dk", "dv"):
        assert got[n].dtype == lp[n].dtype or n == "lse"
        check_accuracy(n, got[n], ref[n], lp[n], zeros=zeros[n])
    check_lse_strict(got["lse"], ref["lse"], lambda: lse32)


_NAIVE = {}


def _naive(name):
    if name not in _NAIVE:
        spec = CASES[name]
        inp = _inputs(spec)
        kw = dict(causal=spec.get("causal", True), use_dlse=spec.get("use_dlse", False))
        _NAIVE[name] = (run_naive_attention(inp, **kw), run_naive_attention(inp, dtype=inp["dtype"], **kw),
                        run_naive_attention(inp, causal=kw["causal"], backward=False, dtype=torch.float32)["lse"])
    return _NAIVE[name]


@pytest.mark.parametrize("world", [2, 4])
@pytest.mark.parametrize("name,text", [
    ("bad_mask_shape", "block_mask must be the global mask"),
    ("bad_unit", "must divide the chunk unit"),
    ("bad_local_shape", "this rank's shard"),
    ("bad_causal_q_ne_k", "causal attention needs seqlen_q == seqlen_k"),
])
def test_bad_input_errors_on_every_rank(world, name, text):
    per_rank = [r[name] for r in _results(world)]
    for r, (status, msg) in enumerate(per_rank):
        assert status == "error", f"rank {r}: {status} {msg}"
        assert "seer_attn.distributed.block_sparse_attn_2d_cp" in msg, msg
        assert text in msg, f"rank {r}: {msg}"
    if name == "bad_local_shape":
        assert "rank 1 of the group reported bad input" in per_rank[0][1]
    # the group is still usable afterwards: a good case ran after the bad ones on the same group
    assert all(isinstance(r["2d_d01_q_heads"], dict) for r in _results(world))


def test_world_size_1_is_the_single_process_op():
    """W = 1 makes one op call per step over the whole sequences: bitwise the single-process result."""
    per_rank = _spawn(1, ["2d_d01_q_heads", "1d_d01_token_rows"])
    for name in ("2d_d01_q_heads", "1d_d01_token_rows"):
        got, spec = per_rank[0][name], CASES[name]
        assert isinstance(got, dict), got
        single = run_package_attention(_inputs(spec), use_dlse=spec.get("use_dlse", False))
        for n in ("out", "lse", "dq", "dk", "dv"):
            assert torch.equal(got[n], single[n]), n


def test_demo_two_processes():
    """The README example (python -m seer_attn.distributed --demo runs the same body in 2 processes)."""
    per_rank = [r["demo"] for r in _results(2)]
    for r, errs in enumerate(per_rank):
        assert isinstance(errs, dict), f"rank {r}: {errs}"
        assert set(errs) == {"out", "dq", "dk", "dv"}
        assert all(e < 2e-2 for e in errs.values()), errs  # a few bf16 ulps, relative to max |single|


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (NCCL)")
def test_nccl_world_size_1():
    per_rank = _spawn(1, ["2d_d1_gqa", "2d_d01_q_heads", "1d_d01_token_rows"], backend="nccl")
    for name in ("2d_d1_gqa", "2d_d01_q_heads", "1d_d01_token_rows"):
        got, spec = per_rank[0][name], CASES[name]
        assert isinstance(got, dict), got
        inp = _inputs(spec, "cuda")
        check_attention(inp, causal=spec.get("causal", True), use_dlse=spec.get("use_dlse", False),
                        got={n: t.cuda() for n, t in got.items()})
