"""seer_attn end-to-end demo: the job the library exists for.

1. build a packed varlen batch with GQA (q/k carry a positional signal so attention is local, as in
   a real model, plus noise),
2. compute the gate's distillation targets with attention pooling (2D per query head, 1D per token
   reduced over each GQA group),
3. derive block masks from them at several densities (keep the top-scoring fraction of each row's
   causal blocks, always keeping the diagonal block; plus one threshold-derived 2D mask),
4. run 2D and 1D block-sparse attention forward + backward and block-sparse decode (mask and
   indices forms) at each density,
5. print, per density: the kept fraction of causal blocks, the error against the package's
   pure-PyTorch reference (``seer_attn.reference``, run on the same device) with the same mask
   (correctness: out, dq, dk, dv) and against dense causal attention (what the sparsity costs), and
   the time; plus which implementation ran each op.

Runs on CUDA (larger sizes, CUDA-event timing: ``common.Timer``) or on CPU (small sizes; there the ops
ARE the reference, so the errors are 0 by construction: the CPU test suite checks the reference
against float64; under a minute). Usage: python benchmarks/demo.py [--device cpu|cuda] [--small]
[--densities ...]
"""
import argparse
import math
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common as C  # noqa: E402

seer_attn = C.import_seer_attn()
from seer_attn import reference as R  # noqa: E402
from seer_attn import (  # noqa: E402
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


def reference_attention(kind, q, k, v, mask, cu_t, msl, bs, scale, dout=None):
    """The package's reference (pure PyTorch, float32 inside) on the inputs' device: out, and with
    ``dout`` also (dq, dk, dv)."""
    geo = dict(cu_seqlens_q=cu_t, cu_seqlens_k=cu_t, max_seqlen_q=msl, max_seqlen_k=msl, block_mask=mask,
               block_size_k=bs, sm_scale=scale, causal=True)
    if kind == "2d":
        geo["block_size_q"] = bs
    fwd = R.block_sparse_2d_fwd if kind == "2d" else R.block_sparse_1d_fwd
    bwd = R.block_sparse_2d_bwd if kind == "2d" else R.block_sparse_1d_bwd
    out, lse = fwd(q, k, v, **geo)
    if dout is None:
        return out
    return (out, *bwd(dout, q, k, v, out, lse, None, deterministic=False, **geo))


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
    T, msl = sum(seqlens), max(seqlens)
    cu_t = C.cu_seqlens_of(seqlens, dev)
    scale = 1.0 / math.sqrt(d)
    on_cuda = dev.type == "cuda"  # CPU: every time is a single (first) call, for orientation only
    timer = C.Timer(dev, target_ms=100.0 if on_cuda else 0.0, min_reps=cfg["reps"])

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
    print("times: " + (f"median of >= {cfg['reps']} CUDA-event timings after warm-up (L2 flushed)" if on_cuda else
                       "one call each on CPU (pure-PyTorch reference, orientation only)"))

    data = PositionalData(h_q, h_kv, d, scale, gen, dev)
    pos = torch.cat([torch.arange(n, device=dev) for n in seqlens])  # position inside its sequence
    q, k, v = data.q(pos, dtype), data.k(pos, dtype), data.v((T,), dtype)
    dout = torch.randn(T, h_q, d, generator=gen, device=dev).to(dtype)

    # ---- 1. pooling targets -------------------------------------------------------------------
    # 2D targets per query head [B, H_q, nb, nb]; 1D targets reduced over each GQA group [H_kv, T, nb]
    _, pooled_1d_g = attention_pooling(q, k, cu_t, msl, block_size=bs, gqa_reduce=True)
    (pooled_2d, _), t_pool = timer.once(lambda: attention_pooling(q, k, cu_t, msl, block_size=bs))
    if on_cuda:
        t_pool = timer(lambda: attention_pooling(q, k, cu_t, msl, block_size=bs))["median_ms"]
    ref_2d = R.attn_pooling(q, k, cu_t, msl, scale, bs, True, False)[0]
    ref_1d_g = R.attn_pooling(q, k, cu_t, msl, scale, bs, True, True)[1]
    pool_errs = [rel_err(pooled_2d, ref_2d), rel_err(pooled_1d_g, ref_1d_g)]
    print(f"\nattention pooling: pooled_2d {list(pooled_2d.shape)} float32, pooled_1d (GQA-reduced, packed) "
          f"{list(pooled_1d_g.shape)}; {t_pool:.2f} ms [{paths.get('attn_pooling', '?')}]; "
          f"rel err vs the reference (2d/1d-gqa) {fmt_errs(pool_errs)}")

    # block geometry: causal blocks per row, and the diagonal block that every row keeps
    valid2 = causal_block_mask(cu_t, msl, msl, bs, bs)  # [B, 1, nb, nb]
    diag2 = diagonal_block_mask(cu_t, msl, msl, bs, bs)
    valid1 = causal_block_mask(cu_t, msl, msl, 1, bs)  # [B, 1, msl, nb] per token
    diag1 = diagonal_block_mask(cu_t, msl, msl, 1, bs)
    scores_1d = padded_from_packed(pooled_1d_g, cu_t, msl)  # [B, H_kv, msl, nb]

    # ---- dense baseline: the package's pure-PyTorch reference with every causal block kept ------
    dense_out, t_dense = timer.once(lambda: reference_attention("2d", q, k, v, valid2, cu_t, msl, bs, scale))
    print(f"dense causal attention, pure-PyTorch reference (seer_attn.reference): fwd {t_dense:.2f} ms")

    def kept_fraction(mask, valid):
        m = (mask != 0) & valid
        return (m.sum() / valid.expand_as(m).sum()).item()

    def run_attention(kind, mask, label, density_shown):
        """Run fwd and fwd+bwd, check against the reference with the same mask, time both."""
        qg, kg, vg = (x.detach().clone().requires_grad_() for x in (q, k, v))
        if kind == "2d":
            def fwd(q_=qg, k_=kg, v_=vg):
                return block_sparse_attn_2d(q_, k_, v_, mask, cu_t, cu_t, msl, msl,
                                            block_size_q=bs, block_size_k=bs, sm_scale=scale)

            valid = valid2
        else:
            def fwd(q_=qg, k_=kg, v_=vg):
                return block_sparse_attn_1d(q_, k_, v_, mask, cu_t, cu_t, msl, msl,
                                            block_size_k=bs, sm_scale=scale)

            valid = valid1

        out, t_f = timer.once(fwd)
        (dq, dk, dv), t_b = timer.once(lambda: torch.autograd.grad(out, (qg, kg, vg), dout))
        t_fb = t_f + t_b
        if args.no_grad_check:
            errs = [rel_err(out, reference_attention(kind, q, k, v, mask, cu_t, msl, bs, scale))]
        else:
            refs = reference_attention(kind, q, k, v, mask, cu_t, msl, bs, scale, dout)
            errs = [rel_err(x, r) for x, r in zip((out, dq, dk, dv), refs)]
        e_dense = rel_err(out, dense_out)

        def fwd_only():
            with torch.no_grad():
                fwd()

        def fwd_bwd():
            o = fwd()
            torch.autograd.backward(o, dout)

        if on_cuda:
            t_f = timer(fwd_only)["median_ms"]
            t_fb = timer(fwd_bwd)["median_ms"]
        kept = kept_fraction(mask, valid)
        print(f"  {label:<10} {density_shown:>6} {kept:>6.3f}  {fmt_errs(errs):<31} {e_dense:>9.2e}"
              f"  {t_f:>9.3f} {t_fb:>11.3f}")
        return errs

    header = (f"  {'mask':<10} {'target':>6} {'kept':>6}  {'rel err vs masked (out/dq/dk/dv)':<31} "
              f"{'vs dense':>9}  {'fwd ms':>9} {'fwd+bwd ms':>11}")
    worst = max(pool_errs)

    # ---- 2. 2D block-sparse attention, 3. 1D per-token attention (mask shared by each GQA group) -----
    sections = (("2d", "2D block mask [B, H_q, nb, nb] from pooled_2d (top fraction of each row's causal blocks)",
                 pooled_2d, valid2, diag2),
                ("1d", "1D per-token mask [B, H_kv, T, nb] from GQA-reduced pooled_1d", scores_1d, valid1, diag1))
    for kind, title, scores, valid, diag in sections:
        print(f"\n{title}  [{paths.get(f'block_sparse_{kind}_fwd', '?')}]")
        print(header)
        for dens in args.densities:
            m = top_fraction_to_mask(scores, dens, valid=valid, force=diag)
            worst = max(worst, max(run_attention(kind, m, "top-frac", f"{dens:.2f}")))
        if kind == "2d":
            m2t = threshold_to_mask(pooled_2d, args.threshold, keep_diagonal=True)
            worst = max(worst, max(run_attention("2d", m2t, f">{args.threshold:g}", "-")))

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
    # the gate's logits of the new token over the whole cache, per GQA group (no K/V repeat):
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

    def decode_ref(mask):  # the package's reference over the kept, valid slots
        return R.block_sparse_decode(qd, kc, vc, cache_seqlens, block_mask=mask, block_indices=None,
                                     block_size=dbs, sm_scale=scale, left_pad=False, first_block_unmasked=False,
                                     num_splits=0)[0]

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

            out, t = timer.once(dec)
            e = rel_err(out, ref)
            worst = max(worst, e)
            if on_cuda:
                t = timer(dec)["median_ms"]
            gbs = f"{kept_slots * kv_bytes / (t * 1e-3) / 1e9:.1f}" if on_cuda else "-"
            print(f"  {form:<8} {dens:>6.2f} {kept:>6.3f}  {e:>17.2e} {rel_err(out, dense_dec):>9.2e}  "
                  f"{t:>9.3f} {gbs:>9}")

    tol = 2e-2
    verdict = "OK" if worst < tol else "MISMATCH"
    print(f"\nworst relative error vs the pure-PyTorch reference with the same mask: {worst:.2e} ({verdict}, "
          f"tolerance {tol:g} for {args.dtype}); 'vs dense' is what the sparsity itself changes.")
    print(f"total demo time {time.perf_counter() - t_start:.1f} s")
    return 0 if worst < tol else 1


if __name__ == "__main__":
    sys.exit(main())
