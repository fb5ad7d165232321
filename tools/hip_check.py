#!/usr/bin/env python3
"""Compile-check of the HIP (ROCm, CDNA3) kernels: `make hip-check`.

Compiles every csrc/*/hip/*_hip.cu (and the plain-CUDA tile_mask.cu / item_order.cu / tail_fill.cu that a ROCm build
hipifies) for
gfx942 with Debian's clang-19 and the HIP headers of libamdhip64-dev (installed with apt when
missing), device code to assembly (the host side is compiled too, syntax only), and prints one line per kernel from the generated ISA:
MFMA instructions, VGPRs / AGPRs / SGPRs, LDS bytes, scratch (spill) bytes, the occupancy the
compiler computed (wavefronts per SIMD) and calls to external device functions.

Fails when a kernel of a *_hip.cu file has no MFMA instruction, has scratch, or calls an external
function (the HIP kernels use compiler builtins only, so the check sees the code a ROCm build runs).
tile_mask.cu, item_order.cu and tail_fill.cu are reported, not judged: they read threadIdx through ROCm's device
library, which this toolchain (-nogpulib) does not link (Debian's rocm-device-libs 5.2 has no gfx942
bitcode).

With torch importable (CI runs it from the .venv), the same sources also go through torch's hipify (as
in a ROCm build of setup.py) and the hipified copies are compiled again.

Verified here: compilation, instruction selection, register / LDS / scratch budgets. Not verified:
running on an MI300X (no AMD GPU is reachable); tests/hip_layout checks the fragment index maps on
the CPU.
"""
import contextlib
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARCH = os.environ.get("SEER_HIP_CHECK_ARCH", "gfx942")
CLANG = os.environ.get("SEER_HIP_CLANG", "clang++-19")
OUT = os.path.join(ROOT, "build", "hip_check")
# Kernels without matrix work (merges / normalisation passes): reported, exempt from the MFMA rule.
NO_MATRIX_WORK = ("decode_combine_kernel_hip", "pooling_normalize_kernel_hip", "pooling_finish_1d_kernel_hip", "pooling_zero_rows_kernel_hip",
                  "attention_bwd_preprocess_kernel_hip", "attention_bwd_convert_dq_kernel_hip")


def ensure_toolchain():
    if shutil.which(CLANG) and os.path.exists("/usr/include/hip/hip_runtime.h"):
        return
    if not shutil.which("apt-get"):
        sys.exit(f"hip-check: {CLANG} / HIP headers missing and no apt-get to install them")
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    print("hip-check: installing clang-19 and libamdhip64-dev with apt", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(sudo + ["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(sudo + ["apt-get", "install", "-y", "-qq", "clang-19", "libamdhip64-dev"], check=True, env=env)


def sources():
    found = []
    for fam in ("attention", "decode", "pooling"):
        d = os.path.join(ROOT, "csrc", fam, "hip")
        if os.path.isdir(d):
            found += sorted(os.path.join(d, f) for f in os.listdir(d) if f.endswith("_hip.cu"))
    # Plain-CUDA files the ROCm build of setup.py hipifies and links with the HIP kernels.
    found.append(os.path.join(ROOT, "csrc", "attention", "tile_mask.cu"))
    found.append(os.path.join(ROOT, "csrc", "attention", "item_order.cu"))
    found.append(os.path.join(ROOT, "csrc", "common", "tail_fill.cu"))
    return found


def compile_one(src, root=ROOT):
    asm = os.path.join(OUT, os.path.relpath(src, root).replace("/", "__") + ".s")
    cmd = [CLANG, "-x", "hip", "-std=c++17", "-DUSE_ROCM", f"--offload-arch={ARCH}", "--cuda-device-only",
           "-nogpulib", "-O3", "-S", "-I", os.path.join(root, "csrc"), src, "-o", asm]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.stderr.write(r.stderr)
        raise SystemExit(f"hip-check: FAILED to compile {os.path.relpath(src, root)}")
    # The host side (launchers, hipLaunchKernelGGL) too: syntax and semantic check against the HIP
    # runtime headers.
    host = [CLANG, "-x", "hip", "-std=c++17", "-DUSE_ROCM", f"--offload-arch={ARCH}", "--cuda-host-only",
            "-nogpulib", "-fsyntax-only", "-I", os.path.join(root, "csrc"), src]
    r = subprocess.run(host, capture_output=True, text=True)
    if r.returncode != 0:
        sys.stderr.write(r.stderr)
        raise SystemExit(f"hip-check: FAILED to compile the host side of {os.path.relpath(src, root)}")
    return asm


def hipify_round_trip():
    """What a ROCm build of setup.py compiles: torch's hipify applied to a copy of csrc/, then the
    hipified sources compiled the same way. Needs torch in this python (CI: the .venv); else skipped."""
    try:
        from torch.utils.hipify import hipify_python
    except Exception:
        print("hip-check: hipify round trip skipped (no torch in this python)")
        return
    tmp = tempfile.mkdtemp(prefix="seer_hipify_")
    try:
        shutil.copytree(os.path.join(ROOT, "csrc"), os.path.join(tmp, "csrc"))
        srcs = [os.path.join(tmp, os.path.relpath(p, ROOT)) for p in sources()]
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            hipify_python.hipify(project_directory=tmp, output_directory=tmp,
                                 header_include_dirs=[os.path.join(tmp, "csrc")], includes=[os.path.join(tmp, "*")],
                                 extra_files=srcs, show_detailed=False, is_pytorch_extension=True,
                                 hipify_extra_files_only=True)
        for src in srcs:
            hip = os.path.splitext(src)[0] + ".hip"
            if not os.path.exists(hip):
                raise SystemExit(f"hip-check: hipify produced no {os.path.relpath(hip, tmp)}")
            stats = parse(compile_one(hip, tmp))
            print(f"hip-check: hipified {os.path.relpath(hip, tmp)} compiles: {len(stats)} kernels, "
                  f"{sum(v['mfma'] for v in stats.values())} MFMA")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def demangle(names):
    tool = shutil.which("llvm-cxxfilt-19") or shutil.which("c++filt")
    if not tool or not names:
        return {n: n for n in names}
    r = subprocess.run([tool], input="\n".join(names), capture_output=True, text=True)
    out = r.stdout.splitlines()
    return dict(zip(names, out)) if len(out) == len(names) else {n: n for n in names}


def parse(asm):
    """{kernel: stats} from the assembly: MFMA count, calls and the compiler's resource comments."""
    text = open(asm).read().splitlines()
    kernels = [l.split()[1] for l in text if l.strip().startswith(".amdhsa_kernel ")]
    stats = {k: {"mfma": 0, "calls": 0} for k in kernels}
    cur = None
    for line in text:
        m = re.match(r"^([\w.$]+):", line)
        if m and m.group(1) in stats:
            cur = m.group(1)
            continue
        if cur is None:
            continue
        s = line.strip()
        if s.startswith("v_mfma"):
            stats[cur]["mfma"] += 1
        elif s.startswith("s_swappc") or s.startswith("s_setpc_b64") and "@" in s:
            stats[cur]["calls"] += 1
        m = re.match(r"^; (NumVgprs|NumAgprs|TotalNumVgprs|NumSgprs|ScratchSize|Occupancy|LDSByteSize): (\d+)", s)
        if m:
            stats[cur][m.group(1)] = int(m.group(2))
            if m.group(1) == "Occupancy":
                cur = None  # last comment of a function's block
    return stats


def main():
    t0 = time.time()
    ensure_toolchain()
    os.makedirs(OUT, exist_ok=True)
    ver = subprocess.run([CLANG, "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    print(f"hip-check: {ver}, --offload-arch={ARCH}, device code to ISA + host code syntax (-nogpulib)")
    failures = []
    n_kernels = 0
    for src in sources():
        rel = os.path.relpath(src, ROOT)
        judged = rel.endswith("_hip.cu")
        stats = parse(compile_one(src))
        if judged and not stats:
            failures.append(f"{rel}: no kernel in the generated code")
        names = demangle(list(stats))
        for k, s in stats.items():
            n_kernels += 1
            line = (f"{rel}: {names[k]}: mfma {s['mfma']}, vgpr {s.get('NumVgprs', '?')} agpr {s.get('NumAgprs', '?')} "
                    f"(total {s.get('TotalNumVgprs', '?')}), sgpr {s.get('NumSgprs', '?')}, "
                    f"lds {s.get('LDSByteSize', '?')} B, scratch {s.get('ScratchSize', '?')} B, "
                    f"waves/SIMD {s.get('Occupancy', '?')}, calls {s['calls']}")
            exempt = any(x in names[k] for x in NO_MATRIX_WORK)
            print(line + ("" if judged else "  [reported only]") + ("  [no matrix work]" if exempt else ""))
            if judged:
                if s["mfma"] == 0 and not exempt:
                    failures.append(f"{names[k]}: no MFMA instruction")
                if s.get("ScratchSize", 1) != 0:
                    failures.append(f"{names[k]}: scratch {s.get('ScratchSize')} B (spills)")
                if s["calls"]:
                    failures.append(f"{names[k]}: {s['calls']} external calls")
    hipify_round_trip()
    print(f"hip-check: {n_kernels} kernels in {time.time() - t0:.1f} s")
    if failures:
        print("hip-check: FAILED\n  " + "\n  ".join(failures))
        sys.exit(1)
    print("hip-check: OK")


if __name__ == "__main__":
    main()
