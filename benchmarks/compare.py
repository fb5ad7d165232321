"""Two builds of seer_attn, same run: ``python benchmarks/bench.py --compare DIR_A,DIR_B [--out OUT]``.

Each build is a directory holding an importable ``seer_attn`` package with its built ``_C*.so`` (a
checkout built in place, or a copy of one). Each runs in its own worker process with its directory
first on ``sys.path`` (checked: the package must come from there); both workers stay up for the whole
run and take turns on the GPU, so a case is measured A, B, then B, A (``--rounds``, default 2): drift
of clocks or temperature hits both builds alike. The inputs and masks are drawn in each worker from
the same seeds (each worker reports a fingerprint of its mask; rows whose masks differ are marked).

Cases (our ops only): 2D and 1D gqa forward and forward+backward on P1 and P2 at densities 1 / 0.5 /
0.2 / 0.1, pooling on P1 (per head and gqa_reduce), decode on D1 (block 32 and 64, densities 0.1 /
0.25 / 0.5, mask and indices); ``--workloads``, ``--densities`` (prefill) and ``--fwd-only`` narrow the
list. Per case and build: the median of all timed reps of all rounds (CUDA
events, L2 flushed before each rep, see common.Timer); ratio = B / A; a row is flagged when B is more
than ``--slower-pct`` (3) percent slower. Writes OUT/compare.md and OUT/compare.json and prints the
table. Budget: about 3-4 minutes on one H200 (``--budget-s`` stops starting cases after 420 s).
"""
from __future__ import annotations

import json
import math
import os
import select
import statistics
import subprocess
import sys
import time

import torch

import common as C

PROTO = "@@"  # prefix of the worker's protocol lines on its stdout


# ---- the case list ---------------------------------------------------------------------------------
def cases(device, quick=False, ops=("2d", "1d", "pool", "decode"), workloads=None, densities=None, fwd_only=False):
    """The compare rows of the ops in `ops` (bench.py --ops), in the order 2d, 1d, pool, decode; workloads /
    densities (bench.py --workloads / --densities, prefill densities) and fwd_only (--fwd-only) narrow them."""
    wl = C.get_workloads(tiny=device == "cpu")
    dens = list(densities) if densities else ([1.0, 0.1] if quick else list(C.PREFILL_DENSITIES))
    wls = ["P1"] if quick else ["P1", "P2"]
    if workloads:
        wls = [w for w in wls if w in workloads]
    out = []
    for w in wls:
        for op, kind in (("2d", "2d"), ("1d", "gqa")):
            for d in dens:
                for mode in (("fwd",) if fwd_only else ("fwd", "fb")):
                    out.append(dict(op=op, kind=kind, workload=w, density=d, mode=mode, seqlens=wl[w].seqlens))
    for gqa in (False, True) if "P1" in wls or not workloads else ():
        out.append(dict(op="pool", kind="gqa" if gqa else "per_head", workload="P1", density=1.0, mode="fwd",
                        seqlens=wl["P1"].seqlens))
    d1 = wl["D1"]
    for bs in C.DECODE_BLOCKS if not workloads or "D1" in workloads else ():
        for d in ([0.1] if quick else list(C.DECODE_DENSITIES)):
            for form in ("mask", "indices"):
                out.append(dict(op="decode", kind=form, workload="D1", density=d, mode="fwd", block=bs,
                                batch=d1.batch, s_max=d1.s_max, len_lo=d1.len_lo))
    return [c for c in out if c["op"] in ops]


def label(c):
    if c["op"] == "decode":
        return f"decode {c['kind']} block {c['block']}"
    if c["op"] == "pool":
        return f"pool {c['kind']}"
    kind = "" if c["kind"] == c["op"] else f" {c['kind']}"
    return f"{c['op']}{kind} {'fwd' if c['mode'] == 'fwd' else 'fwd+bwd'}"


# ---- the worker (one per build) ---------------------------------------------------------------------
class _State:
    def __init__(self, sa, device, target_ms):
        self.sa, self.dev = sa, device
        self.timer = C.Timer(device, target_ms)
        self.inp_key = self.inp = None
        self.mask_key = self.mask = None

    def inputs(self, c):
        key = (c["workload"], c["op"] == "decode")
        if key != self.inp_key:
            self.inp = self.mask = self.mask_key = None
            C.cleanup(self.dev)
            if c["op"] == "decode":
                w = C.Workload("D1", "decode", batch=c["batch"], s_max=c["s_max"], len_lo=c["len_lo"])
                self.inp = C.make_decode_inputs(w, self.dev, new_tokens=1)
            else:
                self.inp = C.make_prefill_inputs(c["seqlens"], self.dev)
            self.inp_key = key
        return self.inp

    def masks(self, c, inp):
        key = (c["op"], c["kind"] if c["op"] != "decode" else "", c["workload"], c["density"], c.get("block"))
        if key != self.mask_key:
            self.mask = None
            C.cleanup(self.dev)
            if c["op"] == "decode":
                m = C.decode_mask(inp["cache_seqlens"], c["s_max"], c["block"], c["density"])
                self.mask = (m, C.decode_indices(m))
            else:
                self.mask = (C.prefill_mask(c["kind"], c["seqlens"], c["density"], self.dev)[0],)
            self.mask_key = key
        return self.mask

    def fn(self, c):
        inp = self.inputs(c)
        if c["op"] == "pool":
            return C.pool_fn(self.sa, inp, c["kind"] == "gqa"), 0
        masks = self.masks(c, inp)
        if c["op"] == "decode":
            m, idx = masks
            kw = {"mask": m} if c["kind"] == "mask" else {"indices": idx}
            return (C.decode_fn(self.sa, inp["q"], inp["k_cache"], inp["v_cache"], inp["cache_seqlens"],
                                c["block"], **kw), C.checksum(m))
        fwd, fb = C.attn_fns(self.sa, c["op"], inp, masks[0])
        return (fwd if c["mode"] == "fwd" else fb), C.checksum(masks[0])


def worker_main(build_dir, device, target_ms):
    """Serve measurement requests (one JSON line each on stdin) for the build in build_dir."""
    proto = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # anything else printed (warnings, C++ logs) goes to stderr
    sys.stdout = sys.stderr

    def reply(obj):
        proto.write(PROTO + json.dumps(obj, default=str) + "\n")
        proto.flush()
    try:
        sa = C.import_seer_attn(build_dir)
        st = _State(sa, device, target_ms)
        status = getattr(sa, "kernel_status", lambda: None)()
        reply({"ready": True, "seer_attn": os.path.dirname(sa.__file__), "kernels": status,
               "device": torch.cuda.get_device_name() if device == "cuda" else "cpu"})
    except Exception as e:  # noqa: BLE001
        reply({"ready": False, "error": f"{type(e).__name__}: {e}"})
        return 1
    for line in sys.stdin:
        req = json.loads(line)
        c = req["case"]
        try:
            fn, fp = st.fn(c)
            first = st.timer.first(fn) if req.get("first") else None
            r = st.timer(fn)
            reply({"times_ms": r["times_ms"], "checksum": fp, "first_s": first})
        except Exception as e:  # noqa: BLE001
            reply({"error": f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"})
            st.mask = st.mask_key = None
            C.cleanup(device)
    return 0


class Worker:
    def __init__(self, name, build_dir, device, target_ms):
        self.name, self.dir, self.device, self.target_ms = name, build_dir, device, target_ms
        self.proc = None
        self.info = None

    def spawn(self):
        cmd = [sys.executable, "-u", os.path.join(C.HERE, "bench.py"), "--compare-worker", self.dir,
               "--device", self.device, "--target-ms", repr(self.target_ms)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)

    def start(self):
        if self.proc is None:
            self.spawn()
        self.info = self._read(600)
        if not self.info.get("ready"):
            raise RuntimeError(f"build {self.name} ({self.dir}) did not start: {self.info.get('error')}")

    def _read(self, timeout):
        end = time.time() + timeout
        while True:
            left = end - time.time()
            if left <= 0 or not select.select([self.proc.stdout], [], [], left)[0]:
                self.stop()
                return {"error": f"worker {self.name}: no answer within {timeout:.0f} s (killed)"}
            line = self.proc.stdout.readline()
            if not line:
                rc = self.proc.wait()
                self.proc = None
                return {"error": f"worker {self.name} exited (rc={rc})"}
            if line.startswith(PROTO):
                return json.loads(line[len(PROTO):])

    def measure(self, case, first, timeout):
        if self.proc is None:
            self.start()
        self.proc.stdin.write(json.dumps({"case": case, "first": first}) + "\n")
        self.proc.stdin.flush()
        return self._read(timeout)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


# ---- the parent ---------------------------------------------------------------------------------------
def build_info(path):
    info = {"dir": path}
    try:
        info["git"] = subprocess.run(["git", "-C", path, "log", "-1", "--format=%h %s"], capture_output=True,
                                     text=True, timeout=10).stdout.strip() or None
    except Exception:  # noqa: BLE001
        info["git"] = None
    pkg = os.path.join(path, "seer_attn")
    sos = sorted(f for f in os.listdir(pkg) if f.startswith("_C") and f.endswith(".so")) if os.path.isdir(pkg) else []
    info["so"] = [f"{f} ({os.path.getsize(os.path.join(pkg, f)) / 2**20:.1f} MiB, "
                  f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(os.path.getmtime(os.path.join(pkg, f))))})"
                  for f in sos]
    return info


def _median(xs):
    return statistics.median(xs) if xs else None


def run(a):
    dirs = [os.path.abspath(x) for x in a.compare.split(",")]
    if len(dirs) != 2:
        raise SystemExit("--compare wants two directories: DIR_A,DIR_B")
    os.makedirs(a.out, exist_ok=True)
    t0 = time.time()
    deadline = t0 + a.budget_s
    slower = 1.0 + a.slower_pct / 100.0
    builds = {n: build_info(d) for n, d in zip("AB", dirs)}
    workers = {n: Worker(n, d, a.device, a.target_ms) for n, d in zip("AB", dirs)}
    res = {"builds": builds, "device": a.device, "env": {"torch": torch.__version__, "cuda": torch.version.cuda},
           "rounds": a.rounds, "slower_pct": a.slower_pct, "rows": [], "errors": []}
    try:
        for w in workers.values():  # both import in parallel
            w.spawn()
        for n, w in workers.items():
            w.start()
            builds[n].update(seer_attn=w.info.get("seer_attn"), kernels=w.info.get("kernels"))
            res["env"]["device"] = w.info.get("device")
        print(f"[{time.time() - t0:6.1f}s] workers up: A = {builds['A']['seer_attn']}, B = {builds['B']['seer_attn']}",
              flush=True)
        for i, c in enumerate(cases(a.device, a.quick, a.ops, getattr(a, "workloads", None), getattr(a, "densities", None),
                                    getattr(a, "fwd_only", False))):
            row = {k: v for k, v in c.items() if k not in ("seqlens",)}
            row.update(case=label(c), A=[], B=[], fp={}, first={}, errors=[])
            if time.time() > deadline:
                row["errors"].append("skipped (time budget)")
                res["rows"].append(row)
                continue
            order = "AB" if i % 2 == 0 else "BA"
            for r in range(a.rounds):  # A B, B A, ... (ABBA cancels a linear drift)
                for n in (order if r % 2 == 0 else order[::-1]):
                    m = workers[n].measure(c, first=r == 0, timeout=max(60.0, deadline - time.time() + 120))
                    if m.get("error"):
                        row["errors"].append(f"{n}: {m['error']}")
                        continue
                    row[n].extend(m["times_ms"])
                    row["fp"][n] = m["checksum"]
                    if m.get("first_s") is not None:
                        row["first"][n] = m["first_s"]
            ma, mb = _median(row["A"]), _median(row["B"])
            row.update(A_ms=ma, B_ms=mb, A_reps=len(row["A"]), B_reps=len(row["B"]))
            row["ratio"] = mb / ma if ma and mb else None
            row["same_mask"] = len(set(row["fp"].values())) <= 1
            row["flag"] = ("SLOWER" if row["ratio"] and row["ratio"] > slower else "") + \
                          ("" if row["same_mask"] else " MASKS DIFFER")
            row["A_times_ms"], row["B_times_ms"] = row.pop("A"), row.pop("B")
            res["rows"].append(row)
            print(f"[{time.time() - t0:6.1f}s] {fmt_row(row)}", flush=True)
            write(res, a.out)
    finally:
        for w in workers.values():
            w.stop()
    res["seconds"] = time.time() - t0
    md = write(res, a.out)
    print("\n" + md, flush=True)
    return 0


def fmt_row(r):
    unit = 1e3 if r["op"] == "decode" else 1.0
    f = (lambda x: "-" if x is None else f"{x * unit:.3f}")
    return (f"{r['case']} {r['workload']} d={r['density']:g}: A {f(r.get('A_ms'))} B {f(r.get('B_ms'))} "
            f"{'us' if unit != 1 else 'ms'} B/A {r['ratio']:.3f} {r['flag']}" if r.get("ratio")
            else f"{r['case']} {r['workload']} d={r['density']:g}: {'; '.join(r['errors'])}")


def markdown(res):
    b = res["builds"]
    lines = ["# seer_attn: two builds, same run", "",
             f"- device: {res['env'].get('device')}, torch {res['env']['torch']}, CUDA {res['env']['cuda']}"]
    for n in "AB":
        lines.append(f"- {n}: `{b[n]['dir']}` (git: {b[n].get('git') or '-'}; {', '.join(b[n].get('so') or []) or 'no _C*.so'}; "
                     f"imported from {b[n].get('seer_attn')})")
    lines += [f"- median of all timed reps over {res['rounds']} rounds per build (A B, then B A), CUDA events "
              f"(perf_counter on CPU), L2 flushed before each rep; ratio = B / A; SLOWER = B more than {res['slower_pct']:g}% slower. "
              "Decode in us, everything else in ms."
              + (" CPU: tiny shapes, a control-flow test; the times are not measurements." if res.get("device") == "cpu"
                 else ""), ""]
    flagged = [r for r in res["rows"] if "SLOWER" in (r.get("flag") or "")]
    ratios = [r["ratio"] for r in res["rows"] if r.get("ratio")]
    if ratios:
        lines.append(f"- geometric mean of B / A over {len(ratios)} rows: "
                     f"{math.exp(sum(math.log(x) for x in ratios) / len(ratios)):.3f}")
    lines.append(f"**{len(flagged)} row(s) where B is more than {res['slower_pct']:g}% slower**"
                 + (": " + "; ".join(f"{r['case']} {r['workload']} d={r['density']:g} (x{r['ratio']:.3f})"
                                     for r in flagged) if flagged else "."))
    lines += ["", "| case | W | d | A | B | B/A | reps A / B | flag |", "|---|---|---|---|---|---|---|---|"]
    for r in res["rows"]:
        unit = 1e3 if r["op"] == "decode" else 1.0
        cell = (lambda x: "-" if x is None else f"{x * unit:.3f}")
        d = f"{r['density']:g}"
        ratio = f"{r['ratio']:.3f}" if r.get("ratio") else "-"
        lines.append(f"| {r['case']} | {r['workload']} | {d} | {cell(r.get('A_ms'))} | {cell(r.get('B_ms'))} | {ratio} | "
                     f"{r.get('A_reps', 0)} / {r.get('B_reps', 0)} | {r.get('flag') or ''}"
                     f"{' ' + '; '.join(r['errors']).replace('|', '/') if r.get('errors') else ''} |")
    if res.get("seconds"):
        lines += ["", f"Total {res['seconds']:.0f} s."]
    return "\n".join(lines) + "\n"


def write(res, out):
    md = markdown(res)
    with open(os.path.join(out, "compare.md"), "w") as f:
        f.write(md)
    with open(os.path.join(out, "compare.json"), "w") as f:
        json.dump(res, f, indent=1, default=str)
    return md
