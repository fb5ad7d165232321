"""Baselines measured in the same run as seer_attn (WORKLOADS.md):

- FlexAttention (torch.nn.attention.flex_attention, compiled), packed B = 1 with a document mask and
  the same block mask. The BlockMask is built directly from kv_num_blocks / kv_indices
  (BlockMask.from_kv_blocks), never with create_block_mask (a 34 GB intermediate on P1).
- PyTorch's bundled FlashAttention varlen (dense causal), with several entry points tried in order.
- Dense decode over the same KV cache (FlashAttention varlen with seqused_k, or fallbacks).
- Physical ceilings: a bf16 8192^3 matmul and a large device-to-device copy.

Each class records which entry point / options it ended up using in ``.used`` and every failed
attempt in ``.tried``; callers catch exceptions and record them (a baseline never aborts a run).
"""
from __future__ import annotations

import inspect
import math
import time

import torch

import common as C
from common import BLOCK, H_KV, H_Q, SM_SCALE, cdiv, rel_err

# ------------------------------------------------------------------------------------------------
# FlexAttention
# ------------------------------------------------------------------------------------------------
# Why the backward failed on the H100 (torch 2.11, "NoValidChoicesError: No choices to select ... No
# choices exist for backend", for every kernel_options set, even all-32 tiles): in the Inductor
# lowering of that era (torch/_inductor/kernel/flex/flex_attention.py, flex_attention_backward) the
# loop over the candidate configs filters each config on the *config's own* tile sizes, before the
# user's kernel_options are applied:
#     for conf in configs:
#         if SPARSE_KV_BLOCK_SIZE % conf.block_n1 != 0 or SPARSE_Q_BLOCK_SIZE % conf.block_m1 != 0 ...:
#             continue
#         ... cur_kernel_options.setdefault("BLOCK_M1", conf.block_m1)   # user values win only here
# Without max_autotune the list holds one config, the H100 default for bf16 D=128,
# FlexBwDConfig(64, 128, 128, 64, 3, 8): 64 % 128 != 0 -> filtered -> zero choices, whatever
# kernel_options says. (torch 2.14 applies the user values first and checks those, and shrinks the
# default tiles to the sparse block size.) With max_autotune (mode "max-autotune-no-cudagraphs") the
# list also holds the autotune configs, tiles 32/64 (all dividing 64), so choices survive and the
# pinned kernel_options then fix the tiles (and warps / stages, when pinned: one kernel to compile).
# The forward is not affected (its filter checks the user values): it keeps the default mode.
#
# Candidates, tried in this order on the first call of each grad mode; the first that compiles and
# runs is kept for every later FlexPrefill of the process (a failed one is not retried).
# (label, torch.compile mode, kernel_options)
_FWD64 = {"fwd_BLOCK_M": 64, "fwd_BLOCK_N": 64}
_BWD64 = {"bwd_BLOCK_M1": 32, "bwd_BLOCK_N1": 64, "bwd_BLOCK_M2": 64, "bwd_BLOCK_N2": 32}
FLEX_CANDIDATES = [
    # works where the lowering honours user tiles (torch >= the version that checks user values)
    ("default+pinned64", "default", {**_FWD64, **_BWD64}),
    # torch 2.11-era lowering: max-autotune keeps the 32/64-tile configs; everything pinned -> one kernel
    ("max-autotune+pinned64/w4s3", "max-autotune-no-cudagraphs",
     {**_FWD64, "fwd_num_warps": 4, "fwd_num_stages": 3, **_BWD64, "bwd_num_warps": 4, "bwd_num_stages": 3}),
    # same, fewer stages (if the one above runs out of shared memory)
    ("max-autotune+pinned64/w4s1", "max-autotune-no-cudagraphs",
     {**_FWD64, "fwd_num_warps": 4, "fwd_num_stages": 2, **_BWD64, "bwd_num_warps": 4, "bwd_num_stages": 1}),
    # let Inductor autotune the backward among its 32/64 configs (slower compile)
    ("max-autotune+fwd64", "max-autotune-no-cudagraphs", dict(_FWD64)),
    # prefix-less spelling of older releases
    ("default+legacy-names", "default",
     {"BLOCK_M": 64, "BLOCK_N": 64, "BLOCK_M1": 32, "BLOCK_N1": 64, "BLOCK_M2": 64, "BLOCK_N2": 32}),
]
FLEX_KERNEL_OPTIONS = [c[2] for c in FLEX_CANDIDATES]  # kept for callers of the old name

_FLEX_COMPILED = {}
_FLEX_WORKED = {}  # (grad mode "fwd"/"fb", compiled) -> index into FLEX_CANDIDATES that worked in this process
_FLEX_FAILED = {}  # (grad mode, compiled) -> set of candidate indices that failed in this process


# One Python function per compile mode: Dynamo caches compiled frames per code object, so two
# torch.compile wrappers of the *same* function could otherwise share cache entries across modes.
def _flex_call_default(q, k, v, **kw):
    from torch.nn.attention.flex_attention import flex_attention
    return flex_attention(q, k, v, **kw)


def _flex_call_autotune(q, k, v, **kw):
    from torch.nn.attention.flex_attention import flex_attention
    return flex_attention(q, k, v, **kw)


def _flex_fn(compiled: bool, mode: str = "default"):
    from torch.nn.attention.flex_attention import flex_attention
    if not compiled:
        return flex_attention
    if mode not in _FLEX_COMPILED:
        try:  # one compiled graph per (workload, mask kind, grad mode, candidate): allow enough of them
            import torch._dynamo as dyn
            for name in ("recompile_limit", "cache_size_limit"):
                if hasattr(dyn.config, name):
                    setattr(dyn.config, name, max(64, getattr(dyn.config, name)))
            if hasattr(dyn.config, "accumulated_recompile_limit"):
                dyn.config.accumulated_recompile_limit = max(1024, dyn.config.accumulated_recompile_limit)
        except Exception:
            pass
        fn = _flex_call_default if mode == "default" else _flex_call_autotune
        if mode == "default":
            _FLEX_COMPILED[mode] = torch.compile(fn, dynamic=False)
        else:
            _FLEX_COMPILED[mode] = torch.compile(fn, dynamic=False, mode=mode)
    return _FLEX_COMPILED[mode]


def _bwd_filters_config_tiles() -> bool:
    """True if the installed Inductor's flex backward lowering filters configs on the config's own
    tiles (``SPARSE_KV_BLOCK_SIZE % conf.block_n1``), i.e. ignores kernel_options for that check, so
    the default-mode candidates cannot work at 64-token blocks on H100. Read from the source; False
    when unknown."""
    try:
        import inspect as _insp
        mod = None
        for name in ("torch._inductor.kernel.flex.flex_attention", "torch._inductor.kernel.flex_attention"):
            try:
                mod = __import__(name, fromlist=["flex_attention_backward"])
                break
            except Exception:  # noqa: BLE001
                continue
        src = _insp.getsource(mod.flex_attention_backward)
        return "% conf.block_n1" in src or "% BLOCK1 != 0" in src
    except Exception:  # noqa: BLE001
        return False


def _compact_error(e: BaseException, n: int = 220) -> str:
    """One line: the innermost error name and its message, without Inductor's boilerplate."""
    s = f"{type(e).__name__}: {e}"
    for noise in ("please consider adding ATEN into max_autotune_gemm_backends config (defined in "
                  "torch/_inductor/config.py) to allow at least one choice.",
                  "Set TORCHDYNAMO_VERBOSE=1 for the internal stack trace (please do this especially if "
                  "you're reporting a bug to PyTorch). For even more developer context, set "
                  "TORCH_LOGS=\"+dynamo\""):
        s = s.replace(noise, "")
    lines = [ln.strip() for ln in s.splitlines() if ln.strip()]
    keep = []
    for ln in lines:  # the first line plus the target of a LoweringException, if any
        if not keep or ln.startswith("target:") or "Error" in ln.split(":")[0]:
            keep.append(ln)
        if len(keep) >= 3:
            break
    return " | ".join(keep)[:n]


def _dense_to_kv(mask3: torch.Tensor):
    """bool [H, NQ, NK] -> (num [1, H, NQ] int32, idx [1, H, NQ, NK] int32 kept-first ascending)."""
    num = mask3.sum(-1, dtype=torch.int32)
    idx = torch.argsort(mask3.to(torch.int8), dim=-1, descending=True, stable=True).to(torch.int32)
    return num[None].contiguous(), idx[None].contiguous()


class FlexPrefill:
    """FlexAttention on the packed batch (B = 1, T padded to a multiple of 128 with a dummy document),
    document mask + causal + the exact per-sequence block mask (2D per q head, or 1D per kv head and
    token row) evaluated in mask_mod; block-level (kv_num_blocks / full_kv_num_blocks) sparsity is
    the union of the sequence-local kept blocks mapped onto the global 64-token grid (a local block
    of a sequence that does not start on a multiple of 64 straddles two global blocks).
    Lookup buffers are allocated once per (workload, kind) and refilled per density, so the compiled
    graph is reused across densities."""

    def __init__(self, inp, kind: str, compiled: bool = True):
        assert kind in ("2d", "1d")
        self.kind = kind
        self.compiled = compiled
        q, k, v, dout = inp["q"], inp["k"], inp["v"], inp["dout"]
        dev = q.device
        self.dev = dev
        self.seqlens = list(inp["seqlens"])
        self.B = len(self.seqlens)
        T = q.shape[0]
        self.T = T
        self.Tpad = cdiv(T, 128) * 128
        self.NQ = self.Tpad // BLOCK
        self.starts = [0]
        for L in self.seqlens:
            self.starts.append(self.starts[-1] + L)
        cu = torch.tensor(self.starts, device=dev, dtype=torch.int64)
        tok = torch.arange(self.Tpad, device=dev, dtype=torch.int64)
        doc = torch.searchsorted(cu[1:], tok, right=True)  # B for padding tokens
        local = tok - cu[torch.clamp(doc, max=self.B - 1)]
        local = torch.where(doc < self.B, local, torch.zeros_like(local))
        self.doc = doc.to(torch.int32)
        self.kblk = (local // BLOCK).to(torch.int32)
        nb = cdiv(max(self.seqlens), BLOCK)
        self.nb = nb
        if kind == "2d":
            self.lut = torch.zeros(self.B + 1, H_Q, nb, nb, dtype=torch.bool, device=dev)
        else:
            self.lut = torch.zeros(H_KV, self.Tpad, nb, dtype=torch.bool, device=dev)
        self.group = H_Q // H_KV

        def pad4(x):  # [T, H, D] -> [1, H, Tpad, D] contiguous
            xp = torch.zeros(self.Tpad, x.shape[1], x.shape[2], dtype=x.dtype, device=dev)
            xp[:T] = x
            return xp.permute(1, 0, 2).contiguous().unsqueeze(0)

        self.q4, self.k4, self.v4, self.dout4 = pad4(q), pad4(k), pad4(v), pad4(dout)
        self.q4r = self.q4.detach().requires_grad_()  # shares storage
        self.k4r = self.k4.detach().requires_grad_()
        self.v4r = self.v4.detach().requires_grad_()

        doc_, kblk_, lut_, grp = self.doc, self.kblk, self.lut, self.group
        if kind == "2d":
            def mask_mod(b, h, q_idx, kv_idx):
                dq = doc_[q_idx]
                return (dq == doc_[kv_idx]) & (kv_idx <= q_idx) & lut_[dq, h, kblk_[q_idx], kblk_[kv_idx]]
        else:
            def mask_mod(b, h, q_idx, kv_idx):
                return (doc_[q_idx] == doc_[kv_idx]) & (kv_idx <= q_idx) & lut_[h // grp, q_idx, kblk_[kv_idx]]
        self.mask_mod = mask_mod
        self.block_mask = None
        self.options = {}  # grad mode -> FLEX_CANDIDATES entry that worked
        self.used = {}  # grad mode -> {candidate, compile_mode, kernel_options, first_call_s, ...}
        self.tried = []  # one line per attempt
        self.first_s = {}  # grad mode -> cold first call of the candidate that worked (s)
        self.failed_s = {}  # grad mode -> time spent in failed candidates before it (s)
        self.pairs_block_level = None

    # -- masks ----------------------------------------------------------------------------------
    def _global_blocks(self, any_local: torch.Tensor, all_local: torch.Tensor):
        """Local per-sequence block masks [B, Hm, nb, nb] -> (partial, full) bool [Hm, NQ, NQ]."""
        Hm = any_local.shape[1]
        dev = self.dev
        # OR-scatter through an integer accumulator: the global indices of consecutive local blocks
        # can coincide (a partial last block shares a global block with its predecessor).
        G = torch.zeros(Hm, self.NQ, self.NQ, dtype=torch.int32, device=dev)
        F = torch.zeros_like(G)
        hh = torch.arange(Hm, device=dev)[:, None, None]
        for b, L in enumerate(self.seqlens):
            s = self.starts[b]
            nbb = cdiv(L, BLOCK)
            i = torch.arange(nbb, device=dev, dtype=torch.int64)
            lo = (s + BLOCK * i) // BLOCK
            hi = (s + torch.clamp(BLOCK * i + BLOCK, max=L) - 1) // BLOCK
            a = any_local[b, :, :nbb, :nbb].to(torch.int32)
            for qi in (lo, hi):
                for kj in (lo, hi):
                    G.index_put_((hh, qi[None, :, None], kj[None, None, :]), a, accumulate=True)
            if s % BLOCK == 0:
                complete = (BLOCK * i + BLOCK) <= L
                full = all_local[b, :, :nbb, :nbb] & (i[None, :] < i[:, None]) & complete[:, None]
                F.index_put_((hh, lo[None, :, None], lo[None, None, :]), full.to(torch.int32), accumulate=True)
        G = G > 0
        F = F > 0
        return G & ~F, F

    def set_mask(self, mask: torch.Tensor):
        """2D: bool [B, H_q, nb, nb]; 1D: bool [B, H_kv, S, nb] (token rows)."""
        from torch.nn.attention.flex_attention import BlockMask
        if self.kind == "2d":
            self.lut[: self.B].copy_(mask)
            any_l = all_l = mask
        else:
            self.lut.zero_()
            for b, L in enumerate(self.seqlens):
                self.lut[:, self.starts[b]: self.starts[b] + L].copy_(mask[b, :, :L])
            B_, H_, S, nk = mask.shape
            Sp = cdiv(S, BLOCK) * BLOCK
            mp = mask
            if Sp != S:
                mp = torch.zeros(B_, H_, Sp, nk, dtype=torch.bool, device=mask.device)
                mp[:, :, :S] = mask
            mp = mp.view(B_, H_, Sp // BLOCK, BLOCK, nk)
            any_l = mp.any(dim=3)
            all_l = mp.all(dim=3)
        P, F = self._global_blocks(any_l, all_l)
        if self.kind == "1d":
            P = P.repeat_interleave(self.group, 0)
            F = F.repeat_interleave(self.group, 0)
        self.pairs_block_level = int(P.sum().item()) + int(F.sum().item())
        num, idx = _dense_to_kv(P)
        fnum, fidx = _dense_to_kv(F)
        del P, F
        try:
            self.block_mask = BlockMask.from_kv_blocks(num, idx, fnum, fidx, BLOCK_SIZE=BLOCK,
                                                       mask_mod=self.mask_mod, seq_lengths=(self.Tpad, self.Tpad))
        except TypeError:  # older signature without seq_lengths
            self.block_mask = BlockMask.from_kv_blocks(num, idx, fnum, fidx, BLOCK_SIZE=BLOCK, mask_mod=self.mask_mod)

    # -- calls ----------------------------------------------------------------------------------
    def _call(self, q, k, v, cand):
        label, mode, opts = cand
        fn = _flex_fn(self.compiled, mode)
        kw = dict(block_mask=self.block_mask, scale=SM_SCALE, enable_gqa=True)
        if opts and self.compiled:
            kw["kernel_options"] = dict(opts)
        return fn(q, k, v, **kw)

    def _fwd(self, cand):
        with torch.no_grad():
            return self._call(self.q4, self.k4, self.v4, cand)

    def _fb(self, cand):
        out = self._call(self.q4r, self.k4r, self.v4r, cand)
        loss = (out * self.dout4).sum()
        return torch.autograd.grad(loss, (self.q4r, self.k4r, self.v4r))

    def _order(self, mode):
        """Candidate indices to try: the one that worked earlier in this process first, then the
        others in list order, skipping those that already failed for this grad mode."""
        key = (mode, self.compiled)
        w = _FLEX_WORKED.get(key)
        failed = _FLEX_FAILED.get(key, set())
        rest = [i for i in range(len(FLEX_CANDIDATES)) if i != w]
        if mode == "fb" and self.compiled and self.dev.type == "cuda" and _bwd_filters_config_tiles():
            # known-failing on this torch (see the note above FLEX_CANDIDATES): max-autotune ones first
            rest = [i for i in rest if FLEX_CANDIDATES[i][1] != "default"] + \
                [i for i in rest if FLEX_CANDIDATES[i][1] == "default"]
        # candidates that failed before (on another workload) go last rather than away: a failure
        # can be specific to a shape (e.g. out of memory)
        return ([w] if w is not None else []) + [i for i in rest if i not in failed] + \
            [i for i in rest if i in failed]

    def get(self, mode: str):
        """Returns a zero-arg callable for mode "fwd" or "fb". The first invocation tries the
        candidates in order (this is where compilation happens); every attempt is logged in
        ``.tried`` ("mode label: ok/FAILED after s: reason"), the one that worked in ``.used`` and
        its own cold-call time (compile + run, failed attempts excluded) in ``.first_s``."""
        impl = self._fwd if mode == "fwd" else self._fb

        def call():
            cand = self.options.get(mode)
            if cand is not None:
                return impl(cand)
            last = None
            failed_s = 0.0
            n0 = len(self.tried)
            for i in self._order(mode):
                cand = FLEX_CANDIDATES[i]
                if self.dev.type == "cuda":
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                try:
                    r = impl(cand)
                    if self.dev.type == "cuda":
                        torch.cuda.synchronize()
                except Exception as e:  # noqa: BLE001 - try the next candidate
                    dt = time.perf_counter() - t0
                    failed_s += dt
                    last = e
                    _FLEX_FAILED.setdefault((mode, self.compiled), set()).add(i)
                    self.tried.append(f"{mode} [{cand[0]}] FAILED after {dt:.1f} s: {_compact_error(e)}")
                    if self.dev.type == "cuda":
                        torch.cuda.empty_cache()
                    continue
                dt = time.perf_counter() - t0
                self.options[mode] = cand
                self.used[mode] = {"candidate": cand[0], "compile_mode": cand[1], "kernel_options": cand[2],
                                   "first_call_s": round(dt, 3), "failed_attempts_s": round(failed_s, 3)}
                self.first_s[mode] = dt
                self.failed_s[mode] = failed_s
                _FLEX_WORKED[(mode, self.compiled)] = i
                self.tried.append(f"{mode} [{cand[0]}] ok, first call {dt:.1f} s")
                return r
            raise RuntimeError(f"flex {mode}: no candidate worked ({len(self.tried) - n0} attempts, see 'tried'); "
                               f"last: {_compact_error(last) if last is not None else 'none tried'}")
        return call


# ------------------------------------------------------------------------------------------------
# Dense FlashAttention varlen (PyTorch's bundled FA2)
# ------------------------------------------------------------------------------------------------
class _AtenFlashVarlen(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, cu, max_len, scale):
        out, lse, rng, unused, _ = torch.ops.aten._flash_attention_forward(
            q, k, v, cu, cu, max_len, max_len, 0.0, True, False, scale=scale)
        ctx.save_for_backward(q, k, v, out, lse, cu, rng, unused)
        ctx.max_len = max_len
        ctx.scale = scale
        return out

    @staticmethod
    def backward(ctx, dout):
        q, k, v, out, lse, cu, rng, unused = ctx.saved_tensors
        dq, dk, dv = torch.ops.aten._flash_attention_backward(
            dout.contiguous(), q, k, v, out, lse, cu, cu, ctx.max_len, ctx.max_len, 0.0, True, rng, unused,
            scale=ctx.scale)
        return dq, dk, dv, None, None, None


def _varlen_attn_call(q, k, v, cu, max_len):
    from torch.nn.attention.varlen import varlen_attn
    params = inspect.signature(varlen_attn).parameters
    kw = {}
    if "is_causal" in params:
        kw["is_causal"] = True
    elif "window_size" in params:
        kw["window_size"] = (-1, 0)
    else:
        raise RuntimeError("varlen_attn has neither is_causal nor window_size")
    if "scale" in params:
        kw["scale"] = SM_SCALE
    elif abs(SM_SCALE - 1.0 / math.sqrt(q.shape[-1])) > 1e-12:
        raise RuntimeError("varlen_attn without scale and a non-default scale")
    if "enable_gqa" in params and k.shape[1] != q.shape[1]:
        kw["enable_gqa"] = True
    return varlen_attn(q, k, v, cu, cu, max_len, max_len, **kw)


def _first_working(what, candidates, run, validate, tried):
    """The first (name, candidate) whose output run(candidate) passes validate (relative error below
    2e-2 against the package's reference); every failure is appended to ``tried``."""
    for name, cand in candidates:
        try:
            out = run(cand)
            torch.cuda.synchronize()
            err = validate(out)
            if not err < 2e-2:
                raise RuntimeError(f"output mismatch vs the package's reference (rel err {err:.3g})")
            return name, cand
        except Exception as e:  # noqa: BLE001
            tried.append(f"{name}: {type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}")
            torch.cuda.empty_cache()
    raise RuntimeError(f"no {what} entry point worked: {tried}")


class FADense:
    """Dense causal varlen FlashAttention over the packed batch. Entry points tried in order:
    aten._flash_attention_forward/_backward (GQA native), torch.nn.attention.varlen.varlen_attn,
    aten flash with K/V repeated to H_q heads. The first whose output matches a float32 reference
    on the shortest sequences is used (``.used``)."""

    def __init__(self, inp):
        self.inp = inp
        self.used = None
        self.tried = []
        self.q, self.k, self.v, self.dout = inp["q"], inp["k"], inp["v"], inp["dout"]
        self.cu, self.max_len = inp["cu"], inp["max_len"]
        self.qr = self.q.detach().requires_grad_()  # shares storage
        self.kr = self.k.detach().requires_grad_()
        self.vr = self.v.detach().requires_grad_()
        self.call = None
        self.kv_rep = None

    def _candidates(self):
        def aten_gqa(q, k, v):
            return _AtenFlashVarlen.apply(q, k, v, self.cu, self.max_len, SM_SCALE)

        def varlen(q, k, v):
            return _varlen_attn_call(q, k, v, self.cu, self.max_len)

        def aten_rep(q, k, v):
            g = q.shape[1] // k.shape[1]
            return _AtenFlashVarlen.apply(q, k.repeat_interleave(g, 1), v.repeat_interleave(g, 1), self.cu,
                                          self.max_len, SM_SCALE)
        return [("aten._flash_attention_forward/_backward (GQA native)", aten_gqa),
                ("torch.nn.attention.varlen.varlen_attn", varlen),
                ("aten._flash_attention_forward/_backward (K/V repeated to H_q)", aten_rep)]

    def _validate(self, out):
        """Compare the last (short) sequences against the package's reference (dense causal mask, CPU)."""
        import seer_attn
        seqlens = self.inp["seqlens"]
        n = min(len(seqlens), 3)
        if max(seqlens[-n:]) <= 4096:  # the last (short) sequences of the packed batch
            sub = seqlens[-n:]
            off = sum(seqlens[:-n])
        else:  # one long sequence: causal rows [0, 2048) only see keys [0, 2048)
            sub, off = [2048], 0
        q, k, v = C.on_cpu(*(x[off:off + sum(sub)] for x in (self.q, self.k, self.v)))
        cu = C.cu_seqlens_of(sub, "cpu")
        full = torch.ones(len(sub), 1, cdiv(max(sub), BLOCK), cdiv(max(sub), BLOCK), dtype=torch.bool)
        ref = seer_attn.block_sparse_attn_2d(q, k, v, full, cu, cu, max(sub), max(sub), sm_scale=SM_SCALE)
        return rel_err(out[off:off + sum(sub)], ref)

    def select(self):
        def run(fn):
            with torch.no_grad():
                return fn(self.q, self.k, self.v)
        self.used, self.call = _first_working("FlashAttention varlen", self._candidates(), run, self._validate,
                                              self.tried)

    def fwd(self):
        with torch.no_grad():
            return self.call(self.q, self.k, self.v)

    def fb(self):
        out = self.call(self.qr, self.kr, self.vr)
        loss = (out * self.dout).sum()
        return torch.autograd.grad(loss, (self.qr, self.kr, self.vr))


# ------------------------------------------------------------------------------------------------
# Dense decode over the same cache
# ------------------------------------------------------------------------------------------------
class DenseDecode:
    """Dense (all valid slots) decode over the right-padded cache. Entry points tried in order:
    FA varlen over the cache in place (cu_seq_k = b * S_max, seqused_k = cache_seqlens);
    FA varlen over a packed copy of the valid slots (same bytes read); SDPA with a boolean padding
    mask (reads the whole cache). Validated against a float32 reference on two sequences."""

    def __init__(self, inp):
        self.inp = inp
        self.used = None
        self.tried = []
        self.call = None

    def _candidates(self):
        q, kc, vc, lens = self.inp["q"], self.inp["k_cache"], self.inp["v_cache"], self.inp["cache_seqlens"]
        B, S, hk, D = kc.shape
        dev = q.device
        cu_q = torch.arange(B + 1, device=dev, dtype=torch.int32)

        def fa_inplace():
            cu_k = torch.arange(B + 1, device=dev, dtype=torch.int32) * S
            kf, vf = kc.view(B * S, hk, D), vc.view(B * S, hk, D)

            def f():
                return torch.ops.aten._flash_attention_forward(
                    q, kf, vf, cu_q, cu_k, 1, S, 0.0, False, False, scale=SM_SCALE, seqused_k=lens)[0]
            return f

        def fa_packed():
            lh = self.inp["lens_host"]
            kp = torch.cat([kc[b, :lh[b]] for b in range(B)], 0)
            vp = torch.cat([vc[b, :lh[b]] for b in range(B)], 0)
            cu_k = torch.zeros(B + 1, device=dev, dtype=torch.int32)
            cu_k[1:] = torch.cumsum(lens, 0)
            mx = max(lh)

            def f():
                return torch.ops.aten._flash_attention_forward(
                    q, kp, vp, cu_q, cu_k, 1, mx, 0.0, False, False, scale=SM_SCALE)[0]
            return f

        def sdpa():
            q4 = q[:, :, None, :]  # [B, Hq, 1, D]
            k4 = kc.permute(0, 2, 1, 3)  # [B, Hkv, S, D] (view)
            v4 = vc.permute(0, 2, 1, 3)
            m = (torch.arange(S, device=dev)[None, :] < lens[:, None].to(torch.int64))[:, None, None, :]

            def f():
                return torch.nn.functional.scaled_dot_product_attention(
                    q4, k4, v4, attn_mask=m, scale=SM_SCALE, enable_gqa=True)[:, :, 0]
            return f
        return [("FA varlen in place (seqused_k)", fa_inplace),
                ("FA varlen over a packed copy of the valid slots", fa_packed),
                ("SDPA + padding mask (reads the whole cache)", sdpa)]

    def select(self):
        q, kc, vc = self.inp["q"], self.inp["k_cache"], self.inp["v_cache"]
        lh = self.inp["lens_host"]
        chk = [0, q.shape[0] - 1] if q.shape[0] > 1 else [0]

        def run(make):
            self.call = make()
            with torch.no_grad():
                return self.call()

        def validate(out):
            full = torch.ones(len(chk), kc.shape[2], cdiv(kc.shape[1], 64), dtype=torch.bool)
            lens = torch.tensor([lh[b] for b in chk], dtype=torch.int32)
            ref = C.decode_fn(C.import_seer_attn(), *C.on_cpu(q[chk], kc[chk], vc[chk]), lens, 64, mask=full)()
            return rel_err(out[chk], ref)
        self.used, _ = _first_working("dense decode", self._candidates(), run, validate, self.tried)


# ------------------------------------------------------------------------------------------------
# Physical ceilings
# ------------------------------------------------------------------------------------------------
def measure_ceilings(timer, device):
    """bf16 8192^3 matmul TFLOP/s and device-to-device copy GB/s (read + write bytes)."""
    out = {}
    n = 8192
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    c = torch.empty(n, n, device=device, dtype=torch.bfloat16)
    ms = timer(lambda: torch.matmul(a, b, out=c))["median_ms"]
    out["matmul_bf16_8192_ms"] = ms
    out["matmul_tflops"] = 2 * n ** 3 / (ms * 1e-3) / 1e12
    del a, b, c
    nbytes = 2 << 30  # 2 GiB source
    x = torch.empty(nbytes // 2, device=device, dtype=torch.bfloat16).fill_(1.0)
    y = torch.empty_like(x)
    ms = timer(lambda: y.copy_(x))["median_ms"]
    out["copy_bytes"] = nbytes
    out["copy_ms"] = ms
    out["copy_gbs"] = 2 * nbytes / (ms * 1e-3) / 1e9
    del x, y
    torch.cuda.empty_cache()
    return out
