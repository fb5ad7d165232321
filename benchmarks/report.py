"""Anchors (the numbers to beat), markdown tables and the speedup-vs-density plot.

The anchor values below are transcribed from ../shared/ANCHORS.md ("Anchors: the numbers to beat",
measured on one H100 80GB HBM3, torch 2.11.0+cu130, triton 3.6.0, 2026-11-28). They are printed
beside the numbers measured in this run; only the numbers measured in this run are comparable
between rows of one run, the anchors come from another process (same machine type).
"""
from __future__ import annotations

import json
import math
import os

# ---- ANCHORS.md ---------------------------------------------------------------------------------
# (op, workload, density) -> (fwd ms, fwd+bwd ms)
SEED_2D = {
    ("P1", 1.0): (12.61, 55.62), ("P1", 0.5): (6.79, 31.57), ("P1", 0.2): (3.42, 17.21), ("P1", 0.1): (2.30, 12.80),
    ("P2", 1.0): (147.1, 686.2), ("P2", 0.5): (77.0, 363.3), ("P2", 0.2): (36.0, 187.6), ("P2", 0.1): (22.2, 135.7),
}
FLEX_2D = {
    ("P1", 1.0): (17.16, 57.72), ("P1", 0.5): (11.26, 36.96), ("P1", 0.2): (7.08, 23.01), ("P1", 0.1): (5.60, 17.99),
    ("P2", 1.0): (133.0, 415.5), ("P2", 0.5): (67.7, 210.7), ("P2", 0.2): (27.6, 87.2), ("P2", 0.1): (14.5, 46.8),
}
DENSE_FA2 = {"P1": (8.39, 32.05), "P2": (97.9, 376.7)}  # PyTorch's bundled FA2 varlen, causal
FA4_DENSE = {"P1": (4.16, 17.15), "P2": (50.3, 191.2)}  # strongest peer, dense varlen causal
# FA4 block-sparse forward, 64x64 blocks (ms); P2 fwd+bwd only at 64(q)x128(kv) -> not comparable
FA4_SPARSE_FWD = {("P2", 1.0): 77.8, ("P2", 0.5): 39.8, ("P2", 0.2): 16.3, ("P2", 0.1): 8.47,
                  ("P1", 0.5): 3.62, ("P1", 0.2): 1.72, ("P1", 0.1): 1.11}
# 1D, GQA-shared block-structured mask: seed GQA kernel and flex
SEED_1D_GQA = {("P1", 1.0): (129.8, 400.5), ("P1", 0.5): (67.2, 210.8), ("P1", 0.2): (30.4, 100.9),
               ("P1", 0.1): (18.4, 65.1), ("P2", 1.0): (1545.0, 5048.0), ("P2", 0.1): (206.0, 747.7)}
SEED_1D_SIM = {("P1", 1.0): (21.3, 186.0), ("P1", 0.5): (21.3, 186.0), ("P1", 0.2): (21.1, 185.7),
               ("P1", 0.1): (21.1, 186.0), ("P2", 1.0): (253.7, 2241.0), ("P2", 0.1): (253.9, 2242.0)}
FLEX_1D = {("P1", 1.0): (17.57, 58.65), ("P1", 0.5): (11.71, 38.07), ("P1", 0.2): (7.50, 23.80),
           ("P1", 0.1): (6.06, 18.94), ("P2", 1.0): (133.1, 418.0), ("P2", 0.1): (15.3, 49.6)}
SEED_POOL = {"P1": (10.00, 371.0)}  # ms, MiB above inputs (forward only)
# decode D1: (block, density) -> (seed mask us, seed indices us)
SEED_DECODE = {(32, 0.1): (236.0, 185.0), (32, 0.25): (471.0, 430.0), (32, 0.5): (856.0, 830.0),
               (64, 0.1): (171.0, 161.0), (64, 0.25): (346.0, 336.0), (64, 0.5): (649.0, 644.0)}
DENSE_DECODE = {"FA2 varlen": 1497.0, "FlexAttention": 1439.0}  # us
FIRST_CALL = {"seed 2D": (3.2, 3.4), "seed 1D GQA": (11.5, 38.2), "seed decode": (16.5, None),
              "flex 2D": (6.1, 7.7)}  # s, fwd / fwd+bwd
CEILINGS = {"matmul_tflops": 785.0, "copy_gbs": 3022.0}

ANCHORS = {
    "source": "../shared/ANCHORS.md (H100 80GB HBM3, torch 2.11.0+cu130, triton 3.6.0)",
    "seed_2d": {f"{w}@{d}": v for (w, d), v in SEED_2D.items()},
    "flex_2d": {f"{w}@{d}": v for (w, d), v in FLEX_2D.items()},
    "dense_fa2": DENSE_FA2, "fa4_dense": FA4_DENSE,
    "fa4_sparse_fwd": {f"{w}@{d}": v for (w, d), v in FA4_SPARSE_FWD.items()},
    "seed_1d_gqa": {f"{w}@{d}": v for (w, d), v in SEED_1D_GQA.items()},
    "seed_1d_sim": {f"{w}@{d}": v for (w, d), v in SEED_1D_SIM.items()},
    "flex_1d": {f"{w}@{d}": v for (w, d), v in FLEX_1D.items()},
    "seed_pool": SEED_POOL,
    "seed_decode_us": {f"bs{b}@{d}": v for (b, d), v in SEED_DECODE.items()},
    "dense_decode_us": DENSE_DECODE, "first_call_s": FIRST_CALL, "ceilings": CEILINGS,
}


def seed_anchor(op, variant, w, d):
    """(fwd ms, fwd+bwd ms, label) of the seed kernel for a prefill case, or None."""
    key = (w, round(float(d), 4))
    if op == "2d":
        v = SEED_2D.get(key)
        return (v[0], v[1], "seed") if v else None
    if op == "1d":
        if variant == "head":
            v = SEED_1D_SIM.get(key)
            return (v[0], v[1], "seed sim") if v else None
        v = SEED_1D_GQA.get(key)
        if not v:
            return None
        return (v[0], v[1], "seed GQA" if variant == "gqa" else "seed GQA*")
    return None


def flex_anchor(op, w, d):
    key = (w, round(float(d), 4))
    return (FLEX_2D if op == "2d" else FLEX_1D).get(key)


# ---- formatting ---------------------------------------------------------------------------------
def _f(x, nd=2):
    if x is None:
        return "-"
    if isinstance(x, str):
        return x
    if isinstance(x, float) and (math.isnan(x) or math.isinf(x)):
        return str(x)
    if abs(x) >= 1000 or nd == 0:
        return f"{x:,.0f}"
    if abs(x) >= 100:
        return f"{x:.1f}"
    return f"{x:.{nd}f}"


def _pair(a, b, nd=2):
    if a is None and b is None:
        return "-"
    return f"{_f(a, nd)} / {_f(b, nd)}"


def _ratio(num, den):
    if num is None or den is None or den == 0:
        return None
    return num / den


def _err(m):
    e = m.get("error") if m else None
    if not e:
        return None
    e = str(e).replace("|", "/").replace("\n", " ")
    return "ERR: " + e[:90]


def header(env, ceil):
    lines = []
    if env:
        lines.append(f"- device: **{env.get('device_name')}** ({env.get('sm_count')} SMs), torch {env.get('torch')}, "
                     f"CUDA {env.get('cuda')}, triton {env.get('triton')}, cuDNN {env.get('cudnn')}, "
                     f"python {env.get('python')}")
        if env.get("seer_attn"):
            lines.append(f"- seer_attn: {env.get('seer_attn')}")
    if ceil:
        if ceil.get("error"):
            lines.append(f"- ceilings: ERR {ceil['error']}")
        else:
            lines.append(f"- ceilings measured in this run: bf16 8192^3 matmul **{_f(ceil.get('matmul_tflops'))} TFLOP/s**; "
                         f"device-to-device copy **{_f(ceil.get('copy_gbs'))} GB/s** (read+write) "
                         f"[anchor run: {CEILINGS['matmul_tflops']:.0f} TFLOP/s, {CEILINGS['copy_gbs']:,.0f} GB/s]")
    return "\n".join(lines)


def _meas(cases, **kw):
    out = [c for c in cases if all(c.get(k) == v for k, v in kw.items())]
    return out[0] if out else None


def prefill_table(res, op):
    cases = [c for c in res.get("cases", []) if c.get("op") == op]
    if not cases:
        return ""
    variants = []
    for c in cases:
        if c["variant"] not in variants:
            variants.append(c["variant"])
    title = {"2d": "2D block mask", "1d": "1D per-token mask"}[op]
    lines = [f"## {title}", ""]
    lines.append("TF/s = effective on kept causal pairs (fwd 4·pairs·D, fwd+bwd 14·pairs·D over the f+b time). "
                 "mem = peak allocated above inputs (MiB). 1st = first call of that case in its process (s). "
                 "x seed / x flex = their time / ours (>1: we are faster); flex measured in this run, seed from "
                 "ANCHORS.md. t/t1 = time / time at d = 1.0 (ideal: the kept fraction).")
    lines.append("")
    for var in variants:
        vc = [c for c in cases if c["variant"] == var]
        if op == "1d":
            desc = {"gqa": "GQA-shared mask (H_mask = H_kv), block-structured rows",
                    "head": "per-head mask (H_mask = H_q, GQA mask repeated over each group; seed 'sim' layout)",
                    "token": "GQA-shared mask, every token row drawn independently (hard case)"}.get(var, var)
            lines.append(f"### 1D {var}: {desc}")
            lines.append("")
        lines.append("| W | d | kept | ours fwd / f+b ms | TF/s fwd / f+b | mem fwd / f+b | 1st fwd / f+b s | "
                     "flex fwd / f+b ms | flex TF/s | seed (anchor) ms | x seed fwd / f+b | x flex fwd / f+b | t/t1 fwd / f+b |")
        lines.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        workloads = []
        for c in vc:
            if c["workload"] not in workloads:
                workloads.append(c["workload"])
        for w in workloads:
            wc = sorted([c for c in vc if c["workload"] == w], key=lambda c: -c["density"])
            base = {}
            for c in wc:
                if abs(c["density"] - 1.0) < 1e-9:
                    o = c.get("ours", {})
                    base = {"fwd": o.get("fwd_ms"), "fb": o.get("fb_ms")}
            for c in wc:
                o = c.get("ours", {}) or {}
                fx = c.get("flex", {}) or {}
                sa = seed_anchor(op, var, w, c["density"])
                ours_t = _err(o) or _pair(o.get("fwd_ms"), o.get("fb_ms"))
                flex_t = _err(fx) or (fx.get("note") if fx.get("note") and fx.get("fwd_ms") is None else
                                      _pair(fx.get("fwd_ms"), fx.get("fb_ms")))
                seed_t = f"{_pair(sa[0], sa[1])} ({sa[2]})" if sa else "-"
                xs = _pair(_ratio(sa[0], o.get("fwd_ms")), _ratio(sa[1], o.get("fb_ms"))) if sa else "-"
                xf = _pair(_ratio(fx.get("fwd_ms"), o.get("fwd_ms")), _ratio(fx.get("fb_ms"), o.get("fb_ms")))
                tt = _pair(_ratio(o.get("fwd_ms"), base.get("fwd")), _ratio(o.get("fb_ms"), base.get("fb")))
                lines.append(
                    f"| {w} | {c['density']:g} | {_f(c.get('kept_fraction'), 3)} | {ours_t} | "
                    f"{_pair(o.get('fwd_tflops'), o.get('fb_tflops'), 0)} | "
                    f"{_pair(o.get('fwd_mem_mib'), o.get('fb_mem_mib'), 0)} | "
                    f"{_pair(o.get('fwd_first_s'), o.get('fb_first_s'), 3)} | {flex_t} | "
                    f"{_pair(fx.get('fwd_tflops'), fx.get('fb_tflops'), 0)} | {seed_t} | {xs} | {xf} | {tt} |")
        lines.append("")
    # dense FA and flex details per workload
    fa = [c for c in res.get("cases", []) if c.get("op") == "fa_dense"]
    if fa:
        lines.append("Dense causal FlashAttention varlen (PyTorch bundled), measured in this run "
                     "(the d = 1.0 yardstick; 'ours/FA' = our d = 1.0 time / FA time, target <= 1.10):")
        lines.append("")
        lines.append("| W | entry point | FA fwd / f+b ms | FA TF/s | ours(d=1)/FA fwd / f+b | anchor FA2 ms | anchor FA4 ms |")
        lines.append("|---|---|---|---|---|---|---|")
        for c in fa:
            w = c["workload"]
            m = c.get("fa", {}) or {}
            ref = _meas(cases, workload=w, density=1.0, variant=cases[0]["variant"]) if cases else None
            o = (ref or {}).get("ours", {}) or {}
            lines.append(f"| {w} | {m.get('entry') or '-'} | {_err(m) or _pair(m.get('fwd_ms'), m.get('fb_ms'))} | "
                         f"{_pair(m.get('fwd_tflops'), m.get('fb_tflops'), 0)} | "
                         f"{_pair(_ratio(o.get('fwd_ms'), m.get('fwd_ms')), _ratio(o.get('fb_ms'), m.get('fb_ms')))} | "
                         f"{_pair(*DENSE_FA2[w]) if w in DENSE_FA2 else '-'} | {_pair(*FA4_DENSE[w]) if w in FA4_DENSE else '-'} |")
        lines.append("")
    if op == "2d":
        fa4 = [(w, d, v) for (w, d), v in FA4_SPARSE_FWD.items()]
        lines.append("FA4 block-sparse forward anchors (64x64, ms): " +
                     ", ".join(f"{w} d={d:g}: {v}" for w, d, v in fa4) + ".")
        lines.append("")
    if op == "1d":
        lines.append("*seed GQA anchor was measured on the block-structured mask; the seed GQA kernel runs one token "
                     "per program, so its time does not depend on the row structure. Flex for the per-head variant does "
                     "the same work as for the GQA variant (same pairs), so it is not re-measured.")
        lines.append("")
    lines.extend(flex_info_lines(cases))
    return "\n".join(lines)


def flex_info_lines(cases):
    """Which flex candidate (compile mode + kernel options) worked per workload and grad mode, and
    the failed attempts (compact reasons)."""
    out = []
    seen = set()
    for c in cases:
        info = c.get("flex_info")
        if not info:
            continue
        if isinstance(info, str):  # results of older harness versions
            key = (c["workload"], info)
            if key not in seen:
                seen.add(key)
                out.append(f"- {c['workload']}: {info}")
            continue
        for mode, u in info.items():
            key = (c["workload"], mode, u.get("candidate"))
            if key in seen:
                continue
            seen.add(key)
            out.append(f"- {c['workload']} {'fwd' if mode == 'fwd' else 'fwd+bwd'}: candidate "
                       f"**{u.get('candidate')}** (torch.compile mode `{u.get('compile_mode')}`), kernel_options "
                       f"`{u.get('kernel_options')}`; cold first call {_f(u.get('first_call_s'), 1)} s"
                       + (f" (+{_f(u.get('failed_attempts_s'), 1)} s in failed candidates before it)"
                          if u.get("failed_attempts_s") else ""))
    fails = []
    for c in cases:
        for t in (c.get("flex") or {}).get("tried", []) or []:
            if "FAILED" in t and t not in fails:
                fails.append(t)
    if not out and not fails:
        return []
    lines = ["Flex configuration (see baselines.FLEX_CANDIDATES; tried in order on the first call, the first "
             "that compiles and runs is kept):", ""] + out
    if fails:
        lines.append("- failed attempts: " + "; ".join(f.replace("|", "/") for f in fails[:8])
                     + (f" (+{len(fails) - 8} more in results.json)" if len(fails) > 8 else ""))
    lines.append("")
    return lines


def _secs(x):
    """A duration in s, in ms below 1 s (first calls of loaded kernels are sub-millisecond)."""
    if x is None:
        return "-"
    if x < 1.0:
        return f"{x * 1e3:.2f} ms" if x < 0.1 else f"{x * 1e3:.0f} ms"
    return f"{x:.2f} s"


def pool_table(res):
    cases = [c for c in res.get("cases", []) if c.get("op") == "pool"]
    if not cases:
        return ""
    lines = ["## Attention pooling (forward only, no gradient)", "",
             "mem = peak allocated above inputs, outputs included (MiB). TF/s counts one QK^T per causal pair "
             "(2·pairs·D), a lower bound on the work done.", "",
             "| W | variant | ms | TF/s (QK^T) | mem MiB | 1st call | seed ms / MiB (anchor) | x seed | "
             "PyTorch reference on GPU ms / MiB | x reference |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for c in cases:
        o = c.get("ours", {}) or {}
        r = c.get("ref", {}) or {}
        sa = SEED_POOL.get(c["workload"]) if c["variant"] == "per_head" else None
        ref_cell = (_err(r) or _pair(r.get("fwd_ms"), r.get("fwd_mem_mib"))) if r else "-"
        lines.append(f"| {c['workload']} | {c['variant']} | {_err(o) or _f(o.get('fwd_ms'))} | {_f(o.get('fwd_tflops'), 0)} | "
                     f"{_f(o.get('fwd_mem_mib'), 0)} | {_secs(o.get('fwd_first_s'))} | "
                     f"{_pair(sa[0], sa[1]) if sa else '-'} | {_f(_ratio(sa[0], o.get('fwd_ms'))) if sa else '-'} | "
                     f"{ref_cell} | {_f(_ratio(r.get('fwd_ms'), o.get('fwd_ms'))) if r else '-'} |")
    lines.append("")
    return "\n".join(lines)


def decode_table(res):
    cases = [c for c in res.get("cases", []) if c.get("op") == "decode"]
    dense = [c for c in res.get("cases", []) if c.get("op") == "dense_decode"]
    if not cases and not dense:
        return ""
    ceil = (res.get("ceilings") or {}).get("copy_gbs")
    lines = ["## Block-sparse decode (D1)", "",
             "L = new query tokens per sequence; layout: contiguous cache [B, S_max, H_kv, D] or paged<page size> "
             "(the same cache in pages of that size, random page order, block_table). "
             "GB/s = kept K+V bytes (valid slots of the kept blocks, read once whatever L) / time. %copy = GB/s / measured copy ceiling. "
             "x dense = dense decode time (this run) / ours. 1st call = the first call of that case in its "
             "process, synchronised (host + launch + kernel; the kernels were already loaded by --check or the "
             "previous case, so it is not a cold start: cold first calls are listed below).", ""]
    dd = dense[0] if dense else None
    dm = (dd or {}).get("dense", {}) or {}
    if dd:
        lines.append(f"Dense decode over the same cache (this run): {dm.get('entry') or '-'}: "
                     f"{_err(dm) or _f(dm.get('us')) + ' us'} ({_f(dm.get('gbs'), 0)} GB/s on {_f(dd.get('dense_bytes', 0) / 1e9, 3)} GB); "
                     f"anchors: FA2 varlen {DENSE_DECODE['FA2 varlen']:.0f} us, flex {DENSE_DECODE['FlexAttention']:.0f} us.")
        lines.append("")
    lines.append("| layout | L | block | d | form | kept GB | ours us | GB/s | %copy | 1st call | seed us (anchor) | "
                 "x seed | x dense |")
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for c in cases:
        o = c.get("ours", {}) or {}
        layout, nt = c.get("layout", "contiguous"), c.get("new_tokens", 1)
        sa = SEED_DECODE.get((c["block"], round(c["density"], 4))) if layout == "contiguous" and nt == 1 else None
        s_us = (sa[0] if c["form"] == "mask" else sa[1]) if sa else None
        us = o.get("us")
        pct = _ratio(o.get("gbs"), ceil)
        splits = f" (splits {c['num_splits']})" if c.get("num_splits") else ""
        lines.append(f"| {layout} | {nt} | {c['block']} | {c['density']:g} | {c['form']}{splits} | "
                     f"{_f(c.get('kept_bytes', 0) / 1e9, 3)} | "
                     f"{_err(o) or _f(us)} | {_f(o.get('gbs'), 0)} | {_f(pct * 100 if pct else None, 0)} | "
                     f"{_secs(o.get('first_s'))} | {_f(s_us)} | {_f(_ratio(s_us, us))} | "
                     f"{_f(_ratio(dm.get('us'), us))} |")
    lines.append("")
    lines += decode_cost_model(cases)
    return "\n".join(lines)


def decode_cost_model(cases):
    """Lines of two decode summaries: per (layout, L, block, form) a least-squares fit of time = fixed +
    kept bytes / rate over the densities measured (at least two), and per (layout, L, block, form, density)
    the paged time over the contiguous one (#13: within 5%)."""
    groups, times = {}, {}
    for c in cases:
        us = (c.get("ours") or {}).get("us")
        if not us or c.get("num_splits"):
            continue
        key = (c.get("layout", "contiguous"), c.get("new_tokens", 1), c["block"], c["form"])
        groups.setdefault(key, []).append((c.get("kept_bytes", 0), us))
        times[key + (round(c["density"], 4),)] = us
    out = []
    fits = []
    for key, pts in groups.items():
        if len({b for b, _ in pts}) < 2:
            continue
        n = len(pts)
        mb = sum(b for b, _ in pts) / n
        mt = sum(t for _, t in pts) / n
        sbb = sum((b - mb) ** 2 for b, _ in pts)
        slope = sum((b - mb) * (t - mt) for b, t in pts) / sbb  # us per byte
        fixed = mt - slope * mb
        resid = max(abs(t - fixed - slope * b) for b, t in pts)
        fits.append((key, fixed, 1e-3 / slope if slope > 0 else None, resid, n))
    if fits:
        out += ["Cost model (least squares over the densities of each row): time = fixed + kept bytes / rate; "
                "the fixed part is what low densities pay beyond streaming.", "",
                "| layout | L | block | form | fixed us | rate GB/s | max residual us | points |",
                "|---|---|---|---|---|---|---|---|"]
        for (layout, nt, blk, form), fixed, rate, resid, n in fits:
            out.append(f"| {layout} | {nt} | {blk} | {form} | {_f(fixed, 1)} | {_f(rate, 0)} | {_f(resid, 1)} | {n} |")
        out.append("")
    paged = [(k, t) for k, t in times.items() if k[0] != "contiguous" and ("contiguous",) + k[1:] in times]
    if paged:
        out += ["Paged over contiguous (same L, block, form and density; target <= 1.05):", "",
                "| layout | L | block | form | d | paged / contiguous |", "|---|---|---|---|---|---|"]
        for k, t in sorted(paged):
            out.append(f"| {k[0]} | {k[1]} | {k[2]} | {k[3]} | {k[4]:g} | {_f(t / times[('contiguous',) + k[1:]], 3)} |")
        out.append("")
    return out


def checks_table(res):
    ch = res.get("checks", [])
    if not ch:
        return ""
    lines = ["## --check (small problem vs the package's pure-PyTorch reference, the same call on CPU, before timing)", "",
             "| op | variant | d | ok | max rel err |", "|---|---|---|---|---|"]
    for c in ch:
        errs = c.get("errs") or {}
        e = ", ".join(f"{k} {v:.2e}" for k, v in errs.items()) if errs else (c.get("error") or "-")
        lines.append(f"| {c['op']} | {c.get('variant', '')} | {c.get('density', '')} | {'yes' if c.get('ok') else '**NO**'} | "
                     f"{str(e).replace('|', '/')[:160]} |")
    lines.append("")
    return "\n".join(lines)


def first_call_section(res):
    fc = res.get("first_calls", {})
    if not fc:
        return ""
    lines = ["## Cold first calls (first invocation of each op in its process, synchronised)", ""]
    for k, v in fc.items():
        lines.append(f"- {k}: {_secs(v['s'])} ({v['what']})")
    lines.append("- anchors (s, fwd / fwd+bwd): " + ", ".join(f"{k} {_pair(*v, 1)}" for k, v in FIRST_CALL.items()))
    lines.append("")
    return "\n".join(lines)


def markdown(res):
    parts = ["# seer_attn benchmark", "", header(res.get("env"), res.get("ceilings")), ""]
    if res.get("args"):
        parts.append(f"- command: `{res['args']}`")
        parts.append("")
    parts.append(checks_table(res))
    parts.append(prefill_table(res, "2d"))
    parts.append(prefill_table(res, "1d"))
    parts.append(pool_table(res))
    parts.append(decode_table(res))
    parts.append(first_call_section(res))
    for title, key in (("Errors / skipped", "errors"), ("Notes", "notes")):
        if res.get(key):
            parts += [f"## {title}", ""] + [f"- {x}" for x in res[key]] + [""]
    return "\n".join(p for p in parts if p is not None)


def plot(res, path):
    """speedup vs density (vs flex measured, vs seed anchor), fwd and fwd+bwd; returns a message."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception as e:  # noqa: BLE001
        return f"plot skipped: matplotlib not importable ({type(e).__name__}: {e})"
    cases = [c for c in res.get("cases", []) if c.get("op") in ("2d", "1d")]
    dec = [c for c in res.get("cases", []) if c.get("op") == "decode"]
    if not cases and not dec:
        return "plot skipped: no prefill or decode cases"
    fig, axes = plt.subplots(2, 3, figsize=(19, 10))
    # (row, col): (0,0) 2d fwd, (0,1) 2d f+b, (1,0) 1d fwd, (1,1) 1d f+b; speedups (log y)
    series = {}
    tnorm = {}
    base = {}
    for c in cases:
        if abs(c["density"] - 1.0) < 1e-9:
            o = c.get("ours", {}) or {}
            base[(c["op"], c["variant"], c["workload"])] = (o.get("fwd_ms"), o.get("fb_ms"))
    for c in cases:
        o = c.get("ours", {}) or {}
        fx = c.get("flex", {}) or {}
        sa = seed_anchor(c["op"], c["variant"], c["workload"], c["density"])
        row = 0 if c["op"] == "2d" else 1
        name = f"{c['variant']} {c['workload']}" if c["op"] == "1d" else f"{c['workload']}"
        for col, mode in ((0, "fwd"), (1, "fb")):
            t = o.get(f"{mode}_ms")
            if not t:
                continue
            f = fx.get(f"{mode}_ms")
            if f:
                series.setdefault((row, col, name + " vs flex"), []).append((c["density"], f / t))
            if sa:
                s = sa[0] if mode == "fwd" else sa[1]
                series.setdefault((row, col, name + " vs seed"), []).append((c["density"], s / t))
            b = base.get((c["op"], c["variant"], c["workload"]))
            if b and b[col]:
                tnorm.setdefault(f"{c['op']} {name} {'fwd' if col == 0 else 'f+b'}", []).append((c["density"], t / b[col]))
    for (row, col, name), pts in sorted(series.items()):
        pts.sort()
        axes[row][col].plot([p[0] for p in pts], [p[1] for p in pts], marker="o",
                            linestyle="-" if "flex" in name else "--", label=name)
    dser = {}
    for c in dec:
        o = c.get("ours", {}) or {}
        sa = SEED_DECODE.get((c["block"], round(c["density"], 4)))
        if o.get("us") and sa:
            s = sa[0] if c["form"] == "mask" else sa[1]
            dser.setdefault(f"bs{c['block']} {c['form']} vs seed", []).append((c["density"], s / o["us"]))
    for name, pts in sorted(dser.items()):
        pts.sort()
        axes[0][2].plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name)
    for name, pts in sorted(tnorm.items()):
        pts.sort()
        axes[1][2].plot([p[0] for p in pts], [p[1] for p in pts], marker=".", label=name)
    axes[1][2].plot([0.1, 1.0], [0.1, 1.0], color="k", linewidth=1.5, label="ideal t = d * t(1)")
    axes[1][2].plot([0.1, 1.0], [0.115, 1.15], color="k", linewidth=0.8, linestyle=":", label="1.15 * d * t(1)")
    titles = (("2D forward: speedup", "2D forward+backward: speedup", "decode D1: speedup vs seed"),
              ("1D forward: speedup", "1D forward+backward: speedup", "ours: t(d) / t(1)"))
    for r in range(2):
        for col in range(3):
            ax = axes[r][col]
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("density")
            ax.set_ylabel("their time / ours" if (r, col) != (1, 2) else "t(d) / t(1)")
            if (r, col) != (1, 2):
                ax.axhline(1.0, color="k", linewidth=0.8)
            ax.set_title(titles[r][col])
            ax.grid(True, which="both", alpha=0.3)
            if any(not ln.get_label().startswith("_") for ln in ax.lines):
                ax.legend(fontsize=6)
    _save_figure(plt, fig, res, "speedup vs density", path)
    return f"plot written: {path}"


def _save_figure(plt, fig, res, what, path):
    """Titles the figure with the run's device and versions, writes it to path and closes it."""
    env = res.get("env") or {}
    fig.suptitle(f"seer_attn {what} — {env.get('device_name', '?')}, torch {env.get('torch', '?')}, "
                 f"CUDA {env.get('cuda', '?')}, triton {env.get('triton', '?')}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


FA4_YARDSTICK = 1.85  # FA4 = torch's FA2 / 1.85 in any run (ANCHORS.md)


def tflops_series(res):
    """{(workload, mode): {label: [(density, TF/s), ...]}} for the TF/s plot, and {(workload, mode): FA2 TF/s}
    (mode 'fwd' / 'fb'): ours per op / variant, flex (2D), from the prefill cases; FA2 dense from fa_dense."""
    series, fa2 = {}, {}
    for c in res.get("cases", []):
        if c.get("op") in ("2d", "1d"):
            name = "ours 2D" if c["op"] == "2d" else f"ours 1D {c['variant']}"
            for mode in ("fwd", "fb"):
                for who, m in ((name, c.get("ours") or {}), ("flex 2D" if c["op"] == "2d" else None, c.get("flex") or {})):
                    v = m.get(f"{mode}_tflops")
                    if who and v:
                        series.setdefault((c["workload"], mode), {}).setdefault(who, []).append((c["density"], v))
        elif c.get("op") == "fa_dense":
            m = c.get("fa") or {}
            for mode in ("fwd", "fb"):
                if m.get(f"{mode}_tflops"):
                    fa2[(c["workload"], mode)] = m[f"{mode}_tflops"]
    return series, fa2


def plot_tflops(res, path):
    """Effective TF/s against density (#11's plot): ours (2D, 1D variants), flex tuned, FA2 dense measured in the
    same run and the FA4 yardstick (FA2 x 1.85) as horizontal lines; one panel per workload and mode."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception as e:  # noqa: BLE001
        return f"TF/s plot skipped: matplotlib not importable ({type(e).__name__}: {e})"
    series, fa2 = tflops_series(res)
    keys = sorted(set(series) | set(fa2), key=lambda k: (k[0], k[1] != "fwd"))  # per workload: fwd, then f+b
    if not keys:
        return "TF/s plot skipped: no prefill cases"
    try:
        fig, axes = plt.subplots(1, len(keys), figsize=(6 * len(keys), 5), squeeze=False)
        for ax, key in zip(axes[0], keys):
            for label, pts in sorted(series.get(key, {}).items()):
                pts.sort()
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o",
                        linestyle="--" if label.startswith("flex") else "-", label=label)
            if key in fa2:
                ax.axhline(fa2[key], color="k", linewidth=1.0, label=f"FA2 dense (this run) {fa2[key]:.0f}")
                ax.axhline(fa2[key] * FA4_YARDSTICK, color="k", linewidth=1.0, linestyle=":",
                           label=f"FA4 yardstick (FA2 x {FA4_YARDSTICK}) {fa2[key] * FA4_YARDSTICK:.0f}")
            ax.set_xscale("log")
            ax.set_xlabel("density")
            ax.set_ylabel("effective TF/s (kept causal pairs)")
            ax.set_title(f"{key[0]} {'forward' if key[1] == 'fwd' else 'forward+backward'}")
            ax.grid(True, which="both", alpha=0.3)
            ax.set_ylim(bottom=0)
            ax.legend(fontsize=7)
        _save_figure(plt, fig, res, "TF/s vs density", path)
    except Exception as e:  # noqa: BLE001 (a plot never costs the measurements)
        return f"TF/s plot failed: {type(e).__name__}: {e}"
    return f"TF/s plot written: {path}"


def write_outputs(res, out_dir):
    os.makedirs(out_dir, exist_ok=True)
    res = dict(res)
    res["anchors"] = ANCHORS
    msg = plot(res, os.path.join(out_dir, "speedup_vs_density.png"))
    msg += "; " + plot_tflops(res, os.path.join(out_dir, "tflops_vs_density.png"))
    res["plot"] = msg
    md = markdown(res) + f"\n\n_{msg}_\n"
    with open(os.path.join(out_dir, "results.md"), "w") as f:
        f.write(md)
    tmp = os.path.join(out_dir, "results.json.tmp")
    with open(tmp, "w") as f:
        json.dump(res, f, indent=1, default=str)
    os.replace(tmp, os.path.join(out_dir, "results.json"))
    return msg
