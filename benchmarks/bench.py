#!/usr/bin/env python
"""seer_attn benchmark harness (WORKLOADS.md): 2D / 1D block-sparse varlen attention (fwd, fwd+bwd),
attention pooling and block-sparse decode, against FlexAttention, PyTorch's bundled FlashAttention
varlen, dense decode, the physical ceilings measured in the same run and the seed anchors of
ANCHORS.md.

    python benchmarks/bench.py --out bench_out                      # full run (~5-8 min on one H100)
    python benchmarks/bench.py --quick --out bench_quick            # P1 (+D1), d = 1.0 and 0.1
    python benchmarks/bench.py --ops 2d --workloads P2 --densities 0.1 --fwd-only
    python benchmarks/bench.py --device cpu --quick --out /tmp/b    # tiny shapes, control-flow smoke test

Outputs in --out: results.md (tables), results.json (all numbers), speedup_vs_density.png
(if matplotlib imports), part_<op>.json (per-op raw parts). See benchmarks/README.md.

On CUDA every op runs in its own subprocess (--no-isolate to disable), so a crashing kernel (a sticky
CUDA error) loses only that op; a global --budget-s deadline skips what does not fit and the
outputs are rewritten after every op (and every case inside a worker's part file).
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import signal
import subprocess
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import torch  # noqa: E402

import workloads as W  # noqa: E402
from workloads import BLOCK, H_KV, H_Q, HEAD_DIM, SM_SCALE  # noqa: E402

T0 = float(os.environ.get("BENCH_T0", time.time()))  # workers share the parent's clock
ALL_OPS = ("2d", "1d", "pool", "decode")
OP_SHARE = {"2d": 3.0, "1d": 4.0, "pool": 1.0, "decode": 1.5}  # budget weights of the per-op workers
GROUP = H_Q // H_KV
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
    p.add_argument("--decode-densities", default=None, help="decode densities (default 0.1,0.25,0.5; --quick 0.1)")
    p.add_argument("--decode-blocks", default="32,64", help="decode block sizes")
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
    p.add_argument("--budget-s", type=float, default=480.0, help="wall-clock budget of the whole run (s); "
                   "cases that would start after it are skipped and reported")
    p.add_argument("--target-ms", type=float, default=200.0, help="timed duration per measurement (ms), "
                   "at least 5 reps (3 when one call exceeds 100 ms)")
    p.add_argument("--isolate", dest="isolate", action="store_true", default=None,
                   help="one subprocess per op (default on CUDA)")
    p.add_argument("--no-isolate", dest="isolate", action="store_false")
    # internal (parent -> worker)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--part", default=None, help=argparse.SUPPRESS)
    p.add_argument("--deadline", type=float, default=None, help=argparse.SUPPRESS)
    p.add_argument("--ceilings-here", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    a.ops = _csv(a.ops)
    for op in a.ops:
        if op not in ALL_OPS:
            p.error(f"unknown op {op!r} (choose from {ALL_OPS})")
    if a.workloads is None:
        a.workloads = ["P1", "D1"] if a.quick else ["P1", "P2", "D1"]
    else:
        a.workloads = _csv(a.workloads)
    for w in a.workloads:
        if w not in W.FULL_WORKLOADS:
            p.error(f"unknown workload {w!r}")
    a.densities = _csv(a.densities, float) if a.densities else ([1.0, 0.1] if a.quick else list(W.PREFILL_DENSITIES))
    a.decode_densities = (_csv(a.decode_densities, float) if a.decode_densities
                          else ([0.1] if a.quick else list(W.DECODE_DENSITIES)))
    a.decode_blocks = _csv(a.decode_blocks, int)
    a.variants_1d = _csv(a.variants_1d)
    a.pool_variants = _csv(a.pool_variants)
    if a.isolate is None:
        a.isolate = a.device == "cuda"
    if a.device == "cpu":
        a.no_flex = a.no_fa = a.no_ceilings = True
    return a


# ------------------------------------------------------------------------------------------------
# environment / package
# ------------------------------------------------------------------------------------------------
def import_seer_attn():
    try:
        import seer_attn  # noqa: F401
    except ImportError:
        if REPO not in sys.path:
            sys.path.insert(0, REPO)
        import seer_attn  # noqa: F401
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
        st = None
        if hasattr(sa, "kernel_status"):
            try:
                st = sa.kernel_status()
            except Exception as ex:  # noqa: BLE001
                st = f"kernel_status() failed: {ex}"
        e["seer_attn"] = f"{getattr(sa, '__version__', '?')} from {os.path.dirname(sa.__file__)}; kernels: {st}"
    except Exception as ex:  # noqa: BLE001
        e["seer_attn"] = f"import failed: {type(ex).__name__}: {ex}"
    return e


# ------------------------------------------------------------------------------------------------
# timing
# ------------------------------------------------------------------------------------------------
class FatalDeviceError(RuntimeError):
    pass


class Timer:
    """Median of CUDA-event timings after warm-up (L2 flushed before every timed rep), or
    perf_counter on CPU."""

    def __init__(self, device, target_ms):
        self.device = device
        self.target_ms = target_ms
        self.cuda = device == "cuda"
        self.flush = torch.empty(64 << 20, dtype=torch.int32, device="cuda") if self.cuda else None

    def sync(self):
        if self.cuda:
            torch.cuda.synchronize()

    def first(self, fn):
        self.sync()
        t = time.perf_counter()
        r = fn()
        del r
        self.sync()
        return time.perf_counter() - t

    def __call__(self, fn):
        if not self.cuda:
            fn()
            t = time.perf_counter()
            fn()
            est = (time.perf_counter() - t) * 1e3
            reps = int(min(5, max(1, self.target_ms / max(est, 1e-3))))
            ts = []
            for _ in range(reps):
                t = time.perf_counter()
                fn()
                ts.append((time.perf_counter() - t) * 1e3)
            ts.sort()
            return {"median_ms": ts[len(ts) // 2], "reps": reps, "min_ms": ts[0], "max_ms": ts[-1]}
        # the first (cold) call was made by the caller; this one warms up, estimates the duration and
        # measures the peak memory above what is allocated before it (inputs, persistent buffers)
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
        for _ in range(int(min(50, 25.0 / est))):  # ~25 ms of extra warm-up for fast kernels
            fn()
        reps = int(min(200, max(5 if est < 100 else 3, self.target_ms / est)))
        evs = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(reps)]
        for s, e in evs:
            self.flush.zero_()
            s.record()
            fn()
            e.record()
        torch.cuda.synchronize()
        ts = sorted(s.elapsed_time(e) for s, e in evs)
        n = len(ts)
        med = ts[n // 2] if n % 2 else 0.5 * (ts[n // 2 - 1] + ts[n // 2])
        return {"median_ms": med, "reps": n, "min_ms": ts[0], "max_ms": ts[-1], "peak_mib": peak}


def cleanup(device):
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()


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
        self.timer = Timer(self.dev, args.target_ms)
        self.res = {"env": env_info(self.dev), "cases": [], "checks": [], "first_calls": {}, "errors": [],
                    "notes": [], "ceilings": None}
        self.wl = W.get_workloads(tiny=self.dev == "cpu")
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
            self.sa = import_seer_attn()
        return self.sa

    def ours_2d(self, q, k, v, m, cu, L):
        f = getattr(self.api(), "block_sparse_attn_2d", None)
        if f is not None:
            return f(q, k, v, m, cu, cu, L, L, block_size_q=BLOCK, block_size_k=BLOCK, sm_scale=SM_SCALE, causal=True)
        return torch.ops.seer_attn.block_sparse_2d_fwd(q, k, v, cu, cu, L, L, m, BLOCK, BLOCK, SM_SCALE, True)[0]

    def ours_1d(self, q, k, v, m, cu, L):
        f = getattr(self.api(), "block_sparse_attn_1d", None)
        if f is not None:
            return f(q, k, v, m, cu, cu, L, L, block_size_k=BLOCK, sm_scale=SM_SCALE, causal=True)
        return torch.ops.seer_attn.block_sparse_1d_fwd(q, k, v, cu, cu, L, L, m, BLOCK, SM_SCALE, True)[0]

    def ours_pool(self, q, k, cu, L, gqa):
        f = getattr(self.api(), "attention_pooling", None)
        if f is not None:
            return f(q, k, cu, L, block_size=BLOCK, sm_scale=SM_SCALE, causal=True, gqa_reduce=gqa)
        return torch.ops.seer_attn.attn_pooling(q, k, cu, L, SM_SCALE, BLOCK, True, gqa)

    def ours_decode(self, q, kc, vc, lens, bs, mask=None, idx=None):
        f = getattr(self.api(), "block_sparse_decode", None)
        if f is not None:
            return f(q, kc, vc, lens, block_mask=mask, block_indices=idx, block_size=bs, sm_scale=SM_SCALE)
        return torch.ops.seer_attn.block_sparse_decode(q, kc, vc, lens, mask, idx, bs, SM_SCALE, False, False, 0)[0]

    @staticmethod
    def _out(r):
        return r[0] if isinstance(r, (tuple, list)) else r

    def attn_fns(self, op, inp, mask):
        q, k, v, dout, cu, L = inp["q"], inp["k"], inp["v"], inp["dout"], inp["cu"], inp["max_len"]
        call = self.ours_2d if op == "2d" else self.ours_1d
        qr, kr, vr = (x.detach().requires_grad_() for x in (q, k, v))

        def fwd():
            with torch.no_grad():
                return self._out(call(q, k, v, mask, cu, L))

        def fb():
            out = self._out(call(qr, kr, vr, mask, cu, L))
            loss = (out * dout).sum()
            return torch.autograd.grad(loss, (qr, kr, vr))
        return fwd, fb

    # -- checks -----------------------------------------------------------------------------------
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

    def check_attention(self, op, variant, d):
        sl = W.CHECK_SEQLENS
        try:
            ci = W.make_prefill_inputs(sl, self.dev)
            q, k, v, dout, cu, L = ci["q"], ci["k"], ci["v"], ci["dout"], ci["cu"], ci["max_len"]
            if op == "2d":
                m = W.mask_2d(sl, H_Q, d, self.dev)
                vis = W.vis_from_2d(m)
            elif variant == "token":
                m = W.mask_1d_token(sl, H_KV, d, self.dev)
                vis = W.vis_from_1d(m, g=GROUP)
            else:
                m = W.expand_rows(W.mask_2d(sl, H_KV, d, self.dev), sl)
                vis = W.vis_from_1d(m, g=GROUP)
                if variant == "head":
                    m = m.repeat_interleave(GROUP, 1)
                    vis = W.vis_from_1d(m, g=1)
            fwd, fb = self.attn_fns(op, ci, m)
            what = f"check problem seqlens {sl}"
            self.first_call(f"ours {op} fwd", what, fwd)
            out = fwd()
            qf, kf, vf = (x.detach().float().requires_grad_() for x in (q, k, v))
            ref = W.ref_attention(qf, kf, vf, sl, vis)
            errs = {"out": W.rel_err(out, ref)}
            if not self.a.fwd_only:
                self.first_call(f"ours {op} fwd+bwd", what, fb)
                gq, gk, gv = fb()
                rq, rk, rv = torch.autograd.grad((ref * dout.float()).sum(), (qf, kf, vf))
                errs.update(dq=W.rel_err(gq, rq), dk=W.rel_err(gk, rk), dv=W.rel_err(gv, rv))
            return self._record_check(op, variant, d, errs)
        except FatalDeviceError:
            raise
        except Exception as e:  # noqa: BLE001
            self._record_check(op, variant, d, {}, error=short_err(e))
            if os.environ.get("BENCH_TRACEBACK"):
                traceback.print_exc()
            self.after_exception(e)
            return False

    def check_pool(self, variant):
        sl = W.CHECK_SEQLENS
        gqa = variant == "gqa"
        try:
            ci = W.make_prefill_inputs(sl, self.dev)
            q, k, cu, L = ci["q"], ci["k"], ci["cu"], ci["max_len"]
            fn = lambda: self.ours_pool(q, k, cu, L, gqa)  # noqa: E731
            self.first_call(f"ours pool{' gqa' if gqa else ''}", f"check problem seqlens {sl}", fn)
            p2, p1 = fn()
            r2, r1, raw2 = W.ref_pooling(q, k, sl)
            e2 = e1 = e1n = 0.0
            off = 0
            for b, Lb in enumerate(sl):
                nbb = W.cdiv(Lb, BLOCK)
                if gqa:
                    hk = raw2[b].shape[0] // GROUP
                    mx = raw2[b].view(hk, GROUP, nbb, nbb).amax(1)
                    ref2 = mx / (mx.sum(-1, keepdim=True) + 1e-6)
                    m1 = r1[b].view(hk, GROUP, Lb, nbb).amax(1)
                    ref1 = m1
                    ref1n = m1 / (m1.sum(-1, keepdim=True) + 1e-6)
                else:
                    ref2, ref1, ref1n = r2[b], r1[b], None
                e2 = max(e2, W.rel_err(p2[b, :, :nbb, :nbb], ref2))
                got1 = p1[:, off:off + Lb, :nbb]
                e1 = max(e1, W.rel_err(got1, ref1))
                if ref1n is not None:
                    e1n = max(e1n, W.rel_err(got1, ref1n))
                off += Lb
            errs = {"pooled_2d": e2, "pooled_1d": min(e1, e1n) if gqa else e1}
            if gqa:
                self.res["notes"].append(f"pool gqa check: pooled_1d vs un-normalised group max {e1:.2e}, "
                                         f"vs row-normalised {e1n:.2e} (the smaller one is used)")
            return self._record_check("pool", variant, "-", errs, tol=TOL_OUT)
        except FatalDeviceError:
            raise
        except Exception as e:  # noqa: BLE001
            self._record_check("pool", variant, "-", {}, error=short_err(e))
            self.after_exception(e)
            return False

    def check_decode(self, bs, d):
        w = W.Workload("check", "decode", batch=4, s_max=1024, len_lo=64)
        try:
            ci = W.make_decode_inputs(w, self.dev)
            ci["cache_seqlens"][1] = 1
            ci["cache_seqlens"][2] = bs + 1
            ci["lens_host"] = ci["cache_seqlens"].tolist()
            m = W.decode_mask(ci["cache_seqlens"], H_KV, w.s_max, bs, d)
            idx = W.mask_to_indices_sorted(m)
            # shuffle the valid indices (any order is allowed)
            perm = torch.argsort(torch.rand(idx.shape, device=idx.device) + (idx < 0).float() * 2, dim=-1)
            idx = torch.gather(idx, -1, perm)
            ref = W.ref_decode(ci["q"], ci["k_cache"], ci["v_cache"], ci["lens_host"], m, bs)
            errs = {}
            for form in ("mask", "indices"):
                fn = (lambda: self.ours_decode(ci["q"], ci["k_cache"], ci["v_cache"], ci["cache_seqlens"], bs, mask=m)) \
                    if form == "mask" else \
                    (lambda: self.ours_decode(ci["q"], ci["k_cache"], ci["v_cache"], ci["cache_seqlens"], bs, idx=idx))
                self.first_call(f"ours decode {form}", f"check problem B=4 S_max=1024 block {bs}", fn)
                errs[form] = W.rel_err(self._out(fn()), ref)
            return self._record_check("decode", f"block {bs}", d, errs, tol=TOL_OUT)
        except FatalDeviceError:
            raise
        except Exception as e:  # noqa: BLE001
            self._record_check("decode", f"block {bs}", d, {}, error=short_err(e))
            self.after_exception(e)
            return False

    # -- baselines --------------------------------------------------------------------------------
    def run_fa_dense(self, w, inp):
        if self.a.no_fa:
            return
        from baselines import FADense
        case = {"op": "fa_dense", "workload": w, "fa": {}}
        self.res["cases"].append(case)
        dense = W.dense_causal_pairs(inp["seqlens"])
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
        dense = W.dense_causal_pairs(inp["seqlens"])
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
        if self.a.check:
            for d in self.a.densities:
                self.check_attention("2d", "2d", d)
        for w in [x for x in self.a.workloads if self.wl[x].kind == "prefill"]:
            if self.out_of_time():
                self.error(f"2d {w}: skipped (time budget)")
                continue
            sl = self.wl[w].seqlens
            inp = W.make_prefill_inputs(sl, self.dev)
            self.run_fa_dense(w, inp)
            flexh = {}
            for d in self.a.densities:
                if self.out_of_time():
                    self.error(f"2d {w} d={d}: skipped (time budget)")
                    continue
                m = W.mask_2d(sl, H_Q, d, self.dev)
                pairs = W.pairs_2d(m, sl)
                self.run_prefill_case("2d", "2d", w, d, inp, m, pairs, self.make_flex(inp, "2d", flexh))
                del m
                cleanup(self.dev)
            del inp, flexh
            cleanup(self.dev)

    def op_1d(self):
        if self.a.check:
            for var in self.a.variants_1d:
                for d in self.a.densities:
                    self.check_attention("1d", var, d)
        for w in [x for x in self.a.workloads if self.wl[x].kind == "prefill"]:
            if self.out_of_time():
                self.error(f"1d {w}: skipped (time budget)")
                continue
            sl = self.wl[w].seqlens
            inp = W.make_prefill_inputs(sl, self.dev)
            if "2d" not in self.a.ops_all:
                self.run_fa_dense(w, inp)
            flexh = {}
            for var in self.a.variants_1d:
                for d in self.a.densities:
                    if self.out_of_time():
                        self.error(f"1d {var} {w} d={d}: skipped (time budget)")
                        continue
                    if var == "token":
                        m = W.mask_1d_token(sl, H_KV, d, self.dev)
                        pairs = W.pairs_1d(m, sl, head_factor=GROUP)
                        flex_mask = m
                    else:
                        m = W.expand_rows(W.mask_2d(sl, H_KV, d, self.dev), sl)
                        pairs = W.pairs_1d(m, sl, head_factor=GROUP)
                        flex_mask = m
                        if var == "head":
                            m = m.repeat_interleave(GROUP, 1)
                            flex_mask = None
                    self.run_prefill_case("1d", var, w, d, inp, m, pairs,
                                          self.make_flex(inp, "1d", flexh) if flex_mask is not None else None)
                    del m, flex_mask
                    cleanup(self.dev)
            del inp, flexh
            cleanup(self.dev)

    def op_pool(self):
        if self.a.check:
            for var in self.a.pool_variants:
                self.check_pool(var)
        for w in [x for x in self.a.workloads if self.wl[x].kind == "prefill"]:
            sl = self.wl[w].seqlens
            inp = W.make_prefill_inputs(sl, self.dev)
            dense = W.dense_causal_pairs(sl)
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
                    q, k, cu, L = inp["q"], inp["k"], inp["cu"], inp["max_len"]
                    fn = lambda: self.ours_pool(q, k, cu, L, gqa)  # noqa: E731
                    self.merge(case["ours"], "fwd", self.measure(f"ours pool{' gqa' if gqa else ''}", w, fn,
                                                                 2 * dense * HEAD_DIM))
                    # The same op computed by the package's pure-PyTorch reference on the same device
                    # (what a user without the kernel would run); P1 only, P2 takes minutes.
                    if w == "P1" and not self.out_of_time():
                        from seer_attn import reference as _ref
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

    def op_decode(self):
        if self.a.check:
            for bs in self.a.decode_blocks:
                for d in self.a.decode_densities:
                    self.check_decode(bs, d)
        for w in [x for x in self.a.workloads if self.wl[x].kind == "decode"]:
            if self.out_of_time():
                self.error(f"decode {w}: skipped (time budget)")
                continue
            wk = self.wl[w]
            inp = W.make_decode_inputs(wk, self.dev)
            dense_bytes = W.decode_dense_kv_bytes(inp["lens_host"])
            if not self.a.no_fa:
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
            for bs in self.a.decode_blocks:
                for d in self.a.decode_densities:
                    if self.out_of_time():
                        self.error(f"decode {w} block {bs} d={d}: skipped (time budget)")
                        continue
                    m = W.decode_mask(inp["cache_seqlens"], H_KV, wk.s_max, bs, d)
                    idx = W.mask_to_indices_sorted(m)
                    kept = W.decode_kept_kv_bytes(m, inp["cache_seqlens"], bs)
                    for form in ("mask", "indices"):
                        case = {"op": "decode", "variant": form, "form": form, "workload": w, "block": bs,
                                "density": d, "kept_bytes": kept, "dense_bytes": dense_bytes, "ours": {}}
                        self.res["cases"].append(case)
                        if ("decode", f"block {bs}") in self.failed_checks and not self.a.time_failed:
                            case["ours"]["error"] = "not timed: --check failed"
                        else:
                            if form == "mask":
                                fn = lambda: self.ours_decode(inp["q"], inp["k_cache"], inp["v_cache"],  # noqa: E731
                                                              inp["cache_seqlens"], bs, mask=m)
                            else:
                                fn = lambda: self.ours_decode(inp["q"], inp["k_cache"], inp["v_cache"],  # noqa: E731
                                                              inp["cache_seqlens"], bs, idx=idx)
                            r = self.measure(f"ours decode {form}", f"{w} block {bs} d={d}", fn, mem=False)
                            o = case["ours"]
                            if r.get("ms"):
                                o["us"] = r["ms"] * 1e3
                                o["gbs"] = kept / (r["ms"] * 1e-3) / 1e9
                                o["reps"] = r.get("reps")
                            o["first_s"] = r.get("first_s")
                            if r.get("error"):
                                o["error"] = r["error"]
                        o = case["ours"]
                        from report import SEED_DECODE
                        sa = SEED_DECODE.get((bs, round(d, 4)))
                        s_us = (sa[0] if form == "mask" else sa[1]) if sa else None
                        log(f"decode {w} block {bs} d={d:g} {form}: "
                            + (f"{o['us']:.1f} us, {o['gbs']:.0f} GB/s" if o.get("us") else "-")
                            + (f", x seed {s_us / o['us']:.2f}" if s_us and o.get("us") else "")
                            + (f" [{o.get('error')}]" if o.get("error") else ""))
                        self.save()
                    del m, idx
            del inp
            cleanup(self.dev)

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
