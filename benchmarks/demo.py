"""seer_attn end-to-end demo: the job the library exists for.

1. build a packed varlen batch with GQA (q/k carry a positional signal so attention is local, as in
   a real model, plus noise),
2. compute the gate's distillation targets with attention pooling (2D per query head, 1D per token
   reduced over each GQA group),
3. derive block masks from them at several densities (keep the top-scoring fraction of each row's
   causal blocks, always keeping the diagonal block; plus one threshold-derived 2D mask),
4. run 2D and 1D block-sparse attention forward + backward and block-sparse decode (mask and
   indices forms) at each density,
5. print, per density: the kept fraction of causal blocks, the error against plain-PyTorch
   attention with the same mask (correctness: out, dq, dk, dv) and against dense causal attention
   (what the sparsity costs), and the time; plus which implementation ran each op.

Runs on CUDA (larger sizes, CUDA-event timing) or on CPU (small sizes, the pure-PyTorch reference;
under a minute). Usage: python benchmarks/demo.py [--device cpu|cuda] [--small] [--densities ...]
"""
import argparse
import math
import statistics
import sys
import time

import torch
import torch.nn.functional as F

import seer_attn
from seer_attn import (
    attention_pooling,
    block_sparse_attn_1d,
    block_sparse_attn_2d,
    block_sparse_decode,
    causal_block_mask,
    diagonal_block_mask,
    mask_to_indices,
    padded_from_packed,
    threshold_to_mask,
    top_fraction_to_mask,
)

# ---------------------------------------------------------------------------------------------
# configuration
# ---------------------------------------------------------------------------------------------
CONFIGS = {
    # GPU: a mid-size slice of WORKLOADS.md P1 (bf16, D 128, 32/8 heads, block 64)
    "cuda": dict(seqlens=[4096, 2100, 1024, 700, 256, 77], h_q=32, h_kv=8, d=128, block=64,
                 dec_batch=16, dec_smax=16384, dec_block=64, reps=10),
    # CPU (pure-PyTorch reference): small, < 1 min on two cores
    "cpu": dict(seqlens=[256, 150, 77], h_q=4, h_kv=2, d=64, block=32,
                dec_batch=4, dec_smax=1024, dec_block=32, reps=1),
}


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda if available)")
    p.add_argument("--dtype", default="bf16", choices=["bf16", "fp16"])
    p.add_argument("--small", action="store_true", help="use the CPU sizes on any device")
    p.add_argument("--densities", type=float, nargs="+", default=[1.0, 0.5, 0.2, 0.1])
    p.add_argument("--threshold", type=float, default=0.02,
                   help="threshold on the normalised 2D pooled scores for the extra threshold-derived mask")
    p.add_argument("--no-grad-check", action="store_true", help="skip the backward correctness check")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args()


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def timeit(fn, dev, reps):
    """Median time of fn() in ms; on CUDA after one warm-up call (the CPU reference needs none,
    and every op has already run once for the correctness check)."""
    if dev.type == "cuda":
        fn()
        sync(dev)
    ts = []
    for _ in range(reps):
        if dev.type == "cuda":
            a = torch.cuda.Event(enable_timing=True)
            b = torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            b.synchronize()
            ts.append(a.elapsed_time(b))
        else:
            t0 = time.perf_counter()
            fn()
            ts.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(ts)


def timed(fn, dev):
    """(fn(), elapsed ms) of a single call (synchronised)."""
    sync(dev)
    t0 = time.perf_counter()
    r = fn()
    sync(dev)
    return r, (time.perf_counter() - t0) * 1e3


def rel_err(a, b):
    a = a.detach().double()
    b = b.detach().double()
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


def fmt_errs(errs):
    return "/".join(f"{e:.1e}" for e in errs)


class PositionalData:
    """Synthetic q/k with a rotary-like positional signal, so that (as in a trained model) attention
    concentrates on nearby tokens: the positional part of the scaled logit is ``peak`` at distance 0
    and oscillates around 0 beyond a few dozen tokens; plus Gaussian noise. Query heads of a GQA
    group share their kv head's phases."""

    def __init__(self, h_q, h_kv, d, scale, gen, dev, peak=10.0, noise=0.2):
        self.h_q, self.h_kv, self.d, self.gen, self.dev, self.noise = h_q, h_kv, d, gen, dev, noise
        nf = d // 4  # frequency pairs in the first d/2 dims
        self.freqs = 1.0 / (16.0 ** (torch.arange(nf, device=dev).double() / (nf - 1)))  # 1 .. 1/16 rad/token
        self.amp = math.sqrt(peak / (nf * scale))
        self.phase_k = torch.rand(h_kv, nf, generator=gen, device=dev).double() * 2 * math.pi
        self.phase_q = self.phase_k.repeat_interleave(h_q // h_kv, 0)

    def _enc(self, pos, phase):  # pos [...] -> [..., H, d/2]
        ang = pos.double()[..., None, None] * self.freqs + phase
        return self.amp * torch.cat([torch.cos(ang), torch.sin(ang)], -1)

    def _rand(self, shape, pos, phase, dtype):
        x = self.noise * torch.randn(*shape, generator=self.gen, device=self.dev).double()
        x[..., : self.d // 2] += self._enc(pos, phase)
        return x.to(dtype)

    def q(self, pos, dtype):
        return self._rand((*pos.shape, self.h_q, self.d), pos, self.phase_q, dtype)

    def k(self, pos, dtype):
        return self._rand((*pos.shape, self.h_kv, self.d), pos, self.phase_k, dtype)

    def v(self, shape, dtype):
        return torch.randn(*shape, self.h_kv, self.d, generator=self.gen, device=self.dev).to(dtype)


def plain_attention(q, k, v, cu, scale, allow_fn=None, need_grad=False, dout=None):
    """Plain-PyTorch float32 attention per sequence (bottom-right causal; seqlen_q == seqlen_k here).
    allow_fn(b, L) -> bool [H_q, L, L] token-level mask, or None for dense causal.
    Returns out (and dq, dk, dv if need_grad)."""
    g = q.shape[1] // k.shape[1]
    qf, kf, vf = (x.detach().float().requires_grad_(need_grad) for x in (q, k, v))
    outs = []
    for b in range(len(cu) - 1):
        s, e = cu[b], cu[b + 1]
        L = e - s
        qs = qf[s:e].transpose(0, 1)
        ks = kf[s:e].repeat_interleave(g, 1).transpose(0, 1)
        vs = vf[s:e].repeat_interleave(g, 1).transpose(0, 1)
        if allow_fn is None:
            o = F.scaled_dot_product_attention(qs, ks, vs, is_causal=True, scale=scale)
        else:
            causal = torch.ones(L, L, dtype=torch.bool, device=q.device).tril()
            allow = allow_fn(b, L) & causal
            logits = (qs @ ks.transpose(-1, -2)) * scale
            logits = logits.masked_fill(~allow, -math.inf)
            m = logits.amax(-1, keepdim=True)
            m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
            p = torch.exp(logits - m)
            den = p.sum(-1, keepdim=True)
            p = p / torch.where(den > 0, den, torch.ones_like(den))  # empty rows -> 0
            o = p @ vs
        o = o.transpose(0, 1)
        if need_grad:
            (o * dout[s:e].float()).sum().backward()
        outs.append(o.detach())
    out = torch.cat(outs)
    if need_grad:
        return out, qf.grad, kf.grad, vf.grad
    return out


def plain_pooling(q, k, cu, scale, bs, nb):
    """Plain-PyTorch pooling targets (SPEC 3): per-q-head 2D maps [B, H_q, nb, nb] (rows normalised)
    and the GQA-reduced 1D maps packed by token [H_kv, T, nb] (max over the group, rows normalised)."""
    h_q, h_kv = q.shape[1], k.shape[1]
    g = h_q // h_kv
    p2 = torch.zeros(len(cu) - 1, h_q, nb, nb, device=q.device)
    p1 = torch.zeros(h_kv, q.shape[0], nb, device=q.device)
    for b in range(len(cu) - 1):
        s, e = cu[b], cu[b + 1]
        L = e - s
        n = -(-L // bs)
        qs = q[s:e].float().transpose(0, 1)
        ks = k[s:e].float().repeat_interleave(g, 1).transpose(0, 1)
        causal = torch.ones(L, L, dtype=torch.bool, device=q.device).tril()
        P = torch.softmax((qs @ ks.transpose(-1, -2) * scale).masked_fill(~causal, -math.inf), -1)
        P = F.pad(P, (0, n * bs - L, 0, n * bs - L))  # probabilities >= 0: zero padding is max-neutral
        m2 = P.view(h_q, n, bs, n, bs).amax(dim=(2, 4))
        p2[b, :, :n, :n] = m2 / (m2.sum(-1, keepdim=True) + 1e-6)
        m1 = P[:, :L].view(h_q, L, n, bs).amax(-1).view(h_kv, g, L, n).amax(1)
        p1[:, s:e, :n] = m1 / (m1.sum(-1, keepdim=True) + 1e-6)
    return p2, p1


# ---------------------------------------------------------------------------------------------
def main():
    args = parse_args()
    dev = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    cfg = CONFIGS["cpu" if (dev.type == "cpu" or args.small) else "cuda"]
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float16
    gen = torch.Generator(device=dev).manual_seed(args.seed)
    torch.manual_seed(args.seed)
    t_start = time.perf_counter()

    seqlens, h_q, h_kv, d, bs = cfg["seqlens"], cfg["h_q"], cfg["h_kv"], cfg["d"], cfg["block"]
    g = h_q // h_kv
    cu = [0]
    for s in seqlens:
        cu.append(cu[-1] + s)
    T, msl = cu[-1], max(seqlens)
    cu_t = torch.tensor(cu, dtype=torch.int32, device=dev)
    scale = 1.0 / math.sqrt(d)
    reps = cfg["reps"]
    on_cuda = dev.type == "cuda"  # CPU: every time is a single (first) call, for orientation only

    # ---- environment and which path runs ----------------------------------------------------
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "CPU"
    print(f"seer_attn {getattr(seer_attn, '__version__', '?')} | torch {torch.__version__}"
          f"{' | CUDA ' + str(torch.version.cuda) if dev.type == 'cuda' else ''} | device: {name}")
    status_fn = getattr(seer_attn, "kernel_status", None)
    status = status_fn() if status_fn is not None else {}
    if dev.type == "cpu":
        paths = {op: "reference (CPU)" for op in (status or {"all ops": None})}
    else:
        paths = {op: ("CUDA kernel" if s == "cuda" else f"{s} (pure PyTorch)") for op, s in status.items()}
    print("implementation per op: " + (", ".join(f"{op}: {p}" for op, p in paths.items()) or "unknown"))
    print(f"batch: seqlens {seqlens} (T={T}), H_q={h_q}, H_kv={h_kv} (GQA group {g}), D={d}, "
          f"block {bs}, {args.dtype}, causal")
    print("times: " + (f"median of {reps} CUDA-event timings after a warm-up call" if on_cuda else
                       "one call each on CPU (pure-PyTorch reference, orientation only)"))

    data = PositionalData(h_q, h_kv, d, scale, gen, dev)
    pos = torch.cat([torch.arange(n, device=dev) for n in seqlens])  # position inside its sequence
    q, k, v = data.q(pos, dtype), data.k(pos, dtype), data.v((T,), dtype)
    dout = torch.randn(T, h_q, d, generator=gen, device=dev).to(dtype)

    # ---- 1. pooling targets -------------------------------------------------------------------
    # 2D targets per query head [B, H_q, nb, nb]; 1D targets reduced over each GQA group [H_kv, T, nb]
    _, pooled_1d_g = attention_pooling(q, k, cu_t, msl, block_size=bs, gqa_reduce=True)
    (pooled_2d, _), t_pool = timed(lambda: attention_pooling(q, k, cu_t, msl, block_size=bs), dev)
    if on_cuda:
        t_pool = timeit(lambda: attention_pooling(q, k, cu_t, msl, block_size=bs), dev, reps)
    ref_2d, ref_1d_g = plain_pooling(q, k, cu, scale, bs, pooled_2d.shape[-1])
    pool_errs = [rel_err(pooled_2d, ref_2d), rel_err(pooled_1d_g, ref_1d_g)]
    print(f"\nattention pooling: pooled_2d {list(pooled_2d.shape)} float32, pooled_1d (GQA-reduced, packed) "
          f"{list(pooled_1d_g.shape)}; {t_pool:.2f} ms [{paths.get('attn_pooling', '?')}]; "
          f"rel err vs plain PyTorch (2d/1d-gqa) {fmt_errs(pool_errs)}")

    # ---- dense baseline (plain PyTorch) ------------------------------------------------------
    dense_out, t_dense = timed(lambda: plain_attention(q, k, v, cu, scale), dev)
    if on_cuda:
        t_dense = timeit(lambda: plain_attention(q, k, v, cu, scale), dev, reps)
    print(f"dense causal attention, plain PyTorch SDPA per sequence: fwd {t_dense:.2f} ms")

    # block geometry: causal blocks per row, and the diagonal block that every row keeps
    valid2 = causal_block_mask(cu_t, msl, msl, bs, bs)  # [B, 1, nb, nb]
    diag2 = diagonal_block_mask(cu_t, msl, msl, bs, bs)
    valid1 = causal_block_mask(cu_t, msl, msl, 1, bs)  # [B, 1, msl, nb] per token
    diag1 = diagonal_block_mask(cu_t, msl, msl, 1, bs)
    scores_1d = padded_from_packed(pooled_1d_g, cu_t, msl)  # [B, H_kv, msl, nb]

    def kept_fraction(mask, valid):
        m = (mask != 0) & valid
        return (m.sum() / valid.expand_as(m).sum()).item()

    def run_attention(kind, mask, label, density_shown):
        """Run fwd and fwd+bwd, check against plain PyTorch with the same mask, time both."""
        qg, kg, vg = (x.detach().clone().requires_grad_() for x in (q, k, v))
        if kind == "2d":
            def fwd(q_=qg, k_=kg, v_=vg):
                return block_sparse_attn_2d(q_, k_, v_, mask, cu_t, cu_t, msl, msl,
                                            block_size_q=bs, block_size_k=bs, sm_scale=scale)

            def allow_fn(b, L):
                mm = mask[b].repeat_interleave(g, 0) if mask.shape[1] == h_kv and g > 1 else mask[b]
                mm = mm.expand(h_q, -1, -1) if mm.shape[0] == 1 else mm
                return (mm != 0).repeat_interleave(bs, 1).repeat_interleave(bs, 2)[:, :L, :L]
            valid = valid2
        else:
            def fwd(q_=qg, k_=kg, v_=vg):
                return block_sparse_attn_1d(q_, k_, v_, mask, cu_t, cu_t, msl, msl,
                                            block_size_k=bs, sm_scale=scale)

            def allow_fn(b, L):
                mm = mask[b].repeat_interleave(g, 0) if mask.shape[1] == h_kv and g > 1 else mask[b]
                mm = mm.expand(h_q, -1, -1) if mm.shape[0] == 1 else mm
                return (mm != 0)[:, :L].repeat_interleave(bs, 2)[:, :, :L]
            valid = valid1

        out, t_f = timed(fwd, dev)
        (dq, dk, dv), t_b = timed(lambda: torch.autograd.grad(out, (qg, kg, vg), dout), dev)
        t_fb = t_f + t_b
        if args.no_grad_check:
            ref = plain_attention(q, k, v, cu, scale, allow_fn)
            errs = [rel_err(out, ref)]
        else:
            ref, rq, rk, rv = plain_attention(q, k, v, cu, scale, allow_fn, need_grad=True, dout=dout)
            errs = [rel_err(out, ref), rel_err(dq, rq), rel_err(dk, rk), rel_err(dv, rv)]
        e_dense = rel_err(out, dense_out)

        def fwd_only():
            with torch.no_grad():
                fwd()

        def fwd_bwd():
            o = fwd()
            torch.autograd.backward(o, dout)

        if on_cuda:
            t_f = timeit(fwd_only, dev, reps)
            t_fb = timeit(fwd_bwd, dev, reps)
        kept = kept_fraction(mask, valid)
        print(f"  {label:<10} {density_shown:>6} {kept:>6.3f}  {fmt_errs(errs):<31} {e_dense:>9.2e}"
              f"  {t_f:>9.3f} {t_fb:>11.3f}")
        return errs

    header = (f"  {'mask':<10} {'target':>6} {'kept':>6}  {'rel err vs masked (out/dq/dk/dv)':<31} "
              f"{'vs dense':>9}  {'fwd ms':>9} {'fwd+bwd ms':>11}")
    worst = max(pool_errs)

    # ---- 2. 2D block-sparse attention -------------------------------------------------------
    print(f"\n2D block mask [B, H_q, nb, nb] from pooled_2d (top fraction of each row's causal blocks)"
          f"  [{paths.get('block_sparse_2d_fwd', '?')}]")
    print(header)
    for dens in args.densities:
        m2 = top_fraction_to_mask(pooled_2d, dens, valid=valid2, force=diag2)
        worst = max(worst, max(run_attention("2d", m2, "top-frac", f"{dens:.2f}")))
    m2t = threshold_to_mask(pooled_2d, args.threshold, keep_diagonal=True)
    worst = max(worst, max(run_attention("2d", m2t, f">{args.threshold:g}", "-")))

    # ---- 3. 1D per-token attention, mask shared by each GQA group ----------------------------
    print(f"\n1D per-token mask [B, H_kv, T, nb] from GQA-reduced pooled_1d  "
          f"[{paths.get('block_sparse_1d_fwd', '?')}]")
    print(header)
    for dens in args.densities:
        m1 = top_fraction_to_mask(scores_1d, dens, valid=valid1, force=diag1)
        worst = max(worst, max(run_attention("1d", m1, "top-frac", f"{dens:.2f}")))

    # ---- 4. block-sparse decode ---------------------------------------------------------------
    bsz, smax, dbs = cfg["dec_batch"], cfg["dec_smax"], cfg["dec_block"]
    lens = torch.randint(smax // 16, smax + 1, (bsz,), generator=gen, device=dev)
    lens[0] = smax
    cache_seqlens = lens.to(torch.int32)
    # right-padded cache: slot s holds position s; the new token sits at position len-1
    qd = data.q(cache_seqlens.long() - 1, dtype)  # [B, H_q, D]
    kc = data.k(torch.arange(smax, device=dev).expand(bsz, smax), dtype)  # [B, S_max, H_kv, D]
    vc = data.v((bsz, smax), dtype)
    ndb = -(-smax // dbs)
    slot = torch.arange(smax, device=dev)
    slot_ok = slot[None, :] < cache_seqlens[:, None].long()  # [B, S]
    # plain-PyTorch logits of the new token over the whole cache, per GQA group (no K/V repeat):
    # [B, H_kv, g, S_max]
    qg4 = qd.float().view(bsz, h_kv, g, d)
    logits = torch.einsum("bkgd,bskd->bkgs", qg4, kc.float()) * scale
    # gate scores: per (sequence, kv head, block) max over the block's valid keys and the group's heads
    lg_valid = logits.masked_fill(~slot_ok[:, None, None, :], -math.inf)
    blk_scores = F.pad(lg_valid, (0, ndb * dbs - smax), value=-math.inf).view(bsz, h_kv, g, ndb, dbs)
    blk_scores = blk_scores.amax(dim=(2, 4))  # [B, H_kv, nb]
    blk = torch.arange(ndb, device=dev)
    dvalid = blk[None, None, :] * dbs < cache_seqlens[:, None, None]  # blocks holding valid slots
    dlast = blk[None, None, :] == ((cache_seqlens.long() - 1) // dbs)[:, None, None]  # newest token's block

    def decode_ref(mask):  # plain-PyTorch attention over the kept, valid slots
        allow = mask.repeat_interleave(dbs, -1)[..., :smax] & slot_ok[:, None, :]  # [B, H_kv, S]
        p = torch.softmax(logits.masked_fill(~allow[:, :, None, :], -math.inf), -1).nan_to_num(0.0)
        return torch.einsum("bkgs,bskd->bkgd", p, vc.float()).reshape(bsz, h_q, d)

    dense_dec = decode_ref(dvalid.expand(bsz, h_kv, ndb))
    kv_bytes = 2 * d * qd.element_size()  # K + V bytes of one slot of one kv head
    print(f"\nblock-sparse decode: batch {bsz}, S_max {smax}, cache_seqlens in [{smax // 16}, {smax}], "
          f"block {dbs}  [{paths.get('block_sparse_decode', '?')}]")
    print(f"  {'form':<8} {'target':>6} {'kept':>6}  {'rel err vs masked':>17} {'vs dense':>9}  "
          f"{'time ms':>9} {'GB/s kept':>9}")
    for dens in args.densities:
        dmask = top_fraction_to_mask(blk_scores, dens, valid=dvalid, force=dlast)
        dind = mask_to_indices(dmask)  # int32 [B, H_kv, nb], -1 padded
        ref = decode_ref(dmask)
        kept_slots = ((dmask.repeat_interleave(dbs, -1)[..., :smax]) & slot_ok[:, None, :]).sum().item()
        kept = (dmask & dvalid).sum().item() / dvalid.expand_as(dmask).sum().item()
        for form, kw in (("mask", dict(block_mask=dmask)), ("indices", dict(block_indices=dind))):
            def dec(kw=kw):
                return block_sparse_decode(qd, kc, vc, cache_seqlens, block_size=dbs, sm_scale=scale, **kw)

            out, t = timed(dec, dev)
            e = rel_err(out, ref)
            worst = max(worst, e)
            if on_cuda:
                t = timeit(dec, dev, reps)
            gbs = f"{kept_slots * kv_bytes / (t * 1e-3) / 1e9:.1f}" if on_cuda else "-"
            print(f"  {form:<8} {dens:>6.2f} {kept:>6.3f}  {e:>17.2e} {rel_err(out, dense_dec):>9.2e}  "
                  f"{t:>9.3f} {gbs:>9}")

    tol = 2e-2
    verdict = "OK" if worst < tol else "MISMATCH"
    print(f"\nworst relative error vs plain PyTorch with the same mask: {worst:.2e} ({verdict}, "
          f"tolerance {tol:g} for {args.dtype}); 'vs dense' is what the sparsity itself changes.")
    print(f"total demo time {time.perf_counter() - t_start:.1f} s")
    return 0 if worst < tol else 1


if __name__ == "__main__":
    sys.exit(main())
