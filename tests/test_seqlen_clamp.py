"""Inconsistent input: cu_seqlens whose lengths exceed max_seqlen_q / max_seqlen_k, and offsets outside
[0, T].

One rule (csrc/attention/seqlen.h): the CUDA and HIP kernels (forward, tile mask, backward) clamp every
sequence's start and end to [0, T] and its length to max_seqlen_*, so sequence b owns rows
[cu[b], cu[b] + min(len_b, max_seqlen)) (for offsets inside [0, T])
and nothing outside the rows and tiles the launch was sized for is read or written (run this file
under compute-sanitizer on a GPU). The checked path rejects such input: the CPU reference always,
CUDA with SEER_ATTN_CHECK_INPUTS=1.

On CUDA the outputs on the owned rows must equal those of the same op called with the clamped
lengths (the owned rows repacked into a consistent problem): within the accuracy rule against the
float64 naive, and bitwise for the deterministic backward. Rows and keys past the clamped lengths
belong to no sequence: out, dq, dk, dv 0 and lse -inf there (the API layer fills them on the op's
stream, csrc/common/tail_fill.h), on both backward paths.
"""
import pytest
import torch

import seer_attn  # noqa: F401
from helpers import build_attention_inputs, check_attention, cu_from_lens, run_package_attention

LENS_Q = [150, 40, 0, 90]
LENS_K = [120, 200, 30, 90]
MAX_Q, MAX_K = 100, 110  # below the longest lengths: sequences 0 (q) and 1 (k) are clamped


def _inconsistent(device, kind, D):
    inp = build_attention_inputs(device, kind=kind, seqlens_q=LENS_Q, seqlens_k=LENS_K, Hq=4, Hkv=2, D=D,
                                 density=0.6)
    inp["max_q"], inp["max_k"] = MAX_Q, MAX_K  # the mask stays sized for the true lengths (larger is fine)
    return inp


def _owned(lens, max_len, device):
    """Global row indices of the clamped sequences, and the clamped lengths."""
    starts = [0]
    for n in lens:
        starts.append(starts[-1] + n)
    clamped = [max(0, min(n, max_len)) for n in lens]
    idx = [torch.arange(s, s + c) for s, c in zip(starts, clamped)]
    return torch.cat(idx).to(device), clamped


def _clamped_problem(inp):
    """The consistent problem made of the owned rows (same masks, same max_seqlen)."""
    dev = inp["q"].device
    iq, lq = _owned(LENS_Q, MAX_Q, dev)
    ik, lk = _owned(LENS_K, MAX_K, dev)
    c = dict(inp)
    for name, idx in (("q", iq), ("k", ik), ("v", ik)):
        c[name] = inp[name].detach()[idx].clone().requires_grad_(True)
    c["dout"] = inp["dout"][iq].clone()
    c["dlse"] = inp["dlse"][:, iq].clone()
    c["cu_q"], c["cu_k"] = cu_from_lens(lq, dev), cu_from_lens(lk, dev)
    return c, iq, ik


def _gather(got, iq, ik):
    return {"out": got["out"][iq], "lse": got["lse"][:, iq], "dq": got["dq"][iq], "dk": got["dk"][ik],
            "dv": got["dv"][ik]}


@pytest.mark.parametrize("kind", ["2d", "1d"])
@pytest.mark.parametrize("D", [64, 128, 256])
@pytest.mark.parametrize("causal", [True, False], ids=["causal", "noncausal"])
def test_lengths_above_max_seqlen(device, kind, D, causal, monkeypatch):
    monkeypatch.delenv("SEER_ATTN_CHECK_INPUTS", raising=False)
    inp = _inconsistent(device, kind, D)
    if device == "cpu":
        # the reference checks the data: the longest sequence must fit max_seqlen_q
        with pytest.raises(RuntimeError, match=r"max_seqlen_q must be >= the longest sequence in cu_seqlens_q"):
            run_package_attention(inp, causal=causal)
        return
    got = run_package_attention(inp, causal=causal)  # forward + atomic (default) backward
    clamped, iq, ik = _clamped_problem(inp)
    # accuracy rule against the float64 naive of the clamped problem, on the owned rows
    check_attention(clamped, causal=causal, got=_gather(got, iq, ik))
    # deterministic backward: bitwise equal to the clamped problem's
    det = _gather(run_package_attention(inp, causal=causal, deterministic=True), iq, ik)
    det_c = run_package_attention(clamped, causal=causal, deterministic=True)
    for name in ("out", "lse", "dq", "dk", "dv"):
        assert torch.equal(det[name], det_c[name]), name


def test_checked_path_rejects(device, monkeypatch):
    # SEER_ATTN_CHECK_INPUTS=1 makes CUDA read cu_seqlens and reject like the CPU reference
    monkeypatch.setenv("SEER_ATTN_CHECK_INPUTS", "1")
    inp = _inconsistent(device, "2d", 64)
    # the same message on both devices (seer_attn/checks.py; csrc/common/torch_utils.h check_cu_seqlens_data)
    with pytest.raises(RuntimeError, match=r"max_seqlen_q must be >= the longest sequence in cu_seqlens_q \(\d+\), got \d+"):
        run_package_attention(inp, backward=False)


def _unowned(lens, max_len, device):
    """Global row indices past the clamped lengths (the rows no sequence owns)."""
    owned, _ = _owned(lens, max_len, "cpu")
    keep = torch.ones(sum(lens), dtype=torch.bool)
    keep[owned] = False
    return keep.nonzero().flatten().to(device)


@pytest.mark.parametrize("kind", ["2d", "1d"])
@pytest.mark.parametrize("deterministic", [False, True], ids=["atomic", "deterministic"])
def test_rows_past_clamped_length_defined(device, kind, deterministic, monkeypatch):
    if device == "cpu":
        pytest.skip("the CPU reference rejects lengths above max_seqlen (test_lengths_above_max_seqlen)")
    monkeypatch.delenv("SEER_ATTN_CHECK_INPUTS", raising=False)
    inp = _inconsistent(device, kind, 64)
    uq, uk = _unowned(LENS_Q, MAX_Q, device), _unowned(LENS_K, MAX_K, device)
    assert uq.numel() > 0 and uk.numel() > 0
    # Poison the caching allocator: freed NaN blocks of the outputs' sizes are what the op's empty
    # outputs get next, so a row the op leaves unwritten reads NaN here rather than an accidental 0.
    lse_like = torch.empty(inp["q"].shape[1], inp["q"].shape[0], device=device)
    junk = [torch.full_like(t, float("nan")) for t in (inp["q"], inp["k"], inp["v"], lse_like) for _ in range(3)]
    del junk, lse_like
    got = run_package_attention(inp, causal=True, deterministic=deterministic, use_dlse=True)
    assert torch.equal(got["out"][uq], torch.zeros_like(got["out"][uq]))
    assert torch.all(got["lse"][:, uq] == float("-inf"))
    assert torch.equal(got["dq"][uq], torch.zeros_like(got["dq"][uq]))
    for name in ("dk", "dv"):
        assert torch.equal(got[name][uk], torch.zeros_like(got[name][uk])), name


# cu_seqlens offsets outside [0, T] (unchecked path) and the consistent cu_seqlens the kernels must treat
# them as (seqlen.h: start clamped to [0, T], end to [start, T], then the length to max_seqlen).
_OUT_OF_RANGE = {
    "end past T": ([0, 40, 70 + 4000], [0, 40, 70]),
    "negative start": ([-4000, 40, 70], [0, 40, 70]),
    "middle past T, decreasing": ([0, 70 + 4000, 70], [0, 70, 70]),
}


@pytest.mark.parametrize("kind", ["2d", "1d"])
@pytest.mark.parametrize("case", list(_OUT_OF_RANGE), ids=lambda c: c.replace(" ", "_").replace(",", ""))
def test_cu_seqlens_outside_rows_stay_in_bounds(device, kind, case, monkeypatch):
    """Offsets past T, negative or decreasing: nothing outside q / k / v / out / grads is read or written
    (before the clamp of the starts and ends, "end past T" made the last sequence 4,030 rows long on 70
    rows of input: run this file under compute-sanitizer), and the ops compute exactly what the equivalent
    consistent cu_seqlens give (bitwise, deterministic backward); the default backward runs without error."""
    if device == "cpu":
        pytest.skip("the CPU reference rejects inconsistent cu_seqlens (checked path)")
    monkeypatch.delenv("SEER_ATTN_CHECK_INPUTS", raising=False)
    bad, good = _OUT_OF_RANGE[case]
    # max_seqlen above 4,030: the max_seqlen clamp alone would not keep the sequences inside the input
    inp = build_attention_inputs(device, kind=kind, seqlens_q=[40, 30], Hq=4, Hkv=2, D=64, density=0.6,
                                 pad_max=4096)
    ref_inp = dict(inp)
    for side in ("cu_q", "cu_k"):
        inp[side] = torch.tensor(bad, dtype=torch.int32, device=device)
        ref_inp[side] = torch.tensor(good, dtype=torch.int32, device=device)
    got = run_package_attention(inp, causal=True, deterministic=True, use_dlse=True)
    want = run_package_attention(ref_inp, causal=True, deterministic=True, use_dlse=True)
    for name in ("out", "lse", "dq", "dk", "dv"):
        assert torch.equal(got[name], want[name]), name
    run_package_attention(inp, causal=True, use_dlse=True)  # atomic path
    torch.cuda.synchronize()
