#!/usr/bin/env python
"""seer_attn benchmark harness (WORKLOADS.md): 2D / 1D block-sparse varlen attention (fwd, fwd+bwd),
attention pooling and block-sparse decode, against FlexAttention, PyTorch's bundled FlashAttention
varlen, dense decode, the physical ceilings measured in the same run and the seed anchors of
ANCHORS.md.

    python benchmarks/bench.py --out bench_out                      # full run (budget 480 s)
    python benchmarks/bench.py --quick --out bench_quick            # P1 (+D1), d = 1.0 and 0.1
    python benchmarks/bench.py --ops 2d --workloads P2 --densities 0.1 --fwd-only
    python benchmarks/bench.py --compare DIR_A,DIR_B --out cmp      # two builds, our ops, same run (compare.py)
    python benchmarks/bench.py --device cpu --quick --out /tmp/b    # tiny shapes, control-flow smoke test

Outputs in --out: results.md (tables), results.json (all numbers), speedup_vs_density.png
(if matplotlib imports), part_<op>.json (per-op raw parts). See benchmarks/README.md.

On CUDA every op runs in its own subprocess (--no-isolate to disable), so a crashing kernel (a sticky
CUDA error) loses only that op; a global --budget-s deadline skips what does not fit and the
outputs are rewritten after every op (and every case inside a worker's part file).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import torch  # noqa: E402

import common as C  # noqa: E402
from common import BLOCK, HEAD_DIM, SM_SCALE, cleanup  # noqa: E402

T0 = float(os.environ.get("BENCH_T0", time.time()))  # workers share the parent's clock
ALL_OPS = ("2d", "1d", "pool", "decode")
OP_SHARE = {"2d": 3.0, "1d": 4.0, "pool": 1.0, "decode": 2.0}  # budget weights of the per-op workers
DECODE_LAYOUTS = ("contiguous",) + tuple(f"paged{p}" for p in C.PAGE_SIZES)
TOL_OUT = 2e-2
TOL_GRAD = 4e-2


def log(*a):
    print(f"[{time.time() - T0:7.1f}s]", *a, flush=True)


def _csv(s, conv=str):
    return [conv(x) for x in str(s).split(",") if str(x).strip()]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ops", default=",".join(ALL_OPS), help="comma list of 2d,1d,pool,decode")
    p.add_argument("--workloads", default=None, help="comma list of P1,P2,D1 (default all; --quick: P1,D1)")
    p.add_argument("--densities", default=None, help="prefill densities (default 1.0,0.5,0.2,0.1; --quick 1.0,0.1)")
    p.add_argument("--decode-densities", default=None, help="decode densities (default 0.1,0.25,0.5,1.0; --quick 0.1)")
    p.add_argument("--decode-blocks", default="32,64", help="decode block sizes")
    p.add_argument("--decode-layouts", default=None,
                   help="decode KV cache layouts: contiguous, paged<page size> (default contiguous,paged16,paged64; "
                   "--quick contiguous)")
    p.add_argument("--decode-new-tokens", default=None, help="decode query tokens per sequence (default 1,4; --quick 1)")
    p.add_argument("--decode-splits", default="0", help="decode num_splits values to time (0 = automatic)")
    p.add_argument("--deterministic", action="store_true", help="time the deterministic backward (deterministic=True)")
    p.add_argument("--variants-1d", default="gqa,head,token", help="1D variants: gqa (GQA-shared, block-structured), "
                   "head (per-q-head mask), token (every token row drawn independently)")
    p.add_argument("--pool-variants", default="per_head,gqa", help="pooling variants: per_head, gqa (gqa_reduce=True)")
    p.add_argument("--fwd-only", action="store_true", help="skip forward+backward measurements")
    p.add_argument("--quick", action="store_true", help="P1 (+D1) only, densities 1.0 and 0.1 (decode 0.1)")
    p.add_argument("--check", dest="check", action="store_true", default=True,
                   help="(default) compare every op against a float32 dense reference on a small problem first")
    p.add_argument("--no-check", dest="check", action="store_false")
    p.add_argument("--time-failed", action="store_true", help="time an op even if its --check failed")
    p.add_argument("--no-flex", action="store_true", help="skip the FlexAttention baseline")
    p.add_argument("--no-fa", action="store_true", help="skip the dense FlashAttention / dense decode baselines")
    p.add_argument("--no-ceilings", action="store_true", help="skip the matmul / copy ceilings")
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu"),
                   help="cpu: tiny shapes through the CPU reference implementation (control-flow smoke test)")
    p.add_argument("--out", default=os.path.join(REPO, "bench_out"), help="output directory")
    p.add_argument("--budget-s", type=float, default=None, help="wall-clock budget of the whole run (s, default "
                   "480; --compare 420); cases that would start after it are skipped and reported")
    p.add_argument("--target-ms", type=float, default=None, help="timed duration per measurement (ms, default 200; "
                   "--compare 300 per build and round), at least 5 reps (3 when one call exceeds 100 ms)")
    p.add_argument("--isolate", dest="isolate", action="store_true", default=None,
                   help="one subprocess per op (default on CUDA)")
    p.add_argument("--no-isolate", dest="isolate", action="store_false")
    # internal (parent -> worker)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--part", default=None, help=argparse.SUPPRESS)
    p.add_argument("--deadline", type=float, default=None, help=argparse.SUPPRESS)
    p.add_argument("--ceilings-here", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--compare", default=None, metavar="DIR_A,DIR_B",
                   help="time our ops (2D / 1D gqa fwd and fwd+bwd on P1, P2; pooling P1; decode D1) for two "
                   "builds, each a directory holding an importable seer_attn with its built _C*.so; writes "
                   "compare.md / compare.json (see compare.py)")
    p.add_argument("--rounds", type=int, default=2, help="--compare: measurements per case and build, "
                   "alternating A B, B A (default 2)")
    p.add_argument("--slower-pct", type=float, default=3.0, help="--compare: flag rows where B is more than this "
                   "many percent slower than A (default 3)")
    p.add_argument("--compare-worker", default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.budget_s is None:
        a.budget_s = 420.0 if a.compare else 480.0
    if a.target_ms is None:
        a.target_ms = 300.0 if (a.compare or a.compare_worker) else 200.0
    a.ops = _csv(a.ops)
    for op in a.ops:
        if op not in ALL_OPS:
            p.error(f"unknown op {op!r} (choose from {ALL_OPS})")
    if a.workloads is None:
        a.workloads = ["P1", "D1"] if a.quick else ["P1", "P2", "D1"]
    else:
        a.workloads = _csv(a.workloads)
    for w in a.workloads:
        if w not in C.FULL_WORKLOADS:
            p.error(f"unknown workload {w!r}")
    a.densities = _csv(a.densities, float) if a.densities else ([1.0, 0.1] if a.quick else list(C.PREFILL_DENSITIES))
    a.decode_densities = (_csv(a.decode_densities, float) if a.decode_densities
                          else ([0.1] if a.quick else list(C.DECODE_DENSITIES) + [1.0]))
    a.decode_blocks = _csv(a.decode_blocks, int)
    a.decode_layouts = _csv(a.decode_layouts) if a.decode_layouts else (["contiguous"] if a.quick else list(DECODE_LAYOUTS))
    for x in a.decode_layouts:
        if x != "contiguous" and not (x.startswith("paged") and x[5:].isdigit()):
            p.error(f"unknown decode layout {x!r} (contiguous or paged<page size>)")
    a.decode_new_tokens = _csv(a.decode_new_tokens, int) if a.decode_new_tokens else ([1] if a.quick else [1, 4])
    a.decode_splits = _csv(a.decode_splits, int)
    a.variants_1d = _csv(a.variants_1d)
    a.pool_variants = _csv(a.pool_variants)
    if a.isolate is None:
        a.isolate = a.device == "cuda"
    if a.device == "cpu":
        a.no_flex = a.no_fa = a.no_ceilings = True
    return a


class FatalDeviceError(RuntimeError):
    pass


def short_err(e):
    s = str(e).strip().splitlines()
    msg = s[0] if s else ""
    for line in s:  # OOM messages put the useful part first; compile errors often last
        if "out of memory" in line.lower():
            msg = line
            break
    return f"{type(e).__name__}: {msg[:400]}"


# ------------------------------------------------------------------------------------------------
# the worker: runs ops in this process
# ------------------------------------------------------------------------------------------------
class Runner:
    def __init__(self, args):
        self.a = args
        self.dev = args.device
        self.deadline = args.deadline if args.deadline else T0 + args.budget_s
        self.timer = C.Timer(self.dev, args.target_ms)
        self.res = {"env": C.env_info(self.dev), "cases": [], "checks": [], "first_calls": {}, "errors": [],
                    "notes": [], "ceilings": None}
        self.wl = C.get_workloads(tiny=self.dev == "cpu")
        self.sa = None
        self.failed_checks = set()

    # -- bookkeeping ----------------------------------------------------------------------------
    def save(self):
        if not self.a.part:
            return
        tmp = self.a.part + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.res, f, indent=1, default=str)
        os.replace(tmp, self.a.part)

    def out_of_time(self):
        return time.time() > self.deadline

    def error(self, msg):
        log("ERROR", msg)
        self.res["errors"].append(msg)

    def after_exception(self, e):
        """Free memory; re-raise as fatal if the device context is broken (sticky CUDA error)."""
        cleanup(self.dev)
        if self.dev == "cuda":
            try:
                torch.cuda.synchronize()
                torch.zeros(1, device="cuda").add_(1).item()
            except Exception as e2:  # noqa: BLE001
                raise FatalDeviceError(f"device unusable after {short_err(e)}: {short_err(e2)}") from e2

    def first_call(self, key, what, fn):
        """Run fn once (synchronised); the first time `key` is seen, record its latency."""
        t = self.timer.first(fn)
        if key not in self.res["first_calls"]:
            self.res["first_calls"][key] = {"s": t, "what": what}
        return t

    def measure(self, key, what, fn, flops=None, mem=True):
        """first call + median timing + peak memory; never raises except FatalDeviceError."""
        m = {}
        if self.out_of_time():
            m["error"] = "skipped (time budget)"
            return m
        try:
            m["first_s"] = self.first_call(key, what, fn)
            r = self.timer(fn)
            m["ms"] = r["median_ms"]
            m["reps"] = r["reps"]
            m["min_ms"] = r["min_ms"]
            m["max_ms"] = r["max_ms"]
            if flops:
                m["tflops"] = flops / (m["ms"] * 1e-3) / 1e12
            if mem:
                m["mem_mib"] = r.get("peak_mib")
        except FatalDeviceError:
            raise
        except Exception as e:  # noqa: BLE001
            m["error"] = short_err(e)
            log(f"  {key} [{what}] failed: {m['error']}")
            if os.environ.get("BENCH_TRACEBACK"):
                traceback.print_exc()
            self.after_exception(e)
        return m

    @staticmethod
    def merge(dst, prefix, m):
        for k, v in m.items():
            if k == "error":
                dst["error"] = (dst.get("error") + "; " if dst.get("error") else "") + f"{prefix}: {v}"
            else:
                dst[f"{prefix}_{k}"] = v
        return dst

    # -- our ops ----------------------------------------------------------------------------------
    def api(self):
        if self.sa is None:
            self.sa = C.import_seer_attn()
        return self.sa

    def attn_fns(self, op, inp, mask):
        return C.attn_fns(self.api(), op, inp, mask, self.a.deterministic)

    # -- checks (against the package's pure-PyTorch reference: the same call on CPU copies) ----------
    def _record_check(self, op, variant, d, errs, error=None, tol=None):
        ok = error is None and all((e < (TOL_OUT if k == "out" else TOL_GRAD)) for k, e in errs.items())
        if tol is not None and error is None:
            ok = all(e < tol for e in errs.values())
        rec = {"op": op, "variant": variant, "density": d, "ok": ok, "errs": errs}
        if error:
            rec["error"] = error
        self.res["checks"].append(rec)
        log(f"  check {op}/{variant} d={d}: {'ok' if ok else 'FAILED'} "
            + (", ".join(f"{k}={v:.2e}" for k, v in errs.items()) if errs else "") + (f" {error}" if error else ""))
        if not ok:
            self.failed_checks.add((op, variant))
        return ok

    def _check(self, op, variant, d, body, tol=None):
        try:
            return self._record_check(op, variant, d, body(), tol=tol)
        except FatalDeviceError:
            raise
        except Exception as e:  # noqa: BLE001
            self._record_check(op, variant, d, {}, error=short_err(e))
            if os.environ.get("BENCH_TRACEBACK"):
                traceback.print_exc()
            self.after_exception(e)
            return False

    def check_attention(self, op, variant, d):
        sl = C.CHECK_SEQLENS

        def body():
            ci = C.make_prefill_inputs(sl, self.dev)
            m, _ = C.prefill_mask("2d" if op == "2d" else variant, sl, d, self.dev)
            fwd, fb = self.attn_fns(op, ci, m)
            rfwd, rfb = C.attn_fns(self.api(), op, dict(zip(ci, C.on_cpu(*ci.values()))), m.cpu(),
                                   self.a.deterministic)
            what = f"check problem seqlens {sl}"
            self.first_call(f"ours {op} fwd", what, fwd)
            errs = {"out": C.rel_err(fwd(), rfwd())}
            if not self.a.fwd_only:
                self.first_call(f"ours {op} fwd+bwd", what, fb)
                for name, g, r in zip(("dq", "dk", "dv"), fb(), rfb()):
                    errs[name] = C.rel_err(g, r)
            return errs
        return self._check(op, variant, d, body)

    def check_pool(self, variant):
        sl = C.CHECK_SEQLENS
        gqa = variant == "gqa"

        def body():
            ci = C.make_prefill_inputs(sl, self.dev)
            fn = C.pool_fn(self.api(), ci, gqa)
            self.first_call(f"ours pool{' gqa' if gqa else ''}", f"check problem seqlens {sl}", fn)
            p2, p1 = fn()
            r2, r1 = C.pool_fn(self.api(), dict(zip(ci, C.on_cpu(*ci.values()))), gqa)()
            return {"pooled_2d": C.rel_err(p2, r2), "pooled_1d": C.rel_err(p1, r1)}
        return self._check("pool", variant, "-", body, tol=TOL_OUT)

    def check_decode(self, bs, d):
        w = C.CHECK_DECODE

        def body():
            ci = C.make_decode_inputs(w, self.dev)
            ci["cache_seqlens"][1] = 1
            ci["cache_seqlens"][2] = bs + 1
            lens = ci["cache_seqlens"]
            m = C.decode_mask(lens, w.s_max, bs, d)
            idx = C.decode_indices(m)
            # shuffle the valid indices (any order is allowed)
            perm = torch.argsort(torch.rand(idx.shape, device=idx.device) + (idx < 0).float() * 2, dim=-1)
            idx = torch.gather(idx, -1, perm)
            q, kc, vc = ci["q"], ci["k_cache"], ci["v_cache"]
            ref = C.decode_fn(self.api(), *C.on_cpu(q, kc, vc, lens), bs, mask=m.cpu())()
            errs = {}
            for form in ("mask", "indices"):
                kw = {"mask": m} if form == "mask" else {"indices": idx}
                fn = C.decode_fn(self.api(), q, kc, vc, lens, bs, **kw)
                self.first_call(f"ours decode {form}", f"check problem B=4 S_max=1024 block {bs}", fn)
                errs[form] = C.rel_err(fn(), ref)
            return errs
        return self._check("decode", f"block {bs}", d, body, tol=TOL_OUT)

    # -- baselines --------------------------------------------------------------------------------
    def run_fa_dense(self, w, inp):
        if self.a.no_fa:
            return
        from baselines import FADense
        case = {"op": "fa_dense", "workload": w, "fa": {}}
        self.res["cases"].append(case)
        dense = C.dense_causal_pairs(inp["seqlens"])
        try:
            fa = FADense(inp)
            fa.select()
            case["fa"]["entry"] = fa.used
            case["fa"]["tried"] = fa.tried
            self.merge(case["fa"], "fwd", self.measure("FA dense fwd", w, fa.fwd, 4 * dense * HEAD_DIM))
            if not self.a.fwd_only:
                self.merge(case["fa"], "fb", self.measure("FA dense fwd+bwd", w, fa.fb, 14 * dense * HEAD_DIM))
            del fa
        except FatalDeviceError:
            raise
        except Exception as e:  # noqa: BLE001
            case["fa"]["error"] = short_err(e)
            log(f"  FA dense {w}: {case['fa']['error']}")
            self.after_exception(e)
        fa_m = case["fa"]
        log(f"{w} dense FA ({fa_m.get('entry')}): fwd {fa_m.get('fwd_ms')} ms, f+b {fa_m.get('fb_ms')} ms"
            + (f" [{fa_m.get('error')}]" if fa_m.get("error") else ""))
        self.save()
        cleanup(self.dev)

    def make_flex(self, inp, kind, holder):
        if self.a.no_flex:
            return None
        if kind in holder:
            return holder[kind]
        from baselines import FlexPrefill
        try:
            holder[kind] = FlexPrefill(inp, kind, compiled=True)
        except Exception as e:  # noqa: BLE001
            holder[kind] = e
            self.after_exception(e)
        return holder[kind]

    def run_flex(self, case, flex, mask, flops_f, flops_fb, w):
        fx = case.setdefault("flex", {})
        if flex is None:
            fx["note"] = "skipped (--no-flex)"
            return
        if isinstance(flex, Exception):
            fx["error"] = f"setup: {short_err(flex)}"
            return
        try:
            flex.set_mask(mask)
        except Exception as e:  # noqa: BLE001
            fx["error"] = f"BlockMask: {short_err(e)}"
            self.after_exception(e)
            return
        what = f"{w} d={case['density']}"
        n_tried = len(flex.tried)
        modes = [("fwd", "fwd", flops_f)] + ([] if self.a.fwd_only else [("fb", "fwd+bwd", flops_fb)])
        for mode, label, flops in modes:
            key = f"flex {flex.kind} {label}"
            fresh = mode not in flex.options  # this call compiles (tries the candidates)
            self.merge(fx, mode, self.measure(key, what, flex.get(mode), flops))
            if fresh and mode in flex.first_s:
                # the harness timed the whole first call, failed candidates included: report the cold
                # call of the candidate that worked, and the failed attempts separately
                fx[f"{mode}_first_s"] = flex.first_s[mode]
                fc = self.res["first_calls"].get(key)
                if fc is not None and fc.get("what") == what:
                    fc["s"] = flex.first_s[mode]
                    u = flex.used[mode]
                    fc["what"] = (f"{what}; flex candidate '{u['candidate']}' (compile mode {u['compile_mode']})"
                                  + (f"; failed candidates before it took {flex.failed_s[mode]:.1f} s"
                                     if flex.failed_s.get(mode) else ""))
        if flex.used:
            case["flex_info"] = {m: dict(u) for m, u in flex.used.items()}
        if len(flex.tried) > n_tried:  # attempts made for this case only
            fx["tried"] = list(flex.tried[n_tried:])
            for t in fx["tried"]:
                log(f"  flex {flex.kind} {t}")

    # -- ops --------------------------------------------------------------------------------------
    def progress(self, case):
        o = case.get("ours", {})
        fx = case.get("flex", {})

        def g(d, k):
            v = d.get(k)
            return f"{v:.3f}" if isinstance(v, float) else "-"
        msg = (f"{case['op']}/{case['variant']} {case['workload']} d={case['density']:g} kept={case.get('kept_fraction', 0):.3f} | "
               f"ours fwd {g(o, 'fwd_ms')} ms ({g(o, 'fwd_tflops')} TF/s) f+b {g(o, 'fb_ms')} ms ({g(o, 'fb_tflops')}) | "
               f"flex fwd {g(fx, 'fwd_ms')} f+b {g(fx, 'fb_ms')}")
        if o.get("fwd_ms") and fx.get("fwd_ms"):
            msg += f" | x flex {fx['fwd_ms'] / o['fwd_ms']:.2f}"
            if o.get("fb_ms") and fx.get("fb_ms"):
                msg += f"/{fx['fb_ms'] / o['fb_ms']:.2f}"
        from report import seed_anchor
        sa = seed_anchor(case["op"], case["variant"], case["workload"], case["density"])
        if sa and o.get("fwd_ms"):
            msg += f" | x seed {sa[0] / o['fwd_ms']:.2f}"
            if o.get("fb_ms"):
                msg += f"/{sa[1] / o['fb_ms']:.2f}"
        if o.get("error") or fx.get("error"):
            msg += f" | errors: {o.get('error') or ''} {fx.get('error') or ''}"
        log(msg)

    def run_prefill_case(self, op, variant, w, d, inp, mask, pairs, flex):
        dense = C.dense_causal_pairs(inp["seqlens"])
        case = {"op": op, "variant": variant, "workload": w, "density": d, "pairs": pairs,
                "dense_pairs": dense, "kept_fraction": pairs / dense, "ours": {}}
        self.res["cases"].append(case)
        if (op, variant) in self.failed_checks and not self.a.time_failed:
            case["ours"]["error"] = "not timed: --check failed"
        else:
            fwd, fb = self.attn_fns(op, inp, mask)
            what = f"{w} d={d}"
            self.merge(case["ours"], "fwd", self.measure(f"ours {op} fwd", what, fwd, 4 * pairs * HEAD_DIM))
            if not self.a.fwd_only:
                self.merge(case["ours"], "fb", self.measure(f"ours {op} fwd+bwd", what, fb, 14 * pairs * HEAD_DIM))
            del fwd, fb
        if op == "1d" and variant == "head":
            case["flex"] = {"note": "= 1d gqa flex (same pairs)"}
        else:
            self.run_flex(case, flex, mask, 4 * pairs * HEAD_DIM, 14 * pairs * HEAD_DIM, w)
        self.progress(case)
        self.save()

    def op_2d(self):
        self.op_prefill("2d", ["2d"])

    def op_1d(self):
        self.op_prefill("1d", self.a.variants_1d)

    def op_prefill(self, op, variants):
        if self.a.check:
            for var in variants:
                for d in self.a.densities:
                    self.check_attention(op, var, d)
        for w in [x for x in self.a.workloads if self.wl[x].kind == "prefill"]:
            if self.out_of_time():
                self.error(f"{op} {w}: skipped (time budget)")
                continue
            sl = self.wl[w].seqlens
            inp = C.make_prefill_inputs(sl, self.dev)
            if op == "2d" or "2d" not in self.a.ops_all:
                self.run_fa_dense(w, inp)
            flexh = {}
            for var in variants:
                for d in self.a.densities:
                    if self.out_of_time():
                        self.error(f"{op} {var} {w} d={d}: skipped (time budget)")
                        continue
                    m, pairs = C.prefill_mask(var, sl, d, self.dev)
                    # flex is not re-measured for the per-head 1D layout (same work as gqa)
                    flex = None if var == "head" else self.make_flex(inp, op, flexh)
                    self.run_prefill_case(op, var, w, d, inp, m, pairs, flex)
                    del m
                    cleanup(self.dev)
            del inp, flexh
            cleanup(self.dev)

    def op_pool(self):
        if self.a.check:
            for var in self.a.pool_variants:
                self.check_pool(var)
        for w in [x for x in self.a.workloads if self.wl[x].kind == "prefill"]:
            sl = self.wl[w].seqlens
            inp = C.make_prefill_inputs(sl, self.dev)
            dense = C.dense_causal_pairs(sl)
            for var in self.a.pool_variants:
                if self.out_of_time():
                    self.error(f"pool {var} {w}: skipped (time budget)")
                    continue
                gqa = var == "gqa"
                case = {"op": "pool", "variant": var, "workload": w, "density": 1.0, "pairs": dense, "ours": {}}
                self.res["cases"].append(case)
                if ("pool", var) in self.failed_checks and not self.a.time_failed:
                    case["ours"]["error"] = "not timed: --check failed"
                else:
                    fn = C.pool_fn(self.api(), inp, gqa)
                    self.merge(case["ours"], "fwd", self.measure(f"ours pool{' gqa' if gqa else ''}", w, fn,
                                                                 2 * dense * HEAD_DIM))
                    # The package's pure-PyTorch reference on the same device (what a user without the
                    # kernel would run); P1 only, P2 takes minutes.
                    if w == "P1" and not self.out_of_time():
                        from seer_attn import reference as _ref
                        q, k, cu, L = inp["q"], inp["k"], inp["cu"], inp["max_len"]
                        rfn = lambda: _ref.attn_pooling(q, k, cu, L, SM_SCALE, BLOCK, True, gqa)  # noqa: E731
                        case["ref"] = {}
                        self.merge(case["ref"], "fwd", self.measure(f"reference pool{' gqa' if gqa else ''}", w,
                                                                    rfn, 2 * dense * HEAD_DIM))
                o = case["ours"]
                log(f"pool/{var} {w}: " + (f"{o['fwd_ms']:.3f} ms" if o.get("fwd_ms") else "-")
                    + (f", {o['fwd_mem_mib']:.0f} MiB above inputs" if o.get("fwd_mem_mib") is not None else "")
                    + (f" [{o.get('error')}]" if o.get("error") else ""))
                self.save()
                cleanup(self.dev)
            del inp
            cleanup(self.dev)

    def run_dense_decode(self, w, inp, dense_bytes):
        from baselines import DenseDecode
        case = {"op": "dense_decode", "workload": w, "dense_bytes": dense_bytes, "dense": {}}
        self.res["cases"].append(case)
        try:
            dd = DenseDecode(inp)
            dd.select()
            case["dense"]["entry"] = dd.used
            case["dense"]["tried"] = dd.tried
            m = self.measure("dense decode", w, dd.call, mem=False)
            if m.get("ms"):
                case["dense"]["us"] = m["ms"] * 1e3
                case["dense"]["gbs"] = dense_bytes / (m["ms"] * 1e-3) / 1e9
            if m.get("error"):
                case["dense"]["error"] = m["error"]
            del dd
        except FatalDeviceError:
            raise
        except Exception as e:  # noqa: BLE001
            case["dense"]["error"] = short_err(e)
            self.after_exception(e)
        log(f"{w} dense decode ({case['dense'].get('entry')}): {case['dense'].get('us')} us"
            + (f" [{case['dense'].get('error')}]" if case["dense"].get("error") else ""))
        self.save()

    def op_decode(self):
        if self.a.check:
            for bs in self.a.decode_blocks:
                for d in self.a.decode_densities:
                    self.check_decode(bs, d)
        pages = sorted({int(x[5:]) for x in self.a.decode_layouts if x != "contiguous"})
        feats = C.decode_features(self.api(), self.dev, pages)
        self.res["notes"].append("decode features of this build: " + "; ".join(
            f"{k}: {v or 'supported'}" for k, v in feats.items()))
        log(self.res["notes"][-1])
        from report import SEED_DECODE
        for w in [x for x in self.a.workloads if self.wl[x].kind == "decode"]:
            if self.out_of_time():
                self.error(f"decode {w}: skipped (time budget)")
                continue
            wk = self.wl[w]
            inp = C.make_decode_inputs(wk, self.dev)
            lens = inp["cache_seqlens"]
            dense_bytes = C.decode_dense_kv_bytes(inp["lens_host"])
            if not self.a.no_fa:
                self.run_dense_decode(w, inp, dense_bytes)
            for layout in self.a.decode_layouts:
                table = None
                kc, vc = inp["k_cache"], inp["v_cache"]
                unsupported = feats.get(layout)
                if layout != "contiguous" and unsupported is None:
                    if self.out_of_time():
                        unsupported = "skipped (time budget)"
                    else:
                        kc, vc, table = C.paged_cache(kc, vc, inp["lens_host"], int(layout[5:]))
                for bs in self.a.decode_blocks:
                    for d in self.a.decode_densities:
                        m = C.decode_mask(lens, wk.s_max, bs, d)
                        idx = C.decode_indices(m)
                        kept = C.decode_kept_kv_bytes(m, lens, bs)
                        for nt in self.a.decode_new_tokens:
                            q = inp["q"] if nt == 1 else inp["q_multi"][:, :nt].contiguous()
                            why = unsupported or (feats["multi"] if nt > 1 else None)
                            for ns in self.a.decode_splits:
                                for form in ("mask", "indices"):
                                    self.decode_case(w, layout, bs, d, nt, ns, form, kept, dense_bytes, why,
                                                     C.decode_fn(self.api(), q, kc, vc, lens, bs, block_table=table,
                                                                 num_splits=ns,
                                                                 **({"mask": m} if form == "mask" else {"indices": idx})),
                                                     SEED_DECODE)
                        del m, idx
                del kc, vc, table
                cleanup(self.dev)
            del inp
            cleanup(self.dev)

    def decode_case(self, w, layout, bs, d, nt, ns, form, kept, dense_bytes, unsupported, fn, seed_table):
        case = {"op": "decode", "variant": form, "form": form, "layout": layout, "new_tokens": nt,
                "num_splits": ns, "workload": w, "block": bs, "density": d, "kept_bytes": kept,
                "dense_bytes": dense_bytes, "ours": {}}
        self.res["cases"].append(case)
        o = case["ours"]
        what = f"{w} {layout} L={nt} block {bs} d={d}" + (f" splits {ns}" if ns else "")
        if unsupported:
            o["error"] = unsupported
        elif self.out_of_time():
            o["error"] = "skipped (time budget)"
        elif ("decode", f"block {bs}") in self.failed_checks and not self.a.time_failed:
            o["error"] = "not timed: --check failed"
        else:
            r = self.measure(f"ours decode {form}", what, fn, mem=False)
            if r.get("ms"):
                o["us"] = r["ms"] * 1e3
                o["gbs"] = kept / (r["ms"] * 1e-3) / 1e9
                o["reps"] = r.get("reps")
            o["first_s"] = r.get("first_s")
            if r.get("error"):
                o["error"] = r["error"]
        sa = seed_table.get((bs, round(d, 4))) if layout == "contiguous" and nt == 1 else None
        s_us = (sa[0] if form == "mask" else sa[1]) if sa else None
        log(f"decode {what} {form}: "
            + (f"{o['us']:.1f} us, {o['gbs']:.0f} GB/s" if o.get("us") else "-")
            + (f", x seed {s_us / o['us']:.2f}" if s_us and o.get("us") else "")
            + (f" [{o.get('error')}]" if o.get("error") else ""))
        self.save()

    def run(self, ops):
        self.res["args"] = " ".join(sys.argv)
        if self.a.ceilings_here and not self.a.no_ceilings:
            try:
                from baselines import measure_ceilings
                self.res["ceilings"] = measure_ceilings(self.timer, self.dev)
                c = self.res["ceilings"]
                log(f"ceilings: matmul {c['matmul_tflops']:.0f} TFLOP/s, copy {c['copy_gbs']:.0f} GB/s")
            except FatalDeviceError:
                raise
            except Exception as e:  # noqa: BLE001
                self.res["ceilings"] = {"error": short_err(e)}
                self.after_exception(e)
            self.save()
        try:
            self.api()
        except Exception as e:  # noqa: BLE001
            self.error(f"import seer_attn failed: {short_err(e)}")
            self.save()
            return
        for op in ops:
            log(f"=== op {op} ===")
            try:
                getattr(self, f"op_{op}")()
            except FatalDeviceError as e:
                self.error(f"{op}: FATAL {e}; stopping this process")
                self.save()
                raise
            except Exception as e:  # noqa: BLE001
                self.error(f"{op}: aborted: {short_err(e)}")
                traceback.print_exc()
                self.after_exception(e)
            self.save()


# ------------------------------------------------------------------------------------------------
# parent: one worker subprocess per op, merge, write outputs
# ------------------------------------------------------------------------------------------------
def _strip_ops(argv):
    out, skip = [], False
    for i, x in enumerate(argv):
        if skip:
            skip = False
            continue
        if x == "--ops":
            skip = True
            continue
        if x.startswith("--ops="):
            continue
        out.append(x)
    return out


def merge_into(merged, part):
    if not part:
        return
    if part.get("env") and not merged.get("env"):
        merged["env"] = part["env"]
    if part.get("ceilings") and not merged.get("ceilings"):
        merged["ceilings"] = part["ceilings"]
    for k in ("cases", "checks", "errors", "notes"):
        merged.setdefault(k, []).extend(part.get(k, []))
    for k, v in part.get("first_calls", {}).items():
        merged.setdefault("first_calls", {}).setdefault(k, v)


_CURRENT = {"proc": None}


def _on_signal(signum, frame):  # noqa: ARG001
    """SIGTERM / SIGINT to the parent: stop the running worker (ours), keep what was written."""
    p = _CURRENT.get("proc")
    if p is not None and p.poll() is None:
        p.kill()
    raise KeyboardInterrupt(f"signal {signum}")


def run_parent(a):
    import report
    signal.signal(signal.SIGTERM, _on_signal)
    os.makedirs(a.out, exist_ok=True)
    deadline = T0 + a.budget_s
    merged = {"args": " ".join([os.path.basename(sys.executable)] + sys.argv), "cases": [], "checks": [],
              "errors": [], "notes": [], "first_calls": {}, "env": None, "ceilings": None}
    base_argv = _strip_ops(sys.argv[1:])
    log(f"output dir: {a.out}; ops {a.ops}; workloads {a.workloads}; densities {a.densities}; "
        f"decode {a.decode_densities} blocks {a.decode_blocks}; budget {a.budget_s:.0f}s; "
        f"check {'on' if a.check else 'off'}; isolate {a.isolate}")
    try:
        _run_workers(a, merged, base_argv, deadline)
    except KeyboardInterrupt as e:
        merged["errors"].append(f"interrupted ({e}); partial results")
        part = _CURRENT.get("part")
        if part and os.path.exists(part):
            try:
                with open(part) as f:
                    merge_into(merged, json.load(f))
            except Exception:  # noqa: BLE001
                pass
    return finish(merged, a)


def _run_workers(a, merged, base_argv, deadline):
    import report
    for i, op in enumerate(a.ops):
        if time.time() > deadline:
            merged["errors"].append(f"{op}: skipped (time budget)")
            continue
        part = os.path.join(a.out, f"part_{op}.json")
        if os.path.exists(part):
            os.remove(part)
        # the op's share of the remaining budget (unused time rolls over to the next ops), so that a
        # slow op cannot starve the ones after it
        rest = a.ops[i:]
        share = OP_SHARE.get(op, 1.0) / sum(OP_SHARE.get(x, 1.0) for x in rest)
        op_deadline = min(deadline, time.time() + (deadline - time.time()) * share)
        cmd = [sys.executable, "-u", os.path.abspath(__file__), *base_argv, "--ops", op, "--worker",
               "--part", part, "--deadline", repr(op_deadline)]
        if i == 0 and not a.no_ceilings:
            cmd.append("--ceilings-here")
        log(f"--- worker for op {op} (new cases start until +{op_deadline - time.time():.0f} s) ---")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        proc = subprocess.Popen(cmd, env=env)  # same process group: a group kill of the run reaches it
        _CURRENT["proc"] = proc
        _CURRENT["part"] = part
        rc = None
        try:
            rc = proc.wait(timeout=max(10.0, op_deadline - time.time() + 60.0))
        except subprocess.TimeoutExpired:
            merged["errors"].append(f"{op}: worker killed after the time budget (+60 s grace)")
            proc.kill()
            rc = proc.wait()
        _CURRENT["proc"] = None
        if rc not in (0, None):
            merged["errors"].append(f"{op}: worker exited with rc={rc} (results up to the failure are kept)")
        try:
            with open(part) as f:
                merge_into(merged, json.load(f))
        except FileNotFoundError:
            merged["errors"].append(f"{op}: worker wrote no results")
        except Exception as e:  # noqa: BLE001
            merged["errors"].append(f"{op}: unreadable part file: {short_err(e)}")
        _CURRENT["part"] = None
        report.write_outputs(merged, a.out)


def finish(res, a):
    import report
    msg = report.write_outputs(res, a.out)
    with open(os.path.join(a.out, "results.md")) as f:
        md = f.read()
    print("\n" + md, flush=True)
    log(f"done: {a.out}/results.md, {a.out}/results.json; {msg}")
    return 0


def main(argv=None):
    a = parse_args(argv)
    if a.compare_worker:
        import compare
        return compare.worker_main(a.compare_worker, a.device, a.target_ms)
    a.ops_all = list(a.ops)
    if a.device == "cuda" and not torch.cuda.is_available():
        print("CUDA is not available; use --device cpu for the tiny smoke test", flush=True)
        return 2
    if a.worker:
        # a worker sees only its op in --ops; ops_all tells whether 2d runs elsewhere (FA dense once)
        parent_ops = os.environ.get("BENCH_ALL_OPS")
        if parent_ops:
            a.ops_all = _csv(parent_ops)
        r = Runner(a)
        try:
            r.run(a.ops)
        except FatalDeviceError:
            r.save()
            return 3
        r.save()
        return 0
    if a.compare:
        import compare
        return compare.run(a)
    os.environ["BENCH_ALL_OPS"] = ",".join(a.ops)
    os.environ["BENCH_T0"] = repr(T0)
    if a.isolate:
        return run_parent(a)
    os.makedirs(a.out, exist_ok=True)
    if a.part is None:
        a.part = os.path.join(a.out, "part_all.json")
    a.ceilings_here = True
    r = Runner(a)
    try:
        r.run(a.ops)
    except FatalDeviceError:
        pass
    r.save()
    res = dict(r.res)
    res["args"] = " ".join([os.path.basename(sys.executable)] + sys.argv)
    return finish(res, a)


if __name__ == "__main__":
    sys.exit(main())
