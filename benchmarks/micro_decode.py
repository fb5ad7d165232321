#!/usr/bin/env python
"""Micro-benchmark + check of seer_attn.block_sparse_decode on workload D1 (../shared/WORKLOADS.md).

    PYTHONPATH=. python benchmarks/micro_decode.py [--out micro_decode.json] [--reps 30] [--quick]

1. Checks a few small cases against a float64 reference written here (out and lse; mask and index
   forms, lengths 0 / 1 / block+1 / full, left padding, first_block_unmasked, D 64/128/256, fp16 /
   bf16, num_splits auto / 1 / forced large, row-adaptive splitting on and off).
2. Times D1 (batch 32, S_max 32768, H_q 32, H_kv 8, D 128, bf16, cache_seqlens uniform in
   [1024, 32768], one at 32768): block 32 / 64, d 0.1 / 0.25 / 0.5, mask and indices. Per case:
   the automatic split count (row-adaptive, the default), the v0 behaviour (SEER_DECODE_MIN_SPLIT_KEYS=0:
   uniform splits, 4-wave heuristic) as a same-card baseline, other min_split_keys values, and
   num_splits forced to a few values (so one sees whether the heuristic's choice is near the best).
   CUDA events around each call, L2 flushed before each rep, median of --reps (>= 20).
GB/s = kept K+V bytes (valid slots of the kept blocks) / time; %copy against a device-to-device copy
measured here. Under 60 s on one H100.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import workloads as W  # noqa: E402

ENV = "SEER_DECODE_MIN_SPLIT_KEYS"


def sa():
    try:
        import seer_attn
    except ImportError:
        sys.path.insert(0, os.path.dirname(HERE))
        import seer_attn
    return seer_attn


def call(q, kc, vc, lens, bs, mask=None, idx=None, num_splits=0, left_pad=False, fbu=False, lse=False, scale=None):
    return sa().block_sparse_decode(q, kc, vc, lens, block_mask=mask, block_indices=idx, block_size=bs,
                                    sm_scale=scale, left_pad=left_pad, first_block_unmasked=fbu,
                                    num_splits=num_splits, return_lse=lse)


class min_split_keys:
    """Context manager setting SEER_DECODE_MIN_SPLIT_KEYS (None = the built-in default)."""

    def __init__(self, v):
        self.v = v

    def __enter__(self):
        self.old = os.environ.get(ENV)
        if self.v is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = str(self.v)

    def __exit__(self, *a):
        if self.old is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = self.old


# ---- float64 reference ---------------------------------------------------------------------------
def ref64(q, kc, vc, lens, bs, mask, idx, scale, left_pad, fbu):
    B, Hq, D = q.shape
    S, Hkv = kc.shape[1], kc.shape[2]
    g = Hq // Hkv
    nb = (S + bs - 1) // bs
    out = torch.zeros(B, Hq, D, dtype=torch.float64)
    lse = torch.full((B, Hq), -math.inf, dtype=torch.float64)
    qd, kd, vd = q.double().cpu(), kc.double().cpu(), vc.double().cpu()
    for b, L in enumerate(lens.cpu().tolist()):
        L = min(max(L, 0), S)
        if L == 0:
            continue
        lo, hi = (S - L, S) if left_pad else (0, L)
        for h in range(Hkv):
            sel = torch.zeros(nb, dtype=torch.bool)
            if mask is not None:
                sel = mask[b, h, :nb].cpu() != 0
            else:
                for n in idx[b, h].cpu().tolist():
                    if 0 <= n < nb:
                        sel[n] = True
            if fbu:
                sel[lo // bs] = True
            sl = torch.arange(lo, hi)
            sl = sl[sel[sl // bs]]
            if sl.numel() == 0:
                continue
            k, v = kd[b, sl, h], vd[b, sl, h]
            for j in range(g):
                hq = h * g + j
                s = (k @ qd[b, hq]) * scale
                m = s.max()
                p = torch.exp(s - m)
                out[b, hq] = (p @ v) / p.sum()
                lse[b, hq] = m + torch.log(p.sum())
    return out, lse


def check_cases(dev):
    torch.manual_seed(1)
    res = []
    cases = [
        # D, dtype, Hq, Hkv, S, bs, lens, left_pad, fbu
        (128, torch.bfloat16, 32, 8, 2048, 64, [2048, 1, 65, 0, 700, 1500], False, False),
        (128, torch.bfloat16, 32, 8, 4096, 32, [4096, 33, 3000, 1024], False, True),
        (64, torch.float16, 16, 2, 1024, 32, [1024, 1, 500, 999], True, True),
        (256, torch.bfloat16, 8, 8, 1024, 16, [1024, 17, 300], False, False),
    ]
    for D, dt, Hq, Hkv, S, bs, lens_l, lp, fbu in cases:
        B = len(lens_l)
        q = torch.randn(B, Hq, D, device=dev, dtype=dt)
        kc = torch.randn(B, S, Hkv, D, device=dev, dtype=dt)
        vc = torch.randn(B, S, Hkv, D, device=dev, dtype=dt)
        lens = torch.tensor(lens_l, device=dev, dtype=torch.int32)
        nb = (S + bs - 1) // bs
        scale = 1.0 / math.sqrt(D)
        for d in (0.1, 0.5):
            mask = torch.rand(B, Hkv, nb, device=dev) < d
            # index form: the same blocks, shuffled, -1 padded
            K = int(mask.sum(-1).max().item()) + 2
            idx = torch.full((B, Hkv, K), -1, dtype=torch.int32, device=dev)
            for b in range(B):
                for h in range(Hkv):
                    ids = torch.nonzero(mask[b, h]).flatten()
                    ids = ids[torch.randperm(ids.numel(), device=dev)]
                    idx[b, h, :ids.numel()] = ids.to(torch.int32)
            ro, rl = ref64(q, kc, vc, lens, bs, mask, None, scale, lp, fbu)
            for form in ("mask", "indices"):
                for msk in (None, 0, 16):
                    for ns in (0, 1, 3, 64):
                        with min_split_keys(msk):
                            o, l = call(q, kc, vc, lens, bs, mask=mask if form == "mask" else None,
                                        idx=idx if form == "indices" else None, num_splits=ns, left_pad=lp,
                                        fbu=fbu, lse=True, scale=scale)
                        torch.cuda.synchronize()
                        o, l = o.double().cpu(), l.double().cpu()
                        eo = float((o - ro).abs().max() / max(ro.abs().max().item(), 1e-6))
                        fin = torch.isfinite(rl)
                        ok_inf = bool(((~torch.isfinite(l)) == (~fin)).all())
                        el = float((l[fin] - rl[fin]).abs().max()) if fin.any() else 0.0
                        ok = eo < 2e-2 and el < 2e-2 and ok_inf and bool(torch.isfinite(o).all())
                        res.append({"D": D, "dtype": str(dt).split(".")[-1], "bs": bs, "d": d, "form": form,
                                    "min_split_keys": msk, "num_splits": ns, "left_pad": lp, "fbu": fbu,
                                    "err_out": eo, "err_lse": el, "lse_inf_match": ok_inf, "ok": ok})
    return res


# ---- timing ----------------------------------------------------------------------------------------
class Timer:
    def __init__(self, reps):
        self.reps = reps
        self.flush = torch.empty(64 << 20, dtype=torch.int32, device="cuda")

    def __call__(self, fn):
        for _ in range(3):
            fn()
        torch.cuda.synchronize()
        evs = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(self.reps)]
        for s, e in evs:
            self.flush.zero_()
            s.record()
            fn()
            e.record()
        torch.cuda.synchronize()
        ts = sorted(s.elapsed_time(e) for s, e in evs)
        n = len(ts)
        return (ts[n // 2] if n % 2 else 0.5 * (ts[n // 2 - 1] + ts[n // 2])) * 1e3  # us


def predicted_auto_splits(nb, bs, batch, h_kv, adaptive, sms, per_sm=2):
    """The decode_num_splits heuristic (csrc/decode/decode_dispatch.cu), D = 128 (2 CTAs / SM)."""
    work = batch * h_kv
    target = (12 if adaptive else 4) * sms * per_sm
    if work >= target:
        return 1
    s = -(-target // work)
    return max(1, min(s, max(1, nb * bs // 256), 64, nb))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=None)
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--quick", action="store_true", help="block 64 only, fewer forced split counts")
    a = ap.parse_args()
    a.reps = max(20, a.reps)
    t0 = time.time()
    dev = "cuda"
    prop = torch.cuda.get_device_properties(0)
    info = {"device": prop.name, "sms": prop.multi_processor_count, "torch": torch.__version__,
            "cuda": torch.version.cuda, "seer_attn": getattr(sa(), "__file__", "?")}
    print(f"# micro_decode on {prop.name} ({prop.multi_processor_count} SMs), torch {torch.__version__}, "
          f"CUDA {torch.version.cuda}", flush=True)

    checks = check_cases(dev)
    bad = [c for c in checks if not c["ok"]]
    print(f"checks: {len(checks) - len(bad)}/{len(checks)} ok; worst out err "
          f"{max(c['err_out'] for c in checks):.2e}, worst lse err {max(c['err_lse'] for c in checks):.2e} "
          f"({time.time() - t0:.1f} s)", flush=True)
    for c in bad[:20]:
        print("  FAILED", c, flush=True)

    timer = Timer(a.reps)
    # copy ceiling (read + write bytes)
    x = torch.empty(1 << 30, dtype=torch.bfloat16, device=dev).fill_(1.0)
    y = torch.empty_like(x)
    copy_us = timer(lambda: y.copy_(x))
    copy_gbs = 2 * x.numel() * 2 / (copy_us * 1e-6) / 1e9
    del x, y
    torch.cuda.empty_cache()
    print(f"copy ceiling: {copy_gbs:,.0f} GB/s", flush=True)

    w = W.FULL_WORKLOADS["D1"]
    inp = W.make_decode_inputs(w, dev)
    q, kc, vc, lens = inp["q"], inp["k_cache"], inp["v_cache"], inp["cache_seqlens"]
    blocks = (64,) if a.quick else (32, 64)
    forced = (2, 5, 8, 16, 32) if a.quick else (1, 2, 4, 5, 8, 12, 16, 24, 32, 48)
    rows = []
    print("\n| block | d | form | kept GB | config | us | GB/s | %copy |", flush=True)
    print("|---|---|---|---|---|---|---|---|", flush=True)
    for bs in blocks:
        nb = (w.s_max + bs - 1) // bs
        for d in (0.1, 0.25, 0.5):
            m = W.decode_mask(lens, W.H_KV, w.s_max, bs, d)
            idx = W.mask_to_indices_sorted(m)
            kept = W.decode_kept_kv_bytes(m, lens, bs)
            # quick correctness of the D1 case itself (auto splits) against the float32 reference
            # on two sequences (the longest and a short one)
            chk = [0, int(torch.argmin(lens).item())]
            ref = W.ref_decode(q[chk], kc[chk], vc[chk], [inp["lens_host"][b] for b in chk], m[chk], bs)
            for form in ("mask", "indices"):
                kw = {"mask": m} if form == "mask" else {"idx": idx}
                err = W.rel_err(call(q, kc, vc, lens, bs, **kw)[chk], ref)
                configs = [("auto (new default)", None, 0), ("auto, v0 (uniform splits)", 0, 0),
                           ("auto, min_split_keys 128", 128, 0), ("auto, min_split_keys 512", 512, 0)]
                configs += [(f"splits {s} (adaptive)", None, s) for s in forced]
                configs += [(f"splits {s} (uniform)", 0, s) for s in (5, 16)]
                for name, msk, ns in configs:
                    with min_split_keys(msk):
                        us = timer(lambda: call(q, kc, vc, lens, bs, num_splits=ns, **kw))
                    gbs = kept / (us * 1e-6) / 1e9
                    r = {"block": bs, "d": d, "form": form, "kept_bytes": kept, "config": name,
                         "min_split_keys": msk, "num_splits": ns, "us": us, "gbs": gbs,
                         "pct_copy": 100 * gbs / copy_gbs, "d1_check_rel_err": err}
                    if ns == 0:
                        r["predicted_splits"] = predicted_auto_splits(nb, bs, w.batch, W.H_KV, msk != 0,
                                                                      prop.multi_processor_count)
                    rows.append(r)
                    print(f"| {bs} | {d:g} | {form} | {kept / 1e9:.3f} | {name}"
                          + (f" [{r['predicted_splits']}]" if ns == 0 else "")
                          + f" | {us:.1f} | {gbs:,.0f} | {r['pct_copy']:.0f} |", flush=True)
                best = min((r for r in rows if r["block"] == bs and r["d"] == d and r["form"] == form),
                           key=lambda r: r["us"])
                auto = [r for r in rows if r["block"] == bs and r["d"] == d and r["form"] == form
                        and r["config"].startswith("auto (new")][0]
                print(f"|  |  |  |  | -> best: {best['config']} {best['us']:.1f} us; auto/best = "
                      f"{auto['us'] / best['us']:.2f}; D1 check rel err {err:.1e} |  |  |  |", flush=True)
            del m, idx
    print(f"\ntotal {time.time() - t0:.1f} s", flush=True)
    res = {"info": info, "copy_gbs": copy_gbs, "checks": checks, "rows": rows,
           "checks_ok": not bad, "seconds": time.time() - t0}
    if a.out:
        os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
        with open(a.out, "w") as f:
            json.dump(res, f, indent=1)
        print(f"wrote {a.out}")
    return 0 if not bad else 1


if __name__ == "__main__":
    sys.exit(main())
