"""What every benchmark script shares: the WORKLOADS.md shapes, inputs and masks, exact pair / byte
counts, the one timer, and the import of the package under test.

Masks come from the package's generators (``seer_attn.random_block_mask_2d`` / ``_1d`` /
``random_decode_mask``, the WORKLOADS.md rule: per (sequence, head, query-block row) keep
``round(d * n)`` (at least 1) of the row's ``n`` causal blocks at random, the diagonal block always
kept; decode: ``round(d * n)`` of the ``n`` blocks holding valid slots, the newest token's block always
kept), each drawn from a fresh generator seeded with 0 on the inputs' device. References are the
package's too: the CPU implementation of every op is the pure-PyTorch reference, so a check calls the
same public function on CPU copies of the inputs (``on_cpu``).

Self-attention only (seqlen_q == seqlen_k per sequence): bottom-right causal = top-left, query t sees
key s iff s <= t.
"""
from __future__ import annotations

import gc
import math
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from typing import List

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

# ---- common settings (WORKLOADS.md) ------------------------------------------------------------
H_Q = 32
H_KV = 8
GROUP = H_Q // H_KV
HEAD_DIM = 128
BLOCK = 64
DTYPE = torch.bfloat16
SM_SCALE = 1.0 / math.sqrt(HEAD_DIM)
SEED = 0

PREFILL_DENSITIES = (1.0, 0.5, 0.2, 0.1)
DECODE_DENSITIES = (0.1, 0.25, 0.5)
DECODE_BLOCKS = (32, 64)
PAGE_SIZES = (16, 64)
MASK_KINDS = ("2d", "gqa", "head", "token")  # 2D per q head; 1D GQA-shared / per q head / per token


@dataclass
class Workload:
    name: str
    kind: str  # "prefill" | "decode"
    seqlens: List[int] = field(default_factory=list)  # prefill
    batch: int = 0  # decode
    s_max: int = 0
    len_lo: int = 0

    @property
    def total_tokens(self) -> int:
        return sum(self.seqlens)

    def describe(self) -> str:
        if self.kind == "prefill":
            return f"{self.name}: prefill varlen seqlens {self.seqlens} (T = {self.total_tokens})"
        return (f"{self.name}: decode batch {self.batch}, S_max {self.s_max}, cache_seqlens uniform in "
                f"[{self.len_lo}, {self.s_max}] (one at {self.s_max})")


FULL_WORKLOADS = {
    "P1": Workload("P1", "prefill", seqlens=[16384, 8000, 4096, 2100, 1024, 700, 256, 77]),
    "P2": Workload("P2", "prefill", seqlens=[65536]),
    "D1": Workload("D1", "decode", batch=32, s_max=32768, len_lo=1024),
}

# Tiny shapes with the same structure, for `--device cpu` smoke tests of the control flow.
TINY_WORKLOADS = {
    "P1": Workload("P1", "prefill", seqlens=[200, 130, 64, 77, 5]),
    "P2": Workload("P2", "prefill", seqlens=[384]),
    "D1": Workload("D1", "decode", batch=3, s_max=512, len_lo=64),
}

# Small problems used by --check (partial and aligned blocks, one short sequence; decode lengths 1 and
# block + 1 are set by the caller).
CHECK_SEQLENS = [333, 77, 64]
CHECK_DECODE = Workload("check", "decode", batch=4, s_max=1024, len_lo=64)


def get_workloads(tiny: bool):
    return TINY_WORKLOADS if tiny else FULL_WORKLOADS


def cdiv(a: int, b: int) -> int:
    return -(-int(a) // int(b))


# ---- the package under test ----------------------------------------------------------------------
def import_seer_attn(build_dir=None):
    """Import seer_attn; from ``build_dir`` only when given (put first on sys.path, checked), else the
    installed package, else the repository root (in-place build)."""
    if build_dir:
        build_dir = os.path.abspath(build_dir)
        sys.path.insert(0, build_dir)
        import seer_attn
        where = os.path.abspath(os.path.dirname(seer_attn.__file__))
        if not where.startswith(build_dir + os.sep):
            raise ImportError(f"seer_attn imported from {where}, not from the build {build_dir}")
        return seer_attn
    try:
        import seer_attn
    except ImportError:
        if REPO not in sys.path:
            sys.path.insert(0, REPO)
        import seer_attn
    return seer_attn


def env_info(device):
    e = {"torch": torch.__version__, "cuda": torch.version.cuda, "python": platform.python_version(),
         "hostname": platform.node()}
    try:
        import triton
        e["triton"] = triton.__version__
    except Exception as ex:  # noqa: BLE001
        e["triton"] = f"n/a ({type(ex).__name__})"
    try:
        e["cudnn"] = torch.backends.cudnn.version()
    except Exception:  # noqa: BLE001
        e["cudnn"] = None
    if device == "cuda" and torch.cuda.is_available():
        prop = torch.cuda.get_device_properties(0)
        e["device_name"] = prop.name
        e["sm_count"] = prop.multi_processor_count
        e["capability"] = f"{prop.major}.{prop.minor}"
        e["memory_gib"] = round(prop.total_memory / 2 ** 30, 1)
    else:
        e["device_name"] = f"cpu ({platform.processor() or platform.machine()})"
        e["sm_count"] = os.cpu_count()
    try:
        sa = import_seer_attn()
        try:
            st = sa.kernel_status()
        except Exception as ex:  # noqa: BLE001
            st = f"kernel_status() failed: {ex}"
        e["seer_attn"] = f"{getattr(sa, '__version__', '?')} from {os.path.dirname(sa.__file__)}; kernels: {st}"
    except Exception as ex:  # noqa: BLE001
        e["seer_attn"] = f"import failed: {type(ex).__name__}: {ex}"
    return e


def on_cpu(*xs):
    """CPU copies (the op's CPU implementation is the package's pure-PyTorch reference)."""
    return [x.detach().cpu() if isinstance(x, torch.Tensor) else x for x in xs]


def rel_err(a: torch.Tensor, ref: torch.Tensor) -> float:
    """max |a - ref| / max(max |ref|, 1e-6), in float32; inf if a has NaN/inf."""
    a = a.detach().float().cpu()
    ref = ref.detach().float().cpu()
    if not torch.isfinite(a).all():
        return float("inf")
    den = max(float(ref.abs().max().item()) if ref.numel() else 0.0, 1e-6)
    return float((a - ref).abs().max().item()) / den if a.numel() else 0.0


# ---- inputs -------------------------------------------------------------------------------------
def cu_seqlens_of(seqlens, device) -> torch.Tensor:
    cu = [0]
    for s in seqlens:
        cu.append(cu[-1] + int(s))
    return torch.tensor(cu, dtype=torch.int32, device=device)


def make_prefill_inputs(seqlens, device, dtype=DTYPE, seed=SEED, h_q=H_Q, h_kv=H_KV, d=HEAD_DIM):
    """q [T, H_q, D], k/v [T, H_kv, D], dout [T, H_q, D] ~ N(0, 1); cu_seqlens int32 [B+1]."""
    torch.manual_seed(seed)
    t = sum(int(s) for s in seqlens)
    g = torch.Generator(device=device).manual_seed(seed)
    q = torch.randn(t, h_q, d, generator=g, device=device, dtype=dtype)
    k = torch.randn(t, h_kv, d, generator=g, device=device, dtype=dtype)
    v = torch.randn(t, h_kv, d, generator=g, device=device, dtype=dtype)
    dout = torch.randn(t, h_q, d, generator=g, device=device, dtype=dtype)
    return dict(q=q, k=k, v=v, dout=dout, cu=cu_seqlens_of(seqlens, device), max_len=max(seqlens),
                seqlens=list(int(s) for s in seqlens))


def make_decode_inputs(w: Workload, device, dtype=DTYPE, seed=SEED, h_q=H_Q, h_kv=H_KV, d=HEAD_DIM,
                       new_tokens=4):
    """k_cache/v_cache [B, S_max, H_kv, D]; cache_seqlens int32 [B] uniform in [len_lo, S_max],
    element 0 set to S_max; q [B, H_q, D] (one new token) and q_multi [B, new_tokens, H_q, D]."""
    torch.manual_seed(seed)
    gcpu = torch.Generator().manual_seed(seed)
    lens = torch.randint(w.len_lo, w.s_max + 1, (w.batch,), generator=gcpu, dtype=torch.int64)
    lens[0] = w.s_max
    g = torch.Generator(device=device).manual_seed(seed)
    q = torch.randn(w.batch, h_q, d, generator=g, device=device, dtype=dtype)
    kc = torch.randn(w.batch, w.s_max, h_kv, d, generator=g, device=device, dtype=dtype)
    vc = torch.randn(w.batch, w.s_max, h_kv, d, generator=g, device=device, dtype=dtype)
    qm = torch.randn(w.batch, new_tokens, h_q, d, generator=g, device=device, dtype=dtype)
    return dict(q=q, q_multi=qm, k_cache=kc, v_cache=vc, s_max=w.s_max,
                cache_seqlens=lens.to(device=device, dtype=torch.int32), lens_host=lens.tolist())


def paged_cache(k_cache, v_cache, lens_host, page_size, seed=SEED):
    """The same cache as pages: (k_pages, v_pages [num_pages, page_size, H_kv, D], block_table int32
    [B, ceil(S_max/page_size)]). Only the pages holding valid slots exist, in a random order (slot s of
    sequence b lives at page block_table[b, s // page_size], row s % page_size); table entries past a
    sequence's pages point at page 0 (never read: beyond cache_seqlens)."""
    B, S, hk, D = k_cache.shape
    dev = k_cache.device
    per_seq = [cdiv(int(n), page_size) for n in lens_host]
    n_pages = max(1, sum(per_seq))
    perm = torch.randperm(n_pages, generator=torch.Generator().manual_seed(seed)).tolist()
    table = torch.zeros(B, cdiv(S, page_size), dtype=torch.int32)
    kp = torch.zeros(n_pages, page_size, hk, D, dtype=k_cache.dtype, device=dev)
    vp = torch.zeros_like(kp)
    nxt = 0
    for b, n in enumerate(per_seq):
        ids = perm[nxt:nxt + n]
        nxt += n
        table[b, :n] = torch.tensor(ids, dtype=torch.int32)
        used = n * page_size
        src_k = torch.zeros(used, hk, D, dtype=k_cache.dtype, device=dev)
        src_v = torch.zeros_like(src_k)
        m = min(used, S)
        src_k[:m] = k_cache[b, :m]
        src_v[:m] = v_cache[b, :m]
        idx = torch.tensor(ids, dtype=torch.int64, device=dev)
        kp[idx] = src_k.view(n, page_size, hk, D)
        vp[idx] = src_v.view(n, page_size, hk, D)
    return kp, vp, table.to(dev)


# ---- masks (the package's WORKLOADS.md generators) -----------------------------------------------
def _gen(device, seed=SEED):
    return torch.Generator(device=device).manual_seed(seed)


def prefill_mask(kind, seqlens, density, device, block=BLOCK, seed=SEED):
    """(mask, pairs) for mask kind "2d" (bool [B, H_q, nb, nb]), "gqa" (1D drawn per kv head and
    query-block row, expanded to its token rows: [B, H_kv, S, nb]), "head" (the gqa mask repeated over
    the q heads of each group: [B, H_q, S, nb]) or "token" (every token row drawn independently, per kv
    head). pairs = kept causal (query, key) pairs summed over q heads."""
    import seer_attn
    L = max(seqlens)
    cu = [0]
    for s in seqlens:
        cu.append(cu[-1] + int(s))
    if kind == "2d":
        m = seer_attn.random_block_mask_2d(cu, H_Q, L, L, block, block, density, generator=_gen(device, seed),
                                           device=device)
        return m, pairs_2d(m, seqlens, block)
    m = seer_attn.random_block_mask_1d(cu, H_KV, L, L, block, block, density, generator=_gen(device, seed),
                                       device=device, per_token=kind == "token")
    pairs = pairs_1d(m, seqlens, block, head_factor=GROUP)
    if kind == "head":
        m = m.repeat_interleave(GROUP, 1)
    elif kind not in ("gqa", "token"):
        raise ValueError(f"unknown mask kind {kind!r} (choose from {MASK_KINDS})")
    return m, pairs


def decode_mask(cache_seqlens, s_max, block, density, seed=SEED):
    """bool [B, H_kv, ceil(S_max/block)] (density 1.0: every valid block)."""
    import seer_attn
    return seer_attn.random_decode_mask(cache_seqlens, H_KV, s_max, block, density,
                                        generator=_gen(cache_seqlens.device, seed), device=cache_seqlens.device)


def decode_indices(mask):
    """The mask's blocks as int32 [B, H_kv, K] ascending, -1 padded, K = the largest kept count."""
    import seer_attn
    k = max(1, int(mask.sum(-1).max().item())) if mask.numel() else 1
    return seer_attn.mask_to_indices(mask, k)


def checksum(t: torch.Tensor) -> int:
    """A cheap fingerprint of a mask (to prove two processes drew the same one)."""
    x = t.reshape(-1).to(torch.int64)
    w = torch.arange(x.numel(), device=x.device, dtype=torch.int64) % 1000003 + 1
    return int((x * w).sum().item()) ^ int(x.sum().item()) << 1


# ---- exact pair / byte counts -------------------------------------------------------------------
_CHUNK_ELEMS = 1 << 25


def dense_causal_pairs(seqlens, num_heads: int = H_Q) -> int:
    return num_heads * sum(int(L) * (int(L) + 1) // 2 for L in seqlens)


def pairs_2d(m2d: torch.Tensor, seqlens, block: int = BLOCK, head_factor: int = 1) -> int:
    """Exact visible (query, key) pairs of a 2D block mask [B, H, nb, nk] under causal masking,
    summed over heads (times head_factor when the mask is shared by a GQA group)."""
    B, H, nb, nk = m2d.shape
    dev = m2d.device
    L = torch.tensor(list(seqlens), device=dev, dtype=torch.int64)[:, None, None]
    i = torch.arange(nb, device=dev, dtype=torch.int64)[None, :, None]
    j = torch.arange(nk, device=dev, dtype=torch.int64)[None, None, :]
    rows = torch.clamp(L - i * block, 0, block)
    cols = torch.clamp(L - j * block, 0, block)
    w = torch.where(j < i, rows * cols, torch.where(j == i, rows * (rows + 1) // 2, torch.zeros_like(rows * cols)))
    tot = 0
    for b in range(B):
        tot += int((m2d[b].to(torch.int64) * w[b][None]).sum().item())
    return tot * head_factor


def pairs_1d(m1d: torch.Tensor, seqlens, block: int = BLOCK, head_factor: int = 1) -> int:
    """Exact visible pairs of a 1D token mask [B, H, S, nk]: row t, block j contributes
    clamp(t - j*block + 1, 0, block) keys (t < len_b). Summed over heads (x head_factor)."""
    B, H, S, nk = m1d.shape
    dev = m1d.device
    j = torch.arange(nk, device=dev, dtype=torch.int64)[None, :]
    rows = max(1, _CHUNK_ELEMS // max(1, H * nk))
    tot = 0
    for b in range(B):
        L = int(seqlens[b])
        for t0 in range(0, L, rows):
            t1 = min(L, t0 + rows)
            t = torch.arange(t0, t1, device=dev, dtype=torch.int64)[:, None]
            w = torch.clamp(t - j * block + 1, 0, block).to(torch.int32)
            tot += int((m1d[b, :, t0:t1].to(torch.int32) * w[None]).sum(dtype=torch.int64).item())
    return tot * head_factor


def decode_kept_kv_bytes(mask: torch.Tensor, lens_dev: torch.Tensor, block: int, head_dim: int = HEAD_DIM,
                         elem_bytes: int = 2) -> int:
    """K + V bytes of the valid cache slots inside the kept blocks (right-padded cache)."""
    B, H, nb = mask.shape
    L = lens_dev.to(torch.int64)[:, None, None]
    n = torch.arange(nb, device=mask.device, dtype=torch.int64)[None, None, :]
    slots = torch.clamp(L - n * block, 0, block)
    return int((mask.to(torch.int64) * slots).sum().item()) * head_dim * elem_bytes * 2


def decode_dense_kv_bytes(lens_host, num_kv_heads: int = H_KV, head_dim: int = HEAD_DIM, elem_bytes: int = 2) -> int:
    return sum(int(x) for x in lens_host) * num_kv_heads * head_dim * elem_bytes * 2


# ---- the timer ------------------------------------------------------------------------------------
class Timer:
    """Median of per-call timings after warm-up.

    CUDA: one warm call (estimates the duration and measures the peak memory allocated above what was
    allocated before it: inputs excluded, outputs / workspaces included), ~``warmup_ms`` of extra
    warm-up for fast kernels, then ``clamp(target_ms / t, min_reps, max_reps)`` reps (3 at least when
    one call exceeds 100 ms), each bracketed by CUDA events with the L2 flushed (a 256 MiB write)
    before it. CPU: perf_counter, the estimating call counts as the first rep (a CPU run is a
    control-flow smoke test, not a measurement)."""

    def __init__(self, device, target_ms=200.0, min_reps=5, max_reps=200, warmup_ms=25.0):
        self.device = str(device)
        self.cuda = self.device.startswith("cuda")
        self.target_ms, self.min_reps, self.max_reps, self.warmup_ms = target_ms, min_reps, max_reps, warmup_ms
        self.flush = torch.empty(64 << 20, dtype=torch.int32, device=self.device) if self.cuda else None

    def sync(self):
        if self.cuda:
            torch.cuda.synchronize()

    def once(self, fn):
        """(fn(), ms) of one synchronised call."""
        self.sync()
        t = time.perf_counter()
        r = fn()
        self.sync()
        return r, (time.perf_counter() - t) * 1e3

    def first(self, fn):
        """Seconds of one synchronised call (a first-call latency)."""
        return self.once(fn)[1] * 1e-3

    @staticmethod
    def _stats(ts, **extra):
        ts = sorted(ts)
        n = len(ts)
        med = ts[n // 2] if n % 2 else 0.5 * (ts[n // 2 - 1] + ts[n // 2])
        return dict(median_ms=med, reps=n, min_ms=ts[0], max_ms=ts[-1], times_ms=ts, **extra)

    def __call__(self, fn, target_ms=None):
        target = self.target_ms if target_ms is None else target_ms
        if not self.cuda:
            t = time.perf_counter()
            fn()
            ts = [(time.perf_counter() - t) * 1e3]
            for _ in range(int(min(self.max_reps, 5, target / max(ts[0], 1e-3))) - 1):
                t = time.perf_counter()
                fn()
                ts.append((time.perf_counter() - t) * 1e3)
            return self._stats(ts)
        gc.collect()
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        r = fn()
        e.record()
        del r
        torch.cuda.synchronize()
        peak = (torch.cuda.max_memory_allocated() - base) / 2 ** 20
        est = max(s.elapsed_time(e), 1e-3)
        for _ in range(int(min(50, self.warmup_ms / est))):
            fn()
        lo = self.min_reps if est < 100 else min(self.min_reps, 3)
        reps = int(min(self.max_reps, max(lo, target / est)))
        evs = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(reps)]
        for s, e in evs:
            self.flush.zero_()
            s.record()
            fn()
            e.record()
        torch.cuda.synchronize()
        return self._stats([s.elapsed_time(e) for s, e in evs], peak_mib=peak)


def cleanup(device):
    gc.collect()
    if str(device).startswith("cuda"):
        torch.cuda.empty_cache()


# ---- the op calls (public API of the package under test) -----------------------------------------
def attn_fns(sa, op, inp, mask, deterministic=False):
    """(fwd, fwd_bwd) closures of the 2D ("2d") or 1D (any other op name) attention on ``inp``:
    fwd = output under no_grad; fwd_bwd = forward, loss = (out * dout).sum(), grads of q, k, v."""
    q, k, v, dout, cu, L = inp["q"], inp["k"], inp["v"], inp["dout"], inp["cu"], inp["max_len"]
    if op == "2d":
        f, kw = sa.block_sparse_attn_2d, dict(block_size_q=BLOCK, block_size_k=BLOCK)
    else:
        f, kw = sa.block_sparse_attn_1d, dict(block_size_k=BLOCK)
    kw.update(sm_scale=SM_SCALE, causal=True)
    if deterministic:
        kw["deterministic"] = True
    qr, kr, vr = (x.detach().requires_grad_() for x in (q, k, v))

    def fwd():
        with torch.no_grad():
            return f(q, k, v, mask, cu, cu, L, L, **kw)

    def fwd_bwd():
        out = f(qr, kr, vr, mask, cu, cu, L, L, **kw)
        return torch.autograd.grad((out * dout).sum(), (qr, kr, vr))
    return fwd, fwd_bwd


def pool_fn(sa, inp, gqa_reduce):
    q, k, cu, L = inp["q"], inp["k"], inp["cu"], inp["max_len"]
    return lambda: sa.attention_pooling(q, k, cu, L, block_size=BLOCK, sm_scale=SM_SCALE, causal=True,
                                        gqa_reduce=gqa_reduce)


def decode_fn(sa, q, k_cache, v_cache, lens, block, mask=None, indices=None, block_table=None, num_splits=0):
    kw = dict(block_mask=mask, block_indices=indices, block_size=block, sm_scale=SM_SCALE, num_splits=num_splits)
    if block_table is not None:
        kw["block_table"] = block_table
    return lambda: sa.block_sparse_decode(q, k_cache, v_cache, lens, **kw)


def decode_features(sa, device, page_sizes=PAGE_SIZES):
    """Which decode forms this build runs, from a tiny probe: {"paged<P>": None | reason, "multi": None |
    reason} (None = supported; paged: the same answer as the contiguous cache; L = 4 new tokens: the same
    answer as the package's CPU reference)."""
    import inspect
    w = Workload("probe", "decode", batch=2, s_max=256, len_lo=40)
    inp = make_decode_inputs(w, device, h_q=8, h_kv=2, d=64)
    lens = inp["cache_seqlens"]
    mask = torch.ones(2, 2, 4, dtype=torch.bool, device=device)

    def why(e):
        return f"not supported by this build ({type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''})"
    feats = {}
    want = decode_fn(sa, inp["q"], inp["k_cache"], inp["v_cache"], lens, 64, mask=mask)()
    for ps in page_sizes:
        try:
            if "block_table" not in inspect.signature(sa.block_sparse_decode).parameters:
                raise TypeError("block_sparse_decode has no block_table argument")
            kp, vp, table = paged_cache(inp["k_cache"], inp["v_cache"], inp["lens_host"], ps)
            err = rel_err(decode_fn(sa, inp["q"], kp, vp, lens, 64, mask=mask, block_table=table)(), want)
            feats[f"paged{ps}"] = None if err < 1e-2 else f"paged output differs from the contiguous one (rel err {err:.2e})"
        except Exception as e:  # noqa: BLE001
            feats[f"paged{ps}"] = why(e)
    try:
        qm = inp["q_multi"]
        got = decode_fn(sa, qm, inp["k_cache"], inp["v_cache"], lens, 64, mask=mask)()
        err = rel_err(got, decode_fn(sa, *on_cpu(qm, inp["k_cache"], inp["v_cache"], lens), 64, mask=mask.cpu())())
        feats["multi"] = None if err < 2e-2 else f"L = 4 output differs from the CPU reference (rel err {err:.2e})"
    except Exception as e:  # noqa: BLE001
        feats["multi"] = why(e)
    return feats
